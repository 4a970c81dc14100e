"""``research_submit(description)`` on the agentdeck MCP server, driven by the real `mcp` client over
stdio: the agent proposer's "my change is ready" signal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
from memory_support import _no_memory_env, error_text, mcp_session, result_data, server_params  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import make_lab, research_for


def params(repo: Path, agent: str = "", extra: dict[str, str] | None = None):
    """The server's environment is minimal: hand it this test's home and tmux socket."""
    keep = {k: os.environ[k] for k in ("AGENTDECK_HOME", "AGENTDECK_TMUX_SOCKET") if k in os.environ}
    keep.update(extra or {})
    return server_params(repo, agent=agent, env=keep)


def test_research_submit_marks_the_agents_open_request(tmp_path):
    repo = make_lab(tmp_path / "repo", proposer="agent")
    research = research_for(repo)
    tag = research.start("mcp1", trials=1)
    request_id = research.ledger.open_agent_request(tag, "research-mcp1-1")
    # The agent runs in its worktree (any cwd): the state dir in its env finds the ledger.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = {"AGENTDECK_STATE_DIR": str(repo / ".git" / "agentdeck")}

    async def main():
        async with mcp_session(params(elsewhere, "research-mcp1-1", state)) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            tool = tools["research_submit"]
            assert tool.annotations.read_only_hint is False and tool.annotations.destructive_hint is False
            assert tool.input_schema["required"] == ["description"]
            first = result_data(await s.call_tool("research_submit", {"description": "X = 5.0:\n  nearer the optimum"}))
            # One submission per request: the next call waits for agentdeck's next instruction.
            again = error_text(await s.call_tool("research_submit", {"description": "again"}))
            blank = error_text(await s.call_tool("research_submit", {"description": "   "}))
            long = await s.call_tool("research_submit", {"description": "x" * 301})
            return first, again, blank, long

    first, again, blank, long = anyio.run(main)
    assert first == {"submitted": True, "agent": "research-mcp1-1", "tag": "mcp1",
                     "description": "X = 5.0: nearer the optimum"}
    row = research.ledger.agent_request(request_id)
    assert (row["state"], row["description"]) == ("submitted", "X = 5.0: nearer the optimum")
    assert "no open research request" in again and "wait for the next instruction" in again
    assert "one-line description" in blank
    assert long.is_error
    research.close()


def test_research_submit_refuses_callers_without_a_request(tmp_path):
    repo = make_lab(tmp_path / "repo", proposer="agent")
    research = research_for(repo)
    tag = research.start("mcp2", trials=1)
    request_id = research.ledger.open_agent_request(tag, "research-mcp2-1")

    async def main():
        async with mcp_session(params(repo, "north-star")) as s:  # another agent: not asked for anything
            other = error_text(await s.call_tool("research_submit", {"description": "a change"}))
        async with mcp_session(params(repo)) as s:  # no AGENTDECK_AGENT: not an agent of the deck
            nobody = error_text(await s.call_tool("research_submit", {"description": "a change"}))
        return other, nobody

    other, nobody = anyio.run(main)
    assert "'north-star' has no open research request" in other
    assert "AGENTDECK_AGENT" in nobody and "agent started by agentdeck" in nobody
    assert research.ledger.agent_request(request_id)["state"] == "open"  # untouched
    research.close()


def test_the_group_is_registered_with_the_others():
    from agentdeck.mcp import server as mcp_server
    from agentdeck.mcp.research_tools import register_research_tools

    names = [getattr(g, "__name__", "") for g in mcp_server.TOOL_GROUPS]
    assert names.index("register_memory_tools") < names.index("register_research_tools")
    assert register_research_tools.__module__ == "agentdeck.mcp.research_tools"
