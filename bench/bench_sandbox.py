"""Benchmark the sandbox and the protected evaluation: what they add to one trial of nanolab (CPU).

One script, one lab (examples/nanolab with NANOLAB_TINY=1), one budget; each repetition runs the
trial's job the ways agentdeck can, interleaved so that machine load hits them alike:

  plain     ``python train.py`` directly (how jobs ran before: no reaper, no sandbox, no evaluation)
  reaper    under agentdeck's reaper (the unsandboxed path: every descendant dies with the job)
  sandbox   under the reaper, in bubblewrap (the research job profile)

and then the protected evaluation of what the job saved (export of the committed files +
``python prepare.py evaluate``), unsandboxed and sandboxed.  It also times the bare launch (``true``
under the reaper, and in bubblewrap), which does not depend on what the job does.

Reported: the median wall time of each, the overhead over ``plain`` in seconds and as a share of a
300 s budget (the issue's goal: under 2 %).  The evaluation's cost is mostly two Python+torch
start-ups (the judge and the model's child process), so on a loaded machine it grows with the load.

Usage: python bench/bench_sandbox.py [--reps 3] [--budget 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentdeck import sandbox
from agentdeck.research import evaluate
from agentdeck.sandbox import profiles

BUDGET_REF_S = 300.0


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@x", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@x")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "wb") as out:
        rc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT).returncode
    elapsed = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"{argv[-1] if argv else argv} failed (exit {rc}); see {log}:\n{log.read_text()[-2000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=float, default=5.0, help="training budget per job (AGENTDECK_BUDGET_S)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if not sandbox.probe().works:
        raise SystemExit(f"bubblewrap does not work here: {sandbox.probe().reason}")

    tmp = Path(tempfile.mkdtemp(prefix="adbench-sandbox-"))
    lab = tmp / "repo"
    shutil.copytree(ROOT / "examples" / "nanolab", lab, ignore=shutil.ignore_patterns("__pycache__"))
    _git(lab, "init", "-q")
    _git(lab, "add", "-A")
    _git(lab, "commit", "-qm", "nanolab")
    commit = _git(lab, "rev-parse", "HEAD")
    base_env = sandbox.allowed_env(os.environ, fixed={
        "NANOLAB_TINY": "1", "NANOLAB_CACHE": str(tmp / "cache"), "AGENTDECK_BUDGET_S": f"{args.budget:g}",
        "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""})
    subprocess.run([sys.executable, "prepare.py"], cwd=lab, env=dict(base_env, HOME=os.environ.get("HOME", "/tmp")),
                   check=True, capture_output=True)  # the cache for the unsandboxed runs
    job = ["/bin/sh", "-c", f"{sys.executable} train.py"]
    times: dict[str, list[float]] = {k: [] for k in ("plain", "reaper", "sandbox", "eval", "eval_sandbox",
                                                      "launch_reaper", "launch_sandbox", "launch_plain",
                                                      "torch_import")}
    cpu: dict[str, list[float]] = {k: [] for k in times}

    for rep in range(args.reps):
        for variant in ("plain", "reaper", "sandbox"):
            art = tmp / f"art-{variant}-{rep}"
            art.mkdir()
            env = dict(base_env, AGENTDECK_ARTIFACT_DIR=str(art), HOME=os.environ.get("HOME", "/tmp"))
            if variant == "plain":
                argv = job
            elif variant == "reaper":
                argv = sandbox.command(job)
            else:
                env["HOME"] = profiles.PRIVATE_HOME
                # The cache is under /tmp, private in the sandbox: the job rebuilds it, as it would
                # in its empty private home.
                profile = profiles.research_job(cwd=lab, worktree=lab, artifact_dir=art, hidden=[], env=env,
                                                gpus=False)
                argv = sandbox.command(job, profile)
            before = _cpu()
            times[variant].append(_timed(argv, cwd=lab, env=env, log=tmp / f"{variant}-{rep}.log"))
            cpu[variant].append(_cpu() - before)
        art = tmp / f"art-plain-{rep}"
        before = _cpu()
        times["torch_import"].append(_timed([sys.executable, "-c", "import torch"], cwd=lab, env=base_env,
                                            log=tmp / "torch.log"))
        cpu["torch_import"].append(_cpu() - before)
        for key, sandboxed in (("eval", False), ("eval_sandbox", True)):
            start, before = time.perf_counter(), _cpu()
            tree = tmp / f"eval-{key}-{rep}"
            cwd = evaluate.export_tree(lab, commit, ".", tree)
            env = dict(base_env, AGENTDECK_ARTIFACT_DIR=str(art), AGENTDECK_EVAL_SEED="bench-secret",
                       HOME=profiles.PRIVATE_HOME if sandboxed else os.environ.get("HOME", "/tmp"))
            profile = (profiles.research_eval(cwd=cwd, tree=tree, artifact_dir=art, hidden=[], env=env, gpus=False)
                       if sandboxed else None)
            result = evaluate.run_command("python prepare.py evaluate" if shutil.which("python") else
                                          f"{sys.executable} prepare.py evaluate", cwd=cwd, env=env,
                                          log_path=tmp / f"{key}-{rep}.log", timeout_s=600, profile=profile)
            shutil.rmtree(tree, ignore_errors=True)
            if result.problem:
                raise SystemExit(f"{key}: {result.problem}")
            times[key].append(time.perf_counter() - start)
            cpu[key].append(_cpu() - before)
    for _ in range(20):
        env = dict(base_env, HOME=os.environ.get("HOME", "/tmp"))
        times["launch_plain"].append(_timed(["true"], cwd=lab, env=env, log=tmp / "launch.log"))
        times["launch_reaper"].append(_timed(sandbox.command(["true"]), cwd=lab, env=env, log=tmp / "launch.log"))
        art = tmp / "art-launch"
        art.mkdir(exist_ok=True)
        profile = profiles.research_job(cwd=lab, worktree=lab, artifact_dir=art, hidden=[], env=env, gpus=False)
        times["launch_sandbox"].append(_timed(sandbox.command(["true"], profile), cwd=lab, env=env,
                                              log=tmp / "launch.log"))

    med = {k: statistics.median(v) for k, v in times.items() if v}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items() if v}
    rows = [
        ("launch: true, plain", med["launch_plain"], None),
        ("launch: true under the reaper", med["launch_reaper"], med["launch_reaper"] - med["launch_plain"]),
        ("launch: true in bubblewrap", med["launch_sandbox"], med["launch_sandbox"] - med["launch_plain"]),
        (f"job, plain (budget {args.budget:g} s)", med["plain"], None),
        ("job under the reaper", med["reaper"], med["reaper"] - med["plain"]),
        ("job in bubblewrap", med["sandbox"], med["sandbox"] - med["plain"]),
        ("protected evaluation, unsandboxed", med["eval"], med["eval"]),
        ("protected evaluation, in bubblewrap", med["eval_sandbox"], med["eval_sandbox"]),
        ("trial: sandboxed job + sandboxed evaluation", med["sandbox"] + med["eval_sandbox"],
         med["sandbox"] + med["eval_sandbox"] - med["plain"]),
    ]
    print(f"nanolab CPU (NANOLAB_TINY=1), {args.reps} reps, medians; overhead vs plain, and its share of "
          f"a {BUDGET_REF_S:g} s budget (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)")
    for name, value, over in rows:
        extra = "" if over is None else f"   +{over:7.3f} s  ({100 * over / BUDGET_REF_S:5.2f} % of {BUDGET_REF_S:g} s)"
        print(f"  {name:<46} {value:8.3f} s{extra}")
    label = "python -c 'import torch' (for scale)"
    print(f"  {label:<46} {med['torch_import']:8.3f} s")
    print("  CPU time (user+sys of the processes), medians:")
    for key in ("plain", "reaper", "sandbox", "eval", "eval_sandbox", "torch_import"):
        print(f"    {key:<14} {med_cpu[key]:8.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"medians_s": med, "cpu_medians_s": med_cpu, "samples_s": times,
                                               "reps": args.reps,
                                               "budget_s": args.budget}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
