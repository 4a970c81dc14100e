"""The research ledger: every run and every trial, in the research dir's own SQLite db.

One database (``<state_dir>/research/ledger.db``) holds every run of a
repository; several processes use it at once (the loop, ``research status``,
``research pause`` from another shell, the deck's Research tab, the MCP
server's ``research_submit``).  Each thread gets its own connection; every
write is one short transaction, so a loop killed at any instant leaves the
ledger consistent.

Alongside it, each run keeps ``results.tsv`` in autoresearch's shape
(``commit``, the metric's name, ``memory_gb``, ``status``, ``description``)
plus ``trial``, ``kind``, ``gpu`` and ``seconds``; a row is appended (and
synced) when a trial is decided, before anything of it is removed.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from agentdeck.store import connect, transaction

MIGRATIONS: list[str] = [
    # 1: runs, trials, agent proposer requests
    """
    CREATE TABLE runs (
        tag              TEXT PRIMARY KEY,
        branch           TEXT NOT NULL,
        base_branch      TEXT NOT NULL,
        base_commit      TEXT NOT NULL,
        workdir          TEXT NOT NULL DEFAULT '.',
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        state            TEXT NOT NULL DEFAULT 'starting',
        control          TEXT NOT NULL DEFAULT 'run',
        pid              INTEGER NOT NULL DEFAULT 0,
        heartbeat        REAL NOT NULL DEFAULT 0,
        settings         TEXT NOT NULL DEFAULT '{}',
        protected        TEXT NOT NULL DEFAULT '{}',
        baseline_metric  REAL,
        baseline_runs    INTEGER NOT NULL DEFAULT 0,
        noise            REAL,
        best_trial       INTEGER,
        best_metric      REAL,
        best_commit      TEXT,
        proposals        INTEGER NOT NULL DEFAULT 0,
        trials_limit     INTEGER,
        duplicates       INTEGER NOT NULL DEFAULT 0,
        proposal_failures INTEGER NOT NULL DEFAULT 0,
        message          TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE trials (
        tag          TEXT NOT NULL,
        id           INTEGER NOT NULL,
        kind         TEXT NOT NULL,
        state        TEXT NOT NULL DEFAULT 'queued',
        status       TEXT NOT NULL DEFAULT 'queued',
        reason       TEXT NOT NULL DEFAULT '',
        metric       REAL,
        commit_sha   TEXT NOT NULL DEFAULT '',
        parent       TEXT NOT NULL DEFAULT '',
        description  TEXT NOT NULL DEFAULT '',
        gpu          TEXT,
        seconds      REAL,
        memory_gb    REAL,
        exit_code    INTEGER,
        content_hash TEXT NOT NULL DEFAULT '',
        created_at   REAL NOT NULL,
        started_at   REAL,
        ended_at     REAL,
        confirm_of   INTEGER,
        reapply_of   INTEGER,
        worktree     TEXT NOT NULL DEFAULT '',
        log_path     TEXT NOT NULL DEFAULT '',
        job          TEXT NOT NULL DEFAULT '{}',
        proposer     TEXT NOT NULL DEFAULT '',
        meta         TEXT NOT NULL DEFAULT '{}',
        extras       TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (tag, id)
    );
    CREATE INDEX trials_state ON trials(tag, state);
    CREATE TABLE agent_requests (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        tag          TEXT NOT NULL,
        agent        TEXT NOT NULL,
        requested_at REAL NOT NULL,
        state        TEXT NOT NULL DEFAULT 'open',
        description  TEXT NOT NULL DEFAULT '',
        submitted_at REAL
    );
    CREATE INDEX agent_requests_agent ON agent_requests(agent, state);
    """,
]

JSON_FIELDS = ("job", "meta", "extras")
RUN_JSON_FIELDS = ("settings", "protected")
# Contract statuses of trials; internal ``state`` refines them.
STATUSES = ("queued", "running", "keep", "discard", "crash")
STATES = ("queued", "running", "judging", "final")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Ledger:
    """Typed access to ``ledger.db``; safe to share between threads of one process."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.conn  # create and migrate now, in the caller's thread

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, migrations=MIGRATIONS)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # created in another, finished thread
                    pass
            self._all.clear()
        self._local = threading.local()

    # ------------------------------------------------------------------ runs
    def create_run(self, tag: str, **fields: Any) -> None:
        now = time.time()
        fields.setdefault("created_at", now)
        fields["updated_at"] = now
        for key in RUN_JSON_FIELDS:
            if key in fields:
                fields[key] = json.dumps(fields[key])
        cols = ", ".join(["tag", *fields])
        marks = ", ".join("?" * (len(fields) + 1))
        with transaction(self.conn) as c:
            c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", (tag, *fields.values()))

    def run(self, tag: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM runs WHERE tag = ?", (tag,)).fetchone()
        return self._run_dict(row) if row else None

    def runs(self) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM runs ORDER BY created_at, tag").fetchall()
        return [self._run_dict(r) for r in rows]

    def tags(self) -> list[str]:
        return [r["tag"] for r in self.conn.execute("SELECT tag FROM runs ORDER BY created_at, tag")]

    def latest_tag(self) -> str | None:
        row = self.conn.execute("SELECT tag FROM runs ORDER BY created_at DESC, tag DESC LIMIT 1").fetchone()
        return row["tag"] if row else None

    @staticmethod
    def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
        data = dict(row)
        for key in RUN_JSON_FIELDS:
            data[key] = json.loads(data.get(key) or "{}")
        return data

    def update_run(self, tag: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        for key in RUN_JSON_FIELDS:
            if key in fields:
                fields[key] = json.dumps(fields[key])
        fields = {k: _finite(v) for k, v in fields.items()}
        cols = ", ".join(f"{k} = ?" for k in fields)
        with transaction(self.conn) as c:
            c.execute(f"UPDATE runs SET {cols} WHERE tag = ?", (*fields.values(), tag))

    def bump(self, tag: str, column: str, by: int = 1) -> None:
        assert column in ("proposals", "duplicates", "proposal_failures"), column
        with transaction(self.conn) as c:
            c.execute(f"UPDATE runs SET {column} = {column} + ?, updated_at = ? WHERE tag = ?",
                      (by, time.time(), tag))

    def control(self, tag: str) -> str:
        row = self.conn.execute("SELECT control FROM runs WHERE tag = ?", (tag,)).fetchone()
        return row["control"] if row else "stop"

    def set_control(self, tag: str, value: str) -> None:
        assert value in ("run", "pause", "stop"), value
        self.update_run(tag, control=value)

    def heartbeat(self, tag: str, pid: int) -> None:
        with transaction(self.conn) as c:
            c.execute("UPDATE runs SET heartbeat = ?, pid = ? WHERE tag = ?", (time.time(), pid, tag))

    # ------------------------------------------------------------------ trials
    def insert_trial(self, tag: str, **fields: Any) -> int:
        """Insert a trial with the next id of its run; returns the id."""
        fields.setdefault("created_at", time.time())
        for key in JSON_FIELDS:
            if key in fields:
                fields[key] = json.dumps(fields[key])
        fields = {k: _finite(v) for k, v in fields.items()}
        with transaction(self.conn) as c:
            row = c.execute("SELECT COALESCE(MAX(id), 0) + 1 AS n FROM trials WHERE tag = ?", (tag,)).fetchone()
            trial_id = int(row["n"])
            cols = ", ".join(["tag", "id", *fields])
            marks = ", ".join("?" * (len(fields) + 2))
            c.execute(f"INSERT INTO trials ({cols}) VALUES ({marks})", (tag, trial_id, *fields.values()))
        return trial_id

    def update_trial(self, tag: str, trial_id: int, **fields: Any) -> None:
        for key in JSON_FIELDS:
            if key in fields:
                fields[key] = json.dumps(fields[key])
        fields = {k: _finite(v) for k, v in fields.items()}
        cols = ", ".join(f"{k} = ?" for k in fields)
        with transaction(self.conn) as c:
            c.execute(f"UPDATE trials SET {cols} WHERE tag = ? AND id = ?", (*fields.values(), tag, trial_id))

    def trial(self, tag: str, trial_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM trials WHERE tag = ? AND id = ?", (tag, trial_id)).fetchone()
        return self._trial_dict(row) if row else None

    def trials(self, tag: str, states: Iterable[str] | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM trials WHERE tag = ?"
        params: list[Any] = [tag]
        if states is not None:
            states = list(states)
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params.extend(states)
        rows = self.conn.execute(sql + " ORDER BY id", params).fetchall()
        return [self._trial_dict(r) for r in rows]

    def content_hashes(self, tag: str) -> set[str]:
        rows = self.conn.execute(
            "SELECT content_hash FROM trials WHERE tag = ? AND kind != 'confirm' AND content_hash != ''", (tag,)
        ).fetchall()
        return {r["content_hash"] for r in rows}

    @staticmethod
    def _trial_dict(row: sqlite3.Row) -> dict[str, Any]:
        data = dict(row)
        for key in JSON_FIELDS:
            data[key] = json.loads(data.get(key) or "{}")
        data["commit"] = data.pop("commit_sha")
        return data

    # ------------------------------------------------------------------ agent proposer handshake
    def open_agent_request(self, tag: str, agent: str) -> int:
        with transaction(self.conn) as c:
            c.execute("UPDATE agent_requests SET state = 'superseded' WHERE agent = ? AND state = 'open'", (agent,))
            cur = c.execute("INSERT INTO agent_requests (tag, agent, requested_at) VALUES (?, ?, ?)",
                            (tag, agent, time.time()))
            return int(cur.lastrowid)

    def submit_agent_request(self, agent: str, description: str) -> dict[str, Any] | None:
        with transaction(self.conn) as c:
            row = c.execute(
                "SELECT * FROM agent_requests WHERE agent = ? AND state = 'open' ORDER BY id DESC LIMIT 1", (agent,)
            ).fetchone()
            if row is None:
                return None
            c.execute("UPDATE agent_requests SET state = 'submitted', description = ?, submitted_at = ? WHERE id = ?",
                      (description, time.time(), row["id"]))
            return dict(row) | {"state": "submitted", "description": description}

    def agent_request(self, request_id: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM agent_requests WHERE id = ?", (request_id,)).fetchone()
        return dict(row) if row else None

    def close_agent_request(self, request_id: int, state: str = "closed") -> None:
        with transaction(self.conn) as c:
            c.execute("UPDATE agent_requests SET state = ? WHERE id = ? AND state = 'open'", (state, request_id))


# ---------------------------------------------------------------------- results.tsv

def tsv_header(metric: str) -> list[str]:
    return ["commit", metric, "memory_gb", "status", "description", "trial", "kind", "gpu", "seconds"]


def _clean(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").split())


def tsv_row(trial: dict[str, Any]) -> list[str]:
    metric = trial.get("metric")
    shown = f"{metric:.6f}" if isinstance(metric, (int, float)) and metric is not None else "0.000000"
    if trial.get("status") == "crash":
        shown = "0.000000"
    seconds = trial.get("seconds")
    return [
        (trial.get("commit") or "")[:7],
        shown,
        f"{(trial.get('memory_gb') or 0.0):.1f}",
        trial.get("status", ""),
        _clean(trial.get("description", "")),
        str(trial.get("id", "")),
        trial.get("kind", ""),
        str(trial.get("gpu") or ""),
        f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "",
    ]


class ResultsTsv:
    """Append-only ``results.tsv`` (one writer: the run's loop)."""

    def __init__(self, path: Path, metric: str):
        self.path = Path(path)
        self.metric = metric
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write("\t".join(tsv_header(self.metric)) + "\n")

    def append(self, trial: dict[str, Any]) -> None:
        self.ensure()
        self._write("\t".join(tsv_row(trial)) + "\n")

    def _write(self, text: str) -> None:
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line]
