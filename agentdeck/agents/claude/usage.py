"""Claude Code's token usage, read from its own transcripts.

Claude Code writes one transcript per conversation, ``$CLAUDE_CONFIG_DIR or ~/.claude``
``/projects/<folder>/<session-id>.jsonl`` (sub-agents:
``<folder>/<session-id>/subagents/**/*.jsonl``).  Each model answer is an ``assistant``
entry whose ``message.usage`` holds ``input_tokens``, ``output_tokens``,
``cache_read_input_tokens`` and ``cache_creation_input_tokens`` (split into
``cache_creation.ephemeral_5m/1h_input_tokens``).  One answer can be written as several
entries (one per content block) that repeat the same ``message.id``: an answer counts
once (the largest value of each field).  ``--fork-session`` copies the source's entries,
ids included, into the fork's transcript: a forked agent does not count the entries it
inherited.  Side requests (session titles) are not in the transcript and not counted.
Facts from Claude Code 2.1.197; tests/fixtures/usage/ holds copies of real files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from agentdeck.agents.base import RecordParser, UsageRecords
from agentdeck.agents.tokens import AgentUsage, Tally, Tokens, count, parse_ts


class ClaudeTranscript:
    """Parsed state of one Claude Code transcript: answer id -> [ts, model, in, out, cr, cc, cc1h]."""

    kind: ClassVar[str] = "claude"
    #: Lines without these bytes hold no usage (cheap filter before JSON parsing).
    needles: ClassVar[tuple[bytes, ...]] = (b'"usage"',)

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
        row = [parse_ts(record.get("timestamp")), model, count(usage.get("input_tokens")),
               count(usage.get("output_tokens")), count(usage.get("cache_read_input_tokens")),
               count(usage.get("cache_creation_input_tokens")), count(split.get("ephemeral_1h_input_tokens"))]
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


class ClaudeUsage:
    """The :class:`~agentdeck.agents.base.UsageSource` of Claude Code agents."""

    cli = "Claude Code"
    parser: RecordParser = ClaudeTranscript

    def files(self, records: UsageRecords, adapter: Any, session_id: str) -> list[str]:
        """The conversation's transcript and its sub-agents' (the transcript's path is remembered)."""
        root = adapter.config_dir(adapter.agent_def.env) / "projects"
        key = f"claude\x00{root}\x00{session_id}"
        main = records.lookup(key)
        if main is None:
            found = sorted(root.glob(f"*/{_glob_escape(session_id)}.jsonl"))
            if not found:
                return []
            main = str(found[0])
            records.remember(key, main)
        files = [main]
        subagents = Path(main[: -len(".jsonl")]) / "subagents"
        if subagents.is_dir():
            files += sorted(str(p) for p in subagents.rglob("*.jsonl"))
        return files

    def usage(self, rec: Any, adapter: Any, records: UsageRecords) -> AgentUsage:
        usage = AgentUsage(rec.name, rec.kind, source="claude-code transcript")
        source_id = rec.extra.get("fork_session_id") or ""
        ids = [sid for sid in [rec.session_id, rec.extra.get("fork_own_session_id") or "",
                               *records.hook_session_ids(rec)] if sid and sid != source_id]
        ids = list(dict.fromkeys(ids))
        if not ids:
            usage.reason = "no Claude Code conversation id recorded for this agent yet"
            return usage
        inherited: set[str] = set()
        if source_id:  # entries --fork-session copied from the source are the source's usage
            for path in self.files(records, adapter, source_id):
                state = records.read(path, "claude")
                if state is not None:
                    inherited |= ClaudeTranscript.ids(state)
        tally, seen = Tally(), set(inherited)
        for sid in ids:
            for path in self.files(records, adapter, sid):
                state = records.read(path, "claude")
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


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


SOURCE = ClaudeUsage()
