"""Review benchmarks on a 20,000-file repository.

1. Conflict radar for 30 agents (each with a few committed and uncommitted edits, some
   overlapping): goal <= 2 s.
2. Diff-size refresh of one agent right after a file changes in its worktree: goal <= 0.5 s.

Usage: [BENCH_CPUS=2,all] python bench/bench_review.py [FILES] [AGENTS] [ROUNDS]
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import isolate, summary

FILES = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
AGENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 30
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
CPUS = os.environ.get("BENCH_CPUS", "all")  # e.g. "2,all": pin to 2 CPUs (like CI), then use them all


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(root: Path, files: int) -> list[str]:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    names = []
    per_dir = 100
    for i in range(files):
        rel = f"pkg{i // per_dir:03d}/mod{i % per_dir:03d}.py"
        path = root / rel
        path.parent.mkdir(exist_ok=True)
        path.write_text("".join(f"value_{i}_{j} = {j}\n" for j in range(30)))
        names.append(rel)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return names


def main() -> None:
    from agentdeck.review.conflicts import radar
    from agentdeck.review.diff import Side, compute_diff, diff_size

    tmp = isolate()
    try:
        root = tmp / "repo"
        t0 = time.perf_counter()
        names = make_repo(root, FILES)
        base = git(root, "rev-parse", "HEAD")
        rng = random.Random(7)
        hot = rng.sample(names, 12)  # files several agents touch
        sides = []
        for n in range(AGENTS):
            wt = tmp / f"wt{n:02d}"
            git(root, "worktree", "add", "-q", "-b", f"agentdeck/a{n:02d}", str(wt), base)
            touched = rng.sample(names, 4) + rng.sample(hot, 1)
            for k, rel in enumerate(touched):
                p = wt / rel
                lines = p.read_text().splitlines(keepends=True)
                lines[(n * 7 + k) % 30] = f"edited_by_agent_{n} = {k}\n"
                p.write_text("".join(lines))
            git(wt, "commit", "-q", "-am", f"agent {n} work")
            # plus uncommitted work: an edit and a new file
            p = wt / rng.choice(names)
            p.write_text(p.read_text() + f"# more from {n}\n")
            (wt / f"new_{n}.py").write_text("x = 1\n")
            (wt / ".env").write_text("SECRET=1\n")
            sides.append((f"a{n:02d}", Side(root, wt, f"agentdeck/a{n:02d}", "main", base, frozenset({".env"}))))
        # the base moves on a little, touching one hot file
        p = root / hot[0]
        p.write_text(p.read_text() + "# main moved\n")
        git(root, "commit", "-q", "-am", "main moves")
        print(f"setup: {FILES} files, {AGENTS} agents in {time.perf_counter() - t0:.1f} s "
              f"(cpus: {os.cpu_count()}, {git(root, '--version')})")
        all_cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        for spec in CPUS.split(","):
            if spec != "all" and all_cpus:
                os.sched_setaffinity(0, all_cpus[: int(spec)])  # git children inherit it
            elif all_cpus:
                os.sched_setaffinity(0, all_cpus)
            label = f"[{spec} cpus]" if all_cpus else ""
            measure(label, root, names, sides, radar, diff_size, compute_diff)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(label, root, names, sides, radar, diff_size, compute_diff) -> None:
    from agentdeck.review import _git

    _git.clear_caches()  # as in a fresh process
    times = []
    entries = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        entries = radar(sides)
        times.append(time.perf_counter() - t)
    conflicts = sum(e.conflict for e in entries)
    print(f"{label} conflict radar, {AGENTS} agents: first {times[0] * 1000:.0f} ms; "
          f"{summary(times)}; {len(entries)} overlapping pairs, {conflicts} would conflict  (goal <= 2000 ms)")
    # every agent changes a file between rounds: snapshots and pair checks are all new
    changed = []
    for r in range(ROUNDS):
        for n, (_name, side) in enumerate(sides):
            p = side.worktree / names[(r * 97 + n * 13 + len(label) * 7) % len(names)]
            p.write_text(p.read_text() + f"# round {r}\n")
        t = time.perf_counter()
        radar(sides)
        changed.append(time.perf_counter() - t)
    print(f"{label} conflict radar after every agent changed a file: {summary(changed)}")

    _name, side = sides[0]
    refresh = []
    for i in range(max(ROUNDS, 10)):
        p = side.worktree / names[i]
        p.write_text(p.read_text() + f"# change {i}\n")
        t = time.perf_counter()
        added, removed = diff_size(side)
        refresh.append(time.perf_counter() - t)
    print(f"{label} diff-size refresh after a file change: {summary(refresh)}; now +{added} -{removed}  "
          f"(goal <= 500 ms)")
    full = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        result = compute_diff(side)
        full.append(time.perf_counter() - t)
    print(f"{label} full diff with hunks ({len(result.files)} files): {summary(full)}")


if __name__ == "__main__":
    main()
