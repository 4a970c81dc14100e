"""Deck tools on the MCP server, driven by the real `mcp` client: an orchestrator runs a sub-agent."""

from __future__ import annotations

import anyio
from memory_support import _no_memory_env, error_text, mcp_session, result_data, server_params  # noqa: F401
from support import git, retry_until


def params(repo, agent):
    """The server's environment is minimal: hand it this test's home and tmux socket."""
    import os

    keep = {k: os.environ[k] for k in ("AGENTDECK_HOME", "AGENTDECK_TMUX_SOCKET", "AGENTDECK_WATCH_GRACE")
            if k in os.environ}
    return server_params(repo, agent=agent, env=keep)


DECK_TOOLS = {"deck_list_agents", "deck_spawn_agent", "deck_send", "deck_agent_status", "deck_agent_diff",
              "deck_wait"}


def test_deck_tools_off_by_default(fake_repo):
    async def main():
        async with mcp_session(params(fake_repo, "boss")) as s:
            names = {t.name for t in (await s.list_tools()).tools}
            assert not names & DECK_TOOLS and "memory_search" in names

    anyio.run(main)


def test_orchestrator_spawns_sends_reads_status_and_diff(fake_repo):
    cfg = fake_repo / ".agentdeck.toml"
    cfg.write_text(cfg.read_text() + "\n[mcp]\ndeck_tools = true\n")
    git(fake_repo, "commit", "-qam", "deck tools on")

    async def main():
        async with mcp_session(params(fake_repo, "boss")) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert DECK_TOOLS <= set(tools)
            assert tools["deck_list_agents"].annotations.read_only_hint is True
            spawned = result_data(await s.call_tool("deck_spawn_agent", {"name": "sub-1", "prompt": "hello"}))
            assert spawned["name"] == "sub-1" and spawned["branch"] == "agentdeck/sub-1"
            status = result_data(await s.call_tool("deck_wait", {"name": "sub-1", "until": ["idle"],
                                                                  "timeout_s": 30}))
            assert status["status"] == "idle"
            sent = result_data(await s.call_tool("deck_send", {"name": "sub-1", "text": "write made.txt by sub"}))
            assert sent["sent"] is True

            async def screen_has(text: str) -> bool:
                data = result_data(await s.call_tool("deck_agent_status", {"name": "sub-1"}))
                return text in data["screen"]

            for _ in range(100):
                if await screen_has("wrote made.txt"):
                    break
                await anyio.sleep(0.1)
            else:
                raise AssertionError("sub-agent did not write the file")
            diff = result_data(await s.call_tool("deck_agent_diff", {"name": "sub-1"}))
            assert [f["path"] for f in diff["files"]] == ["made.txt"] and diff["added"] == 1
            listed = result_data(await s.call_tool("deck_list_agents", {}))
            assert [a["name"] for a in listed] == ["sub-1"]
            assert "no agent named" in error_text(await s.call_tool("deck_send", {"name": "ghost", "text": "x"}))
            assert "already exists" in error_text(
                await s.call_tool("deck_spawn_agent", {"name": "sub-1", "prompt": "again"}))

    anyio.run(main)
    events = retry_until(lambda: git(fake_repo, "branch", "--list", "agentdeck/sub-1"))
    assert events
