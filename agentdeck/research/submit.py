"""The ``research_submit`` MCP tool's side: an agent marks its open proposal request submitted.

Light on purpose (the MCP server imports it): the ledger and the paths, nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentdeck import paths
from agentdeck.errors import Refused, UsageError
from agentdeck.research.ledger import Ledger


def submit_from_agent(description: str, agent: str | None = None, cwd: str | None = None) -> dict[str, Any]:
    """What the MCP tool ``research_submit(description)`` calls from inside an agent's pane.

    Marks the agent's open proposal request as submitted; the ``agent``
    proposer then copies the editable files from the agent's worktree into the
    trial's worktree and agentdeck runs the job.
    """
    agent = agent or os.environ.get(paths.ENV_AGENT, "")
    if not agent:
        raise UsageError("research_submit must be called from an agent started by agentdeck (AGENTDECK_AGENT unset)")
    description = " ".join(str(description).split())
    if not description:
        raise UsageError("research_submit needs a one-line description of the change")
    state_dir = os.environ.get(paths.ENV_STATE_DIR)
    if state_dir:
        research_dir = Path(state_dir) / "research"
    else:
        research_dir = paths.find_repo(cwd).research_dir

    if not (Path(research_dir) / "ledger.db").exists():
        raise Refused(f"agent {agent!r} has no open research request; wait for the next instruction")
    ledger = Ledger(Path(research_dir) / "ledger.db")
    try:
        row = ledger.submit_agent_request(agent, description[:300])
    finally:
        ledger.close()
    if row is None:
        raise Refused(f"agent {agent!r} has no open research request; wait for the next instruction")
    return {"submitted": True, "agent": agent, "tag": row["tag"], "description": description[:300]}
