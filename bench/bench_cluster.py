"""Per-trial overhead of the executors, side by side: local, Ray, Slurm.

Each executor runs TRIALS jobs one after another (never queued behind each other); each job is
``echo START <epoch>; sleep SLEEP; echo END <epoch>`` in a fresh folder.  The harness polls the way
the research loop does (``executor.wake`` or a 0.25 s tick) and measures, per trial:

- submit -> running: from calling ``submit`` until a poll first says ``running`` (what starts the
  loop's clock), and until the job's own START stamp (the engine's own start latency);
- end -> recorded: from the job's END stamp until a poll says finished and its log is read
  (what the loop does before it records the trial).

Engines: ``local``; ``ray`` (a local cluster the script starts with 2 logical GPUs, or
``--ray-address``), run in place, and ``ray-upload`` (the same cluster, each worktree uploaded as
runtime_env working_dir, as for a remote cluster); ``slurm``: the real Slurm of
``tests/setup_slurm.sh`` when it answers, otherwise the fake commands of ``tests/fake_slurm``
(labelled ``slurm (fake)``).

Usage: python bench/bench_cluster.py [--trials N] [--sleep S] [--ray-address URL] [--only local,ray,slurm]
       [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, isolate, pct

sys.path.insert(0, str(ROOT / "tests"))

TICK_S = 0.25  # the research loop's tick (agentdeck/research/loop.py)


def stamp(text: str, word: str) -> float | None:
    found = re.findall(rf"^{word} (\d+\.\d+)$", text, re.MULTILINE)
    return float(found[-1]) if found else None


def run_engine(ex, work: Path, trials: int, sleep_s: float, slot: str) -> list[dict[str, float]]:
    from agentdeck.research.executors.base import JobSpec

    rows = []
    for i in range(trials):
        wt = work / f"wt{i}"
        wt.mkdir(parents=True)
        (wt / ".git").write_text("gitdir: none\n")  # a worktree root, as the loop's are
        # A small lab whose content differs per trial, as trials' edits do (Ray caches uploads by content).
        (wt / "train.py").write_text(f"# trial {i} {os.urandom(8).hex()}\n" + "x = 1\n" * 2000)
        spec = JobSpec(trial_id=i, tag="bench", command=f"echo START $(date +%s.%N); sleep {sleep_s}; "
                                                        "echo END $(date +%s.%N)",
                       cwd=wt, env={"AGENTDECK_BUDGET_S": str(sleep_s)}, log_path=work / "logs" / f"{i}.log",
                       slot=slot, budget_s=sleep_s, timeout_s=120,
                       name=f"agentdeck-bench-{os.getpid()}-{work.name}-{i}")
        t_submit = time.time()
        handle = ex.submit(spec)
        t_returned = time.time()
        t_running = float(handle.data["running_at"]) if handle.data.get("running_at") else None
        while True:
            state = ex.poll(handle)
            now = time.time()
            if state.state == "running" and t_running is None:
                t_running = now
            if state.finished:
                break
            ex.wake.wait(TICK_S)
            ex.wake.clear()
        text = ex.read_log(handle)
        t_recorded = time.time()
        ex.finish(handle)
        start, end = stamp(text, "START"), stamp(text, "END")
        if state.exit_code != 0 or start is None or end is None:
            raise SystemExit(f"{ex.name}: trial {i} failed ({state}); log:\n{text[-2000:]}")
        rows.append({
            "submit_call": t_returned - t_submit,
            "submit_to_start": start - t_submit,
            "submit_to_running": (t_running or now) - t_submit,
            "end_to_seen": now - end,
            "end_to_recorded": t_recorded - end,
        })
    return rows


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--ray-address", default="")
    parser.add_argument("--only", default="local,ray,ray-upload,slurm")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    wanted = args.only.split(",")
    tmp = isolate()
    work = Path(tempfile.mkdtemp(prefix="adbench-cluster-"))
    from agentdeck.config import ResearchSettings
    from agentdeck.research.executors import get_executor

    results: dict[str, list[dict[str, float]]] = {}
    notes: dict[str, str] = {}
    ray_pid = 0
    try:
        if "local" in wanted:
            results["local"] = run_engine(get_executor("local"), work / "local", args.trials, args.sleep, "cpu")
        if "ray" in wanted or "ray-upload" in wanted:
            import cluster_support

            address = args.ray_address
            if not address and cluster_support.ray_missing() is None:
                t0 = time.time()
                info = cluster_support.start_ray(work / "ray", work / "ray.log", watch_pid=os.getpid())
                address, ray_pid = info["address"], info["pid"]
                notes["ray"] = f"local cluster started in {time.time() - t0:.1f} s"
            if address:
                for name in ("ray", "ray-upload"):
                    if name not in wanted:
                        continue
                    s = ResearchSettings()
                    s.ray.address = address
                    ex = get_executor("ray", s)
                    ex.upload = name == "ray-upload"
                    ex.check()
                    results[name] = run_engine(ex, work / name, args.trials, args.sleep, "ray:0")
                    ex.close()
            else:
                notes["ray"] = "skipped: " + (cluster_support.ray_missing() or "no address")
        if "slurm" in wanted:
            import cluster_support

            label = "slurm"
            if cluster_support.real_slurm() is not None:
                os.environ["PATH"] = f"{cluster_support.FAKE_SLURM}{os.pathsep}{os.environ['PATH']}"
                os.environ["FAKE_SLURM_DIR"] = str(work / "fake-slurm")
                os.environ["FAKE_SLURM_PYTHON"] = sys.executable
                label = "slurm (fake)"
            s = ResearchSettings()
            ex = get_executor("slurm", s)
            ex.check(work / "probe")
            results[label] = run_engine(ex, work / "slurm", args.trials, args.sleep, "slurm:0")
    finally:
        if ray_pid:
            import cluster_support

            cluster_support.stop_ray(ray_pid)

    if args.json:
        print(json.dumps({"trials": args.trials, "sleep_s": args.sleep, "results": results, "notes": notes}, indent=1))
        return
    print(f"{args.trials} trials per engine, each `sleep {args.sleep:g}`, one at a time; medians (p95) in seconds")
    print(f"{'engine':<14} {'submit call':>12} {'submit->job start':>18} {'submit->running':>16} "
          f"{'end->seen':>10} {'end->recorded':>14}")
    for name, rows in results.items():
        cells = []
        for key, width in (("submit_call", 12), ("submit_to_start", 18), ("submit_to_running", 16),
                           ("end_to_seen", 10), ("end_to_recorded", 14)):
            cells.append(f"{med(rows, key):.2f} ({pct([r[key] for r in rows], 95):.2f})".rjust(width))
        print(f"{name:<14} " + " ".join(cells))
    for name, note in notes.items():
        print(f"{name}: {note}")
    _ = tmp


if __name__ == "__main__":
    main()
