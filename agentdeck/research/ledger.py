"""The research ledger: every run and every trial, in the research dir's own SQLite db.

One database (``<state_dir>/research/ledger.db``) holds every run of a
repository; several processes use it at once (the loop, ``research status``,
``research pause`` from another shell, the deck's Research tab, the MCP
server's ``research_submit``).  Each thread gets its own connection; every
write is one short transaction, so a loop killed at any instant leaves the
ledger consistent.

Alongside it, each run keeps ``results.tsv``, a view of the ledger
(:mod:`agentdeck.research.results_tsv`).

**The record out of the job's reach.**  A job runs code a proposer wrote; when it
is not sandboxed it can open this database.  Every decision is one transaction
that also appends a link to the run's checksum chain (table ``chain``): the
sha256 of the previous link, of the decided trial's row and of the run's judged
state (baseline, noise, best of every hardware class, protected checksums,
settings).  The loop keeps the chain's head in memory and verifies the chain
against the rows before each decision (:meth:`Ledger.chain_problem`); a row
changed, added or removed behind its back stops the run ("ledger changed
outside the harness").  Between two loops the head lives only in the database,
so a restarted loop verifies the chain's own consistency.

**Hardware classes.**  A run's primary class keeps its baseline and best in the
``runs`` row (as before classes existed); every other class has a row in
``classes``.  Each trial records its class in ``hardware``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentdeck.research.model import Run, Trial
from agentdeck.store import connect, transaction

#: A hardware class's judged state as columns: the primary class's in the ``runs`` row, every
#: other class's in ``classes`` (see CLASS_FIELDS).
_JUDGED_COLUMNS = """
        baseline_metric  REAL,
        baseline_runs    INTEGER NOT NULL DEFAULT 0,
        noise            REAL,
        best_trial       INTEGER,
        best_metric      REAL,
        best_commit      TEXT,"""

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
        protected        TEXT NOT NULL DEFAULT '{}',"""
    + _JUDGED_COLUMNS + """
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
    # 2: hardware classes (each trial's class, the bests of classes other than the primary) and the
    # checksum chain over decisions
    """
    ALTER TABLE trials ADD COLUMN hardware TEXT NOT NULL DEFAULT '';
    CREATE TABLE classes (
        tag              TEXT NOT NULL,
        class            TEXT NOT NULL,"""
    + _JUDGED_COLUMNS + """
        PRIMARY KEY (tag, class)
    );
    CREATE TABLE chain (
        tag      TEXT NOT NULL,
        seq      INTEGER NOT NULL,
        trial    INTEGER,
        content  TEXT NOT NULL,
        run      TEXT NOT NULL,
        link     TEXT NOT NULL,
        at       REAL NOT NULL,
        PRIMARY KEY (tag, seq)
    );
    """,
    # 3: the search proposer's parameter importances (JSON, one row per computation; the latest counts)
    """
    CREATE TABLE importances (
        tag          TEXT NOT NULL,
        computed_at  REAL NOT NULL,
        json         TEXT NOT NULL
    );
    CREATE INDEX importances_tag ON importances(tag, computed_at);
    """,
    # 4: with a protected evaluation, the metric the job itself printed (the eval's is `metric`)
    """
    ALTER TABLE trials ADD COLUMN claimed REAL;
    """,
]

# A trial's internal ``state`` refines its contract ``status`` (model.STATUSES).
STATES = ("queued", "running", "judging", "final")
#: A hardware class's judged state (the primary class's lives in the runs row).
CLASS_FIELDS = ("baseline_metric", "baseline_runs", "noise", "best_trial", "best_metric", "best_commit")
#: The fields of a decided trial the checksum chain covers.
TRIAL_DIGEST_FIELDS = ("id", "kind", "state", "status", "reason", "metric", "claimed", "commit", "parent",
                       "description", "hardware", "gpu", "memory_gb", "confirm_of", "reapply_of", "exit_code",
                       "seconds", "content_hash", "meta")
#: The fields of a run the checksum chain covers (with every class row).
RUN_DIGEST_FIELDS = ("base_commit", "branch", "protected", "settings", *CLASS_FIELDS)


def _sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def trial_digest(trial: Trial) -> str:
    """The checksum of a decided trial's row (the fields in TRIAL_DIGEST_FIELDS)."""
    return _sha({k: getattr(trial, k) for k in TRIAL_DIGEST_FIELDS})


def run_digest(run: Run, classes: dict[str, dict[str, Any]]) -> str:
    """The checksum of a run's judged state: its RUN_DIGEST_FIELDS and every class row."""
    return _sha({"run": {k: getattr(run, k) for k in RUN_DIGEST_FIELDS},
                 "classes": {c: {k: row.get(k) for k in CLASS_FIELDS} for c, row in sorted(classes.items())}})


def link_of(prev: str, content: str, run: str) -> str:
    """One link of the chain: sha256 of the previous link, the trial's digest and the run's."""
    return hashlib.sha256(f"{prev}\n{content}\n{run}".encode()).hexdigest()


class Ledger:
    """Typed access to ``ledger.db``; safe to share between threads of one process.

    Trials and runs are read as :class:`~agentdeck.research.model.Trial` / ``Run`` and written
    by their field names (``Trial.columns`` / ``Run.columns`` map them to the tables)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        _ = self.conn  # create and migrate now, in the caller's thread

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
        fields = Run.columns(fields)
        cols = ", ".join(["tag", *fields])
        marks = ", ".join("?" * (len(fields) + 1))
        with transaction(self.conn) as c:
            c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", (tag, *fields.values()))

    def run(self, tag: str) -> Run | None:
        row = self.conn.execute("SELECT * FROM runs WHERE tag = ?", (tag,)).fetchone()
        return Run.from_row(row) if row else None

    def tags(self) -> list[str]:
        return [r["tag"] for r in self.conn.execute("SELECT tag FROM runs ORDER BY created_at, tag")]

    def latest_tag(self) -> str | None:
        row = self.conn.execute("SELECT tag FROM runs ORDER BY created_at DESC, tag DESC LIMIT 1").fetchone()
        return row["tag"] if row else None

    def update_run(self, tag: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        fields = Run.columns(fields)
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
        fields = Trial.columns(fields)
        with transaction(self.conn) as c:
            row = c.execute("SELECT COALESCE(MAX(id), 0) + 1 AS n FROM trials WHERE tag = ?", (tag,)).fetchone()
            trial_id = int(row["n"])
            cols = ", ".join(["tag", "id", *fields])
            marks = ", ".join("?" * (len(fields) + 2))
            c.execute(f"INSERT INTO trials ({cols}) VALUES ({marks})", (tag, trial_id, *fields.values()))
        return trial_id

    def update_trial(self, tag: str, trial_id: int, **fields: Any) -> None:
        fields = Trial.columns(fields)
        cols = ", ".join(f"{k} = ?" for k in fields)
        with transaction(self.conn) as c:
            c.execute(f"UPDATE trials SET {cols} WHERE tag = ? AND id = ?", (*fields.values(), tag, trial_id))

    def trial(self, tag: str, trial_id: int) -> Trial | None:
        row = self.conn.execute("SELECT * FROM trials WHERE tag = ? AND id = ?", (tag, trial_id)).fetchone()
        return Trial.from_row(row) if row else None

    def trials(self, tag: str, states: Iterable[str] | None = None) -> list[Trial]:
        sql = "SELECT * FROM trials WHERE tag = ?"
        params: list[Any] = [tag]
        if states is not None:
            states = list(states)
            sql += f" AND state IN ({','.join('?' * len(states))})"
            params.extend(states)
        rows = self.conn.execute(sql + " ORDER BY id", params).fetchall()
        return [Trial.from_row(r) for r in rows]

    # ------------------------------------------------------------------ hardware classes
    def class_rows(self, tag: str) -> dict[str, dict[str, Any]]:
        """The judged state of every class of *tag* other than the primary: class -> row."""
        rows = self.conn.execute("SELECT * FROM classes WHERE tag = ? ORDER BY class", (tag,)).fetchall()
        return {r["class"]: {k: r[k] for k in CLASS_FIELDS} for r in rows}

    # ------------------------------------------------------------------ decisions and the chain
    def record_decision(self, tag: str, trial_id: int | None, fields: dict[str, Any] | None = None,
                        run_fields: dict[str, Any] | None = None,
                        class_fields: tuple[str, dict[str, Any]] | None = None) -> tuple[int, str]:
        """One decision, in one transaction: update the trial (*fields*), the run's judged state
        (*run_fields*: the primary class) or a class row (*class_fields*: (class, fields)), and
        append a link to the chain.  With *trial_id* None only a link is appended (the run's
        state as it is now, e.g. when a loop starts).  Returns (links so far, the new link)."""
        fields = Trial.columns(fields or {})
        with transaction(self.conn) as c:
            if trial_id is not None and fields:
                cols = ", ".join(f"{k} = ?" for k in fields)
                c.execute(f"UPDATE trials SET {cols} WHERE tag = ? AND id = ?", (*fields.values(), tag, trial_id))
            if run_fields:
                run_fields = Run.columns(run_fields)
                run_fields["updated_at"] = time.time()
                cols = ", ".join(f"{k} = ?" for k in run_fields)
                c.execute(f"UPDATE runs SET {cols} WHERE tag = ?", (*run_fields.values(), tag))
            if class_fields:
                cls, values = class_fields
                values = Run.columns(values)  # (a class's judged state: the run's judged fields)
                c.execute("INSERT OR IGNORE INTO classes (tag, class) VALUES (?, ?)", (tag, cls))
                cols = ", ".join(f"{k} = ?" for k in values)
                c.execute(f"UPDATE classes SET {cols} WHERE tag = ? AND class = ?", (*values.values(), tag, cls))
            return self._append_link(c, tag, trial_id)

    def start_chain(self, tag: str) -> tuple[int, str]:
        """Start the chain of a run that has none (a new run, or one recorded before the chain
        existed): a link per decided trial as it stands, then one for the run's state — one
        transaction.  Returns the chain's head (unchanged when it already had links)."""
        with transaction(self.conn) as c:
            last = c.execute("SELECT seq, link FROM chain WHERE tag = ? ORDER BY seq DESC LIMIT 1", (tag,)).fetchone()
            if last is not None:
                return int(last["seq"]), last["link"]
            for row in c.execute("SELECT id FROM trials WHERE tag = ? AND state = 'final' ORDER BY id",
                                 (tag,)).fetchall():
                self._append_link(c, tag, row["id"])
            return self._append_link(c, tag, None)

    def _append_link(self, c: sqlite3.Connection, tag: str, trial_id: int | None) -> tuple[int, str]:
        last = c.execute("SELECT seq, link FROM chain WHERE tag = ? ORDER BY seq DESC LIMIT 1", (tag,)).fetchone()
        seq = (last["seq"] + 1) if last else 1
        prev = last["link"] if last else ""
        content = ""
        if trial_id is not None:
            row = c.execute("SELECT * FROM trials WHERE tag = ? AND id = ?", (tag, trial_id)).fetchone()
            content = trial_digest(Trial.from_row(row)) if row else ""
        run_row = c.execute("SELECT * FROM runs WHERE tag = ?", (tag,)).fetchone()
        run = run_digest(Run.from_row(run_row), self.class_rows(tag)) if run_row else ""
        link = link_of(prev, content, run)
        c.execute("INSERT INTO chain (tag, seq, trial, content, run, link, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (tag, seq, trial_id, content, run, link, time.time()))
        return seq, link

    def chain(self, tag: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM chain WHERE tag = ? ORDER BY seq", (tag,))]

    def chain_head(self, tag: str) -> tuple[int, str]:
        """(links so far, the last link; "" when there is none)."""
        row = self.conn.execute("SELECT seq, link FROM chain WHERE tag = ? ORDER BY seq DESC LIMIT 1",
                                (tag,)).fetchone()
        return (int(row["seq"]), row["link"]) if row else (0, "")

    def chain_problem(self, tag: str, head: tuple[int, str] | None = None) -> str:
        """What in *tag*'s rows disagrees with its checksum chain ("" when nothing does).

        Checks that each link follows from the one before; that the chain ends at *head* (the
        loop's own record of it: a rewritten chain does not); that every decided trial is the
        row the harness decided; and that the run's judged state is the one the last decision
        left.  A run recorded before the chain existed (no link at all) has nothing to check.
        """
        c = self.conn
        c.execute("BEGIN")  # a read transaction: one consistent snapshot of every table
        try:
            links = [dict(r) for r in c.execute("SELECT * FROM chain WHERE tag = ? ORDER BY seq", (tag,))]
            trials = [Trial.from_row(r) for r in c.execute("SELECT * FROM trials WHERE tag = ? ORDER BY id", (tag,))]
            run_row = c.execute("SELECT * FROM runs WHERE tag = ?", (tag,)).fetchone()
            classes = self.class_rows(tag)
        finally:
            c.execute("COMMIT")
        prev = ""
        for row in links:
            if row["link"] != link_of(prev, row["content"], row["run"]):
                return f"the decision record's link {row['seq']} was altered"
            prev = row["link"]
        if head is not None and (len(links), prev) != (head[0], head[1]):
            return "the decision record was rewritten (its chain no longer ends where the loop left it)"
        if not links:
            return ""
        decided = {row["trial"]: row["content"] for row in links if row["trial"] is not None}
        present = set()
        for t in trials:
            present.add(t.id)
            digest = decided.get(t.id)
            if t.state == "final":
                if digest is None:
                    return f"trial {t.id} is recorded as decided ({t.status}) but the harness never decided it"
                if digest != trial_digest(t):
                    return f"trial {t.id}'s row differs from the harness's decision"
            elif digest is not None:
                return f"trial {t.id}'s decision was undone"
        gone = sorted(set(decided) - present)
        if gone:
            return f"trial {gone[0]} was removed"
        if run_row is None:
            return "the run's row was removed"
        if links[-1]["run"] != run_digest(Run.from_row(run_row), classes):
            return "the run's baseline, best or settings changed"
        return ""

    # ------------------------------------------------------------------ agent proposer handshake
    def open_agent_request(self, tag: str, agent: str) -> int:
        with transaction(self.conn) as c:
            c.execute("UPDATE agent_requests SET state = 'superseded' WHERE agent = ? AND state = 'open'", (agent,))
            cur = c.execute("INSERT INTO agent_requests (tag, agent, requested_at) VALUES (?, ?, ?)",
                            (tag, agent, time.time()))
            assert cur.lastrowid is not None  # set by every INSERT
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
