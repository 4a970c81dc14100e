"""Conflict radar: which agents touch the same files, and which would conflict if merged now.

For each agent, its current work (branch plus uncommitted changes, copied setup
files left out) is snapshotted as a dangling commit, and the paths it touches
since its merge-base are listed.  Only pairs whose touched paths overlap get a
real merge check (``git merge-tree --write-tree``, no checkout touched); each
agent is also checked against its base branch when the base has moved and the
base's new changes overlap the agent's.

Snapshots and merge checks run in a small thread pool (each is a git process).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agentdeck.errors import AgentdeckError
from agentdeck.review import _git
from agentdeck.review.diff import Side, side_state

BASE = "<base>"


@dataclass
class ConflictEntry:
    agents: tuple[str, str]  # (A, B) or (A, "<base>")
    files: list[str]  # paths both sides touch
    conflict: bool  # True when merging the two now would conflict
    conflict_files: list[str] = field(default_factory=list)  # the conflicting paths, when conflict

    def to_json(self) -> dict[str, Any]:
        return {"agents": list(self.agents), "files": self.files, "conflict": self.conflict}


@dataclass
class _State:
    name: str
    state: str  # commit-ish holding the agent's current work
    base: str  # base branch tip
    merge_base: str
    touched: frozenset[str]


def _workers(n: int) -> int:
    return max(1, min(n, (os.cpu_count() or 2) * 2, 16))


def radar(sides: Sequence[tuple[str, Side]], include_base: bool = True) -> list[ConflictEntry]:
    """Overlaps and conflicts between agents (and each agent vs. its base).

    *sides* is a list of (agent name, :class:`Side`).  Entries come in a stable
    order: pairs in the order of *sides*, each agent's base entry after its pairs.
    """
    if not sides:
        return []
    root = sides[0][1].root

    # Base tips once per distinct base (most agents share one).
    tips: dict[tuple[str, str], str | None] = {}
    for _name, side in sides:
        key = (side.base_branch, side.base_commit)
        if key not in tips:
            try:
                tips[key] = _git.base_tip(root, *key)
            except AgentdeckError:
                tips[key] = None

    def snap(item: tuple[str, Side]) -> _State | None:
        name, side = item
        base = tips[(side.base_branch, side.base_commit)]
        if base is None:
            return None
        try:
            state, _head, mb = side_state(side, base)
        except AgentdeckError:  # an agent whose branch vanished must not blind the radar
            return None
        touched = frozenset(_git.changed_paths(side.root, mb, state)) - side.ignore
        return _State(name, state, base, mb, touched)

    with ThreadPoolExecutor(max_workers=_workers(len(sides))) as pool:
        states = [s for s in pool.map(snap, sides) if s is not None]

        jobs: list[tuple[tuple[str, str], list[str], str, str]] = []
        for i, a in enumerate(states):
            for b in states[i + 1:]:
                overlap = a.touched & b.touched
                if overlap:
                    jobs.append(((a.name, b.name), sorted(overlap), a.state, b.state))
        base_changes: dict[tuple[str, str], frozenset[str]] = {}
        if include_base:
            for a in states:
                if a.base == a.merge_base:
                    continue
                key = (a.merge_base, a.base)
                if key not in base_changes:
                    base_changes[key] = frozenset(_git.changed_paths(root, a.merge_base, a.base))
                overlap = a.touched & base_changes[key]
                if overlap:
                    jobs.append(((a.name, BASE), sorted(overlap), a.base, a.state))

        def check(job: tuple[tuple[str, str], list[str], str, str]) -> ConflictEntry:
            pair, files, ours, theirs = job
            result = _git.merge_tree(root, ours, theirs, cache=True)
            return ConflictEntry(pair, files, not result.clean, result.conflicts)

        entries = list(pool.map(check, jobs))
    order = {s.name: i for i, s in enumerate(states)}
    entries.sort(key=lambda e: (order[e.agents[0]], e.agents[1] == BASE, order.get(e.agents[1], 0)))
    return entries


def marks(entries: Sequence[ConflictEntry]) -> dict[str, dict[str, Any]]:
    """Per agent, for the deck's list: {"overlaps": [other...], "conflicts": [other...]}."""
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        a, b = e.agents
        for me, other in ((a, b), (b, a)):
            if me == BASE:
                continue
            m = out.setdefault(me, {"overlaps": [], "conflicts": []})
            m["overlaps"].append(other)
            if e.conflict:
                m["conflicts"].append(other)
    return out
