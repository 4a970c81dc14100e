"""The numbers every token-usage source fills: tokens per answer, tallies, list prices.

Shared by the CLIs' usage readers (``agentdeck/agents/<kind>/usage.py``) and the report
(:mod:`agentdeck.usage`).  Cost is an **estimate**: tokens times the list prices in
:data:`PRICES` (US dollars per million tokens, per model family, as published when this was
written; they change).  Models not in the table count their tokens but no cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

WINDOW_S = 300.0  # "tokens per minute over the last 5 minutes"
MIN_SPAN_S = 60.0  # a rate is never taken over less than a minute

# ---------------------------------------------------------------------- prices (estimates)
@dataclass(frozen=True)
class Price:
    """US dollars per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float  # Anthropic 5-minute cache writes; OpenAI: cache writes bill as input
    cache_write_1h: float | None = None  # Anthropic 1-hour cache writes


#: (pattern searched in the lower-cased model name, price); the first match wins.
#: List prices per model family when this was written — estimates, not invoices.
PRICES: tuple[tuple[str, Price], ...] = (
    (r"opus-(?:4-[5-9]|[5-9])(?!\d)", Price(5.0, 25.0, 0.50, 6.25, 10.0)),
    (r"opus", Price(15.0, 75.0, 1.50, 18.75, 30.0)),
    (r"sonnet", Price(3.0, 15.0, 0.30, 3.75, 6.0)),
    (r"haiku-(?:4|[5-9])|haiku-4", Price(1.0, 5.0, 0.10, 1.25, 2.0)),
    (r"3-5-haiku|haiku-3-5", Price(0.80, 4.0, 0.08, 1.0, 1.6)),
    (r"haiku", Price(0.25, 1.25, 0.03, 0.30, 0.50)),
    (r"gpt-5(?:\.\d+)?-nano", Price(0.05, 0.40, 0.005, 0.05)),
    (r"gpt-5(?:\.\d+)?-mini|codex-mini", Price(0.25, 2.0, 0.025, 0.25)),
    (r"gpt-5", Price(1.25, 10.0, 0.125, 1.25)),
    (r"o4-mini", Price(1.10, 4.40, 0.275, 1.10)),
    (r"(?:^|[^a-z0-9])o3(?!-mini)", Price(2.0, 8.0, 0.50, 2.0)),
    (r"gpt-4\.1", Price(2.0, 8.0, 0.50, 2.0)),
    (r"gpt-4o", Price(2.50, 10.0, 1.25, 2.50)),
)
_PRICE_RES = tuple((re.compile(pattern), price) for pattern, price in PRICES)


def price_for(model: str) -> Price | None:
    """The price of *model*'s family, or None when the table does not know it."""
    name = (model or "").lower()
    for pattern, price in _PRICE_RES:
        if pattern.search(name):
            return price
    return None


# ---------------------------------------------------------------------- one answer's tokens
@dataclass
class Tokens:
    input: int = 0  # uncached input
    output: int = 0
    cache_read: int = 0
    cache_creation: int = 0
    cache_creation_1h: int = 0  # part of cache_creation written to the 1-hour cache

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_creation

    def add(self, other: Tokens) -> None:
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.cache_creation += other.cache_creation
        self.cache_creation_1h += other.cache_creation_1h

    def cost(self, price: Price) -> float:
        one_h = min(self.cache_creation_1h, self.cache_creation)
        write_1h = price.cache_write_1h if price.cache_write_1h is not None else price.cache_write
        return (self.input * price.input + self.output * price.output + self.cache_read * price.cache_read
                + (self.cache_creation - one_h) * price.cache_write + one_h * write_1h) / 1_000_000


@dataclass
class Tally:
    """What one agent (or all) used: tokens per model and (time, tokens) points for rates."""

    by_model: dict[str, Tokens] = field(default_factory=dict)
    points: list[tuple[float, int]] = field(default_factory=list)
    last_model: str = ""
    last_ts: float = 0.0

    def add(self, ts: float, model: str, tokens: Tokens) -> None:
        self.by_model.setdefault(model, Tokens()).add(tokens)
        self.points.append((ts, tokens.total))
        if ts >= self.last_ts:
            self.last_ts, self.last_model = ts, model

    def merge(self, other: Tally) -> None:
        for model, tokens in other.by_model.items():
            self.by_model.setdefault(model, Tokens()).add(tokens)
        self.points.extend(other.points)
        if other.last_ts >= self.last_ts and other.last_model:
            self.last_ts, self.last_model = other.last_ts, other.last_model

    def tokens(self) -> Tokens:
        out = Tokens()
        for tokens in self.by_model.values():
            out.add(tokens)
        return out

    def cost(self) -> tuple[float | None, list[str]]:
        """(estimated dollars or None when nothing had a price, models without a price)."""
        cost, priced, unpriced = 0.0, False, []
        for model, tokens in sorted(self.by_model.items()):
            price = price_for(model)
            if price is None:
                if tokens.total:
                    unpriced.append(model or "(unknown)")
                continue
            priced = True
            cost += tokens.cost(price)
        if not priced and unpriced:
            return None, unpriced
        return round(cost, 6), unpriced

    def rates(self, start: float | None, now: float) -> dict[str, float]:
        """Tokens per minute over the last 5 minutes and since *start*."""
        total = sum(n for _, n in self.points)
        first = start if start is not None else min((ts for ts, _ in self.points), default=now)
        age = max(now - first, MIN_SPAN_S)
        window = min(WINDOW_S, age)
        recent = sum(n for ts, n in self.points if ts > now - window)
        return {"last_5m": round(recent / (window / 60.0), 1), "since_start": round(total / (age / 60.0), 1)}


def parse_ts(value: Any) -> float:
    """Epoch seconds of an ISO 8601 time (``...Z``, any fraction), 0.0 when unreadable."""
    if not isinstance(value, str) or not value:
        return 0.0
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if m:  # Python 3.10's fromisoformat takes only 3 or 6 fraction digits
        frac = (m.group(2) or "")[:7].ljust(7, "0") if m.group(2) else ""
        text = m.group(1) + frac + m.group(3)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def count(value: Any) -> int:
    """A token count from a record: a positive number, else 0."""
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0



# ---------------------------------------------------------------------- one agent
@dataclass
class AgentUsage:
    """One agent's usage: its tally, or ``tally=None`` and a ``reason`` (no records found)."""

    name: str
    kind: str
    tally: Tally | None = None
    source: str | None = None
    files: list[str] = field(default_factory=list)
    reason: str | None = None
    start: float | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.tally is None:
            out.update(model=None, input_tokens=None, output_tokens=None, cache_read_tokens=None,
                       cache_creation_tokens=None, total_tokens=None, cost_usd=None, unpriced_models=[],
                       tokens_per_minute=None, source=self.source, files=self.files, reason=self.reason)
            return out
        out.update(numbers(self.tally, self.start, now))
        out.update(source=self.source, files=self.files, reason=None)
        return out


def numbers(tally: Tally, start: float | None, now: float) -> dict[str, Any]:
    """The report's numbers for a tally (``model``, token counts, ``cost_usd``, rates)."""
    tokens = tally.tokens()
    cost, unpriced = tally.cost()
    return {
        "model": tally.last_model or None,
        "input_tokens": tokens.input,
        "output_tokens": tokens.output,
        "cache_read_tokens": tokens.cache_read,
        "cache_creation_tokens": tokens.cache_creation,
        "total_tokens": tokens.total,
        "cost_usd": cost,
        "unpriced_models": unpriced,
        "tokens_per_minute": tally.rates(start, now),
    }

