"""What the deck's screens and widgets use of the App (:class:`agentdeck.tui.app.DeckApp`), typed.

Textual types ``widget.app`` as a plain ``App``; :func:`deck_app` gives the deck's own
view of it without a widget importing ``app.py`` (which imports the widgets).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from textual.dom import DOMNode
from textual.worker import Worker

from agentdeck.deck.protocol import DeckLike
from agentdeck.tui.attach import Attacher
from agentdeck.tui.live import DeckPool


class DeckAppView(Protocol):
    deck: DeckLike  # the Deck, or a MultiDeck over several repositories
    pool: DeckPool  # one Deck per thread
    attacher: Attacher
    clock: Callable[[], float]
    poll_interval: float
    preview_interval: float
    size_fn: Callable[[Any, str], tuple[int, int]]
    watch_worktrees: bool
    usage_interval: float

    def agent_started_waiting(self, names: list[str]) -> None: ...
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None: ...


def deck_app(node: DOMNode) -> DeckAppView:
    """*node*'s App as the deck's App."""
    return cast(DeckAppView, node.app)
