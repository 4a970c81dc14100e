"""What the deck shows, as plain data: rows, status looks, ages.  No Textual, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

# status -> (symbol, style).  Waiting must stand out; exited is quiet.
STATUS_LOOK: dict[str, tuple[str, str]] = {
    "starting": ("◌", "cyan"),
    "working": ("●", "green"),
    "waiting": ("◆", "bold black on yellow"),
    "idle": ("○", "bright_white"),
    "exited": ("✕", "red"),
}
UNKNOWN_LOOK = ("?", "magenta")


@dataclass(frozen=True)
class AgentRow:
    """One agent as the list shows it (built from an AgentRecord in a worker)."""

    name: str
    definition: str
    kind: str
    status: str
    branch: str
    base_branch: str
    created_at: str
    status_at: float
    kept: bool
    worktree: str
    session: str
    sandbox: str = "none"
    """The sandbox label (``agent``, ``bwrap/auto``...; ``none`` shows nothing)."""

    @classmethod
    def from_record(cls, rec: Any) -> AgentRow:
        from agentdeck.views import sandbox_fields, sandbox_label

        return cls(
            name=rec.name, definition=rec.definition, kind=rec.kind, status=rec.status, branch=rec.branch,
            base_branch=rec.base_branch, created_at=rec.created_at, status_at=float(rec.status_at or 0.0),
            kept=bool(rec.kept), worktree=rec.worktree, session=rec.session,
            sandbox=sandbox_label(sandbox_fields(getattr(rec, "extra", None))),
        )

    @property
    def waiting(self) -> bool:
        return self.status == "waiting"

    @property
    def exited(self) -> bool:
        return self.status == "exited"

    @property
    def status_word(self) -> str:
        return "exited (kept)" if self.exited and self.kept else self.status

    def matches(self, query: str) -> bool:
        q = query.strip().lower()
        if not q:
            return True
        hay = f"{self.name} {self.definition} {self.status} {self.branch}".lower()
        return all(word in hay for word in q.split())


def status_look(status: str) -> tuple[str, str]:
    return STATUS_LOOK.get(status, UNKNOWN_LOOK)


def parse_created(created_at: str) -> float | None:
    try:
        return datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def format_age(created_at: str, now: float) -> str:
    then = parse_created(created_at)
    if then is None:
        return "?"
    secs = max(0, int(now - then))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def format_size(size: tuple[int, int] | None) -> tuple[str, str]:
    """(added, removed) cells; '…' while unknown."""
    if size is None:
        return "…", ""
    added, removed = size
    return f"+{added}", f"-{removed}"


@dataclass(frozen=True)
class Counts:
    total: int = 0
    waiting: int = 0
    working: int = 0
    idle: int = 0
    exited: int = 0

    @classmethod
    def of(cls, rows: list[AgentRow]) -> Counts:
        def n(status: str) -> int:
            return sum(1 for r in rows if r.status == status)

        return cls(total=len(rows), waiting=n("waiting"), working=n("working") + n("starting"), idle=n("idle"),
                   exited=n("exited"))
