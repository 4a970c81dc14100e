"""Token usage per agent, read from the agents' own records — never estimated from text.

Sources (facts from Claude Code 2.1.197 and Codex 0.169.0, checked against files the
real CLIs wrote; tests/fixtures/usage/ holds copies):

* **Claude Code** writes one transcript per conversation,
  ``$CLAUDE_CONFIG_DIR or ~/.claude`` ``/projects/<folder>/<session-id>.jsonl`` (sub-agents:
  ``<folder>/<session-id>/subagents/**/*.jsonl``).  Each model answer is an ``assistant``
  entry whose ``message.usage`` holds ``input_tokens``, ``output_tokens``,
  ``cache_read_input_tokens`` and ``cache_creation_input_tokens`` (split into
  ``cache_creation.ephemeral_5m/1h_input_tokens``).  One answer can be written as several
  entries (one per content block) that repeat the same ``message.id``: an answer counts
  once (the largest value of each field).  ``--fork-session`` copies the source's entries,
  ids included, into the fork's transcript: a forked agent does not count the entries it
  inherited.  Side requests (session titles) are not in the transcript and not counted.
* **Codex** writes ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl``.  Each
  answer adds an ``event_msg`` of type ``token_count`` whose ``info.total_token_usage`` is
  *cumulative* for the thread (``last_token_usage`` is the answer's own).  ``codex resume``
  appends to the same file and the totals go on; ``codex fork`` starts a new file whose
  ``session_meta`` has ``forked_from_id`` / ``history_base`` and whose totals *start from
  the source's totals at the fork*: that baseline is subtracted.  A total that goes down
  (a reset) starts a new run from that event's ``last_token_usage``.  Codex counts
  ``input_tokens`` including cached (and cache-write) tokens, the OpenAI convention; here
  ``input_tokens`` is the uncached part, as for Claude.  ``output_tokens`` includes
  reasoning tokens.  The model is the latest ``turn_context.model``.
* **Hook payloads**: none of those agentdeck receives carries token counts (Claude Code's
  hooks give ``session_id`` and ``transcript_path``; Codex's ``notify`` gives
  ``thread-id``).  The conversation ids they report (recorded as ``hook`` events) tell
  which transcripts belong to an agent: a ``/clear`` or a new Codex thread keeps counting.

An agent whose records cannot be found (no conversation yet, another kind of agent, files
removed) reports ``null`` numbers with a ``reason``.

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
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

CACHE_VERSION = 1
_LOCK = threading.Lock()  # the deck's and the MCP server's threads share the in-memory cache
WINDOW_S = 300.0  # "tokens per minute over the last 5 minutes"
MIN_SPAN_S = 60.0  # a rate is never taken over less than a minute
SAVE_EVERY_S = 5.0  # a process writes the cache file at most this often (memory holds the rest)


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

    def add(self, other: "Tokens") -> None:
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

    def merge(self, other: "Tally") -> None:
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


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0


# ---------------------------------------------------------------------- file parsers
class ClaudeTranscript:
    """Parsed state of one Claude Code transcript: answer id -> [ts, model, in, out, cr, cc, cc1h]."""

    kind = "claude"
    #: Lines without these bytes hold no usage (cheap filter before JSON parsing).
    needles = (b'"usage"',)

    @staticmethod
    def empty() -> dict[str, Any]:
        return {"msgs": {}}

    @staticmethod
    def feed(state: dict[str, Any], record: dict[str, Any], offset: int) -> None:
        if record.get("type") != "assistant":
            return
        message = record.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("usage"), dict):
            return
        model = str(message.get("model") or "")
        if model == "<synthetic>":  # Claude Code's own stand-in answers (errors): no model call
            return
        usage = message["usage"]
        split = usage.get("cache_creation") if isinstance(usage.get("cache_creation"), dict) else {}
        row = [parse_ts(record.get("timestamp")), model, _int(usage.get("input_tokens")),
               _int(usage.get("output_tokens")), _int(usage.get("cache_read_input_tokens")),
               _int(usage.get("cache_creation_input_tokens")), _int(split.get("ephemeral_1h_input_tokens"))]
        key = str(message.get("id") or record.get("requestId") or record.get("uuid") or f"@{offset}")
        msgs = state["msgs"]
        old = msgs.get(key)
        if old is None:
            msgs[key] = row
        else:  # the same answer written again (one entry per content block): count it once
            msgs[key] = [old[0] or row[0], row[1] or old[1], *(max(a, b) for a, b in zip(old[2:], row[2:]))]

    @staticmethod
    def ids(state: dict[str, Any]) -> set[str]:
        return set(state["msgs"])

    @staticmethod
    def tally(state: dict[str, Any], exclude: set[str] | None = None) -> Tally:
        tally = Tally()
        for key, (ts, model, i, o, cr, cc, cc1h) in state["msgs"].items():
            if exclude and key in exclude:
                continue
            tally.add(ts, model, Tokens(i, o, cr, cc, cc1h))
        return tally


class CodexSession:
    """Parsed state of one Codex session file: its meta and every token_count event."""

    kind = "codex"
    needles = (b'"token_count"', b'"session_meta"', b'"turn_context"')

    @staticmethod
    def empty() -> dict[str, Any]:
        return {"meta": {}, "model": "", "events": []}

    @staticmethod
    def feed(state: dict[str, Any], record: dict[str, Any], offset: int) -> None:
        kind = record.get("type")
        payload = record.get("payload")
        if not isinstance(payload, dict):
            return
        if kind == "session_meta" and not state["meta"]:
            base = payload.get("history_base") if isinstance(payload.get("history_base"), dict) else {}
            state["meta"] = {
                "id": payload.get("id") or payload.get("session_id") or "",
                "cwd": payload.get("cwd") or "",
                "forked_from_id": payload.get("forked_from_id") or base.get("thread_id") or "",
                "cut_ordinal": payload.get("forked_from_ordinal_exclusive", base.get("end_ordinal_exclusive")),
                "cut_offset": base.get("end_byte_offset"),
            }
        elif kind == "turn_context":
            if payload.get("model"):
                state["model"] = str(payload["model"])
        elif kind == "event_msg" and payload.get("type") == "token_count":
            info = payload.get("info")
            if not isinstance(info, dict) or not isinstance(info.get("total_token_usage"), dict):
                return  # rate-limit-only updates carry no usage
            total, last = info["total_token_usage"], info.get("last_token_usage") or {}
            ordinal = record.get("ordinal")
            state["events"].append([
                parse_ts(record.get("timestamp")), state["model"],
                ordinal if isinstance(ordinal, int) else None, offset,
                *(_int(total.get(k)) for k in _CODEX_FIELDS), *(_int(last.get(k)) for k in _CODEX_FIELDS),
            ])

    @staticmethod
    def total_before(state: dict[str, Any], ordinal: Any, offset: Any) -> list[int] | None:
        """The cumulative totals of the last event before a fork's cut (None: no event)."""
        found = None
        for event in state["events"]:
            if isinstance(ordinal, int) and event[2] is not None:
                inside = event[2] < ordinal
            elif isinstance(offset, int):
                inside = event[3] < offset
            else:
                return None
            if inside:
                found = list(event[4:8])
        return found

    @staticmethod
    def tally(state: dict[str, Any], baseline: list[int] | None = None) -> Tally:
        """Answers' tokens from the cumulative totals (minus a fork's inherited *baseline*)."""
        tally = Tally()
        events = state["events"]
        if not events:
            return tally
        if baseline is None:
            baseline = [0, 0, 0, 0]
            if state["meta"].get("forked_from_id"):
                # No source file to read the cut from: the first answer's own usage tells it.
                first = events[0]
                baseline = [max(t - last, 0) for t, last in zip(first[4:8], first[8:12])]
        prev = list(baseline)
        for event in events:
            ts, model, total, last = event[0], event[1], event[4:8], event[8:12]
            if any(t < p for t, p in zip(total, prev)):
                delta = list(last)  # totals went back (a new run): this answer's own usage
            else:
                delta = [t - p for t, p in zip(total, prev)]
            prev = list(total)
            if not any(delta):
                continue  # the same totals repeated
            d_in, d_cached, d_write, d_out = delta
            tally.add(ts, model, Tokens(input=max(d_in - d_cached - d_write, 0), output=d_out,
                                        cache_read=d_cached, cache_creation=d_write))
        return tally


_CODEX_FIELDS = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens")
PARSERS = {"claude": ClaudeTranscript, "codex": CodexSession}


# ---------------------------------------------------------------------- the cache
class UsageCache:
    """Per-file read offsets and parsed state, on disk and in memory.

    Several processes (CLI, deck, MCP server) may use it at once: each writes the whole
    file atomically; a lost update only means some bytes are read again later.
    """

    _memory: dict[str, tuple[float | None, dict[str, Any]]] = {}  # path -> (cache file mtime, data)
    _saved_at: dict[str, float] = {}  # path -> when this process last wrote it (monotonic)

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
        parser = PARSERS[kind]
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
        if entry["size"] == st.st_size and entry["mtime"] == st.st_mtime:
            return entry["state"]
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
                        parser.feed(entry["state"], record, here)
                offset += end + 1
        entry.update(offset=offset, size=st.st_size, mtime=st.st_mtime)
        self.data["files"][key] = entry
        self.dirty = True
        return entry["state"]

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
@dataclass
class AgentUsage:
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
        out.update(_numbers(self.tally, self.start, now))
        out.update(source=self.source, files=self.files, reason=None)
        return out


def _numbers(tally: Tally, start: float | None, now: float) -> dict[str, Any]:
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


class UsageReader:
    """Finds each agent's records and tallies them through one :class:`UsageCache`."""

    def __init__(self, deck: Any, cache: UsageCache):
        self.deck = deck
        self.cache = cache
        self.touched: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def _adapter(self, rec: Any):
        from agentdeck.agents import adapter_class, get_adapter
        from agentdeck.config import AgentDef

        try:
            return get_adapter(rec.definition, self.deck.config)
        except Exception:  # the definition left the config: the kind's defaults
            return adapter_class(rec.kind)(rec.definition, AgentDef(kind=rec.kind), self.deck.config)

    def _read(self, path: Path | str, kind: str) -> dict[str, Any] | None:
        self.touched.add(str(path))
        return self.cache.read(Path(path), kind)

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

    # ------------------------------------------------------------------ per kind
    def claude_files(self, adapter: Any, session_id: str) -> list[str]:
        root = adapter.config_dir(adapter.agent_def.env) / "projects"
        key = f"claude\x00{root}\x00{session_id}"
        main = self.cache.lookup(key)
        if main is None:
            found = sorted(root.glob(f"*/{_glob_escape(session_id)}.jsonl"))
            if not found:
                return []
            main = str(found[0])
            self.cache.remember(key, main)
        files = [main]
        subagents = Path(main[: -len(".jsonl")]) / "subagents"
        if subagents.is_dir():
            files += sorted(str(p) for p in subagents.rglob("*.jsonl"))
        return files

    def claude(self, rec: Any, adapter: Any) -> AgentUsage:
        usage = AgentUsage(rec.name, rec.kind, source="claude-code transcript")
        source_id = rec.extra.get("fork_session_id") or ""
        ids = [sid for sid in [rec.session_id, rec.extra.get("fork_own_session_id") or "",
                               *self.hook_session_ids(rec)] if sid and sid != source_id]
        ids = list(dict.fromkeys(ids))
        if not ids:
            usage.reason = "no Claude Code conversation id recorded for this agent yet"
            return usage
        inherited: set[str] = set()
        if source_id:  # entries --fork-session copied from the source are the source's usage
            for path in self.claude_files(adapter, source_id):
                state = self._read(path, "claude")
                if state is not None:
                    inherited |= ClaudeTranscript.ids(state)
        tally, seen = Tally(), set(inherited)
        for sid in ids:
            for path in self.claude_files(adapter, sid):
                state = self._read(path, "claude")
                if state is None:
                    continue
                usage.files.append(path)
                tally.merge(ClaudeTranscript.tally(state, exclude=seen))
                seen |= ClaudeTranscript.ids(state)
        if not usage.files:
            where = adapter.config_dir(adapter.agent_def.env) / "projects"
            usage.reason = (f"no Claude Code transcript for conversation {ids[-1]} under {where} "
                            f"(it appears with the first message)")
            return usage
        usage.tally = tally
        return usage

    def codex_file(self, adapter: Any, session_id: str) -> str | None:
        home = adapter.codex_home()
        key = f"codex\x00{home}\x00{session_id}"
        found = self.cache.lookup(key)
        if found is None:
            path = adapter.session_file(session_id)
            if path is None:
                return None
            found = str(path)
            self.cache.remember(key, found)
        return found

    def codex(self, rec: Any, adapter: Any) -> AgentUsage:
        usage = AgentUsage(rec.name, rec.kind, source="codex session file")
        source_id = rec.extra.get("fork_session_id") or ""
        ids = [sid for sid in [rec.session_id, *self.hook_session_ids(rec)] if sid and sid != source_id]
        ids = list(dict.fromkeys(ids))
        if not ids:
            usage.reason = "no Codex conversation id recorded for this agent yet (it is learnt after the first turn)"
            return usage
        tally = Tally()
        target = os.path.realpath(rec.start_dir)
        for sid in ids:
            path = self.codex_file(adapter, sid)
            if path is None:
                continue  # a side thread (the title) has no session file
            state = self._read(path, "codex")
            if state is None:
                continue
            meta = state["meta"]
            if sid != rec.session_id and meta.get("cwd") and os.path.realpath(meta["cwd"]) != target:
                continue  # another folder's thread: not this agent's
            usage.files.append(path)
            tally.merge(CodexSession.tally(state, self.codex_baseline(adapter, meta)))
        if not usage.files:
            usage.reason = (f"no Codex session file for conversation {ids[-1]} under "
                            f"{adapter.codex_home() / 'sessions'}")
            return usage
        usage.tally = tally
        return usage

    def codex_baseline(self, adapter: Any, meta: dict[str, Any]) -> list[int] | None:
        """A fork's inherited totals: the source's totals at the cut (None: work it out locally)."""
        source = meta.get("forked_from_id")
        if not source:
            return [0, 0, 0, 0]
        path = self.codex_file(adapter, source)
        state = self._read(path, "codex") if path else None
        if state is None:
            return None
        return CodexSession.total_before(state, meta.get("cut_ordinal"), meta.get("cut_offset")) or [0, 0, 0, 0]

    # ------------------------------------------------------------------ entry
    def agent(self, rec: Any) -> AgentUsage:
        start = parse_ts(rec.created_at) or None
        if rec.kind not in ("claude", "codex"):
            usage = AgentUsage(rec.name, rec.kind, reason=(
                f"agentdeck cannot read token usage of {rec.kind} agents (Claude Code and Codex only)"))
        else:
            try:
                adapter = self._adapter(rec)
                usage = self.claude(rec, adapter) if rec.kind == "claude" else self.codex(rec, adapter)
            except OSError as exc:
                usage = AgentUsage(rec.name, rec.kind, reason=f"cannot read the agent's records: {exc}")
        usage.start = start
        return usage


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


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
    counted = [u for u in results if u.tally is not None]
    for usage in counted:
        total.merge(usage.tally)
        if usage.start:
            starts.append(usage.start)
    summary: dict[str, Any] = {"agents": len(results), "agents_counted": len(counted)}
    if counted:
        summary.update(_numbers(total, min(starts) if starts else None, now))
        # The last 5 minutes: the agents' rates add up (each over its own window, as its row shows);
        # since start: all tokens over the time since the first of them started.
        summary["tokens_per_minute"]["last_5m"] = round(
            sum(u.tally.rates(u.start, now)["last_5m"] for u in counted), 1)
    else:
        summary.update(input_tokens=None, output_tokens=None, cache_read_tokens=None,
                       cache_creation_tokens=None, total_tokens=None, cost_usd=None, unpriced_models=[],
                       tokens_per_minute=None)
    summary.pop("model", None)
    return {"agents": [u.to_json(now) for u in results], "total": summary,
            "generated_at": datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
