"""The state store: one SQLite database per repository, shared by every process.

WAL mode, a busy timeout and short transactions (:mod:`agentdeck.db`, which every
database of agentdeck opens through) make many concurrent writers (CLI calls,
hook callbacks, the watcher, the deck, MCP servers) the normal case.  The schema
is versioned (``PRAGMA user_version``) with forward-only migrations
(:data:`MIGRATIONS`).  Only the standard library is used: the light commands
read this module's tables.

Faults (issue 12):

* **The file replaced under a running process** (deleted, moved aside by
  ``doctor --fix``): each thread's connection remembers the device and inode
  of the file it opened and reconnects when the path now names another file
  (one ``stat`` per access), so nothing keeps writing into a deleted database.
  :meth:`Store.file_changed` tells a long-running process (the watcher) that
  the file it started with is gone.
* **A database created from nothing** carries the meta key ``adopt_pending``
  (set by the first migration, which only a new file runs): the first Deck to
  open it looks for this repository's agents on disk (``agentdeck.adopt``).
* **A corrupt file** raises :class:`CorruptState` (exit 1, one line naming
  the file and ``agentdeck doctor --fix``) instead of a raw ``DatabaseError``,
  at open and from every :class:`Store` method.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from agentdeck import db
from agentdeck.db import BUSY_TIMEOUT_MS, file_identity, is_corruption, transaction
from agentdeck.errors import Refused

__all__ = [
    "ADOPT_PENDING", "BUSY_TIMEOUT_MS", "MIGRATIONS", "SCHEMA_VERSION", "STATUSES", "AgentRecord", "CorruptState",
    "Store", "connect", "file_identity", "is_corruption", "transaction", "utc_iso",
]

STATUSES = ("starting", "working", "waiting", "idle", "exited")

MIGRATIONS: list[str] = [
    # 1: agents and their event history
    """
    CREATE TABLE agents (
        name          TEXT PRIMARY KEY,
        slug          TEXT NOT NULL,
        definition    TEXT NOT NULL,
        kind          TEXT NOT NULL,
        branch        TEXT NOT NULL,
        base_branch   TEXT NOT NULL,
        base_commit   TEXT NOT NULL,
        worktree      TEXT NOT NULL,
        cwd_subdir    TEXT NOT NULL DEFAULT '',
        prompt        TEXT NOT NULL DEFAULT '',
        session       TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        status        TEXT NOT NULL DEFAULT 'starting',
        status_source TEXT NOT NULL DEFAULT 'launch',
        status_at     REAL NOT NULL DEFAULT 0,
        kept          INTEGER NOT NULL DEFAULT 0,
        session_id    TEXT NOT NULL DEFAULT '',
        launch_count  INTEGER NOT NULL DEFAULT 1,
        extra         TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        agent   TEXT NOT NULL,
        ts      REAL NOT NULL,
        type    TEXT NOT NULL,
        status  TEXT,
        source  TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_agent_ts ON events(agent, ts);
    CREATE TABLE screen_state (
        agent       TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL DEFAULT '',
        screen_hash TEXT NOT NULL DEFAULT '',
        changed_at  REAL NOT NULL DEFAULT 0,
        sampled_at  REAL NOT NULL DEFAULT 0,
        verdict     TEXT NOT NULL DEFAULT '',
        candidate   TEXT NOT NULL DEFAULT '',
        candidate_at REAL NOT NULL DEFAULT 0,
        saved_at    REAL NOT NULL DEFAULT 0
    );
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('adopt_pending', '1');
    """,
    # 2: one slug per agent row, so two `new` calls racing for one slug cannot both win
    """
    CREATE UNIQUE INDEX agents_slug ON agents(slug);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

# Set in a database created from nothing (only the first migration writes it): this repository's
# agents that exist on disk (tmux sessions, worktrees) have not been looked for yet.
ADOPT_PENDING = "adopt_pending"


class CorruptState(Refused):
    """The state database is not a readable SQLite database (exit 1)."""

    def __init__(self, path: Path | str, detail: str = ""):
        self.path = Path(path)
        self.detail = detail
        super().__init__(f"state database {self.path} is corrupt; run `agentdeck doctor --fix`")


def utc_iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def connect(path: Path | str, migrations: list[str] | None = None) -> sqlite3.Connection:
    """:func:`agentdeck.db.connect` with this module's :data:`MIGRATIONS` unless *migrations* are given."""
    return db.connect(path, MIGRATIONS if migrations is None else migrations)


@dataclass
class AgentRecord:
    name: str
    slug: str
    definition: str
    kind: str
    branch: str
    base_branch: str
    base_commit: str
    worktree: str
    session: str
    created_at: str
    cwd_subdir: str = ""
    prompt: str = ""
    status: str = "starting"
    status_source: str = "launch"
    status_at: float = 0.0
    kept: bool = False
    session_id: str = ""
    launch_count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AgentRecord:
        data = dict(row)
        data["kept"] = bool(data["kept"])
        data["extra"] = json.loads(data.get("extra") or "{}")
        return cls(**data)

    @property
    def start_dir(self) -> str:
        return str(Path(self.worktree) / self.cwd_subdir) if self.cwd_subdir else self.worktree


class Store:
    """Typed access to the agents and events tables.

    Thread-safe: each thread gets its own connection (the deck's workers and the
    MCP server's tool threads share one Store).
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        _ = self.conn  # create (and migrate) now, so errors surface at open
        self._identity = self._local.identity  # the file this Store started with

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection, reopened when the path now names another file (deleted,
        replaced, moved aside): nothing is written into a file no one else can see."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and file_identity(self.path) != self._local.identity:
            self._drop(conn)
            conn = None
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            self._local.identity = file_identity(self.path)
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            return connect(self.path) if not self._missing() else self._create()
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise CorruptState(self.path, str(exc)) from None
            raise  # a read-only folder or a full disk: the Deck words those

    def _missing(self) -> bool:
        """No database file yet, or an empty one (a creator that has not written its header)."""
        try:
            return os.stat(self.path).st_size == 0
        except FileNotFoundError:
            return True

    def _create(self) -> sqlite3.Connection:
        """Create the database file, one process at a time.

        A ``-wal``/``-shm`` pair left without its database belongs to a deleted file that some
        process may still have open (a watcher between two ticks): SQLite would share that
        process's wal-index with the new file (``disk I/O error``, or worse).  Unlinked first, the
        old process keeps its own copies and the new file gets fresh ones.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.create-lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._missing():
                for suffix in ("-wal", "-shm", "-journal"):
                    try:
                        os.unlink(f"{self.path}{suffix}")
                    except FileNotFoundError:
                        pass
            return connect(self.path)
        finally:
            os.close(fd)

    def _drop(self, conn: sqlite3.Connection) -> None:
        with self._all_lock:
            if conn in self._all:
                self._all.remove(conn)
        try:
            conn.close()
        except sqlite3.Error:
            pass
        self._local.conn = None

    def file_changed(self) -> bool:
        """True when the database file this Store opened is no longer at its path (deleted or
        replaced): a long-running process must stop and let a fresh one start."""
        return file_identity(self.path) != self._identity

    def quick_check(self) -> list[str]:
        """SQLite's ``PRAGMA quick_check``: ``[]`` when the file is sound, else its complaints."""
        rows = [r[0] for r in self.conn.execute("PRAGMA quick_check").fetchall()]
        return [] if rows == ["ok"] else rows

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._all.clear()
        self._local = __import__("threading").local()

    # ---------------------------------------------------------------- agents
    def insert_agent(self, rec: AgentRecord) -> None:
        with transaction(self.conn) as c:
            c.execute(
                """INSERT INTO agents (name, slug, definition, kind, branch, base_branch, base_commit,
                   worktree, cwd_subdir, prompt, session, created_at, status, status_source, status_at,
                   kept, session_id, launch_count, extra)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    rec.name, rec.slug, rec.definition, rec.kind, rec.branch, rec.base_branch,
                    rec.base_commit, rec.worktree, rec.cwd_subdir, rec.prompt, rec.session,
                    rec.created_at, rec.status, rec.status_source, rec.status_at or time.time(),
                    int(rec.kept), rec.session_id, rec.launch_count, json.dumps(rec.extra),
                ),
            )
            c.execute(
                "INSERT INTO events (agent, ts, type, status, source, detail) VALUES (?,?,?,?,?,?)",
                (rec.name, time.time(), "status", rec.status, rec.status_source or "launch", "{}"),
            )

    def get_agent(self, name: str) -> AgentRecord | None:
        row = self.conn.execute("SELECT * FROM agents WHERE name = ?", (name,)).fetchone()
        return AgentRecord.from_row(row) if row else None

    def list_agents(self) -> list[AgentRecord]:
        rows = self.conn.execute("SELECT * FROM agents ORDER BY created_at, name").fetchall()
        return [AgentRecord.from_row(r) for r in rows]

    def update_agent(self, name: str, **fields: Any) -> None:
        if not fields:
            return
        if "extra" in fields:
            fields["extra"] = json.dumps(fields["extra"])
        if "kept" in fields:
            fields["kept"] = int(fields["kept"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with transaction(self.conn) as c:
            c.execute(f"UPDATE agents SET {cols} WHERE name = ?", (*fields.values(), name))

    def merge_extra(self, name: str, **values: Any) -> None:
        """Update keys of an agent's ``extra`` JSON atomically."""
        with transaction(self.conn) as c:
            row = c.execute("SELECT extra FROM agents WHERE name = ?", (name,)).fetchone()
            if row is None:
                return
            extra = json.loads(row["extra"] or "{}")
            extra.update(values)
            c.execute("UPDATE agents SET extra = ? WHERE name = ?", (json.dumps(extra), name))

    def delete_agent(self, name: str) -> None:
        with transaction(self.conn) as c:
            c.execute("DELETE FROM agents WHERE name = ?", (name,))
            c.execute("DELETE FROM screen_state WHERE agent = ?", (name,))

    def set_status(
        self, name: str, status: str, source: str, detail: dict[str, Any] | None = None,
        ts: float | None = None, if_status_at: float | None = None,
    ) -> bool:
        """Record a status change (and its event). Returns False when unchanged.

        *if_status_at*: only if the recorded status is still the one set at that time
        (a screen verdict must not overwrite a hook that landed meanwhile).
        """
        assert status in STATUSES, status
        now = ts if ts is not None else time.time()
        with transaction(self.conn) as c:
            row = c.execute("SELECT status, status_at FROM agents WHERE name = ?", (name,)).fetchone()
            if row is None or row["status"] == status:
                return False
            if if_status_at is not None and row["status_at"] != if_status_at:
                return False
            c.execute(
                "UPDATE agents SET status = ?, status_source = ?, status_at = ? WHERE name = ?",
                (status, source, now, name),
            )
            c.execute(
                "INSERT INTO events (agent, ts, type, status, source, detail) VALUES (?,?,?,?,?,?)",
                (name, now, "status", status, source, json.dumps(detail or {})),
            )
        return True

    # ---------------------------------------------------------------- events
    def add_event(
        self, agent: str, type_: str, source: str, status: str | None = None,
        detail: dict[str, Any] | None = None, ts: float | None = None,
    ) -> None:
        with transaction(self.conn) as c:
            c.execute(
                "INSERT INTO events (agent, ts, type, status, source, detail) VALUES (?,?,?,?,?,?)",
                (agent, ts if ts is not None else time.time(), type_, status, source, json.dumps(detail or {})),
            )

    def events(self, agent: str, since_id: int = 0, types: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM events WHERE agent = ? AND id > ?"
        params: list[Any] = [agent, since_id]
        if types:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params.extend(types)
        rows = self.conn.execute(sql + " ORDER BY id", params).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["detail"] = json.loads(d["detail"] or "{}")
            out.append(d)
        return out

    def last_event(self, agent: str, type_: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT * FROM events WHERE agent = ? AND type = ? ORDER BY id DESC LIMIT 1", (agent, type_)
        ).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["detail"] = json.loads(d["detail"] or "{}")
        return d

    # ---------------------------------------------------------------- screen sampling state
    def screen_states(self) -> dict[str, sqlite3.Row]:
        return {r["agent"]: r for r in self.conn.execute("SELECT * FROM screen_state").fetchall()}

    def put_screen_state(self, agent: str, **fields: Any) -> None:
        self.put_screen_states({agent: fields})

    def put_screen_states(self, rows: dict[str, dict[str, Any]]) -> None:
        """Several agents' sampling state in one transaction."""
        with transaction(self.conn) as c:
            for agent, fields in rows.items():
                cols = ", ".join(fields)
                marks = ", ".join("?" * len(fields))
                updates = ", ".join(f"{k} = excluded.{k}" for k in fields)
                c.execute(
                    f"INSERT INTO screen_state (agent, {cols}) VALUES (?, {marks}) "
                    f"ON CONFLICT(agent) DO UPDATE SET {updates}",
                    (agent, *fields.values()),
                )

    # ---------------------------------------------------------------- meta
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row["value"] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with transaction(self.conn) as c:
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


# ---------------------------------------------------------------- corruption as one clear line
_F = TypeVar("_F", bound=Callable[..., Any])


def _corruption_guard(method: _F) -> _F:
    @functools.wraps(method)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if is_corruption(exc):
                raise CorruptState(self.path, str(exc)) from None
            raise

    return guarded  # type: ignore[return-value]


for _name, _value in list(vars(Store).items()):
    if callable(_value) and not _name.startswith("_") and _name not in ("close",):
        setattr(Store, _name, _corruption_guard(_value))
del _name, _value
