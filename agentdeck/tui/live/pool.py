"""The feeds' shared parts: one Deck per thread (:class:`DeckPool`) and the base of a feed thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from agentdeck.errors import AgentdeckError
from agentdeck.tui.messages import FeedProblem

Post = Callable[[Any], Any]


class DeckPool:
    """One Deck per thread, all for the same repository, config and tmux server."""

    def __init__(self, deck: Any, factory: Callable[[], Any] | None = None):
        self.main = deck
        self._main_thread = threading.get_ident()
        self._factory = factory or deck.reopen  # a MultiDeck reopens every repository's Deck
        self._local = threading.local()

    def get(self) -> Any:
        if threading.get_ident() == self._main_thread:
            return self.main
        deck = getattr(self._local, "deck", None)
        if deck is None:
            deck = self._factory()
            self._local.deck = deck
        return deck


class Feed:
    """A feed thread: sleeps until poked (or its own timeout), posts messages, never dies of a failure."""

    interval = 0.25

    def __init__(self, pool: DeckPool):
        self.pool = pool
        self.wake = threading.Event()
        self._pipe: tuple[int, int] | None = None  # feeds that sleep in select() are poked through it
        self._last_problem = 0.0

    def poke(self) -> None:
        """Look now (the selection moved, an action was taken, the deck is closing)."""
        self.wake.set()
        if self._pipe is not None:
            try:
                os.write(self._pipe[1], b"x")
            except OSError:  # full (already poked) or closed
                pass

    def _open_pipe(self) -> int:
        if self._pipe is None:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._pipe = (r, w)
        return self._pipe[0]

    def _drain_pipe(self) -> None:
        if self._pipe is not None:
            try:
                while os.read(self._pipe[0], 4096):
                    pass
            except OSError:
                pass
        self.wake.clear()

    def _close_pipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            for fd in pipe:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _sleep(self, stop: threading.Event, seconds: float | None) -> None:
        if stop.is_set():
            return
        self.wake.wait(seconds)
        self.wake.clear()

    def _problem(self, post: Post, name: str, exc: BaseException) -> None:
        """Report a failure at most every 10 s (a feed never dies of one)."""
        now = time.monotonic()
        if now - self._last_problem >= 10.0:
            self._last_problem = now
            post(FeedProblem(name, f"{type(exc).__name__}: {exc}" if not _is_ours(exc) else str(exc)))


def _is_ours(exc: BaseException) -> bool:
    return isinstance(exc, AgentdeckError)
