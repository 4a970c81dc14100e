#!/usr/bin/env python3
"""A scripted fake coding agent for deterministic status tests.

Commands typed at its ``> `` prompt:
  work N          spin for N seconds ("esc to interrupt"), then back to the prompt
  ask FILE        ask "Allow writing FILE? [y/n]"; y writes the file, n refuses
  write FILE TXT  write a file in the current directory
  quiet N         print nothing for N seconds without the prompt (thinking silently)
  exit / crash    exit 0 / exit 3
anything else is echoed back.  An initial prompt may be given as argv[1:].
"""

import sys
import time

SPIN = "|/-\\"


def prompt() -> None:
    sys.stdout.write("> ")
    sys.stdout.flush()


def work(seconds: float) -> None:
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        sys.stdout.write(f"\r{SPIN[i % 4]} working... (esc to interrupt)")
        sys.stdout.flush()
        i += 1
        time.sleep(0.1)
    sys.stdout.write("\r" + " " * 40 + "\rdone\n")


def handle(line: str) -> None:
    words = line.split()
    if not words:
        return
    cmd, rest = words[0], words[1:]
    if cmd == "work":
        work(float(rest[0]) if rest else 2)
    elif cmd == "ask":
        name = rest[0] if rest else "approved.txt"
        sys.stdout.write(f"Allow writing {name}? [y/n] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()
        if answer.startswith("y"):
            work(0.3)
            with open(name, "w") as fh:
                fh.write("written by the fake agent\n")
            print(f"wrote {name}")
        else:
            print("denied")
    elif cmd == "write":
        with open(rest[0], "w") as fh:
            fh.write(" ".join(rest[1:]) + "\n")
        print(f"wrote {rest[0]}")
    elif cmd == "quiet":
        time.sleep(float(rest[0]) if rest else 2)
    elif cmd == "exit":
        print("bye")
        sys.exit(0)
    elif cmd == "crash":
        print("fatal: crashing")
        sys.exit(3)
    else:
        print(f"ok: {line}")


def main() -> None:
    print("fake-agent 1.0 ready")
    if len(sys.argv) > 1:
        line = " ".join(sys.argv[1:])
        print(f"> {line}")
        handle(line)
    prompt()
    for raw in sys.stdin:
        handle(raw.strip())
        prompt()


if __name__ == "__main__":
    main()
