"""What the deck's screens and widgets use of the App (:class:`agentdeck.tui.app.DeckApp`), typed.

Textual types ``widget.app`` as a plain ``App``; :func:`deck_app` gives the deck's own
view of it without a widget importing ``app.py`` (which imports the widgets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from textual.dom import DOMNode
from textual.worker import Worker

from agentdeck.deck.protocol import DeckLike
from agentdeck.tui.attach import Attacher
from agentdeck.tui.live import DeckPool


@dataclass(frozen=True)
class FeedSettings:
    """How the main screen's live feeds run (the App's keyword arguments of the same names)."""

    poll_interval: float  # the status feed's polling where inotify is missing (seconds)
    preview_interval: float  # at most one preview capture per this many seconds while a pane draws
    size_fn: Callable[[Any, str], tuple[int, int]]  # (deck, agent) -> the agent's (added, removed) lines
    watch_worktrees: bool  # False: diff sizes only at start, on selection and on actions
    usage_interval: float  # seconds between token-usage passes (agentdeck.usage)


class DeckAppView(Protocol):
    deck: DeckLike  # the Deck, or a MultiDeck over several repositories
    pool: DeckPool  # one Deck per thread
    attacher: Attacher
    clock: Callable[[], float]
    feeds: FeedSettings

    def agent_started_waiting(self, names: list[str]) -> None: ...
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None: ...


def deck_app(node: DOMNode) -> DeckAppView:
    """*node*'s App as the deck's App."""
    return cast(DeckAppView, node.app)
