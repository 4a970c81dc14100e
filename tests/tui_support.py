"""Helpers for the deck's tests: running Pilot scenarios, polling, a recording attacher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentdeck.deck import Deck


def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 120) -> Any:
    """Run an async Pilot scenario from a plain (sync) test."""
    return asyncio.run(asyncio.wait_for(scenario(), timeout))


async def until(pilot: Any, fn: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll *fn* while the app keeps running; return its truthy value or fail after *timeout*."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or fn!r}; last value: {last!r}")
        await pilot.pause(0.05)


class RecordingAttacher:
    """Records the argv the deck would attach with (headless apps cannot suspend)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, app: Any, argv: list[str]) -> None:
        self.calls.append(list(argv))


def open_deck(repo: Path) -> Deck:
    return Deck.open(repo)


def row(app: Any, name: str) -> Any:
    return app.main_screen.by_name.get(name)


def status(app: Any, name: str) -> str | None:
    r = row(app, name)
    return r.status if r else None


def shown_cells(app: Any, name: str) -> list[str]:
    """The painted cells of *name*'s row, as plain text."""
    table = app.main_screen.query_one("#agents")
    return [c.plain for c in table.get_row(name)]


def notices(app: Any) -> str:
    return "\n".join(m for _sev, m in app.notices)


def text_screen_shown(app: Any) -> bool:
    """A TextScreen is up and composed (its body can be read, its buttons clicked)."""
    return type(app.screen).__name__ == "TextScreen" and bool(app.screen.query("#text-body"))


def kill_screen_shown(app: Any) -> bool:
    """The kill dialog is up and composed (pushed is not enough: its text and buttons come a
    frame later on a loaded machine)."""
    return type(app.screen).__name__ == "KillScreen" and bool(app.screen.query("#kill-text"))


def active_keys(app: Any) -> set[str]:
    """Binding ids whose key applies now (what the footer shows)."""
    return {b.binding.id or b.binding.action for b in app.screen.active_bindings.values() if b.enabled}


def plain(widget: Any, width: int = 160) -> str:
    """What a Static shows, as plain text (its content rendered by rich)."""
    import os

    from rich.console import Console

    content = widget.content
    if isinstance(content, str):
        return content
    console = Console(width=width, record=True, file=open(os.devnull, "w"), color_system=None)
    console.print(content)
    return console.export_text()


# ---------------------------------------------------------------------- a feed thread's ticks


class TickCounter:
    """Counts the rounds of a feed thread (each round ends waiting on the feed's ``wake`` event).

    A test that must show a hidden tab does no work watches the thread go round a few times with
    nothing done, instead of sleeping and hoping the thread ran meanwhile.
    """

    def __init__(self, feed: Any) -> None:
        import threading

        counter = self
        self.ticks = 0

        class CountingEvent(threading.Event):
            def wait(self, timeout: float | None = None) -> bool:
                counter.ticks += 1
                return super().wait(timeout)

        old, feed.wake = feed.wake, CountingEvent()
        old.set()  # a round waiting on the old event goes on at once

    async def rounds(self, pilot: Any, n: int, timeout: float = 20.0, what: str = "") -> None:
        """Return once the thread has begun *n* more waits (so every round in progress has ended)."""
        start = self.ticks
        await until(pilot, lambda: self.ticks >= start + n, timeout=timeout, what=what or f"{n} feed rounds")
