"""The generic adapter: any interactive program, status from its screen.

It gets the shared memory through the env (:meth:`Adapter.memory_env`): ``AGENTDECK_MEMORY_DIR``
and ``AGENTDECK_MEMORY_BRIEF`` (the brief's path).
"""

from __future__ import annotations

from agentdeck.agents.base import Adapter


class GenericAdapter(Adapter):
    kind = "generic"
