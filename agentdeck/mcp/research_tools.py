"""Research tools of the ``agentdeck`` MCP server: ``research_submit(description)``.

The ``agent`` proposer (:mod:`agentdeck.research.proposers.agent`) asks a deck
agent for one change to the lab's editable files; the agent edits them in its
own worktree and calls ``research_submit`` with a one-line description.  That
marks its open proposal request as submitted
(:func:`agentdeck.research.submit_from_agent`); agentdeck then copies the change
into a trial worktree and runs the job - the agent never runs or judges it.

Registered as one tool group of :mod:`agentdeck.mcp.server` (``TOOL_GROUPS``).  The
calling agent is the request's token's agent over HTTP (the process's
``AGENTDECK_AGENT`` over stdio): an agent can only submit its own proposal.  The ledger
is found through ``AGENTDECK_STATE_DIR`` (set for the server and every agent) or the cwd.
"""

# No "from __future__ import annotations": the MCP SDK reads the annotations at runtime.

from typing import Annotated, Any

from mcp_types import ToolAnnotations
from pydantic import Field

from agentdeck.mcp.context import tool_adder

MAX_DESCRIPTION = 300


def register_research_tools(server: Any, context: Any) -> None:
    tool = tool_adder(server)
    submitting = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                 open_world_hint=False)

    @tool(submitting, "Submit a research change")
    def research_submit(
        description: Annotated[str, Field(min_length=1, max_length=MAX_DESCRIPTION, description=(
            "one line saying what you changed and why, e.g. 'halve the learning rate warmup'"))],
    ) -> dict[str, Any]:
        """Tell agentdeck that your change for the current research experiment is saved and ready.

        Only when agentdeck's research run asked you for a change: save your edits to the editable
        file(s) first, then call this once. agentdeck runs the job, measures it and keeps the change
        only if it beats the best. Refused when no experiment is waiting for you.
        """
        # Loaded on the first call: the server starts without the research package.
        from agentdeck.research import submit_from_agent

        caller = context.current_agent
        agent = caller if caller and caller != "user" else None
        return submit_from_agent(description, agent=agent, cwd=str(context.cwd))
