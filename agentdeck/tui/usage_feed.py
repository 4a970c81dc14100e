"""Token usage for the deck's header and list, read in a worker while it can change.

Uses :func:`agentdeck.usage.usage_for`. The engine keeps a cache of what it already parsed, so a pass re-reads only
transcripts that grew.  Tokens grow only while an agent works: a pass every *interval* seconds then; for the five
minutes after the last turn ended (the "last 5 minutes" rate still moves) every *settling* seconds; after that
none until :meth:`UsageFeed.poke` (the deck pokes it when the agents' rows change).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.message import Message


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
    from agentdeck.usage import usage_for  # in the feed's thread: not needed for the first paint

    tokens: dict[str, int | None] = {}
    tpm: float | None = None
    cost: float | None = None
    for label, sub in deck.by_repo():
        report = usage_for(sub)
        for agent in report.get("agents", []):
            tokens[deck.key(label, agent["name"])] = agent.get("total_tokens")
        total = report.get("total", {})
        rates = total.get("tokens_per_minute") or {}
        tpm = _add(tpm, rates.get("last_5m"))
        cost = _add(cost, total.get("cost_usd"))
    return UsageSummary(tokens, tpm, cost)


#: The widest window a shown rate covers: after it, numbers of agents that stopped no longer move.
RATE_WINDOW_S = 300.0


def next_pass_in(deck: Any, interval: float, settling: float, now: float | None = None) -> float | None:
    """Seconds until the next pass: *interval* while an agent works (or starts), *settling* within
    :data:`RATE_WINDOW_S` of the last status change, None (until poked) after that."""
    now = time.time() if now is None else now
    last = 0.0
    for _, one in deck.by_repo():
        for rec in one.records():
            if rec.status in ("working", "starting"):
                return interval
            last = max(last, float(rec.status_at or 0.0))
    return settling if now - last < RATE_WINDOW_S else None


class UsageFeed:
    """Posts :class:`UsageUpdated` when the numbers changed; a pass every *interval* seconds while an
    agent works (see the module docstring for the rest)."""

    def __init__(self, pool: Any, interval: float = 5.0, reader: Callable[[Any], UsageSummary] = read_usage,
                 settling: float = 30.0):
        self.pool = pool
        self.interval = interval
        self.settling = settling
        self.reader = reader
        self.wake = threading.Event()
        self._last: UsageSummary | None = None
        self.error = ""

    def poke(self) -> None:
        self.wake.set()

    def run(self, post: Callable[[Any], Any], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                summary = self.reader(self.pool.get())
                self.error = ""
                if summary != self._last:
                    self._last = summary
                    post(UsageUpdated(summary))
            except Exception as exc:  # usage is a nicety: never a toast storm, never a dead deck
                self.error = f"{type(exc).__name__}: {exc}"
            if stop.is_set():
                return
            try:
                wait = next_pass_in(self.pool.get(), self.interval, max(self.interval, self.settling))
            except Exception:
                wait = self.interval
            self.wake.wait(wait)
            self.wake.clear()
