"""``agentdeck hook KIND EVENT [ARGS...]``: the agents' own events, recorded fast.

Every Claude Code hook and every Codex ``notify`` call runs this, so it must
start and finish quickly and never get in the agent's way:

* standard library only (plus :mod:`agentdeck.store`, itself stdlib-only, when the
  database's schema is not the one this code knows); no config loading, no
  adapters, no tmux;
* what is particular to a CLI lives in its folder's ``events.py``
  (``agentdeck/agents/<kind>/events.py``, standard library only, imported alone):
  ``EVENTS`` (event -> status, plain data), ``EVENT_KEY`` (the payload key naming the
  event), ``PAYLOAD_IN_ARGV`` (the payload is the last argument, as Codex's ``notify``
  gives it, rather than stdin) and optionally ``refine(...)`` (what depends on the
  agent's row: Claude's conversation id, Codex's side threads).  A kind without that
  module records its events and sets no status;
* the agent is named by ``AGENTDECK_AGENT`` and its repository's state by
  ``AGENTDECK_STATE_DIR``, both set in every agent pane;
* it records one ``hook`` event (a small subset of the payload) and, when the
  event implies a status, sets it with source ``hook``;
* it always exits 0 and prints nothing: a failure goes to
  ``<state_dir>/logs/hooks.log``, never to the agent.
"""

from __future__ import annotations

import json
import os
import sys
import time

TYPE_CHECKING = False  # not typing's: importing typing would cost every event
if TYPE_CHECKING:
    from types import ModuleType
    from typing import IO, Any

ENV_STATE_DIR = "AGENTDECK_STATE_DIR"
ENV_AGENT = "AGENTDECK_AGENT"

#: Payload keys copied into the event's detail (everything else is dropped: prompts
#: and tool inputs can be large or private).
DETAIL_KEYS = (
    "tool_name", "notification_type", "session_id", "source", "reason", "error", "thread-id", "turn-id",
)

_EVENTS: dict[str, ModuleType | None] = {}  # kind -> its events module (None: the kind has none)


def events_module(kind: str) -> ModuleType | None:
    """``agentdeck.agents.<kind>.events`` (imported alone: its package ``__init__`` files are
    light), or None for a kind without one."""
    if kind in _EVENTS:
        return _EVENTS[kind]
    module = None
    if kind.isidentifier():
        name = f"agentdeck.agents.{kind}.events"
        try:
            __import__(name)  # not importlib: the hook path imports no more than it needs
            module = sys.modules[name]
        except ModuleNotFoundError as exc:
            if exc.name not in (name, name.rpartition(".")[0]):
                raise
    _EVENTS[kind] = module
    return module


def main(argv: list[str]) -> int:
    """Entry point (``agentdeck hook KIND EVENT [ARGS...]``). Always returns 0."""
    started = time.time()
    state_dir = os.environ.get(ENV_STATE_DIR, "")
    try:
        _run(argv, state_dir, os.environ.get(ENV_AGENT, ""), started)
    except BaseException as exc:  # never fail loudly: the agent must not notice
        _log(state_dir, f"hook {' '.join(argv[:2])} failed: {type(exc).__name__}: {exc}", exc)
    return 0


def read_payload(kind: str, args: list[str], stdin: IO[str] | None = None) -> dict[str, Any]:
    """The event's JSON: the last argument (Codex's ``notify``), else stdin."""
    if getattr(events_module(kind), "PAYLOAD_IN_ARGV", False):
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


def status_for(kind: str, event: str, payload: dict[str, Any]) -> str | None:
    """The status an event implies by the kind's table (``first-idle`` is resolved by :func:`decide`)."""
    module = events_module(kind)
    if module is None:
        return None
    rule = module.EVENTS.get(event)
    if callable(rule):
        rule = rule(payload)
    return rule if isinstance(rule, str) else None


def event_name(kind: str, args: list[str], payload: dict[str, Any]) -> str:
    """The event: named by the payload (the kind's ``EVENT_KEY``), else by the first argument."""
    key = getattr(events_module(kind), "EVENT_KEY", "hook_event_name")
    return str(payload.get(key) or (args[0] if args else ""))


SCHEMA_VERSION = 2  # agentdeck.store's schema this fast path writes (a test keeps them equal)


class _Rec:
    """The few columns of an agent row the decision needs."""

    __slots__ = ("launch_count", "name", "prompt", "session_id", "status", "status_at", "status_source")

    def __init__(self, name: str, status: str, status_source: str, status_at: float, session_id: str,
                 prompt: str, launch_count: int) -> None:
        self.name, self.status, self.status_source, self.status_at = name, status, status_source, status_at
        self.session_id, self.prompt, self.launch_count = session_id, prompt, launch_count


def decide(kind: str, event: str, payload: dict[str, Any], rec: Any,
           detail: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(status to set or None, agent columns to update) for one event of agent *rec*."""
    updates: dict[str, object] = {}
    status = status_for(kind, event, payload)
    if status == "first-idle":
        status = _first_idle(rec, payload)
    refine = getattr(events_module(kind), "refine", None)
    if refine is not None:
        status = refine(rec, event, payload, status, detail, updates)
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


def _record_fast(db_path: str, kind: str, agent: str, event: str, payload: dict[str, Any], detail: dict[str, Any],
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


def _record_with_store(db_path: str, kind: str, agent: str, event: str, payload: dict[str, Any], detail: dict[str, Any],
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


def _first_idle(rec: Any, payload: dict[str, Any]) -> str | None:
    """SessionStart means idle only while nothing else happened since the (re)launch."""
    if rec.status != "starting":
        return None
    if payload.get("source") == "startup" and rec.prompt and rec.launch_count <= 1:
        return None  # the initial prompt follows at once (UserPromptSubmit): no idle flicker
    return "idle"


def _log(state_dir: str, message: str, exc: BaseException | None = None) -> None:
    if not state_dir:
        return
    try:
        logs = os.path.join(state_dir, "logs")
        os.makedirs(logs, exist_ok=True)
        agent = os.environ.get(ENV_AGENT, "?")
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} pid={os.getpid()} agent={agent} {message}\n"
        if exc is not None and not isinstance(exc, (LookupError, FileNotFoundError)):
            import traceback

            line += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        with open(os.path.join(logs, "hooks.log"), "a", encoding="utf-8") as fh:
            fh.write(line)
    except Exception:
        pass


if __name__ == "__main__":  # pragma: no cover - `python -m agentdeck.hooks` for debugging
    raise SystemExit(main(sys.argv[1:]))
