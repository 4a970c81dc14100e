"""What research needs of the deck: an agent runner (the ``agent`` proposer's panes).

Research runs agents through :class:`AgentRunner` — ``new`` / ``send`` / ``wait`` / ``kill``
(and ``get``, for the agent's worktree, and ``config``, for its definition) — which the deck
implements.  Research never imports the deck: whoever makes a
:class:`~agentdeck.research.Research` passes a :data:`RunnerFactory` — the deck's
``deck.research`` passes :func:`runners_like` itself (so does the CLI, and with it the
detached loop process) — and a Research opened without one (``Research.open``) runs every
proposer but ``agent``.  A factory, not one runner: each proposal worker thread opens its own
(a deck's SQLite connection belongs to the thread that opened it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol


class AgentRunner(Protocol):
    """A deck as research uses it: agents in their own worktrees and panes."""

    @property
    def config(self) -> Any: ...  # agentdeck.config.Config (``agent_def`` checks a definition)

    def new(self, name: str, definition: str | None = None, prompt: str = "", base: str | None = None,
            cwd_subdir: str = "") -> Any: ...

    def get(self, name: str) -> Any: ...  # a record with ``.worktree``

    def send(self, name: str, text: str, force: bool = False) -> None: ...

    def wait(self, name: str, until: set[str], timeout: float | None = None) -> str: ...

    def kill(self, name: str, discard: bool = False) -> Any: ...


#: Opens an agent runner for the calling thread.
RunnerFactory = Callable[[], AgentRunner]


def runners_like(deck: Any) -> RunnerFactory:
    """A factory opening more of *deck* (its class's ``open`` on its repository), one per thread."""
    deck_cls, root = type(deck), Path(deck.repo.root)

    def open_runner() -> AgentRunner:
        return deck_cls.open(root)

    return open_runner


__all__ = ["AgentRunner", "RunnerFactory", "runners_like"]
