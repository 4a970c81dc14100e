"""Token usage per agent, read from the agents' own records — never estimated from text.

What each CLI writes, and how it is read, lives in its folder: a
:class:`~agentdeck.agents.base.UsageSource` (``agentdeck/agents/claude/usage.py``,
``agentdeck/agents/codex/usage.py``) given by the adapter's ``usage_source()``.  This module
is what they share: the cache, the reader they ask for files and conversation ids, and the
report.  The numbers (tokens, tallies, list prices) are :mod:`agentdeck.agents.tokens`.

* **Hook payloads**: none of those agentdeck receives carries token counts (Claude Code's
  hooks give ``session_id`` and ``transcript_path``; Codex's ``notify`` gives
  ``thread-id``).  The conversation ids they report (recorded as ``hook`` events) tell
  which transcripts belong to an agent: a ``/clear`` or a new Codex thread keeps counting.

An agent whose records cannot be found (no conversation yet, a kind of agent without a
usage source, files removed) reports ``null`` numbers with a ``reason``.

Cost is an **estimate**: tokens times the list prices in :data:`PRICES` (US dollars per
million tokens, per model family, as published when this was written; they change).
Models not in the table count their tokens but no cost and are listed in
``unpriced_models``; ``cost_usd`` is ``null`` when no token had a price.

Tokens per minute count every token (input + output + cache read + cache write) over the
last 5 minutes and since the agent was created (each window at least one minute long).

Cheap to call often: a cache (``<state_dir>/usage/cache.json``, plus the same in memory)
keeps, per file, the bytes already read (offset, size, mtime, inode) and what they held,
so a repeated call reads only what was appended since.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from agentdeck.agents import ADAPTERS, adapter_class, get_adapter, usage_source
from agentdeck.agents.base import Adapter, RecordParser
from agentdeck.agents.tokens import (  # noqa: F401  (re-exported: the report's numbers)
    MIN_SPAN_S,
    PRICES,
    WINDOW_S,
    AgentUsage,
    Price,
    Tally,
    Tokens,
    numbers,
    parse_ts,
    price_for,
)
from agentdeck.config import AgentDef

CACHE_VERSION = 1
_LOCK = threading.Lock()  # the deck's and the MCP server's threads share the in-memory cache
SAVE_EVERY_S = 5.0  # a process writes the cache file at most this often (memory holds the rest)


def parser_for(kind: str) -> RecordParser:
    """The record parser of an agent kind's usage source (KeyError: the kind has none)."""
    source = usage_source(kind)
    if source is None:
        raise KeyError(kind)
    return source.parser


# ---------------------------------------------------------------------- the cache
class UsageCache:
    """Per-file read offsets and parsed state, on disk and in memory.

    Several processes (CLI, deck, MCP server) may use it at once: each writes the whole
    file atomically; a lost update only means some bytes are read again later.
    """

    _memory: ClassVar[dict[str, tuple[float | None, dict[str, Any]]]] = {}  # path -> (cache file mtime, data)
    _saved_at: ClassVar[dict[str, float]] = {}  # path -> when this process last wrote it (monotonic)

    def __init__(self, path: Path):
        self.path = Path(path)
        self.dirty = False
        self.data = self._load()

    def _load(self) -> dict[str, Any]:
        key = str(self.path)
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = None
        held = self._memory.get(key)
        if held is not None and held[0] == mtime:  # nobody wrote the file since: memory is as new
            return held[1]
        data: dict[str, Any] = {}
        if mtime is not None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            data = {}
        data.setdefault("version", CACHE_VERSION)
        data.setdefault("files", {})
        data.setdefault("agents", {})
        data.setdefault("paths", {})
        return data

    def save(self, every_s: float = 0.0) -> None:
        """Write the cache (atomically); with *every_s*, at most that often from this process —
        the memory copy stays current in between (a deck refreshing every second)."""
        if not self.dirty:
            return
        key = str(self.path)
        if every_s and time.monotonic() - self._saved_at.get(key, float("-inf")) < every_s:
            try:
                mtime: float | None = self.path.stat().st_mtime
            except OSError:
                mtime = None
            self._memory[key] = (mtime, self.data)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".cache.", suffix=".tmp", dir=str(self.path.parent))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.data, fh, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        try:
            self._memory[key] = (self.path.stat().st_mtime, self.data)
        except OSError:
            pass
        self._saved_at[key] = time.monotonic()
        self.dirty = False

    # ------------------------------------------------------------------ files
    def read(self, path: Path, kind: str) -> dict[str, Any] | None:
        """The parsed state of *path* (a transcript of *kind*), reading only new bytes."""
        parser = parser_for(kind)
        key = str(path)
        try:
            st = os.stat(path)
        except OSError:
            if self.data["files"].pop(key, None) is not None:
                self.dirty = True
            return None
        entry = self.data["files"].get(key)
        ino = [st.st_dev, st.st_ino]
        if (entry is None or entry.get("kind") != kind or entry.get("ino") != ino
                or st.st_size < entry.get("offset", 0)):
            entry = {"kind": kind, "ino": ino, "offset": 0, "size": -1, "mtime": 0.0, "state": parser.empty()}
        state: dict[str, Any] = entry["state"]
        if entry["size"] == st.st_size and entry["mtime"] == st.st_mtime:
            return state
        offset = entry["offset"]
        if st.st_size > offset:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read(st.st_size - offset)
            end = chunk.rfind(b"\n")
            if end >= 0:  # only whole lines: a line being written is read next time
                pos = 0
                for line in chunk[: end + 1].split(b"\n")[:-1]:
                    here = offset + pos
                    pos += len(line) + 1
                    if not any(needle in line for needle in parser.needles):
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict):
                        parser.feed(state, record, here)
                offset += end + 1
        entry.update(offset=offset, size=st.st_size, mtime=st.st_mtime)
        self.data["files"][key] = entry
        self.dirty = True
        return state

    def forget_missing(self, files: Iterable[str], agents: Iterable[str]) -> None:
        """Drop entries of files and agents this (full) pass did not use: killed agents, old sessions."""
        for section, keep in (("files", set(files)), ("agents", set(agents))):
            for key in [k for k in self.data[section] if k not in keep]:
                del self.data[section][key]
                self.dirty = True

    # ------------------------------------------------------------------ lookups
    def lookup(self, key: str) -> str | None:
        found = self.data["paths"].get(key)
        return found if found and os.path.exists(found) else None

    def remember(self, key: str, path: str) -> None:
        if self.data["paths"].get(key) != path:
            self.data["paths"][key] = path
            self.dirty = True



# ---------------------------------------------------------------------- per agent

class UsageReader:
    """Tallies each agent's records through its kind's usage source and one :class:`UsageCache`
    (the :class:`~agentdeck.agents.base.UsageRecords` the sources use)."""

    def __init__(self, deck: Any, cache: UsageCache):
        self.deck = deck
        self.cache = cache
        self.touched: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def _adapter(self, rec: Any) -> Adapter:
        try:
            return get_adapter(rec.definition, self.deck.config)
        except Exception:  # the definition left the config: the kind's defaults
            return adapter_class(rec.kind)(rec.definition, AgentDef(kind=rec.kind), self.deck.config)

    def read(self, path: Path | str, kind: str) -> dict[str, Any] | None:
        """The parsed state of a record file of *kind* (None: gone), noted as used by this pass."""
        self.touched.add(str(path))
        return self.cache.read(Path(path), kind)

    def lookup(self, key: str) -> str | None:
        return self.cache.lookup(key)

    def remember(self, key: str, path: str) -> None:
        self.cache.remember(key, path)

    def hook_session_ids(self, rec: Any) -> list[str]:
        """Conversation ids the agent's hooks reported, oldest first (cached incrementally)."""
        key = f"{rec.name}\x00{rec.created_at}"
        agents = self.cache.data["agents"]
        entry = agents.get(key) or {"event_id": 0, "ids": []}
        created = parse_ts(rec.created_at) - 5 if rec.created_at else 0.0
        new = self.deck.store.events(rec.name, since_id=entry["event_id"], types=("hook",))
        ids = list(entry["ids"])
        for event in new:
            entry["event_id"] = max(entry["event_id"], event["id"])
            if event["ts"] < created:
                continue  # an earlier agent of the same name
            detail = event.get("detail") or {}
            sid = detail.get("session_id") or detail.get("thread_id")
            if isinstance(sid, str) and sid and sid not in ids:
                ids.append(sid)
        entry["ids"] = ids
        if new or key not in agents:
            agents[key] = entry
            self.cache.dirty = True
        return ids


    # ------------------------------------------------------------------ entry
    def agent(self, rec: Any) -> AgentUsage:
        start = parse_ts(rec.created_at) or None
        source = usage_source(rec.kind)
        if source is None:
            usage = AgentUsage(rec.name, rec.kind, reason=(
                f"agentdeck cannot read token usage of {rec.kind} agents ({readable_clis()} only)"))
        else:
            try:
                usage = source.usage(rec, self._adapter(rec), self)
            except OSError as exc:
                usage = AgentUsage(rec.name, rec.kind, reason=f"cannot read the agent's records: {exc}")
        usage.start = start
        return usage


def readable_clis() -> str:
    """The CLIs whose usage agentdeck reads, for messages ("Claude Code and Codex")."""
    names = [source.cli for source in (usage_source(kind) for kind in ADAPTERS) if source is not None]
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


# ---------------------------------------------------------------------- the API
def cache_path(deck: Any) -> Path:
    return Path(deck.repo.state_dir) / "usage" / "cache.json"


def usage_for(deck: Any, names: Iterable[str] | None = None, now: float | None = None) -> dict[str, Any]:
    """Token usage of the deck's agents (all, or *names*) and their total.

    ``{"agents": [{"name", "kind", "model", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_creation_tokens", "total_tokens", "cost_usd",
    "unpriced_models", "tokens_per_minute": {"last_5m", "since_start"}, "source", "files",
    "reason"}, ...], "total": {... the same numbers summed, "agents", "agents_counted"}}``.
    An agent whose records were not found has ``null`` numbers and a ``reason``.
    Unknown *names* raise UsageError (exit 2).
    """
    now = time.time() if now is None else now
    records = [deck.get(n) for n in names] if names is not None else deck.store.list_agents()
    with _LOCK:
        cache = UsageCache(cache_path(deck))
        reader = UsageReader(deck, cache)
        results = [reader.agent(rec) for rec in records]
        if names is None:  # a full pass: forget what no agent uses any more
            cache.forget_missing(reader.touched, {f"{r.name}\x00{r.created_at}" for r in records})
        try:
            cache.save(every_s=SAVE_EVERY_S)
        except OSError:
            pass  # a read-only state dir costs speed, not answers
        return _report(results, now)


def _report(results: list[AgentUsage], now: float) -> dict[str, Any]:
    total, starts = Tally(), []
    counted = [(u, u.tally) for u in results if u.tally is not None]
    for usage, tally in counted:
        total.merge(tally)
        if usage.start:
            starts.append(usage.start)
    summary: dict[str, Any] = {"agents": len(results), "agents_counted": len(counted)}
    if counted:
        summary.update(numbers(total, min(starts) if starts else None, now))
        # The last 5 minutes: the agents' rates add up (each over its own window, as its row shows);
        # since start: all tokens over the time since the first of them started.
        summary["tokens_per_minute"]["last_5m"] = round(
            sum(tally.rates(u.start, now)["last_5m"] for u, tally in counted), 1)
    else:
        summary.update(input_tokens=None, output_tokens=None, cache_read_tokens=None,
                       cache_creation_tokens=None, total_tokens=None, cost_usd=None, unpriced_models=[],
                       tokens_per_minute=None)
    summary.pop("model", None)
    return {"agents": [u.to_json(now) for u in results], "total": summary,
            "generated_at": datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
