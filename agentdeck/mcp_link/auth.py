"""Who is calling the HTTP server: bearer tokens, and the ``Host`` / ``Origin`` rules.

Each agent launch gets a fresh random token (:func:`new_token`).  The agent's
environment carries the token (``AGENTDECK_MCP_TOKEN``, through the launcher's 0600
hand-over file, never a command line); the state database keeps only its sha256, in the
agent's row (``extra["mcp"]["token_sha256"]``).  :class:`TokenBook` maps a presented
token to its agent: the row must exist, carry that digest, and not be killed (``kept``
or being removed).  A restart issues a new token, so the old one stops working; a killed
agent's row is deleted or marked, so its token stops working too.

What the token protects (agents share one user id): another program of the user, a
browser page (no ``Origin`` of ours, no token) or an agent's mistake cannot write as
some other agent; an agent that reads another's environment through ``/proc`` can.  The
sandboxed-agents work makes it a boundary by hiding ``/proc`` of other agents.

Standard library only (the deck imports it on every launch).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import sqlite3

#: Keys of an agent row's ``extra`` that mean the agent was killed (its token is revoked).
KILLED_MARKS = ("removing",)


@dataclass(frozen=True)
class Identity:
    """The agent a request speaks for (from its token, never from what the request says)."""

    name: str
    worktree: str = ""
    launch: str = ""  # the first hex digits of the token's digest: one per launch of the agent


def new_token() -> tuple[str, str]:
    """``(token, sha256 hex)``: 256 random bits, URL-safe."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header ('' when absent or another scheme)."""
    if not header:
        return ""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return value.strip()


class TokenBook:
    """Token digest -> agent, read from the agents table and cached until the database changes.

    ``PRAGMA data_version`` tells (for free) when another connection committed: the table
    is read again only then, so a lookup costs one pragma and a dictionary access.
    """

    def __init__(self, store: Any):
        self._store = store  # an agentdeck.store.Store (one connection per thread)
        self._lock = threading.Lock()
        self._version: tuple[int, int] | None = None
        self._by_digest: dict[str, Identity] = {}

    def _reload(self) -> None:
        conn: sqlite3.Connection = self._store.conn
        version = (id(conn), conn.execute("PRAGMA data_version").fetchone()[0])
        if version == self._version:
            return
        table: dict[str, Identity] = {}
        for row in conn.execute("SELECT name, worktree, kept, extra FROM agents"):
            try:
                extra = json.loads(row[3] or "{}")
            except ValueError:
                continue
            mcp = extra.get("mcp") if isinstance(extra, dict) else None
            if not isinstance(mcp, dict) or row[2] or any(extra.get(k) for k in KILLED_MARKS):
                continue
            token_digest = mcp.get("token_sha256")
            if isinstance(token_digest, str) and len(token_digest) == 64:
                table[token_digest] = Identity(row[0], row[1] or "", token_digest[:16])
        self._by_digest = table
        self._version = version

    def lookup(self, token: str) -> Identity | None:
        """The agent holding *token*, or None (unknown, revoked, empty)."""
        if not token:
            return None
        wanted = digest(token)
        with self._lock:
            self._reload()
            for known, who in self._by_digest.items():
                if hmac.compare_digest(known, wanted):
                    return who
        return None

    def agents(self) -> set[str]:
        """Names of the agents whose token is valid now."""
        with self._lock:
            self._reload()
            return {who.name for who in self._by_digest.values()}


# ----------------------------------------------------------------------------- Host and Origin


def allowed_hosts(port: int) -> set[str]:
    """``Host`` values a request may carry: this server's loopback address and port, nothing else.

    A page on a DNS-rebound name (``evil.example`` resolving to 127.0.0.1) sends its own
    name as ``Host`` and is refused.
    """
    return {f"127.0.0.1:{port}", f"localhost:{port}"}


def host_ok(host: str | None, port: int) -> bool:
    return host is not None and host.lower() in allowed_hosts(port)


def origin_ok(origin: str | None, port: int) -> bool:
    """No ``Origin`` (the agent CLIs send none) is fine; a browser's must be this very server."""
    if origin is None or origin == "":
        return True
    return origin.lower() in {f"http://{h}" for h in allowed_hosts(port)}


def describe(identity: Any) -> str:
    return getattr(identity, "name", "") or "user"
