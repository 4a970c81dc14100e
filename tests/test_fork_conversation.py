"""Fork's conversation part: the adapters launch a fork from the source's conversation.

Claude Code: ``--resume SOURCE --fork-session --session-id OWN``; Codex: ``codex fork ...
-C DIR -- SOURCE [PROMPT]``.  Unit tests check the argv; the real-Claude test forks an
agent after one turn (the real Codex fork runs in tests/test_usage.py, with its usage).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from realcli_support import claude_env, require_cli, seed_claude_home, write_agent_config
from stubs.anthropic_stub import Reply
from support import retry_until, run_cli
from usage_support import MeteredAnthropicStub, claude_expected, numbers, save_fixtures, usage_json

from agentdeck.agents import LaunchContext, get_adapter
from agentdeck.config import load_config

SOURCE = "11111111-2222-4333-8444-555555555555"


def ctx_for(tmp_path: Path, **kw) -> LaunchContext:
    wt = tmp_path / "wt"
    wt.mkdir(exist_ok=True)
    defaults: dict[str, Any] = {"name": "beta", "worktree": wt, "start_dir": wt, "state_dir": tmp_path / "state",
                                "repo_root": tmp_path, "hook_command": ["agentdeck-hook"]}
    defaults.update(kw)
    return LaunchContext(**defaults)


def claude_transcript(home: Path, session_id: str) -> Path:
    path = home / ".claude" / "projects" / "-some-folder" / f"{session_id}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"type":"user"}\n')
    return path


# ====================================================================== unit: argv
def test_claude_fork_launch_resumes_the_source_with_a_new_id_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    claude_transcript(tmp_path / "home", SOURCE)
    adapter = get_adapter("claude", load_config(tmp_path))
    ctx = ctx_for(tmp_path, prompt="go on", extra={"fork_session_id": SOURCE})
    adapter.prepare(ctx)
    own = ctx.session_id
    assert own and own != SOURCE and ctx.extra["fork_own_session_id"] == own
    argv = adapter.launch_argv(ctx)
    i = argv.index("--resume")
    assert argv[i: i + 3] == ["--resume", SOURCE, "--fork-session"]
    assert argv[argv.index("--session-id") + 1] == own
    assert argv[-2:] == ["--", "go on"]

    # The fork's SessionStart hook reports the source's id; a restart still resumes the fork.
    restart = ctx_for(tmp_path, prompt="go on", resume=True, session_id=SOURCE, extra=dict(ctx.extra))
    adapter.prepare(restart)
    assert restart.session_id == own
    claude_transcript(tmp_path / "home", own)
    assert adapter.launch_argv(restart)[-2:] == ["--resume", own]


def test_claude_fork_restart_before_its_first_message_forks_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    claude_transcript(tmp_path / "home", SOURCE)
    adapter = get_adapter("claude", load_config(tmp_path))
    own = "99999999-2222-4333-8444-555555555555"
    ctx = ctx_for(tmp_path, resume=True, session_id=own,
                  extra={"fork_session_id": SOURCE, "fork_own_session_id": own})
    adapter.prepare(ctx)
    argv = adapter.launch_argv(ctx)
    assert ["--resume", SOURCE, "--fork-session", "--session-id", own] == argv[argv.index("--resume"):][:5]


def test_claude_fork_without_the_source_transcript_starts_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    adapter = get_adapter("claude", load_config(tmp_path))
    ctx = ctx_for(tmp_path, prompt="hi", extra={"fork_session_id": SOURCE})
    adapter.prepare(ctx)
    argv = adapter.launch_argv(ctx)
    assert "--resume" not in argv and "--fork-session" not in argv
    assert argv[argv.index("--session-id") + 1] == ctx.session_id


def codex_session(home: Path, session_id: str, cwd: Path) -> Path:
    path = home / "sessions" / "2026" / "01" / "02" / f"rollout-2026-01-02T03-04-05-{session_id}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "session_meta", "payload": {"id": session_id, "cwd": str(cwd)}}) + "\n")
    return path


def test_codex_fork_launch_and_its_restart(tmp_path, monkeypatch):
    home = tmp_path / "codex"
    monkeypatch.setenv("CODEX_HOME", str(home))
    adapter = get_adapter("codex", load_config(tmp_path))
    codex_session(home, SOURCE, tmp_path / "source-worktree")
    ctx = ctx_for(tmp_path, prompt="fourth question", extra={"fork_session_id": SOURCE})
    adapter.prepare(ctx)
    argv = adapter.launch_argv(ctx)
    assert argv[1] == "fork" and "--no-daemon" in argv
    assert argv[argv.index("-C") + 1] == str(ctx.start_dir)
    assert argv[-3:] == ["--", SOURCE, "fourth question"]
    # No prompt: the fork waits for one.
    bare = ctx_for(tmp_path, extra={"fork_session_id": SOURCE})
    assert adapter.launch_argv(bare)[-2:] == ["--", SOURCE]
    # Restart after the fork's first turn: its own thread (found by its folder) is resumed.
    own = "01a216b4-c8ae-7220-8a18-f4450b809435"
    codex_session(home, own, ctx.start_dir)
    restart = ctx_for(tmp_path, resume=True, extra={"fork_session_id": SOURCE})
    adapter.prepare(restart)
    argv = adapter.launch_argv(restart)
    assert argv[1] == "resume" and argv[-1] == own
    # The source's session file is gone: a plain new conversation.
    os.unlink(home / "sessions" / "2026" / "01" / "02" / f"rollout-2026-01-02T03-04-05-{SOURCE}.jsonl")
    assert "fork" not in adapter.launch_argv(ctx_for(tmp_path, prompt="x", extra={"fork_session_id": SOURCE}))


# ====================================================================== real Claude Code
def agent(repo: Path, name: str) -> dict:
    proc = run_cli("ls", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a for a in json.loads(proc.stdout)}[name]


def wait_idle(repo: Path, name: str, timeout: float = 90) -> dict:
    try:
        return retry_until(lambda: (lambda a: a if a["status"] == "idle" else None)(agent(repo, name)),
                           timeout=timeout, interval=0.2, what=f"{name} idle")
    except AssertionError as exc:
        screen = run_cli("peek", name, cwd=repo).stdout
        events = run_cli("events", name, "--json", cwd=repo).stdout
        raise AssertionError(f"{exc}\n--- screen:\n{screen}\n--- events:\n{events}") from None


def settled(path: Path) -> bytes:
    """The file's bytes once they stopped changing (Claude writes a few entries after a turn)."""
    seen: list[bytes] = []

    def check():
        seen.append(path.read_bytes())
        return len(seen) > 3 and seen[-1] == seen[-2] == seen[-3] == seen[-4]

    retry_until(check, timeout=20, interval=0.25, what=f"{path.name} to settle")
    return seen[-1]


@pytest.mark.slow
@pytest.mark.realcli
@pytest.mark.timeout(240)
def test_real_claude_fork_carries_the_conversation_and_leaves_the_source_alone(git_repo, isolated_home, tmp_path):
    claude = require_cli("claude")
    home = tmp_path / "claude-home"
    seed_claude_home(home)
    with MeteredAnthropicStub() as stub:
        write_agent_config(isolated_home, "claude", claude, claude_env(home, stub.url))
        stub.when("remember the word", Reply.text("I will remember banana."))
        stub.when("which word", Reply.text("The word was banana."))
        stub.when("once more", Reply.text("Still banana."))
        proc = run_cli("new", "alpha", "--agent", "claude", "--prompt", "please remember the word banana",
                       "--json", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        source_id = json.loads(proc.stdout)["session_id"]
        retry_until(lambda: stub.main_reported(), timeout=90, what="alpha's first request")
        wait_idle(git_repo, "alpha")
        projects = home / ".claude" / "projects"
        source_file = retry_until(lambda: next(projects.glob(f"*/{source_id}.jsonl"), None), timeout=20,
                                  what="alpha's transcript")
        source_bytes = settled(source_file)
        alpha_reported = stub.main_reported()

        proc = run_cli("fork", "alpha", "beta", "--prompt", "which word did I ask you to remember?", "--json",
                       cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        fork_id = json.loads(proc.stdout)["session_id"]
        assert fork_id and fork_id != source_id
        retry_until(lambda: len(stub.main_reported()) > len(alpha_reported), timeout=90, what="beta's request")
        # The fork's first request carries alpha's turn, under the fork's own conversation id.
        request = [r for r in stub.requests if r.is_main][-1]
        history = json.dumps(request.body["messages"])
        assert "please remember the word banana" in history and "I will remember banana." in history
        assert "which word did I ask you to remember?" in history
        assert request.headers.get("X-Claude-Code-Session-Id") == fork_id
        wait_idle(git_repo, "beta")
        fork_file = retry_until(lambda: next(projects.glob(f"*/{fork_id}.jsonl"), None), timeout=20,
                                what="beta's transcript")
        settled(fork_file)
        beta_reported = stub.main_reported()[len(alpha_reported):]
        # The source's transcript is untouched.
        assert source_file.read_bytes() == source_bytes

        # Usage: the fork does not count the answers it inherited.
        data = usage_json(git_repo)
        by = {a["name"]: a for a in data["agents"]}
        assert numbers(by["alpha"]) == claude_expected(alpha_reported)
        assert numbers(by["beta"]) == claude_expected(beta_reported)
        assert numbers(data["total"]) == claude_expected(alpha_reported + beta_reported)
        save_fixtures({"claude_fork_source.jsonl": source_file, "claude_fork.jsonl": fork_file},
                      {"claude_fork_source": {"session_id": source_id, **claude_expected(alpha_reported)},
                       "claude_fork": {"session_id": fork_id, **claude_expected(beta_reported)}})

        # Restart resumes the fork's conversation, not the source's.
        assert run_cli("restart", "beta", cwd=git_repo).returncode == 0
        wait_idle(git_repo, "beta")
        assert agent(git_repo, "beta")["session_id"] == fork_id
        before = len(stub.main_reported())
        assert run_cli("send", "beta", "once more please", cwd=git_repo).returncode == 0
        retry_until(lambda: len(stub.main_reported()) > before, timeout=60, what="beta's next request")
        request = [r for r in stub.requests if r.is_main][-1]
        assert request.headers.get("X-Claude-Code-Session-Id") == fork_id
        history = json.dumps(request.body["messages"])
        assert "please remember the word banana" in history and "which word did I ask you" in history
        wait_idle(git_repo, "beta")
        assert source_file.read_bytes() == source_bytes
