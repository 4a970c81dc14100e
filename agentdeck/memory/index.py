"""The memory search index: SQLite FTS5 ranked by bm25, a rebuildable cache of the files.

The Markdown files are the truth; this database only makes them fast to find.
It lives in agentdeck's state directory (never beside the notes, which a user
may track in git), can be deleted at any time, and is rebuilt from the files
when it is missing, empty, corrupt, or was built for another memory directory.
It is never thrown away for a passing fault: on a full disk (or an I/O error, a
read-only or locked file) opening it is a :class:`Refused` naming the cause and
the file is kept as it was -- SQLite's journal keeps it consistent -- so it
catches up once the disk has room.  A symlink found at its name (or at its
``-wal``/``-shm``) is removed, never followed.

Every row carries the fingerprint (inode, mtime, size) of the file it was read
from, so :meth:`MemoryIndex.fingerprints` lets the store reconcile the index
with the files by ``stat`` alone.  Only active documents are in the full-text
table: superseded and forgotten notes cannot be found by search.

Connections are per thread (the MCP server runs plain tools on worker
threads, the deck runs searches in workers), opened with
:func:`agentdeck.store.connect` and this module's own migrations.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdeck import fsutil
from agentdeck.errors import Refused
from agentdeck.memory.notes import Note
from agentdeck.store import transaction

MIGRATIONS: list[str] = [
    # 1: documents (notes, journals, CORE) and their full text
    """
    CREATE TABLE docs (
        rowid    INTEGER PRIMARY KEY,
        id       TEXT NOT NULL UNIQUE,
        path     TEXT NOT NULL,
        title    TEXT NOT NULL DEFAULT '',
        kind     TEXT NOT NULL DEFAULT 'note',
        tags     TEXT NOT NULL DEFAULT '[]',
        author   TEXT NOT NULL DEFAULT '',
        branch   TEXT NOT NULL DEFAULT '',
        created  TEXT NOT NULL DEFAULT '',
        updated  TEXT NOT NULL DEFAULT '',
        status   TEXT NOT NULL DEFAULT 'active',
        version  INTEGER NOT NULL DEFAULT 1,
        summary  TEXT NOT NULL DEFAULT '',
        ino      INTEGER NOT NULL DEFAULT 0,
        mtime_ns INTEGER NOT NULL DEFAULT 0,
        size     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX docs_updated ON docs(updated);
    CREATE VIRTUAL TABLE docs_fts USING fts5(
        title, tags, body, tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
]

FTS_TABLE_SQL = (
    "CREATE VIRTUAL TABLE docs_fts USING fts5("
    "title, tags, body, tokenize = 'porter unicode61 remove_diacritics 2')"
)

# Column weights for bm25: a word in the title counts most, then tags, then the body.
WEIGHTS = (6.0, 3.0, 1.0)
SNIPPET_TOKENS = 18
SUMMARY_CHARS = 200

# Dropped from a query when other words remain: they match nearly every note.
STOPWORDS = frozenset(
    """a an and are as at be by can do does for from has have how i if in is it its of on or our
    should so that the then there this to was we what when where which who why will with you""".split()
)


@dataclass
class IndexDoc:
    """One file as the index sees it: the note read from it, where it is, and its fingerprint."""

    note: Note
    path: str  # relative to the memory root, with forward slashes
    fingerprint: tuple[int, int, int] = (0, 0, 0)  # (inode, mtime_ns, size)

    @property
    def id(self) -> str:
        return self.note.id

    def row(self) -> tuple[Any, ...]:
        """Its ``docs`` columns, ``id`` to ``size``."""
        n = self.note
        return (n.id, self.path, n.title, n.kind, json.dumps(n.tags), n.author, n.branch, n.created, n.updated,
                n.status, n.version, summarize(n.body), *self.fingerprint)

    def text(self) -> tuple[str, str, str] | None:
        """Its ``docs_fts`` columns (title, tags, body); None unless active (only those are searched)."""
        n = self.note
        return (n.title, " ".join(n.tags), n.body) if n.status == "active" else None


def summarize(body: str, limit: int = SUMMARY_CHARS) -> str:
    text = " ".join(body.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def fts_query(text: str) -> str | None:
    """A safe FTS5 MATCH expression for free text (None when nothing is searchable).

    Words are quoted (no FTS syntax gets through), joined with OR so a note
    matching more words ranks higher instead of a single missing word hiding
    it, and the last word matches as a prefix (search as you type).
    """
    words = [w.lower() for w in re.findall(r"\w+", text)]
    if not words:
        return None
    meaningful = [w for w in words if w not in STOPWORDS]
    if meaningful:
        words = meaningful
    # Keep order, drop repeats, bound the work.
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    unique = list(seen)[:24]
    last_is_prefix = not text[-1:].isspace() and text.rstrip()[-1:].isalnum()
    terms = [f'"{w}"' for w in unique]
    if last_is_prefix and unique[-1] == words[-1] and len(unique[-1]) >= 2:
        terms[-1] = f'"{unique[-1]}"*'
    return " OR ".join(terms)


class MemoryIndex:
    """The FTS index of one memory directory (*root_key* names it, for rebuild checks)."""

    def __init__(self, path: Path | str, root_key: str):
        self.path = Path(path)
        self.root_key = root_key
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connections
    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        from agentdeck.store import connect

        self._drop_links()
        conn = None
        try:
            conn = connect(self.path, migrations=MIGRATIONS)
            return self._check(conn)
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if "fts5" in str(exc).lower():
                raise Refused(
                    "this Python's SQLite has no FTS5 full-text search; install a Python built with "
                    "a recent SQLite (3.9+ with FTS5)"
                ) from exc
            if not _is_damage(exc):
                raise Refused(_open_failure(exc, self.path)) from exc
            # A cache: throw a corrupt file away and start again.
            self.discard_files()
            try:
                return self._check(connect(self.path, migrations=MIGRATIONS))
            except sqlite3.DatabaseError as again:
                raise Refused(_open_failure(again, self.path)) from again

    def _drop_links(self) -> None:
        """Remove a symlink (or other non-file) at the index's names: SQLite would write through it."""
        import stat

        for suffix in ("", "-wal", "-shm", "-journal"):
            name = f"{self.path}{suffix}"
            try:
                st = os.lstat(name)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
                os.unlink(name)

    @staticmethod
    def _check(conn: sqlite3.Connection) -> sqlite3.Connection:
        conn.execute("SELECT count(*) FROM docs_fts WHERE docs_fts MATCH 'x'").fetchone()
        return conn

    def discard_files(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing a connection of another thread
                pass
        self._local = threading.local()

    # ------------------------------------------------------------------ building
    def ensure_built(self, load_all: Callable[[], Iterable[IndexDoc]]) -> bool:
        """Build from the files once (when empty or built for another root). True if it built."""
        conn = self.conn
        row = conn.execute("SELECT value FROM meta WHERE key = 'root'").fetchone()
        if row is not None and row["value"] == self.root_key:
            return False
        with _transaction(conn):
            row = conn.execute("SELECT value FROM meta WHERE key = 'root'").fetchone()
            if row is not None and row["value"] == self.root_key:
                return False
            self._replace_all(conn, load_all())
        return True

    def rebuild(self, docs: Iterable[IndexDoc]) -> int:
        with _transaction(self.conn) as conn:
            return self._replace_all(conn, docs)

    def _replace_all(self, conn: sqlite3.Connection, docs: Iterable[IndexDoc]) -> int:
        conn.execute("DELETE FROM docs")
        # Dropping the full-text table is much faster than deleting its rows one by one.
        conn.execute("DROP TABLE docs_fts")
        conn.execute(FTS_TABLE_SQL)
        count = 0
        batch: list[IndexDoc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= 500:
                self._insert_many(conn, batch, count)
                count += len(batch)
                batch = []
        if batch:
            self._insert_many(conn, batch, count)
            count += len(batch)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('root', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (self.root_key,),
        )
        return count

    @staticmethod
    def _insert_many(conn: sqlite3.Connection, docs: list[IndexDoc], offset: int) -> None:
        """Bulk insert into emptied tables (rowids assigned here)."""
        rows = []
        texts = []
        for i, doc in enumerate(docs, start=offset + 1):
            rows.append((i, *doc.row()))
            text = doc.text()
            if text is not None:
                texts.append((i, *text))
        conn.executemany(
            """INSERT INTO docs (rowid, id, path, title, kind, tags, author, branch, created, updated, status,
               version, summary, ino, mtime_ns, size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            rows,
        )
        conn.executemany("INSERT INTO docs_fts (rowid, title, tags, body) VALUES (?,?,?,?)", texts)

    @staticmethod
    def _insert(conn: sqlite3.Connection, doc: IndexDoc) -> None:
        cur = conn.execute(
            """INSERT INTO docs (id, path, title, kind, tags, author, branch, created, updated, status,
               version, summary, ino, mtime_ns, size) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
            doc.row(),
        )
        text = doc.text()
        if text is not None:
            conn.execute("INSERT INTO docs_fts (rowid, title, tags, body) VALUES (?,?,?,?)", (cur.lastrowid, *text))

    @staticmethod
    def _delete(conn: sqlite3.Connection, doc_id: str) -> None:
        row = conn.execute("SELECT rowid FROM docs WHERE id = ?", (doc_id,)).fetchone()
        if row is not None:
            conn.execute("DELETE FROM docs_fts WHERE rowid = ?", (row[0],))
            conn.execute("DELETE FROM docs WHERE rowid = ?", (row[0],))

    # ------------------------------------------------------------------ changes
    def upsert(self, docs: Iterable[IndexDoc]) -> None:
        with _transaction(self.conn) as conn:
            for doc in docs:
                self._delete(conn, doc.id)
                self._insert(conn, doc)

    def apply(self, upserts: Iterable[IndexDoc], removals: Iterable[str]) -> None:
        with _transaction(self.conn) as conn:
            for doc_id in removals:
                self._delete(conn, doc_id)
            for doc in upserts:
                self._delete(conn, doc.id)
                self._insert(conn, doc)

    def fingerprints(self) -> dict[str, tuple[str, tuple[int, int, int]]]:
        rows = self._tuples("SELECT id, path, ino, mtime_ns, size FROM docs")
        return {doc_id: (path, (ino, mtime_ns, size)) for doc_id, path, ino, mtime_ns, size in rows}

    def _tuples(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples (much cheaper than sqlite3.Row for thousands of rows)."""
        conn = self.conn
        conn.row_factory = None
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.row_factory = sqlite3.Row

    # ------------------------------------------------------------------ queries
    def search(self, query: str, limit: int = 10, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
        match = fts_query(query)
        if match is None or limit <= 0:
            return []
        conn = self.conn
        kind_list = list(kinds or [])
        kind_sql = ""
        params: list[Any] = [match]
        if kind_list:
            kind_sql = f" AND d.kind IN ({','.join('?' * len(kind_list))})"
            params.extend(kind_list)
        # Rank first (cheap), then build snippets for the few rows shown.
        ranked = conn.execute(
            f"""SELECT docs_fts.rowid AS rid, bm25(docs_fts, {WEIGHTS[0]}, {WEIGHTS[1]}, {WEIGHTS[2]}) AS score
                FROM docs_fts JOIN docs d ON d.rowid = docs_fts.rowid
                WHERE docs_fts MATCH ?{kind_sql} ORDER BY score LIMIT ?""",
            (*params, int(limit)),
        ).fetchall()
        if not ranked:
            return []
        order = {r["rid"]: (i, r["score"]) for i, r in enumerate(ranked)}
        marks = ",".join("?" * len(order))
        rows = conn.execute(
            f"""SELECT d.rowid AS rid, d.id, d.path, d.title, d.kind, d.tags, d.author, d.branch, d.updated,
                       d.version, d.status,
                       snippet(docs_fts, 2, '**', '**', '…', {SNIPPET_TOKENS}) AS snippet
                FROM docs_fts JOIN docs d ON d.rowid = docs_fts.rowid
                WHERE docs_fts MATCH ? AND docs_fts.rowid IN ({marks})""",
            (match, *order),
        ).fetchall()
        hits = []
        for r in rows:
            hit = _row_dict(r)
            hit["snippet"] = " ".join((r["snippet"] or "").split())
            hit["score"] = round(-order[r["rid"]][1], 4)
            hits.append((order[r["rid"]][0], hit))
        hits.sort(key=lambda pair: pair[0])
        return [hit for _, hit in hits]

    def recent(self, limit: int = 20, kinds: Iterable[str] | None = None,
               exclude_kinds: Iterable[str] = ("journal", "core"), active_only: bool = True) -> list[dict[str, Any]]:
        sql = "SELECT * FROM docs WHERE 1=1"
        params: list[Any] = []
        if active_only:
            sql += " AND status = 'active'"
        kind_list = list(kinds or [])
        if kind_list:
            sql += f" AND kind IN ({','.join('?' * len(kind_list))})"
            params.extend(kind_list)
        excluded = [k for k in exclude_kinds if k not in kind_list]
        if excluded:
            sql += f" AND kind NOT IN ({','.join('?' * len(excluded))})"
            params.extend(excluded)
        sql += " ORDER BY updated DESC, rowid DESC LIMIT ?"
        params.append(int(limit))
        return [_row_dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def rows(self) -> list[dict[str, Any]]:
        """Every note row, newest first."""
        rows = self.conn.execute(
            "SELECT * FROM docs WHERE kind NOT IN ('journal', 'core') ORDER BY updated DESC, rowid DESC"
        ).fetchall()
        return [_row_dict(r) for r in rows]

    def index_rows(self) -> list[tuple[str, str, str, str, str, str, str, str]]:
        """``(id, path, title, kind, tags json, author, updated, status)`` of every note, newest first.

        A plain tuple query: INDEX.md is regenerated on every write and must stay cheap.
        """
        return self._tuples(
            "SELECT id, path, title, kind, tags, author, updated, status FROM docs "
            "WHERE kind NOT IN ('journal', 'core') ORDER BY updated DESC, rowid DESC"
        )

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM docs").fetchone()[0])


_transaction = transaction  # BEGIN IMMEDIATE ... COMMIT, rolled back on any error (agentdeck.store)


# SQLite result codes (the low byte of sqlite_errorcode, Python 3.11+) of a damaged file.
_DAMAGE_CODES = {1, 11, 26}  # SQLITE_ERROR (schema not ours), SQLITE_CORRUPT, SQLITE_NOTADB
_FAULT_WORDS = ("disk is full", "i/o error", "unable to open", "readonly", "read-only", "locked", "busy",
                "out of memory", "no space")


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """True when the file itself is broken (rebuild it), not when the disk or a lock is in the way."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _DAMAGE_CODES
    text = str(exc).lower()
    return not any(word in text for word in _FAULT_WORDS)


def _open_failure(exc: BaseException, path: Path) -> str:
    if fsutil.disk_full(exc, path.parent):
        return (f"disk full: the search index {path} cannot be opened or updated; free some space "
                "(the notes themselves are safe; the index catches up by itself)")
    return f"the search index {path} cannot be opened ({exc}); the notes are safe: fix that and retry"


def _row_dict(row: sqlite3.Row) -> dict[str, Any]:
    keys = row.keys()
    out: dict[str, Any] = {
        "id": row["id"],
        "title": row["title"],
        "kind": row["kind"],
        "tags": json.loads(row["tags"] or "[]"),
        "path": row["path"],
        "author": row["author"],
        "branch": row["branch"],
        "updated": row["updated"],
        "version": row["version"],
        "status": row["status"],
    }
    if "summary" in keys:
        out["summary"] = row["summary"]
    if "created" in keys:
        out["created"] = row["created"]
    return out
