"""End to end with the real Claude Code CLI (pinned, see tests/install_clis.sh) against the
local Anthropic stub, through agentdeck's CLI only - status as a script sees it (`ls --json`).

Skipped when the CLI is not installed, unless AGENTDECK_REQUIRE_REAL_CLIS=1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from realcli_support import claude_env, require_cli, seed_claude_home, write_agent_config
from stubs.anthropic_stub import AnthropicStub, Reply
from support import retry_until, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.realcli, pytest.mark.timeout(240)]


@pytest.fixture
def deck(git_repo, isolated_home, tmp_path):
    claude = require_cli("claude")
    stub = AnthropicStub().start()
    home = tmp_path / "claude-home"
    seed_claude_home(home)
    write_agent_config(isolated_home, "claude", claude, claude_env(home, stub.url))
    # The agent's turn: a Bash call that creates a file, answered after a pause so
    # that `working` can be seen; then a closing text once the tool result comes back.
    stub.when(lambda r: r.is_tool_turn, Reply.text("Created the file."))
    stub.when("create the file", Reply.tool("Bash", {"command": "touch made.txt", "description": "Create made.txt"},
                                            delay=3.0))
    yield SimpleNamespace(repo=git_repo, stub=stub, home=home)
    stub.stop()


def agent(repo: Path, name: str) -> dict:
    proc = run_cli("ls", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a for a in json.loads(proc.stdout)}[name]


class Watch:
    """Polls `ls --json` and remembers every status it saw, in order."""

    def __init__(self, repo: Path, name: str):
        self.repo, self.name, self.seen = repo, name, []

    def until(self, *wanted: str, timeout: float = 60) -> dict:
        def check():
            a = agent(self.repo, self.name)
            if not self.seen or self.seen[-1] != a["status"]:
                self.seen.append(a["status"])
            return a if a["status"] in wanted else None

        try:
            return retry_until(check, timeout=timeout, interval=0.2, what=f"{self.name} {wanted} (seen {self.seen})")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnostics(self.repo, self.name)}") from None


def diagnostics(repo: Path, name: str) -> str:
    screen = run_cli("peek", name, cwd=repo).stdout
    events = run_cli("events", name, "--json", cwd=repo).stdout
    return f"--- screen:\n{screen}\n--- events:\n{events}"


def new_agent(repo: Path, name: str, prompt: str) -> dict:
    proc = run_cli("new", name, "--agent", "claude", "--prompt", prompt, "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_permission_approve_then_restart_resumes_the_conversation(deck):
    created = new_agent(deck.repo, "alpha", "please create the file made.txt")
    session_id = created["session_id"]
    assert session_id
    watch = Watch(deck.repo, "alpha")
    waiting = watch.until("waiting", timeout=90)
    worktree = Path(waiting["worktree"])
    assert not (worktree / "made.txt").exists()
    # The new worktree's folder-trust dialog did not stall it: the deck accepted it (Claude
    # records the answer in the test HOME's ~/.claude.json).
    events = json.loads(run_cli("events", "alpha", "--json", cwd=deck.repo).stdout)
    projects = json.loads((deck.home / ".claude.json").read_text()).get("projects", {})
    assert any(p.get("hasTrustDialogAccepted") for p in projects.values()), (projects, events)
    # The hook reported the permission prompt (the screen may have said so first).
    assert any(e["type"] == "hook" and e["detail"].get("event") == "PermissionRequest" for e in events), events

    proc = run_cli("approve", "alpha", cwd=deck.repo)
    assert proc.returncode == 0, proc.stderr
    watch.until("idle", timeout=60)
    assert (worktree / "made.txt").exists()
    # A poll can miss a short state on a loaded machine; the recorded history cannot.
    statuses = [e["status"] for e in json.loads(run_cli("events", "alpha", "--json", cwd=deck.repo).stdout)
                if e["type"] == "status"]
    assert "working" in statuses[: statuses.index("waiting")], statuses
    assert statuses[-1] == "idle", statuses
    assert "Created the file." in run_cli("peek", "alpha", cwd=deck.repo).stdout

    # Restart: the same conversation comes back (same id, the model sees the old turns).
    proc = run_cli("restart", "alpha", "--json", cwd=deck.repo)
    assert proc.returncode == 0, proc.stderr
    watch.until("idle", timeout=60)
    assert agent(deck.repo, "alpha")["session_id"] == session_id
    deck.stub.when("what did we do", Reply.text("We created made.txt."))
    before = len(deck.stub.main_requests())
    assert run_cli("send", "alpha", "what did we do so far?", cwd=deck.repo).returncode == 0
    try:
        retry_until(lambda: len(deck.stub.main_requests()) > before, timeout=30, what="the next model request")
    except AssertionError as exc:
        screen = run_cli("peek", "alpha", cwd=deck.repo).stdout
        events = run_cli("events", "alpha", "--json", cwd=deck.repo).stdout
        raise AssertionError(f"{exc}\n--- screen:\n{screen}\n--- events:\n{events}") from None
    request = deck.stub.main_requests()[-1]
    history = json.dumps(request.body["messages"])
    assert "please create the file made.txt" in history
    assert request.headers.get("X-Claude-Code-Session-Id") == session_id
    watch.until("idle", timeout=60)


def test_permission_deny_leaves_no_file_and_comes_back_idle(deck):
    new_agent(deck.repo, "beta", "please create the file made.txt")
    watch = Watch(deck.repo, "beta")
    waiting = watch.until("waiting", timeout=90)
    started = time.monotonic()
    proc = run_cli("deny", "beta", cwd=deck.repo)
    assert proc.returncode == 0, proc.stderr
    # A "No" fires no hook: the screen tells that the turn is over.
    idle = watch.until("idle", timeout=60)
    assert time.monotonic() - started < 30
    assert not (Path(waiting["worktree"]) / "made.txt").exists()
    assert idle["status_source"] == "screen"
    # Nothing left to answer.
    assert run_cli("approve", "beta", cwd=deck.repo).returncode == 1
