"""Proposers: who suggests the next change; ``get_proposer`` picks one by name from :data:`PROPOSERS`.

Each proposer module imports :mod:`.base`; this package imports none of them until one is asked
for (the registry holds names, as the agent adapters' does): no import cycle, and a run with the
``mutate`` proposer never loads Optuna or an LLM SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from agentdeck.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.research.proposers.base import Proposer, ProposerContext

#: name -> "module:Class"; one line per proposer.
PROPOSERS: dict[str, str] = {
    "mutate": "agentdeck.research.proposers.mutate:MutateProposer",
    "search": "agentdeck.research.proposers.search:SearchProposer",
    "llm": "agentdeck.research.proposers.llm:LlmProposer",
    "agent": "agentdeck.research.proposers.agent:AgentProposer",
    "command": "agentdeck.research.proposers.command:CommandProposer",
}


def check_name(name: str) -> None:
    """A UsageError naming the choices when no proposer is called *name*."""
    if name not in PROPOSERS:
        raise UsageError(f"unknown proposer {name!r}; use {', '.join(PROPOSERS)}")


def get_proposer(name: str, ctx: ProposerContext) -> Proposer:
    """The proposer called *name*, with its context *ctx*."""
    check_name(name)
    module_name, cls_name = PROPOSERS[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)(ctx)


__all__ = ["PROPOSERS", "check_name", "get_proposer"]
