"""The generic adapter: any interactive program, status from its screen."""

from __future__ import annotations

from agentdeck.agents.base import Adapter


class GenericAdapter(Adapter):
    kind = "generic"
