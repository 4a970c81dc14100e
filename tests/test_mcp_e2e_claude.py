"""End to end with the real Claude Code CLI (the pinned version, against the local Anthropic stub):
wired to the repository's HTTP MCP server, an agent given a prompt at launch has agentdeck's tools
in the first API request that carries tools, and its first-turn memory write lands with its name
as author; the same after the server was killed and came back.

Skipped when the CLI is not installed, unless AGENTDECK_REQUIRE_REAL_CLIS=1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp_support import kill_server
from memory_support import _no_memory_env  # noqa: F401
from realcli_support import claude_env, require_cli, seed_claude_home, write_agent_config
from stubs.anthropic_stub import AnthropicStub, Reply
from support import retry_until, run_cli

from agentdeck import paths
from agentdeck.mcp_link import service
from agentdeck.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.realcli, pytest.mark.timeout(240)]

PREFIX = "mcp__agentdeck__"
WRITE = PREFIX + "memory_write"
FIRST = {"title": "Flaky build cache on CI", "body": "Clear `.cache/build` when the linker fails.", "tags": ["ci"],
         "kind": "gotcha"}
SECOND = {"title": "Docs server owns port 8080", "body": "Tests use 8181.", "tags": ["tests"], "kind": "gotcha"}


def events(repo: Path, name: str) -> list[dict]:
    proc = run_cli("events", name, "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def note_with_title(repo: Path, title: str) -> dict | None:
    proc = run_cli("memory", "search", title, "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return next((hit for hit in json.loads(proc.stdout) if hit["title"] == title), None)


@pytest.fixture(autouse=True)
def _quick_exit(monkeypatch):
    monkeypatch.setenv("AGENTDECK_MCP_GRACE", "3")


def test_first_turn_has_the_memory_tools_before_and_after_a_server_kill(git_repo, isolated_home, tmp_path):
    claude = require_cli("claude")
    home = tmp_path / "claude-home"
    seed_claude_home(home)
    with AnthropicStub() as stub:
        write_agent_config(isolated_home, "claude", claude, claude_env(home, stub.url))
        stub.when(lambda r: r.is_tool_turn and '"version"' in "".join(r.tool_results), Reply.text("Saved it."))
        stub.when(lambda r: WRITE in r.tool_names and "remember the cache gotcha" in r.prompt, Reply.tool(WRITE, FIRST))
        stub.when(lambda r: WRITE in r.tool_names and "remember the port gotcha" in r.prompt, Reply.tool(WRITE, SECOND))
        proc = run_cli("new", "scribe", "--agent", "claude", "--prompt", "please remember the cache gotcha",
                       cwd=git_repo)
        assert proc.returncode == 0, proc.stderr

        def diagnostics() -> str:
            offered = [[t for t in r.tool_names if t.startswith(PREFIX)] for r in stub.main_requests()]
            return (f"\n--- screen:\n{run_cli('peek', 'scribe', cwd=git_repo).stdout}\n--- agentdeck tools per "
                    f"request: {offered}\n--- events: {events(git_repo, 'scribe')}")

        try:
            first = retry_until(lambda: note_with_title(git_repo, FIRST["title"]), timeout=120, interval=0.5,
                                what="the first-turn note")
        except AssertionError as exc:
            raise AssertionError(f"{exc}{diagnostics()}") from None
        # The very first request of the session that carries tools offers agentdeck's.
        opening = stub.main_requests()[0]
        assert WRITE in opening.tool_names and PREFIX + "memory_search" in opening.tool_names, diagnostics()
        assert "remember the cache gotcha" in opening.prompt
        assert first["author"] == "scribe"
        typed = [e["detail"] for e in events(git_repo, "scribe") if e["type"] == "prompt" and "typed" in e["detail"]]
        assert typed and typed[0]["typed"] == "after tools/list", typed

        # The server killed: the watcher brings it back on the same port, Claude reaches it again.
        store = Store(paths.find_repo(git_repo).db_path)
        retry_until(lambda: "Saved it." in run_cli("peek", "scribe", cwd=git_repo).stdout, timeout=30,
                    what="the first turn's end")
        port = kill_server(git_repo, store)
        state_dir = paths.find_repo(git_repo).state_dir
        retry_until(lambda: service.server_alive(state_dir) and service.read_record(store).get("state") == "running",
                    timeout=60, what="the server back")
        assert service.recorded_port(store) == port
        before = len(stub.main_requests())
        assert run_cli("send", "scribe", "please remember the port gotcha", cwd=git_repo).returncode == 0
        try:
            second = retry_until(lambda: note_with_title(git_repo, SECOND["title"]), timeout=120, interval=0.5,
                                 what="the note written after the server came back")
        except AssertionError as exc:
            raise AssertionError(f"{exc}{diagnostics()}") from None
        assert WRITE in stub.main_requests()[before].tool_names, diagnostics()
        assert second["author"] == "scribe"
