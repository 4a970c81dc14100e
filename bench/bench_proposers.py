"""Benchmark the offline proposers through the real harness: mutate vs search (TPE, CMA-ES) vs random.

Every run is ``agentdeck research run --proposer P --trials N`` on its own temporary git repository
(one local slot, the lab's defaults: two baseline runs, confirmation of promising results), and the
figures come from the run's ledger afterwards.  Same seeds for every method: a seed is the run's tag
(``mutate`` draws from it, ``search`` seeds its sampler from it) and, on the synthetic lab, the noise
of each trial number.

Labs:

* ``synthetic`` — six constants ``x1..x6`` in ``train.py``;
  ``val = 1 + sum_i a_i d_i^2 + c d1 d2 + noise`` with ``d_i = log10 x_i - log10 x*_i``,
  ``a = (0.10, 0.08, 0.05, 0.03, 0.02, 0.01)``, the optimum ``x*`` on no power-of-two or round grid,
  every start 1 to 2 decades from its optimum, Gaussian noise with sigma 0.002.  The issue's cross
  term ``0.3 d1 d2`` makes the form indefinite (0.3^2 > 4 a1 a2: the metric falls without bound
  along d1 = -d2, so the "optimum" would be wherever a method's range ends); ``c`` is therefore a
  correlation of 0.3 between d1 and d2, ``c = 0.3 * 2 * sqrt(a1 a2) = 0.054``.
* ``nanolab`` — ``examples/nanolab`` with ``NANOLAB_TINY=1`` on the CPU (its own protected
  evaluation), at ``--budget`` seconds per trial, counted in the job's CPU seconds on one thread
  (``NANOLAB_CPU_CLOCK=1``): what a trial trains does not depend on what else the machine runs.

Reported per method: the run's best (the kept, noise-aware value: the research branch's best) after
10, 20 and 40 proposals — median and [min, max] over seeds — the synthetic lab's noise-free value of
that best, and the proposals needed to reach ``mutate``'s best after the full budget (per seed; ``>N``
when never).  Proposals the loop dropped because the best moved on meanwhile are counted as ``lost``.

Usage: nice python bench/bench_proposers.py [--lab synthetic|nanolab|both] [--seeds 5] [--trials 40]
       [--jobs 2] [--budget 2] [--methods mutate,tpe,cmaes,random] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, isolate

A = (0.10, 0.08, 0.05, 0.03, 0.02, 0.01)
OPT = (4.7e-3, 1.3e-3, 11.3, 370.0, 61.0, 95.0)
CROSS = 0.3 * 2 * math.sqrt(A[0] * A[1])
SIGMA = 0.002

PREPARE = f'''\
"""The synthetic lab's fixed evaluation (protected): a bowl in log space, plus noise."""
import math
import os
import random

A = {A!r}
OPT = {OPT!r}
CROSS = {CROSS!r}


def true_value(xs):
    d = [math.log10(x) - math.log10(o) for x, o in zip(xs, OPT)]
    return 1 + sum(a * di * di for a, di in zip(A, d)) + CROSS * d[0] * d[1]


def measure(xs):
    seed = f"{{os.environ.get('BENCH_SEED', '0')}}:{{os.environ.get('AGENTDECK_TRIAL', '0')}}"
    return true_value(xs) + random.Random(seed).gauss(0.0, {SIGMA!r})
'''

TRAIN = '''\
"""A synthetic lab: six knobs, each 1 to 2 decades from its best value."""
from prepare import measure

x1 = 0.0003  # a learning rate
x2 = 0.05  # a weight decay
x3 = 200  # warmup steps
x4 = 16  # a width (a power of two)
x5 = 2.5  # a clip
x6 = 8000  # a horizon

print("---")
print(f"val: {measure((x1, x2, x3, x4, x5, x6)):.6f}")
'''

SYN_CONFIG = '''\
[research]
workdir = "lab"
command = "{python} train.py"
editable = ["train.py"]
protected = ["prepare.py"]
metric = "val"
direction = "min"
budget_s = 1
timeout_s = 60
gpus = "auto"
proposer = "{proposer}"
sampler = "{sampler}"
confirm = true
repeats_baseline = 2
sandbox = "none"
env = {{ BENCH_SEED = "${{BENCH_SEED}}" }}
'''

METHODS = {"mutate": ("mutate", "tpe"), "tpe": ("search", "tpe"), "cmaes": ("search", "cmaes"),
           "random": ("search", "random")}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit_all(repo: Path) -> None:
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "lab")


def make_synthetic(path: Path, method: str) -> Path:
    proposer, sampler = METHODS[method]
    (path / "lab").mkdir(parents=True)
    (path / "lab" / "train.py").write_text(TRAIN)
    (path / "lab" / "prepare.py").write_text(PREPARE)
    (path / "lab" / "program.md").write_text("Lower val by changing the constants of train.py.\n")
    (path / ".agentdeck.toml").write_text(SYN_CONFIG.format(python=sys.executable, proposer=proposer,
                                                            sampler=sampler))
    (path / ".gitignore").write_text("__pycache__/\n")
    commit_all(path)
    return path


def make_nanolab(path: Path, method: str, budget: float) -> Path:
    proposer, sampler = METHODS[method]
    lab = ROOT / "examples" / "nanolab"
    shutil.copytree(lab, path, ignore=shutil.ignore_patterns("__pycache__"))
    config = (path / ".agentdeck.toml").read_text()
    lines = []
    for line in config.splitlines():
        key = line.split("=")[0].strip()
        if key in ("proposer", "budget_s", "timeout_s"):
            continue
        lines.append(line.replace('"python ', f'"{sys.executable} '))
    lines += [f'proposer = "{proposer}"', f'sampler = "{sampler}"', f"budget_s = {budget}",
              f"timeout_s = {max(120, budget * 10)}"]
    text = "\n".join(lines) + "\n"
    # [research] keys appended after a later table would land in it: keep [research] last.
    (path / ".agentdeck.toml").write_text(text)
    (path / ".gitignore").write_text("__pycache__/\n")
    commit_all(path)
    return path


def true_of(repo: Path, commit: str) -> float:
    text = git(repo, "show", f"{commit}:lab/train.py")
    values = {}
    for line in text.splitlines():
        if line[:1] == "x" and "=" in line:
            name, rest = line.split("=", 1)
            values[name.strip()] = float(rest.split("#")[0].strip().replace("_", ""))
    xs = [values[f"x{i}"] for i in range(1, 7)]
    d = [math.log10(x) - math.log10(o) for x, o in zip(xs, OPT)]
    return 1 + sum(a * di * di for a, di in zip(A, d)) + CROSS * d[0] * d[1]


def run_one(lab: str, method: str, seed: int, trials: int, work: Path, budget: float) -> dict:
    repo = work / f"{lab}-{method}-s{seed}"
    if lab == "synthetic":
        make_synthetic(repo, method)
    else:
        make_nanolab(repo, method, budget)
    env = dict(os.environ, BENCH_SEED=str(seed), PYTHONPATH=str(ROOT))
    if lab == "nanolab":
        env.update(NANOLAB_TINY="1", NANOLAB_CACHE=str(work / "nanolab-cache"), NANOLAB_CPU_CLOCK="1")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "agentdeck", "research", "run", "--tag", f"s{seed}",
                           "--trials", str(trials)], cwd=repo, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        return {"lab": lab, "method": method, "seed": seed, "error": (proc.stderr or proc.stdout)[-800:]}
    from agentdeck.research import Research

    research = Research.open(repo)
    try:
        run = research.ledger.run(f"s{seed}").to_json()  # (read as plain dicts below)
        rows = [t.to_json() for t in research.ledger.trials(f"s{seed}")]
    finally:
        research.close()
    direction = 1.0  # both labs: lower is better
    proposals = [t for t in rows if t["kind"] == "proposal" and "reapplied_from" not in t["meta"]]
    index = {t["id"]: i + 1 for i, t in enumerate(proposals)}
    base = run["baseline_metric"]
    kept = []  # (proposal index that produced it, kept value, commit)
    for t in rows:
        if t["kind"] == "proposal" and t["status"] == "keep":
            origin = t["meta"].get("reapplied_from", t["id"])
            while origin not in index:  # a re-application of a re-application
                origin = next(r for r in rows if r["id"] == origin)["meta"].get("reapplied_from", origin)
            kept.append((index[origin], float(t["meta"].get("kept_value", t["metric"])), t["commit"]))
    best_after, true_after = [], []
    for n in range(1, len(proposals) + 1):
        best, commit = base, run["base_commit"]
        for i, value, c in kept:
            if i <= n and direction * value < direction * best:
                best, commit = value, c
        best_after.append(best)
        if lab == "synthetic":
            true_after.append(true_of(repo, commit))
    lost = sum(1 for t in proposals if t["metric"] is None and t["status"] == "discard")
    crashes = sum(1 for t in proposals if t["status"] == "crash")
    shutil.rmtree(repo, ignore_errors=True)
    return {"lab": lab, "method": method, "seed": seed, "baseline": base, "best_after": best_after,
            "true_after": true_after, "proposals": len(proposals), "keeps": len(kept), "lost": lost,
            "crashes": crashes, "wall_s": round(wall, 1)}


def at(series: list[float], n: int) -> float | None:
    if not series:
        return None
    return series[min(n, len(series)) - 1]


def summarize(results: list[dict], trials: int) -> dict:
    out: dict = {}
    ns = [n for n in (10, 20, 40) if n <= trials] or [trials]
    by_method: dict[str, list[dict]] = {}
    for r in results:
        if "error" not in r:
            by_method.setdefault(r["method"], []).append(r)
    mutate_final = {r["seed"]: at(r["best_after"], trials) for r in by_method.get("mutate", [])}
    for method, runs in by_method.items():
        row: dict = {"seeds": len(runs)}
        for n in ns:
            values = [at(r["best_after"], n) for r in runs]
            row[f"best@{n}"] = (statistics.median(values), min(values), max(values))
            trues = [at(r["true_after"], n) for r in runs if r["true_after"]]
            if trues:
                row[f"true@{n}"] = (statistics.median(trues), min(trues), max(trues))
        reach = []
        for r in runs:
            target = mutate_final.get(r["seed"])
            hit = next((i + 1 for i, v in enumerate(r["best_after"]) if target is not None and v <= target), None)
            reach.append(hit)
        row["to_mutate_best"] = reach
        done = [h for h in reach if h is not None]
        row["to_mutate_best_median"] = (statistics.median(reach) if len(done) == len(reach) and done else
                                        (statistics.median([h if h is not None else trials + 1 for h in reach])
                                         if reach else None))
        row["lost"] = sum(r["lost"] for r in runs)
        row["keeps"] = sum(r["keeps"] for r in runs)
        row["crashes"] = sum(r["crashes"] for r in runs)
        row["wall_s"] = round(sum(r["wall_s"] for r in runs), 1)
        out[method] = row
    return out


def fmt_triple(t) -> str:
    return f"{t[0]:.4f} [{t[1]:.4f}, {t[2]:.4f}]"


def print_table(lab: str, summary: dict, trials: int, seeds: int) -> None:
    ns = [n for n in (10, 20, 40) if n <= trials] or [trials]
    print(f"\n{lab}: {seeds} seeds x {trials} proposals per method, 1 slot; best after n proposals, "
          "median [min, max]")
    head = "".join(f"{'best@' + str(n):<26}" for n in ns)
    print(f"  {'method':<8}{head}{'to mutate@' + str(trials):<22}lost  keeps  crash  wall")
    for method in ("mutate", "tpe", "cmaes", "random"):
        row = summary.get(method)
        if not row:
            continue
        cells = "".join(f"{fmt_triple(row[f'best@{n}']):<26}" for n in ns)
        reach = ",".join(str(h) if h is not None else f">{trials}" for h in row["to_mutate_best"])
        med = row["to_mutate_best_median"]
        shown = f"{med:g} ({reach})" if med is not None else "-"
        print(f"  {method:<8}{cells}{shown:<22}{row['lost']:<6}{row['keeps']:<7}{row['crashes']:<7}"
              f"{row['wall_s']:.0f}s")
        if f"true@{ns[0]}" in row:
            trues = "".join(f"{fmt_triple(row[f'true@{n}']):<26}" for n in ns)
            print(f"  {'  (true)':<8}{trues}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", choices=("synthetic", "nanolab", "both"), default="synthetic")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--nanolab-seeds", type=int, default=None)
    parser.add_argument("--nanolab-trials", type=int, default=None)
    parser.add_argument("--budget", type=float, default=2.0, help="nanolab's budget per trial (seconds)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each run uses one slot)")
    parser.add_argument("--methods", default="mutate,tpe,cmaes,random")
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    work = isolate()
    methods = [m for m in args.methods.split(",") if m]
    labs = ["synthetic", "nanolab"] if args.lab == "both" else [args.lab]
    report: dict = {"cross": CROSS, "optimum": OPT, "a": A, "sigma": SIGMA, "labs": {}}
    try:
        for lab in labs:
            seeds = args.seeds if lab == "synthetic" else (args.nanolab_seeds or args.seeds)
            trials = args.trials if lab == "synthetic" else (args.nanolab_trials or args.trials)
            if lab == "nanolab":  # build the data cache once, before runs race for it
                env = dict(os.environ, NANOLAB_TINY="1", NANOLAB_CACHE=str(work / "nanolab-cache"))
                subprocess.run([sys.executable, "-c", "import prepare; prepare.ensure_data()"],
                               cwd=ROOT / "examples" / "nanolab", env=env, check=True)
            jobs = [(lab, m, s, trials, work, args.budget) for s in range(1, seeds + 1) for m in methods]
            t0 = time.time()
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                results = list(pool.map(lambda j: run_one(*j), jobs))
            for r in results:
                if "error" in r:
                    print(f"{lab} {r['method']} seed {r['seed']} failed: {r['error']}", file=sys.stderr)
            summary = summarize(results, trials)
            print_table(lab, summary, trials, seeds)
            print(f"  ({time.time() - t0:.0f} s for {len(jobs)} runs)")
            report["labs"][lab] = {"seeds": seeds, "trials": trials, "summary": summary, "runs": results}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
