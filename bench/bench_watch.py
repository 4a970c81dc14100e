"""Watching cost: CPU seconds per minute to watch 30 idle agents.

agentdeck's watcher (told of output by tmux control-mode clients, of dead panes by pidfds and a
tmux hook: nothing to do while nothing moves) beside the naive way (capture and hash every pane
every 500 ms), measured in the same run. CPU time counts the watching process, its children
(tmux clients) and agentdeck's tmux server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

from _common import cleanup, isolate

AGENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """user+system seconds of *pid* and its reaped children."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICKS


def server_pid(socket: str) -> int:
    out = subprocess.run(["tmux", "-L", socket, "display-message", "-p", "#{pid}"], capture_output=True, text=True)
    return int(out.stdout.strip())


def main() -> None:
    tmp = isolate()
    from support import make_repo

    repo = make_repo(tmp / "repo", {"README.md": "x\n", ".agentdeck.toml":
                                    '[deck]\ndefault_agent = "sh"\n[agents.sh]\ncommand = "bash --norc"\n'})
    os.environ["AGENTDECK_NO_WATCHER"] = "1"  # we start the watcher ourselves, to measure it alone
    from agentdeck.deck import Deck

    deck = Deck.open(repo)
    try:
        for i in range(AGENTS):
            deck.new(f"idle-{i:02d}")
        time.sleep(3)
        socket = deck.tmux.socket
        spid = server_pid(socket)
        env = dict(os.environ)
        env.pop("AGENTDECK_NO_WATCHER")
        # 1. agentdeck's watcher
        s0 = cpu_of(spid)
        watcher = subprocess.Popen([sys.executable, "-m", "agentdeck", "_watch"], cwd=repo, env=env)
        time.sleep(3)  # start-up is not watching cost
        w0, s0 = cpu_of(watcher.pid), cpu_of(spid)
        time.sleep(SECONDS)
        w1, s1 = cpu_of(watcher.pid), cpu_of(spid)
        watcher.terminate()
        watcher.wait()
        ours = (w1 - w0) + (s1 - s0)
        # 2. naive: capture + hash every pane every 500 ms (clients' CPU measured via RUSAGE_CHILDREN)
        panes = [deck.tmux.pane_id(r.session) for r in deck.records()]
        c0, s0 = os.times(), cpu_of(spid)
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            t = time.monotonic()
            for p in panes:
                out = subprocess.run(["tmux", "-L", socket, "capture-pane", "-p", "-e", "-J", "-t", p],
                                     capture_output=True).stdout
                hashlib.sha256(out).hexdigest()
            time.sleep(max(0, 0.5 - (time.monotonic() - t)))
        c1, s1 = os.times(), cpu_of(spid)
        naive = (c1.user - c0.user + c1.system - c0.system + c1.children_user - c0.children_user
                 + c1.children_system - c0.children_system) + (s1 - s0)
    finally:
        cleanup()
    scale = 60.0 / SECONDS
    print(f"{AGENTS} idle agents, {SECONDS:.0f} s each way")
    print(f"agentdeck watcher (told by tmux, no ticks): {ours * scale:.2f} CPU s/min")
    print(f"naive capture+hash every 500 ms: {naive * scale:.2f} CPU s/min")
    print(f"ratio: {ours / naive:.2f} (goal <= 0.33)")


if __name__ == "__main__":
    main()
