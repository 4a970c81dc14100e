"""Codex's token usage, read from its own session files.

Codex writes ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl``.  Each
answer adds an ``event_msg`` of type ``token_count`` whose ``info.total_token_usage`` is
*cumulative* for the thread (``last_token_usage`` is the answer's own).  ``codex resume``
appends to the same file and the totals go on; ``codex fork`` starts a new file whose
``session_meta`` has ``forked_from_id`` / ``history_base`` and whose totals *start from
the source's totals at the fork*: that baseline is subtracted.  A total that goes down
(a reset) starts a new run from that event's ``last_token_usage``.  Codex counts
``input_tokens`` including cached (and cache-write) tokens, the OpenAI convention; here
``input_tokens`` is the uncached part, as for Claude.  ``output_tokens`` includes
reasoning tokens.  The model is the latest ``turn_context.model``.  Facts from Codex
0.169.0; tests/fixtures/usage/ holds copies of real files.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from agentdeck.agents.base import RecordParser, UsageRecords
from agentdeck.agents.tokens import AgentUsage, Tally, Tokens, count, parse_ts


class CodexSession:
    """Parsed state of one Codex session file: its meta and every token_count event."""

    kind: ClassVar[str] = "codex"
    needles: ClassVar[tuple[bytes, ...]] = (b'"token_count"', b'"session_meta"', b'"turn_context"')

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
            history = payload.get("history_base")
            base: dict[str, Any] = history if isinstance(history, dict) else {}
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
                *(count(total.get(k)) for k in _CODEX_FIELDS), *(count(last.get(k)) for k in _CODEX_FIELDS),
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


class CodexUsage:
    """The :class:`~agentdeck.agents.base.UsageSource` of Codex agents."""

    cli = "Codex"
    parser: RecordParser = CodexSession

    def file(self, records: UsageRecords, adapter: Any, session_id: str) -> str | None:
        home = adapter.codex_home()
        key = f"codex\x00{home}\x00{session_id}"
        found = records.lookup(key)
        if found is None:
            path = adapter.session_file(session_id)
            if path is None:
                return None
            found = str(path)
            records.remember(key, found)
        return found

    def usage(self, rec: Any, adapter: Any, records: UsageRecords) -> AgentUsage:
        usage = AgentUsage(rec.name, rec.kind, source="codex session file")
        source_id = rec.extra.get("fork_session_id") or ""
        ids = [sid for sid in [rec.session_id, *records.hook_session_ids(rec)] if sid and sid != source_id]
        ids = list(dict.fromkeys(ids))
        if not ids:
            usage.reason = "no Codex conversation id recorded for this agent yet (it is learnt after the first turn)"
            return usage
        tally = Tally()
        target = os.path.realpath(rec.start_dir)
        for sid in ids:
            path = self.file(records, adapter, sid)
            if path is None:
                continue  # a side thread (the title) has no session file
            state = records.read(path, "codex")
            if state is None:
                continue
            meta = state["meta"]
            if sid != rec.session_id and meta.get("cwd") and os.path.realpath(meta["cwd"]) != target:
                continue  # another folder's thread: not this agent's
            usage.files.append(path)
            tally.merge(CodexSession.tally(state, self.baseline(records, adapter, meta)))
        if not usage.files:
            usage.reason = (f"no Codex session file for conversation {ids[-1]} under "
                            f"{adapter.codex_home() / 'sessions'}")
            return usage
        usage.tally = tally
        return usage

    def baseline(self, records: UsageRecords, adapter: Any, meta: dict[str, Any]) -> list[int] | None:
        """A fork's inherited totals: the source's totals at the cut (None: work it out locally)."""
        source = meta.get("forked_from_id")
        if not source:
            return [0, 0, 0, 0]
        path = self.file(records, adapter, source)
        state = records.read(path, "codex") if path else None
        if state is None:
            return None
        return CodexSession.total_before(state, meta.get("cut_ordinal"), meta.get("cut_offset")) or [0, 0, 0, 0]


SOURCE = CodexUsage()
