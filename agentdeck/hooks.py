"""``agentdeck hook KIND EVENT [ARGS...]``: the agents' own events, recorded fast.

Every Claude Code hook and every Codex ``notify`` call runs this, so it must
start and finish quickly and never get in the agent's way:

* standard library only (plus :mod:`agentdeck.store`, itself stdlib-only);
  no config loading, no adapters, no tmux;
* the payload comes from stdin (Claude Code, Gemini CLI) or the last argument
  (Codex ``notify``);
* the agent is named by ``AGENTDECK_AGENT`` and its repository's state by
  ``AGENTDECK_STATE_DIR``, both set in every agent pane;
* it records one ``hook`` event (a small subset of the payload) and, when the
  event implies a status, sets it with source ``hook``;
* it always exits 0 and prints nothing: a failure goes to
  ``<state_dir>/logs/hooks.log``, never to the agent.

The event -> status tables below are plain data: one per kind.
"""

from __future__ import annotations

import json
import os
import sys
import time

ENV_STATE_DIR = "AGENTDECK_STATE_DIR"
ENV_AGENT = "AGENTDECK_AGENT"

#: Claude Code hook events -> status.  Callables decide from the payload.
#: ``PermissionRequest`` fires the instant a permission dialog (or an
#: AskUserQuestion question) appears; ``Notification permission_prompt`` only
#: ~6 s later.  A user's "No" at the dialog fires no hook at all (the screen
#: fills that gap).  ``SessionEnd`` sets nothing: liveness says ``exited``.
CLAUDE_EVENTS: dict[str, object] = {
    "UserPromptSubmit": "working",
    "PreToolUse": lambda p: "waiting" if p.get("tool_name") == "AskUserQuestion" else "working",
    "PostToolUse": "working",
    "PostToolUseFailure": "working",
    "PermissionRequest": "waiting",
    "Notification": lambda p: {
        "permission_prompt": "waiting",
        "elicitation_dialog": "waiting",
        "idle_prompt": "idle",
    }.get(str(p.get("notification_type", ""))),
    "Elicitation": "waiting",
    "Stop": "idle",
    "StopFailure": "idle",
    "SessionStart": "first-idle",
    "SessionEnd": None,
}

#: Codex ``notify`` program calls: argv ``codex notify '<json>'``; the JSON's
#: ``type`` is the event.  Only ``agent-turn-complete`` exists today.
CODEX_EVENTS: dict[str, object] = {
    "agent-turn-complete": "idle",
}

#: Gemini CLI hook events (same stdin JSON convention as Claude Code).
GEMINI_EVENTS: dict[str, object] = {
    "BeforeAgent": "working",
    "BeforeTool": "working",
    "AfterTool": "working",
    "Notification": lambda p: "waiting" if "permission" in str(p.get("notification_type", "")).lower() else None,
    "AfterAgent": "idle",
    "SessionStart": "first-idle",
    "SessionEnd": None,
}

TABLES: dict[str, dict[str, object]] = {"claude": CLAUDE_EVENTS, "codex": CODEX_EVENTS, "gemini": GEMINI_EVENTS}

#: Payload keys copied into the event's detail (everything else is dropped: prompts
#: and tool inputs can be large or private).
DETAIL_KEYS = (
    "tool_name", "notification_type", "session_id", "source", "reason", "error", "thread-id", "turn-id",
)


def main(argv: list[str]) -> int:
    """Entry point (``agentdeck hook KIND EVENT [ARGS...]``). Always returns 0."""
    started = time.time()
    state_dir = os.environ.get(ENV_STATE_DIR, "")
    try:
        _run(argv, state_dir, os.environ.get(ENV_AGENT, ""), started)
    except BaseException as exc:  # never fail loudly: the agent must not notice
        _log(state_dir, f"hook {' '.join(argv[:2])} failed: {type(exc).__name__}: {exc}", exc)
    return 0


def read_payload(kind: str, args: list[str], stdin=None) -> dict:
    """The event's JSON: the last argument for Codex, stdin for the others."""
    if kind == "codex":
        raw = args[-1] if args else ""
    else:
        stream = stdin if stdin is not None else sys.stdin
        if stream is None or stream.closed:
            return {}
        try:
            if stream.isatty():  # called by hand: nothing to read
                return {}
        except (AttributeError, ValueError):
            pass
        raw = stream.read()
    if not raw or not raw.strip():
        return {}
    data = json.loads(raw)
    return data if isinstance(data, dict) else {"value": data}


def status_for(kind: str, event: str, payload: dict) -> str | None:
    """The status an event implies by the table (``first-idle`` is resolved by the caller)."""
    table = TABLES.get(kind)
    if table is None:
        return None
    rule = table.get(event)
    if callable(rule):
        rule = rule(payload)
    return rule if isinstance(rule, str) else None


def event_name(kind: str, args: list[str], payload: dict) -> str:
    if kind == "codex":
        return str(payload.get("type") or (args[0] if args else ""))
    return str(payload.get("hook_event_name") or (args[0] if args else ""))


SCHEMA_VERSION = 2  # agentdeck.store's schema this fast path writes (a test keeps them equal)


class _Rec:
    """The few columns of an agent row the decision needs."""

    __slots__ = ("name", "status", "status_source", "status_at", "session_id", "prompt", "launch_count")

    def __init__(self, name, status, status_source, status_at, session_id, prompt, launch_count):
        self.name, self.status, self.status_source, self.status_at = name, status, status_source, status_at
        self.session_id, self.prompt, self.launch_count = session_id, prompt, launch_count


def decide(kind: str, event: str, payload: dict, rec, detail: dict) -> tuple[str | None, dict]:
    """(status to set or None, agent columns to update) for one event of agent *rec*."""
    updates: dict[str, object] = {}
    status = status_for(kind, event, payload)
    if kind == "codex":
        status = _codex_filter(rec, payload, status, detail, updates)
    elif status == "first-idle":
        status = _first_idle(rec, payload)
    if kind == "claude" and not (event == "SessionStart" and payload.get("source") == "resume"):
        # /clear starts a new conversation (restart resumes that one); a fork's SessionStart reports
        # its source's id, its later events its own.
        sid = payload.get("session_id")
        if isinstance(sid, str) and sid and sid != rec.session_id:
            updates["session_id"] = sid
    return status, updates


def _run(argv: list[str], state_dir: str, agent: str, started: float) -> None:
    if len(argv) < 1:
        raise ValueError("usage: agentdeck hook KIND EVENT [ARGS...]")
    kind, args = argv[0], argv[1:]
    if not state_dir or not agent:
        return  # not started by agentdeck (a user's own session with our settings): nothing to record
    payload = read_payload(kind, args)
    event = event_name(kind, args, payload)
    detail: dict[str, object] = {"event": event}
    for key in DETAIL_KEYS:
        value = payload.get(key)
        if isinstance(value, (str, int, float, bool)) and value != "":
            detail[key.replace("-", "_")] = value
    db_path = os.path.join(state_dir, "state.db")
    if not os.path.exists(db_path):
        raise FileNotFoundError(f"no agentdeck database at {db_path}")
    _record_fast(db_path, kind, agent, event, payload, detail, started)


def _record_fast(db_path: str, kind: str, agent: str, event: str, payload: dict, detail: dict,
                 started: float) -> None:
    """Plain sqlite3, one short transaction: importing agentdeck.store (dataclasses, typing,
    pathlib) would cost more than all the database work.  Falls back to the Store API when
    the schema is not the one this code knows."""
    import sqlite3

    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            conn.close()
            return _record_with_store(db_path, kind, agent, event, payload, detail, started)
        columns = "name, status, status_source, status_at, session_id, prompt, launch_count"
        row = conn.execute(f"SELECT {columns} FROM agents WHERE name = ?", (agent,)).fetchone()
        if row is None:
            raise LookupError(f"no agent named {agent!r} in {db_path}")
        status, updates = decide(kind, event, payload, _Rec(*row), detail)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO events (agent, ts, type, status, source, detail) VALUES (?,?,?,?,?,?)",
                (agent, started, "hook", status, "hook", json.dumps(detail)),
            )
            for column, value in updates.items():
                conn.execute(f"UPDATE agents SET {column} = ? WHERE name = ?", (value, agent))
            if status:
                current = conn.execute(
                    "SELECT status, status_source, status_at FROM agents WHERE name = ?", (agent,)
                ).fetchone()
                # Hooks run as separate processes: one that started earlier must not
                # overwrite what a later event already set.
                newer = current is not None and current[1] == "hook" and current[2] > started
                if current is not None and current[0] != status and not newer:
                    conn.execute(
                        "UPDATE agents SET status = ?, status_source = ?, status_at = ? WHERE name = ?",
                        (status, "hook", started, agent),
                    )
                    conn.execute(
                        "INSERT INTO events (agent, ts, type, status, source, detail) VALUES (?,?,?,?,?,?)",
                        (agent, started, "status", status, "hook", json.dumps(detail)),
                    )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


def _record_with_store(db_path: str, kind: str, agent: str, event: str, payload: dict, detail: dict,
                       started: float) -> None:
    """The same through agentdeck.store (migrates the database if it is older)."""
    from agentdeck.store import Store

    store = Store(db_path)
    try:
        rec = store.get_agent(agent)
        if rec is None:
            raise LookupError(f"no agent named {agent!r} in {db_path}")
        status, updates = decide(kind, event, payload, rec, detail)
        if updates:
            store.update_agent(agent, **updates)
        store.add_event(agent, "hook", "hook", status=status, detail=detail, ts=started)
        if status and status != rec.status and not (rec.status_source == "hook" and rec.status_at > started):
            store.set_status(agent, status, "hook", detail, ts=started)
    finally:
        store.close()


def _first_idle(rec, payload: dict) -> str | None:
    """SessionStart means idle only while nothing else happened since the (re)launch."""
    if rec.status != "starting":
        return None
    if payload.get("source") == "startup" and rec.prompt and rec.launch_count <= 1:
        return None  # the initial prompt follows at once (UserPromptSubmit): no idle flicker
    return "idle"


def _codex_filter(rec, payload: dict, status: str | None, detail: dict, updates: dict) -> str | None:
    """Codex also reports turns of its side threads (the title it generates): only the
    agent's own conversation counts.  Learns the conversation id on the way."""
    thread = payload.get("thread-id")
    if not isinstance(thread, str) or not thread:
        return status
    if rec.session_id:
        if thread != rec.session_id:
            detail["ignored"] = "other thread"
            return None
        return status
    if codex_session_file(thread) is None:
        detail["ignored"] = "no session file (side thread)"
        return None
    updates["session_id"] = thread
    return status


def codex_home() -> str:
    return os.environ.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")


def codex_session_file(thread_id: str, home: str | None = None) -> str | None:
    """The rollout file Codex keeps for a conversation (``sessions/YYYY/MM/DD/rollout-*-<id>.jsonl``)."""
    import glob

    root = os.path.join(home or codex_home(), "sessions")
    matches = glob.glob(os.path.join(root, "*", "*", "*", f"rollout-*{thread_id}.jsonl"))
    return matches[0] if matches else None


def _log(state_dir: str, message: str, exc: BaseException | None = None) -> None:
    if not state_dir:
        return
    try:
        logs = os.path.join(state_dir, "logs")
        os.makedirs(logs, exist_ok=True)
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} agent={os.environ.get(ENV_AGENT, '?')} {message}\n"
        if exc is not None and not isinstance(exc, (LookupError, FileNotFoundError)):
            import traceback

            line += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with open(os.path.join(logs, "hooks.log"), "a", encoding="utf-8") as fh:
            fh.write(line)
    except Exception:
        pass


if __name__ == "__main__":  # pragma: no cover - `python -m agentdeck.hooks` for debugging
    raise SystemExit(main(sys.argv[1:]))
