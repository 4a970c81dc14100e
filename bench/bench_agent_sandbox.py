"""Start-up overhead of each agent sandbox mode beside ``none``: ``agentdeck new`` to the CLI's
first ready screen, with the real Claude Code and Codex CLIs against the local stubs, in one run.

    python3 bench/bench_agent_sandbox.py [ROUNDS] [MODES...]     (default: 3 rounds, none agent bwrap)

A mode that cannot run here (``doctor`` says why) is skipped and said so.  "First screen" is the
CLI's prompt box drawn in the pane (past its folder-trust dialog, which the deck answers):
Claude's ``❯`` under a rule, Codex's ``›`` prompt line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, cleanup, isolate

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
MODES = sys.argv[2:] or ["none", "agent", "bwrap"]
# Claude's prompt box: "❯" right under a rule (its folder-trust dialog also has a "❯" line, not under a rule).
READY = {"claude": re.compile(r"^─{10,}\s*\n❯", re.MULTILINE), "codex": re.compile(r"^› ", re.MULTILINE)}


def agentdeck(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentdeck", *args], cwd=repo, capture_output=True, text=True)


def capture(session: str) -> str:
    return subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "capture-pane", "-p", "-t",
                           f"={session}:"], capture_output=True, text=True).stdout


def one(repo: Path, kind: str, mode: str, name: str) -> float:
    start = time.perf_counter()
    proc = agentdeck(repo, "new", name, "--agent", kind, "--sandbox", mode, "--json")
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    session = json.loads(proc.stdout)["tmux_session"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        screen = capture(session)
        if READY[kind].search(screen):
            elapsed = time.perf_counter() - start
            agentdeck(repo, "kill", name, "--discard")
            return elapsed
        time.sleep(0.02)
    screen = " | ".join(line.strip() for line in capture(session).splitlines() if line.strip())[-300:]
    agentdeck(repo, "kill", name, "--discard")
    raise RuntimeError(f"{kind} in {mode} mode drew no prompt in 60 s: {screen}")


def main() -> None:
    from realcli_support import claude_env, codex_env, find_cli, seed_claude_home, seed_codex_home
    from stubs.anthropic_stub import AnthropicStub
    from stubs.openai_stub import OpenAIStub

    from agentdeck.sandbox import agent_mode

    tmp = isolate()
    repo = tmp / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=repo, check=True)
    codex_home = Path(tempfile.mkdtemp(prefix="adbench-codex-", dir="/var/tmp"))  # not under /tmp (see tests)
    anthropic, openai = AnthropicStub().start(), OpenAIStub().start()
    try:
        claude_home = tmp / "claude-home"
        seed_claude_home(claude_home)
        seed_codex_home(codex_home, openai.url)
        envs = {"claude": claude_env(claude_home, anthropic.url), "codex": codex_env(codex_home)}
        lines = []
        for kind in ("claude", "codex"):
            cli = find_cli(kind)
            if cli is None:
                print(f"{kind}: not installed (tests/install_clis.sh), skipped")
                continue
            lines += [f"[agents.{kind}]", f"command = {json.dumps(cli)}", f'kind = "{kind}"', "",
                      f"[agents.{kind}.env]", *(f"{k} = {json.dumps(v)}" for k, v in envs[kind].items()), ""]
        (Path(os.environ["AGENTDECK_HOME"]) / "config.toml").parent.mkdir(parents=True, exist_ok=True)
        (Path(os.environ["AGENTDECK_HOME"]) / "config.toml").write_text("\n".join(lines))
        print(f"`new` to first screen, median of {ROUNDS} (after one warm-up run per CLI)")
        for kind in ("claude", "codex"):
            if find_cli(kind) is None:
                continue
            one(repo, kind, "none", f"warm-{kind}")
            modes = []
            for mode in MODES:
                found = agent_mode.support(mode, kind)
                if found.works:
                    modes.append(mode)
                else:
                    print(f"  {kind:6} {mode:5}  skipped: {found.detail}")
            # Rounds interleave the modes, so a busy moment of the machine hits each about alike.
            times: dict[str, list[float]] = {m: [] for m in modes}
            failed: dict[str, str] = {}
            for r in range(ROUNDS):
                for mode in modes:
                    if mode in failed:
                        continue
                    try:
                        times[mode].append(one(repo, kind, mode, f"{kind}-{mode}-{r}"))
                    except RuntimeError as exc:
                        failed[mode] = str(exc)
            base = statistics.median(times["none"]) if times.get("none") else None
            for mode in modes:
                if mode in failed:
                    print(f"  {kind:6} {mode:5}  failed: {failed[mode]}")
                    continue
                med = statistics.median(times[mode])
                extra = f"  ({(med - base) * 1000:+.0f} ms vs none)" if base is not None and mode != "none" else ""
                print(f"  {kind:6} {mode:5}  {med:.2f} s  [{', '.join(f'{t:.2f}' for t in times[mode])}]{extra}")
    finally:
        anthropic.stop()
        openai.stop()
        cleanup()
        shutil.rmtree(codex_home, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
