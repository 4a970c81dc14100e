"""What the deck's operations return across its boundary (to the CLI, TUI, MCP and review).

Each result's :meth:`to_json` is the object the CLI prints for ``--json``; its fields and
their order are the contract's (/work/shared/CONTRACT.md), so they never change here alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class KillResult:
    """The outcome of ``Deck.kill``: the worktree and branch were removed (``removed``), or kept
    because they hold work and ``--discard`` was not given (``kept``); ``recovery_ref`` is where
    discarded work was saved; ``uncommitted``/``commits`` count that work."""

    name: str
    removed: bool = False
    kept: bool = False
    recovery_ref: str | None = None
    uncommitted: int = 0
    commits: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StuckItem:
    """Something an interrupted operation left (``Deck.stuck``, shown by ``doctor``) and its fix."""

    name: str
    detail: str
    fix: str


@dataclass
class _ByKind:
    """Names by kind of thing, as ``gc`` plans and reports them: worktrees, tmux sessions and
    recovery refs first, then each subclass's kinds; :meth:`to_json` keeps that order."""

    worktrees: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, list[str]]:
        return dataclasses.asdict(self)


@dataclass
class GcPlan(_ByKind):
    """What ``gc`` would remove (``Deck.gc_plan``): worktrees and tmux sessions no agent owns, expired
    recovery refs, git worktree entries to prune, agents left by an interrupted launch or removal,
    and trash folders of an interrupted removal."""

    prune: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    trash: list[str] = field(default_factory=list)

    def total(self) -> int:
        return sum(len(items) for items in self.to_json().values())


@dataclass
class GcReport(_ByKind):
    """What ``Deck.gc`` removed (``pruned``: git worktree entries), and the recovery refs where
    it ``saved`` work first."""

    pruned: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    trash: list[str] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
