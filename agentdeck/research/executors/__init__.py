"""Executors: where a research job runs; ``get_executor`` picks one by name from :data:`EXECUTORS`.

Each executor module imports :mod:`.base`; this package imports none of them until one is asked
for (the registry holds names, as the agent adapters' does), so the base and the executors form
no import cycle and a run on the local executor never loads the cluster clients.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentdeck.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.research.executors.base import Executor

#: name -> "module:factory" (a class or a function taking the research settings); one line per executor.
EXECUTORS: dict[str, str] = {
    "local": "agentdeck.research.executors.local:LocalExecutor",
    "ray": "agentdeck.research.executors.ray:RayExecutor",
    "slurm": "agentdeck.research.executors.slurm:SlurmExecutor",
}


def get_executor(name: str, settings: Any = None) -> Executor:
    """The executor called *name*, made from the run's research *settings*."""
    target = EXECUTORS.get(name)
    if target is None:
        raise UsageError(f"[research] executor = {name!r} is unknown; use {', '.join(repr(n) for n in EXECUTORS)}")
    module_name, factory = target.split(":")
    made = getattr(importlib.import_module(module_name), factory)
    return made(settings)


__all__ = ["EXECUTORS", "get_executor"]
