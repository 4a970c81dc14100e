"""Shared memory: Markdown notes every agent reads and writes (store, search, MCP, injection).

``MemoryStore`` (:mod:`agentdeck.memory.store`) is the API; ``deck.memory`` is one.
"""

from __future__ import annotations

__all__ = ["MemoryStore", "Note"]


def __getattr__(name: str):
    if name in __all__:
        from agentdeck.memory import store

        return getattr(store, name)
    raise AttributeError(name)
