"""Deck tools for the ``agentdeck`` MCP server (``[mcp] deck_tools = true``; off by default).

They let an orchestrator agent run sub-agents through the same facade as the
CLI: list agents, spawn one, send it text, read its status and screen, see its
diff, wait for it.  Registered as one tool group of :mod:`agentdeck.mcp.server`
(``TOOL_GROUPS``): the same server and the same tokens as the memory tools; a spawn is
recorded as made by the caller (the token's agent over HTTP).
"""

# No "from __future__ import annotations": the MCP SDK reads the annotations at runtime.

from typing import Annotated, Any

from mcp_types import ToolAnnotations
from pydantic import Field

from agentdeck.mcp.context import tool_adder
from agentdeck.views import AgentView

STATUS_LIST = "starting, working, waiting, idle, exited"


def register_deck_tools(server: Any, context: Any) -> None:
    if not context.config.mcp.deck_tools:
        return
    tool = tool_adder(server)
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    acting = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                             open_world_hint=False)
    Name = Annotated[str, Field(min_length=1, max_length=64, description="an agent name from deck_list_agents")]

    @tool(read_only, "List agents")
    def deck_list_agents() -> list[dict[str, Any]]:
        """Every agent of this repository: name, definition, status, branch, worktree, created_at."""
        return [a.to_json() for a in context.deck.agents()]

    @tool(acting, "Spawn an agent")
    def deck_spawn_agent(
        name: Annotated[str, Field(min_length=1, max_length=64, description="a new, unused agent name")],
        prompt: Annotated[str, Field(max_length=20_000, description="the task for the new agent")],
        agent: Annotated[str, Field(max_length=64, description="agent definition; empty = the default")] = "",
        base: Annotated[str, Field(max_length=200, description="base branch or commit; empty = HEAD")] = "",
    ) -> dict[str, Any]:
        """Start a sub-agent in its own worktree and branch with an initial prompt."""
        rec = context.deck.new(name, agent or None, prompt, base or None)
        context.deck.store.add_event(rec.name, "spawned", "mcp", detail={"by": context.current_agent})
        return AgentView(rec).to_json()

    @tool(acting, "Send text to an agent")
    def deck_send(
        name: Name,
        text: Annotated[str, Field(min_length=1, max_length=20_000, description="text to type and submit")],
    ) -> dict[str, Any]:
        """Type text into an agent and submit it (refused while it waits for a permission answer)."""
        context.deck.send(name, text)
        return {"name": name, "sent": True}

    @tool(read_only, "Agent status and screen")
    def deck_agent_status(
        name: Name,
        screen_lines: Annotated[int, Field(ge=0, le=200, description="last screen lines to include")] = 20,
    ) -> dict[str, Any]:
        """An agent's status and the tail of its screen."""
        context.deck.refresh(settle=False)
        data = AgentView(context.deck.get(name)).to_json()
        if screen_lines:
            lines = context.deck.peek(name).rstrip().splitlines()
            data["screen"] = "\n".join(lines[-screen_lines:])
        return data

    @tool(read_only, "Agent diff")
    def deck_agent_diff(name: Name) -> dict[str, Any]:
        """What an agent changed against its base: files with added/removed lines, and the patch."""
        return _diff(context.deck, name)

    @tool(read_only, "Wait for an agent's status")
    def deck_wait(
        name: Name,
        until: Annotated[list[str], Field(min_length=1, description=f"statuses to wait for: {STATUS_LIST}")],
        timeout_s: Annotated[float, Field(gt=0, le=600, description="give up after this many seconds")] = 300,
    ) -> dict[str, Any]:
        """Block until an agent reaches one of the statuses (an error on timeout)."""
        return {"name": name, "status": context.deck.wait(name, set(until), timeout_s)}


def _diff(deck: Any, name: str, max_lines: int = 2000) -> dict[str, Any]:
    """The review engine's diff as JSON, hunks cut after *max_lines* lines in all."""
    data = deck.review.diff(name, patch=True).to_json(hunks=True)
    budget = max_lines
    for f in data["files"]:
        for hunk in f.get("hunks", []):
            if budget <= 0:
                hunk["lines"] = []
                data["truncated"] = True
            else:
                hunk["lines"] = hunk["lines"][:budget]
                budget -= len(hunk["lines"])
    data["name"] = name
    return data
