"""Benchmark the research loop's scheduling: are the GPU slots kept busy?

A synthetic lab whose job takes exactly the time budget (it sleeps
``AGENTDECK_BUDGET_S`` and prints a metric computed from its constants, so
the mutate proposer has something to tune) runs on N fake GPU slots through
the real loop: real git worktrees, commits, refs, the SQLite ledger,
results.tsv, local subprocess jobs.  It reports:

- slot busy fraction: time the slots held a running job / (slots x the span from the first job's start
  to the last job's start), i.e. while there was work to start — the goal is >= 95 %; the same over
  the whole run (to the last job's end, where a finite run drains) is reported beside it;
- harness overhead per trial: the idle gap on a slot between one job's end and the next job's start
  (mean and p95), and what that gap costs at a real budget (300 s);
- trials per hour against the ideal ``3600 / budget_s x slots``.

Usage: python bench/bench_research.py [--slots 4] [--budget 3] [--trials 24] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRAIN = '''\
import os, time
A = 3.0
B = 1.0
C = 0.5
D = 8
start = time.time()
time.sleep(float(os.environ["AGENTDECK_BUDGET_S"]))
score = (A - 7) ** 2 + (B - 2) ** 2 + (C - 0.1) ** 2 + abs(D - 12) + 1
print("---")
print(f"score: {score:.6f}")
with open(os.environ["BENCH_RECORD"], "a") as fh:
    fh.write(f"{os.environ['CUDA_VISIBLE_DEVICES']} {start} {time.time()}\\n")
'''

CONFIG = '''\
[research]
workdir = "lab"
metric = "score"
command = "{python} train.py"
editable = ["train.py"]
protected = ["prepare.py"]
budget_s = {budget}
timeout_s = {timeout}
gpus = {gpus}
confirm = {confirm}
repeats_baseline = 2
sandbox = "none"  # the jobs append to BENCH_RECORD in the bench's own temporary folder
env = {{ BENCH_RECORD = "${{BENCH_RECORD}}" }}  # jobs get an allow-listed environment
'''


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_lab(path: Path, slots: int, budget: float, confirm: bool) -> Path:
    (path / "lab").mkdir(parents=True)
    (path / "lab" / "train.py").write_text(TRAIN)
    (path / "lab" / "prepare.py").write_text("# fixed evaluation lives here\n")
    (path / ".agentdeck.toml").write_text(CONFIG.format(
        python=sys.executable, budget=budget, timeout=budget * 3 + 30, gpus=list(range(slots)),
        confirm=str(confirm).lower()))
    (path / ".gitignore").write_text("__pycache__/\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "lab")
    return path


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def run_bench(slots: int, budget: float, trials: int, confirm: bool = False) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-research-"))
    os.environ["AGENTDECK_HOME"] = str(work / "home")
    record = work / "record.txt"
    os.environ["BENCH_RECORD"] = str(record)
    for var, value in (("GIT_AUTHOR_NAME", "bench"), ("GIT_AUTHOR_EMAIL", "bench@example.com"),
                       ("GIT_COMMITTER_NAME", "bench"), ("GIT_COMMITTER_EMAIL", "bench@example.com")):
        os.environ.setdefault(var, value)
    repo = make_lab(work / "repo", slots, budget, confirm)

    from agentdeck.research import Research

    research = Research.open(repo)
    tag = research.start("bench", trials=trials)
    t0 = time.time()
    research.run(tag)
    wall = time.time() - t0
    status = research.status(tag)
    ledger_trials = [t for t in research.ledger.trials(tag) if t.started_at and t.ended_at]

    # Slot occupancy from the ledger (the harness's view: lease to release).
    spans: dict[str, list[tuple[float, float]]] = {}
    for t in ledger_trials:
        spans.setdefault(t.gpu, []).append((t.started_at, t.ended_at))
    first = min(s for v in spans.values() for s, _ in v)
    last = max(e for v in spans.values() for _, e in v)
    busy = sum(e - s for v in spans.values() for s, e in v)
    busy_fraction = busy / (slots * (last - first))
    # Steady state: while there was work to start (up to the last job's start), how much of the
    # slots' time held a job? The drain at the end of a finite run is not a scheduling loss.
    last_start = max(s for v in spans.values() for s, _ in v)
    steady = sum(max(0.0, min(e, last_start) - s) for v in spans.values() for s, e in v)
    steady_fraction = steady / (slots * (last_start - first)) if last_start > first else 1.0
    gaps = []
    for v in spans.values():
        v.sort()
        gaps += [s2 - e1 for (_, e1), (s2, _) in itertools.pairwise(v)]
    # What the jobs themselves saw (inside the process: after interpreter start-up).
    inside = [line.split() for line in record.read_text().splitlines()]
    job_busy = sum(float(e) - float(s) for _, s, e in inside)
    runs = len(ledger_trials)
    started_before_last = sum(1 for v in spans.values() for st, _ in v if st < last_start)
    steady_per_hour = started_before_last / (last_start - first) * 3600.0 if last_start > first else 0.0
    ideal_per_hour = 3600.0 / budget * slots
    measured_per_hour = runs / wall * 3600.0
    gap_mean = statistics.fmean(gaps) if gaps else 0.0
    result = {
        "slots": slots,
        "budget_s": budget,
        "proposals": status["proposals"],
        "job_runs": runs,
        "duplicates": status["duplicates"],
        "wall_s": round(wall, 2),
        "slot_busy_fraction": round(steady_fraction, 4),
        "slot_busy_fraction_whole_run": round(busy_fraction, 4),
        "job_compute_fraction": round(job_busy / (slots * (last - first)), 4),
        "gap_mean_s": round(gap_mean, 4),
        "gap_p95_s": round(pct(gaps, 0.95), 4),
        "startup_to_first_job_s": round(first - t0, 3),
        "trials_per_hour": round(measured_per_hour, 1),
        "ideal_trials_per_hour": round(ideal_per_hour, 1),
        "efficiency_vs_ideal": round(measured_per_hour / ideal_per_hour, 4),
        "steady_trials_per_hour": round(steady_per_hour, 1),
        "steady_efficiency_vs_ideal": round(steady_per_hour / ideal_per_hour, 4),
        "busy_fraction_at_300s_budget": round(300.0 / (300.0 + gap_mean), 5),
        "best": status["best"],
        "baseline": status["baseline"],
    }
    research.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--budget", type=float, default=3.0, help="job length = time budget, seconds")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--confirm", action="store_true", help="re-run promising results (more jobs)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()
    result = run_bench(args.slots, args.budget, args.trials, args.confirm)
    print(json.dumps(result, indent=2))
    print(f"\nslot busy {result['slot_busy_fraction']:.1%} while work remained (goal >= 95%; "
          f"{result['slot_busy_fraction_whole_run']:.1%} including the final drain), "
          f"gap per trial {result['gap_mean_s'] * 1000:.0f} ms mean / {result['gap_p95_s'] * 1000:.0f} ms p95, "
          f"{result['trials_per_hour']:.0f} trials/h vs ideal {result['ideal_trials_per_hour']:.0f} "
          f"({result['efficiency_vs_ideal']:.1%} over the whole run, start-up and drain included; "
          f"{result['steady_efficiency_vs_ideal']:.1%} in steady state)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["slot_busy_fraction"] >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
