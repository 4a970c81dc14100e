"""Screen-path status latency: from a state change on screen to the recorded status.

The scripted fake agent (tests/fake_agent.py) is driven through real tmux; the
clock starts when the keys that cause the change have been delivered and stops
when the state store (what `ls --json` prints) shows the new status.  Also
prints what one `agentdeck ls --json` call costs, since a script pays that too.
"""

from __future__ import annotations

import subprocess
import sys
import time

from _common import ROOT, cleanup, isolate, summary

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15


def main() -> None:
    tmp = isolate()
    from support import make_repo

    fake = ROOT / "tests" / "fake_agent.py"
    cfg = (
        '[deck]\ndefault_agent = "fake"\n[agents.fake]\nkind = "generic"\n'
        f'command = "{sys.executable} {fake}"\nprompt_arg = "-"\n'
        "waiting_pattern = '\\[y/n\\] *$'\nworking_pattern = \"esc to interrupt\"\nidle_pattern = '^> *$'\n"
        "quiet_s = 1.0\n"
    )
    repo = make_repo(tmp / "repo", {"README.md": "x\n", ".agentdeck.toml": cfg})
    from agentdeck.deck import Deck

    deck = Deck.open(repo)
    try:
        deck.new("bench")
        deck.wait("bench", {"idle"}, timeout=20)
        to_waiting, to_working = [], []
        for i in range(ROUNDS):
            deck.send("bench", f"ask f{i}.txt")
            t0 = time.perf_counter()
            deck.wait("bench", {"waiting"}, timeout=20, poll=0.01)
            to_waiting.append(time.perf_counter() - t0)
            deck.approve("bench")
            t0 = time.perf_counter()
            deck.wait("bench", {"working"}, timeout=20, poll=0.01)
            to_working.append(time.perf_counter() - t0)
            deck.wait("bench", {"idle"}, timeout=20)
        ls = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "agentdeck", "ls", "--json"], cwd=repo, capture_output=True)
            ls.append(time.perf_counter() - t0)
    finally:
        cleanup()
    print(f"screen path, prompt appears -> waiting:  {summary(to_waiting)}")
    print(f"screen path, approve -> working:         {summary(to_working)}")
    print(f"`agentdeck ls --json` call itself:       {summary(ls)}")


if __name__ == "__main__":
    main()
