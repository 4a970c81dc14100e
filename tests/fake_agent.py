#!/usr/bin/env python3
"""A scripted fake coding agent for deterministic status tests.

Commands typed at its ``> `` prompt:
  work N          spin for N seconds ("esc to interrupt"), then back to the prompt
  ask FILE        ask "Allow writing FILE? [y/n]"; y writes the file, n refuses
  write FILE TXT  write a file in the current directory
  quiet N         print nothing for N seconds without the prompt (thinking silently)
  run CMD         run a shell command in the current directory, print its output
  mcp TOOL JSON   call TOOL of `agentdeck mcp` (started with this agent's env) through the
                  real MCP client; print the result as JSON (or "mcp error: ...")
  exit / crash    exit 0 / exit 3
anything else is echoed back.  An initial prompt may be given as argv[1:].

Scripted reactions: with ``FAKE_AGENT_SCRIPT`` naming a JSON file
``{"on": TEXT, "steps": [[COMMAND, ...], ...]}``, each input line containing TEXT
runs the next step's commands (as if typed, but never triggering a step themselves),
in order; once the steps are used up it prints "script exhausted".
"""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STEP = [0]

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


def run_shell(command: str) -> None:
    proc = subprocess.run(command, shell=True, capture_output=True, text=True)
    sys.stdout.write(proc.stdout + proc.stderr)
    print(f"exit {proc.returncode}")


def call_mcp(tool: str, arguments: dict) -> None:
    import anyio
    from mcp.client import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    params = StdioServerParameters(command=sys.executable, args=["-m", "agentdeck", "mcp"], env=env,
                                   cwd=os.getcwd())

    async def main():
        with open(os.devnull, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await session.call_tool(tool, arguments)

    result = anyio.run(main)
    text = " ".join(getattr(c, "text", "") for c in result.content)
    if result.is_error:
        print(f"mcp error: {text}")
    else:
        print(json.dumps(result.structured_content) if result.structured_content is not None else text)


def scripted(line: str) -> bool:
    path = os.environ.get("FAKE_AGENT_SCRIPT")
    if not path:
        return False
    with open(path) as fh:
        script = json.load(fh)
    if script["on"] not in line:
        return False
    if _STEP[0] >= len(script["steps"]):
        print("script exhausted")
        return True
    step = script["steps"][_STEP[0]]
    _STEP[0] += 1
    for command in step:
        print(f"> {command}")
        handle(command, react=False)
    return True


def handle(line: str, react: bool = True) -> None:
    words = line.split()
    if not words:
        return
    if react and scripted(line):
        return
    cmd, rest = words[0], words[1:]
    if cmd == "run":
        run_shell(line.strip()[len("run"):].strip())
    elif cmd == "mcp":
        parts = line.strip().split(None, 2)
        call_mcp(parts[1], json.loads(parts[2]) if len(parts) > 2 else {})
    elif cmd == "work":
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
