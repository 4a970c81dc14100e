"""SQLite as agentdeck uses it, for every database it keeps (the state store, the memory index,
the research ledger): WAL mode, a busy timeout and short transactions make many concurrent writers
the normal case; each schema is versioned (``PRAGMA user_version``) with forward-only migrations
that its owner passes to :func:`connect`.  Standard library only.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000

# SQLite's primary result codes for a damaged file: SQLITE_CORRUPT, SQLITE_NOTADB.
_CORRUPT_CODES = (11, 26)


def is_corruption(exc: BaseException) -> bool:
    """True when *exc* says the database file itself is damaged (not busy, not locked, not full)."""
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(
        exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)
    ):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _CORRUPT_CODES
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def file_identity(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of the file at *path*, or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def connect(path: Path | str, migrations: list[str]) -> sqlite3.Connection:
    """Open (creating and migrating to *migrations*) a database in WAL mode with a busy timeout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    _migrate(conn, migrations)
    return conn


def _migrate(conn: sqlite3.Connection, migrations: list[str]) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= len(migrations):
        return
    # BEGIN IMMEDIATE serialises concurrent first-time creators.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number in range(version, len(migrations)):
            for statement in migrations[number].split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version={len(migrations)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A short write transaction (BEGIN IMMEDIATE: fail fast into the busy handler)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")  # inside the try: a COMMIT that fails (a full disk) is rolled back too
    except BaseException:
        # After SQLITE_FULL (or an I/O error) SQLite may have rolled back already: a plain ROLLBACK would
        # then raise "no transaction is active" and hide the real error.
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise
