"""The diff feed: each agent's diff size (and the conflict radar), recomputed only when its work may
have changed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentdeck.tui.live.pool import DeckPool, Feed, Post
from agentdeck.tui.messages import ConflictMarks, DiffSizes
from agentdeck.tui.model import AgentRow


def diff_size(deck: Any, name: str) -> tuple[int, int]:
    """(added, removed) lines of an agent's work, from the review engine."""
    return deck.review.diff_size(name)


def load_diff(deck: Any, name: str) -> Any:
    """The full diff for the Diff tab (a review ``DiffResult``)."""
    return deck.review.diff(name, patch=True)


def conflict_marks(deck: Any) -> dict[str, dict[str, Any]]:
    """The conflict radar's per-agent marks ({name: {"overlaps": [...], "conflicts": [...]}}).

    Several repositories: each repository's radar on its own, names keyed as the list keys them.
    """
    out: dict[str, dict[str, Any]] = {}
    for label, one in deck.by_repo():
        for name, mark in one.review.conflict_marks().items():
            out[deck.key(label, name)] = {k: [deck.key(label, o) for o in v] for k, v in mark.items()}
    return out


class DiffFeed(Feed):
    """Diff sizes, recomputed for agents whose work may have changed (debounced).

    A worktree's files change when its agent works, or when someone acts on it: its status
    moving (:meth:`track`, from the status feed's rows) marks it, and while it is ``working``
    it is recomputed every *working_every* seconds; selection and the deck's own actions
    (commit, merge) :meth:`touch` it.  No file-system watch per folder: the deck's memory and
    inotify use do not grow with the size or number of worktrees.
    """

    def __init__(self, pool: DeckPool, debounce: float = 0.4, max_delay: float = 2.0,
                 size_fn: Callable[[Any, str], tuple[int, int]] = diff_size, watch: bool = True,
                 radar_fn: Callable[[Any], dict[str, dict[str, Any]]] | None = conflict_marks,
                 working_every: float = 5.0):
        super().__init__(pool)
        # the conflict radar runs right after sizes were recomputed (so only when a worktree changed)
        self.radar_fn = radar_fn
        self._last_marks: dict[str, dict[str, Any]] | None = None
        self.radar_runs = 0  # (tests, benchmarks)
        self.debounce = debounce
        self.max_delay = max_delay
        self.size_fn = size_fn
        self.follow_status = watch  # False: sizes only at start, on selection and on actions
        self.working_every = working_every
        self._lock = threading.Lock()
        self._worktrees: dict[str, str] = {}  # worktree path -> agent name
        self._seen: dict[str, tuple[str, float]] = {}  # name -> (status, status_at) last tracked
        self._working: dict[str, float] = {}  # name -> when its size is next due while it works
        self._dirty: dict[str, tuple[float, float]] = {}  # name -> (first mark, last mark)
        self._computed_at: dict[str, float] = {}  # name -> when its size was last computed
        self.fresh_s = 5.0
        self._computing: set[str] = set()
        self.computed: list[str] = []  # names, in the order sizes were computed (tests, benchmarks)
        self.errors: dict[str, str] = {}  # last failure per agent (retried a few times)
        self._retries: dict[str, int] = {}

    # -- main thread ---------------------------------------------------------------
    def track(self, rows: list[AgentRow]) -> None:
        """The agents now listed: new ones get a first size, ones whose status moved a new one
        (debounced); removed ones are forgotten."""
        now = time.monotonic()
        with self._lock:
            wanted = {str(Path(r.worktree)): r.name for r in rows if r.worktree}
            for wt, name in wanted.items():
                if self._worktrees.get(wt) != name:
                    self._dirty[name] = (now - self.max_delay, now - self.max_delay)  # due at once
            self._worktrees = wanted
            for row in rows:
                seen = (row.status, row.status_at)
                before = self._seen.get(row.name)
                self._seen[row.name] = seen
                if before is not None and before != seen and self.follow_status:
                    first = self._dirty.get(row.name, (now, now))[0]
                    self._dirty[row.name] = (first, now)
                if row.status == "working" and self.follow_status:
                    self._working.setdefault(row.name, now + self.working_every)
                else:
                    self._working.pop(row.name, None)
            names = set(wanted.values())
            for table in (self._dirty, self._seen, self._working, self._computed_at):
                for name in [n for n in table if n not in names]:
                    del table[name]
        self.poke()

    def touch(self, name: str) -> None:
        """Recompute *name*'s size soon (after a commit, on selection)."""
        now = time.monotonic()
        with self._lock:
            first = self._dirty.get(name, (now, now))[0]
            self._dirty[name] = (first, now)
        self.poke()

    def needs_touch_on_select(self, name: str) -> bool:
        """A person may have edited that worktree by hand (nothing watches its folders): yes,
        unless its size was computed in the last *fresh_s* seconds or is about to be."""
        with self._lock:
            if name in self._dirty or name in self._computing:
                return False
            return time.monotonic() - self._computed_at.get(name, float("-inf")) >= self.fresh_s

    # -- worker thread ---------------------------------------------------------------
    def due(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            for name, when in list(self._working.items()):
                if now >= when:
                    self._working[name] = now + self.working_every
                    self._dirty.setdefault(name, (now - self.max_delay, now - self.max_delay))
            ready = [n for n, (first, last) in self._dirty.items()
                     if now - last >= self.debounce or now - first >= self.max_delay]
            for n in ready:
                del self._dirty[n]
            self._computing.update(ready)
        return ready

    def _next_due(self) -> float | None:
        """Seconds until something is due (None: nothing until told)."""
        now = time.monotonic()
        with self._lock:
            whens = [min(last + self.debounce, first + self.max_delay) for first, last in self._dirty.values()]
            whens += list(self._working.values())
        return max(0.0, min(whens) - now) if whens else None

    def compute(self, names: list[str]) -> dict[str, tuple[int, int] | None]:
        def one(name: str) -> tuple[str, tuple[int, int] | None]:
            try:
                return name, self.size_fn(self.pool.get(), name)
            except Exception as exc:
                self.errors[name] = f"{type(exc).__name__}: {exc}"
                return name, None

        if len(names) == 1:
            pairs = [one(names[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(4, len(names))) as ex:
                pairs = list(ex.map(one, names))
        self.computed.extend(names)
        now = time.monotonic()
        with self._lock:
            self._computed_at.update((n, now) for n in names)
            self._computing.difference_update(names)
            for name, size in pairs:
                if size is not None:
                    self._retries.pop(name, None)
                    self.errors.pop(name, None)
                elif self._retries.get(name, 0) < 3:  # git busy (a lock), worktree mid-creation...
                    self._retries[name] = self._retries.get(name, 0) + 1
                    self._dirty[name] = (now, now + 1.0)
        return dict(pairs)

    def run(self, post: Post, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                names = self.due()
                if names:
                    post(DiffSizes(self.compute(names)))
                    self._run_radar(post)
            except Exception as exc:
                self._problem(post, "diff sizes", exc)
            self._sleep(stop, self._next_due())

    def _run_radar(self, post: Post) -> None:
        """Conflict radar after a recompute; posts :class:`ConflictMarks` only when the marks changed."""
        if self.radar_fn is None:
            return
        try:
            marks = self.radar_fn(self.pool.get())
        except Exception as exc:
            self._problem(post, "conflict radar", exc)
            return
        self.radar_runs += 1
        if marks != self._last_marks:
            self._last_marks = marks
            post(ConflictMarks(marks))
