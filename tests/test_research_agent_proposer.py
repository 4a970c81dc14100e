"""The agent proposer's own bookkeeping (a unit test; the end-to-end runs with a real deck, a fake
agent and the real Claude Code CLI are in test_research_agent_e2e.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from agentdeck.errors import Refused, UsageError
from agentdeck.research.proposers.agent import AgentProposer
from agentdeck.research.proposers.base import ProposalFailed, ProposalRequest


class NoAgentsDeck:
    """A runner whose ``new`` fails (undone: no agent is left behind), as a loaded machine made it."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def new(self, name: str, *args: object) -> None:
        self.created.append(name)
        raise Refused(f"could not start {name}")

    def get(self, name: str) -> object:
        raise UsageError(f"no agent named {name}")


class Ledger:
    def open_agent_request(self, tag: str, name: str) -> int:
        return 1

    def close_agent_request(self, request_id: int, state: str) -> None:
        pass


def test_a_failed_new_is_not_reused_by_the_next_proposal(tmp_path: Path) -> None:
    deck = NoAgentsDeck()
    ctx = SimpleNamespace(runner=deck, runners=None, ledger=Ledger(), tag="t",
                          research=SimpleNamespace(program="program.md", workdir="lab", agent="fake", timeout_s=1.0))
    proposer = AgentProposer(ctx)
    request = ProposalRequest(tag="t", worktree=tmp_path, workdir=tmp_path / "lab", editable=["train.py"], program="",
                              metric="score", direction="min", best={"id": 1, "metric": 1.0, "commit": "0" * 40},
                              baseline={}, history=[])
    for _ in range(3):
        with pytest.raises(ProposalFailed, match="could not start"):
            proposer.propose(request)
    # Each proposal tried to start an agent: none waited on the one whose start failed.
    assert deck.created == ["research-t-1", "research-t-2", "research-t-3"]
    proposer.close()  # nothing to kill: no agent was ever made
