"""`agentdeck new` on a 20,000-file repository beside plain `git worktree add`, in one run.

Goal: agentdeck/git <= 1.3x. Prints medians and the ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _common import cleanup, isolate

FILES = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5


def main() -> None:
    tmp = isolate()
    repo = tmp / "big"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    for i in range(FILES):
        d = repo / f"pkg{i % 200:03d}"
        d.mkdir(exist_ok=True)
        (d / f"mod{i}.py").write_text(f"VALUE = {i}\n")
    (repo / ".agentdeck.toml").write_text('[deck]\ndefault_agent = "sh"\n[agents.sh]\ncommand = "bash --norc"\n')
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "big"], cwd=repo, check=True)
    plain, ours = [], []
    try:
        for r in range(ROUNDS):
            t = time.perf_counter()
            subprocess.run(["git", "worktree", "add", "-q", "-b", f"plain{r}", str(tmp / f"plain{r}"), "HEAD"],
                           cwd=repo, check=True, capture_output=True)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "agentdeck", "new", f"agent{r}"], cwd=repo,
                                 capture_output=True, text=True)
            ours.append(time.perf_counter() - t)
            if out.returncode != 0:
                raise SystemExit(out.stderr)
    finally:
        cleanup()
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"repository: {FILES} files, {ROUNDS} rounds")
    print(f"git worktree add:  median {p:.3f} s")
    print(f"agentdeck new:     median {o:.3f} s (branch + worktree + tmux pane + state row + watcher)")
    print(f"ratio: {o / p:.2f}x (goal <= 1.3x)")


if __name__ == "__main__":
    main()
