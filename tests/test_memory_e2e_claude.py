"""End to end: the real Claude Code CLI launched by agentdeck (against the local Anthropic stub) is
offered the shared memory's tools and writes a note through them, with no permission prompt.

Skipped when the CLI is not installed, unless AGENTDECK_REQUIRE_REAL_CLIS=1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from memory_support import _no_memory_env  # noqa: F401
from realcli_support import claude_env, require_cli, seed_claude_home, write_agent_config
from stubs.anthropic_stub import AnthropicStub, Reply
from support import git, retry_until, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.realcli, pytest.mark.timeout(180)]

WRITE = "mcp__agentdeck__memory_write"
WAIT = "WaitForMcpServers"
NOTE = {"title": "Flaky build cache on CI", "body": "Clear `.cache/build` when the linker fails with a stale symbol.",
        "tags": ["build", "ci"], "kind": "gotcha"}


def events(repo: Path, name: str) -> list[dict]:
    proc = run_cli("events", name, "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def status(repo: Path, name: str) -> str:
    proc = run_cli("ls", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a for a in json.loads(proc.stdout)}[name]["status"]


def test_claude_writes_a_note_through_the_memory_tools(git_repo, isolated_home, tmp_path):
    claude = require_cli("claude")
    home = tmp_path / "claude-home"
    seed_claude_home(home)
    with AnthropicStub() as stub:
        write_agent_config(isolated_home, "claude", claude, claude_env(home, stub.url))
        # The model's side. Claude Code connects MCP servers in the background: a turn that is not
        # offered the memory tools yet waits for them (WaitForMcpServers, as its tool text asks);
        # once they are offered, it writes the note; the note's id back, it closes the turn.
        stub.when(lambda r: r.is_tool_turn and '"version"' in "".join(r.tool_results),
                  Reply.text("Saved it to the shared memory."))
        stub.when(lambda r: WRITE in r.tool_names and (r.is_tool_turn or "remember the cache gotcha" in r.prompt),
                  Reply.tool(WRITE, NOTE))
        stub.when(lambda r: WAIT in r.tool_names and (r.is_tool_turn or "remember the cache gotcha" in r.prompt),
                  Reply.tool(WAIT, {"servers": ["agentdeck"]}), times=3)
        proc = run_cli("new", "scribe", "--agent", "claude", "--prompt", "please remember the cache gotcha",
                       "--json", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        worktree = Path(json.loads(proc.stdout)["worktree"])

        def diagnostics() -> str:
            offered = [r.tool_names for r in stub.main_requests()]
            return (f"--- screen:\n{run_cli('peek', 'scribe', cwd=git_repo).stdout}\n--- tools offered: {offered}"
                    f"\n--- events: {events(git_repo, 'scribe')}")

        def found():
            proc = run_cli("memory", "search", "linker stale symbol", "--json", cwd=git_repo)
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout)

        try:
            hits = retry_until(found, timeout=90, interval=0.5, what="the note in the store")
            retry_until(lambda: "Saved it to the shared memory." in run_cli("peek", "scribe", cwd=git_repo).stdout,
                        timeout=30, interval=0.3, what="the closing text")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnostics()}") from None

        requests = stub.main_requests()
        # The brief came with the system prompt from the first turn on.
        assert "memory_search(query)" in json.dumps(requests[0].body.get("system"))
        # The model was offered the memory tools, and called one.
        offered = next(r for r in requests if WRITE in r.tool_names)
        assert {"mcp__agentdeck__memory_search", "mcp__agentdeck__memory_read",
                "mcp__agentdeck__memory_update"} <= set(offered.tool_names)
        assert offered.answered_by == "1", [(r.answered_by, r.tool_names) for r in requests]
        # The tool ran: its result (the new note's id) went back to the model.
        tool_turn = next(r for r in requests if r.is_tool_turn and r.answered_by == "0")
        assert hits[0]["id"] in tool_turn.tool_results[0], tool_turn.tool_results

    (hit,) = hits
    assert hit["title"] == NOTE["title"] and hit["kind"] == "gotcha" and hit["tags"] == ["build", "ci"]
    assert hit["author"] == "scribe"
    note = Path(hit["path"])
    assert note.parent == git_repo / ".git" / "agentdeck" / "memory" / "notes"
    assert "author: scribe" in note.read_text()
    # No permission prompt on the way: never waiting, no PermissionRequest hook.
    history = events(git_repo, "scribe")
    assert not any(e["type"] == "hook" and e["detail"].get("event") == "PermissionRequest" for e in history), history
    assert "waiting" not in [e["status"] for e in history if e["type"] == "status"], history
    assert status(git_repo, "scribe") != "waiting"
    # Nothing was written in the agent's worktree or the repository's tracked files.
    assert git(worktree, "status", "--porcelain") == ""
    assert git(git_repo, "status", "--porcelain") == ""
