"""Token usage for the deck's header and list, read in a worker every few seconds.

Uses :func:`agentdeck.usage.usage_for`. The engine keeps a cache of what it already parsed, so a tick re-reads only
transcripts that grew.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from textual.message import Message

from agentdeck.tui.multideck import plain_decks


@dataclass(frozen=True)
class UsageSummary:
    tokens: dict[str, int | None]  # agent key -> total tokens (None: records not found)
    tokens_per_minute: float | None  # all agents, last 5 minutes
    cost_usd: float | None


class UsageUpdated(Message):
    def __init__(self, summary: UsageSummary) -> None:
        super().__init__()
        self.summary = summary

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, UsageUpdated)


def _add(a: float | None, b: float | None) -> float | None:
    if b is None:
        return a
    return b if a is None else a + b


def read_usage(deck: Any) -> UsageSummary:
    """One pass over every repository of *deck* (a Deck or a MultiDeck)."""
    from agentdeck.usage import usage_for

    tokens: dict[str, int | None] = {}
    tpm: float | None = None
    cost: float | None = None
    for label, sub in plain_decks(deck):
        report = usage_for(sub)
        for agent in report.get("agents", []):
            tokens[f"{label}/{agent['name']}" if label else agent["name"]] = agent.get("total_tokens")
        total = report.get("total", {})
        rates = total.get("tokens_per_minute") or {}
        tpm = _add(tpm, rates.get("last_5m"))
        cost = _add(cost, total.get("cost_usd"))
    return UsageSummary(tokens, tpm, cost)


class UsageFeed:
    """Posts :class:`UsageUpdated` when the numbers changed; one pass every *interval* seconds."""

    def __init__(self, pool: Any, interval: float = 5.0, reader: Callable[[Any], UsageSummary] = read_usage):
        self.pool = pool
        self.interval = interval
        self.reader = reader
        self.wake = threading.Event()
        self.passes = 0
        self._last: UsageSummary | None = None
        self.error = ""

    def poke(self) -> None:
        self.wake.set()

    def run(self, post: Callable[[Any], Any], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                summary = self.reader(self.pool.get())
                self.passes += 1
                self.error = ""
                if summary != self._last:
                    self._last = summary
                    post(UsageUpdated(summary))
            except Exception as exc:  # usage is a nicety: never a toast storm, never a dead deck
                self.error = f"{type(exc).__name__}: {exc}"
            if stop.is_set():
                return
            self.wake.wait(self.interval)
            self.wake.clear()
