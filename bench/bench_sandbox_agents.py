"""Benchmark the ``bwrap`` sandbox for agents: launch overhead and ``git status`` in a big worktree.

One script, one run, interleaved repetitions (machine load hits every variant alike):

  launch     a tmux pane started on agentdeck's socket until its first screen shows (the
             command prints READY): ``none`` (the command itself), ``bwrap`` (in the agent's
             sandbox, network shared) and ``bwrap-net-off`` (own network namespace, one loopback
             port bridged: the MCP server's case).  ``prepare`` (first launch: home, own repository)
             and ``prepare-again`` (restart) are timed on their own.
  git        ``git status`` in a worktree of N files (default 20 000): outside (plain git on the
             host), ``host_git`` (the safe argv agentdeck uses on a sandboxed worktree) and inside
             the sandbox (bubblewrap's own start-up included; ``bwrap true`` beside it).

Usage: python bench/bench_sandbox_agents.py [--reps 7] [--files 20000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cleanup, isolate

from agentdeck.paths import find_repo
from agentdeck.sandbox import agent_bwrap as ab


def sh(cwd: Path, *args: str) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def make_repo(root: Path, files: int) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    sh(repo, "git", "init", "-q", "-b", "main")
    for i in range(files):
        d = repo / f"d{i // 200:03d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:05d}.txt").write_text(f"line {i}\n")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "files")
    return repo


def pane_until_ready(sock: str, name: str, argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", name, "-x", "80", "-y", "20", "--", *argv],
                   check=True)
    while True:
        screen = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p", "-t", f"={name}:"], capture_output=True,
                                text=True).stdout
        if "READY" in screen:
            elapsed = time.perf_counter() - start
            break
        if time.perf_counter() - start > 30:
            raise SystemExit(f"{name}: no first screen in 30 s: {screen!r}")
        time.sleep(0.002)
    subprocess.run(["tmux", "-L", sock, "kill-session", "-t", f"={name}"], capture_output=True)
    return elapsed


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {proc.stderr[-300:]!r}")
    return elapsed


def med(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    tmp = isolate()
    sock = os.environ["AGENTDECK_TMUX_SOCKET"]
    results: dict[str, object] = {"files": args.files, "reps": args.reps}
    try:
        t0 = time.perf_counter()
        repo_dir = make_repo(tmp, args.files)
        wt = tmp / "wts" / "a"
        sh(repo_dir, "git", "worktree", "add", "-q", "-b", "agent/a", str(wt))
        sh(repo_dir, "git", "worktree", "add", "-q", "-b", "agent/b", str(tmp / "wts" / "b"))
        print(f"set-up ({args.files} files, two worktrees): {time.perf_counter() - t0:.1f} s", flush=True)
        repo = find_repo(repo_dir)
        repo.ensure_state_dir()
        t = time.perf_counter()
        sb = ab.prepare(repo, "a", wt, "agent/a", "claude", True)
        prep_first = time.perf_counter() - t
        prep_again = []
        for _ in range(args.reps):
            t = time.perf_counter()
            sb = ab.prepare(repo, "a", wt, "agent/a", "claude", True)
            prep_again.append(time.perf_counter() - t)
        sb_off = ab.prepare(repo, "b", tmp / "wts" / "b", "agent/b", "claude", False)
        env = dict(os.environ)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        cmd = ["bash", "-c", "echo READY; sleep 60"]
        launch: dict[str, list[float]] = {"none": [], "bwrap": [], "bwrap-net-off": []}
        git_status: dict[str, list[float]] = {"outside": [], "host_git": [], "inside": [], "bwrap true": []}
        # Warm the caches once (the first git status writes the index's stat data).
        timed(["git", "status", "--porcelain"], wt)
        timed(ab.wrap(sb, ["git", "status", "--porcelain"], env), wt, env)
        for i in range(args.reps):
            launch["none"].append(pane_until_ready(sock, f"n{i}", cmd))
            launch["bwrap"].append(pane_until_ready(sock, f"b{i}", ab.wrap(sb, cmd, env)))
            launch["bwrap-net-off"].append(pane_until_ready(sock, f"o{i}", ab.wrap(sb_off, cmd, env, ports=[port])))
            git_status["outside"].append(timed(["git", "status", "--porcelain"], wt))
            git_status["host_git"].append(timed([*ab.host_git_argv(sb), "status", "--porcelain"], wt,
                                                ab.host_git_env()))
            git_status["inside"].append(timed(ab.wrap(sb, ["git", "status", "--porcelain"], env), wt, env))
            git_status["bwrap true"].append(timed(ab.wrap(sb, ["true"], env), wt, env))
        listener.close()
        t = time.perf_counter()
        (wt / "d000" / "f00000.txt").write_text("changed\n")
        sync_cmd = ab.wrap(sb, ["git", "commit", "-q", "-am", "one change"], env)
        timed(sync_cmd, wt, env)
        t = time.perf_counter()
        ab.sync_back(sb)
        sync_s = time.perf_counter() - t
        print(f"\nprepare (first launch: home + own repository): {prep_first * 1000:.0f} ms; "
              f"again (restart): {med(prep_again):.0f} ms; sync_back of one commit: {sync_s * 1000:.0f} ms")
        print("\nnew pane to first screen (median):")
        for k, v in launch.items():
            print(f"  {k:14s} {med(v):7.1f} ms  (+{med(v) - med(launch['none']):.1f} ms)")
        print(f"\ngit status in a {args.files}-file worktree (median):")
        for k, v in git_status.items():
            print(f"  {k:14s} {med(v):7.1f} ms")
        results.update({"prepare_first_ms": prep_first * 1000, "prepare_again_ms": med(prep_again),
                        "sync_back_ms": sync_s * 1000,
                        "launch_ms": {k: med(v) for k, v in launch.items()},
                        "git_status_ms": {k: med(v) for k, v in git_status.items()}})
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    finally:
        cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
