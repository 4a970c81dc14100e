#!/usr/bin/env python3
"""A stand-in coding agent for bench_peers.py, understood alike by agentdeck and ccmanager.

It sits at its prompt (``> ``).  With ``PEER_ROUNDS`` > 0 it waits for the file ``PEER_GO``,
then in each round, after a random pause (so the moment is random relative to any tool's
polling), shows a permission question in Claude Code's words (``Do you want to proceed?`` with
``❯ 1. Yes``), appends the time it did so (``time.time()``, taken just before writing) to
``PEER_LOG``, holds it for ``PEER_HOLD`` seconds and goes back to its prompt.  Without rounds it
only sits there (the idle-cost measurements).
"""

import os
import random
import sys
import time

LOG = os.environ.get("PEER_LOG", "")
ROUNDS = int(os.environ.get("PEER_ROUNDS", "0"))
GO = os.environ.get("PEER_GO", "")
HOLD = float(os.environ.get("PEER_HOLD", "1.0"))
PAUSE = (float(os.environ.get("PEER_PAUSE_MIN", "0.8")), float(os.environ.get("PEER_PAUSE_MAX", "1.6")))

IDLE = "peer agent 1.0 ready\r\n\r\n> "
QUESTION = "peer agent 1.0 ready\r\n\r\nDo you want to proceed?\r\n\u276f 1. Yes\r\n  2. No\r\n"


def draw(text: str) -> None:
    sys.stdout.write("\x1b[H\x1b[2J" + text)
    sys.stdout.flush()


def main() -> None:
    draw(IDLE)
    if ROUNDS and GO:
        while not os.path.exists(GO):
            time.sleep(0.05)
    for _ in range(ROUNDS):
        time.sleep(random.uniform(*PAUSE))
        shown = time.time()
        draw(QUESTION)
        with open(LOG, "a") as fh:
            fh.write(f"{shown:.6f}\n")
        time.sleep(HOLD)
        draw(IDLE)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
