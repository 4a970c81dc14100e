"""The deck's background feeds; they run in worker threads and only post messages.

- :class:`DeckPool` gives each thread its own :class:`~agentdeck.deck.Deck`
  (SQLite connections belong to the thread that opened them).
- :class:`StatusFeed` reads the store (ONE ``SELECT`` per tick) and posts the
  rows only when something changed; every few seconds it makes sure a status
  watcher runs (``deck.refresh``), which is what writes the statuses.
- :class:`PreviewFeed` captures the selected agent's pane only, at preview rate,
  and posts only captures whose hash changed.
- :class:`DiffFeed` recomputes diff sizes only for worktrees whose files
  changed (watchdog, debounced); never git for every agent on a timer.

Nothing here touches a widget.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from agentdeck.tui.model import AgentRow

Post = Callable[[Any], Any]


class DeckPool:
    """One Deck per thread, all for the same repository, config and tmux server."""

    def __init__(self, deck: Any, factory: Callable[[], Any] | None = None):
        self.main = deck
        self._main_thread = threading.get_ident()
        if factory is None and getattr(deck, "multi", False):  # several repositories
            from agentdeck.tui.multideck import multi_factory

            factory = multi_factory(deck)
        self._factory = factory or (lambda: type(deck)(deck.repo, deck.config, deck.tmux.socket))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._opened: list[Any] = []

    def get(self) -> Any:
        if threading.get_ident() == self._main_thread:
            return self.main
        deck = getattr(self._local, "deck", None)
        if deck is None:
            deck = self._factory()
            self._local.deck = deck
            with self._lock:
                self._opened.append(deck)
        return deck


# ---------------------------------------------------------------------- diff sizes


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
    from agentdeck.tui.multideck import is_multi, plain_decks

    out: dict[str, dict[str, Any]] = {}
    for label, one in plain_decks(deck):
        for name, mark in one.review.conflict_marks().items():
            if is_multi(deck):
                name = deck.key(label, name)
                mark = {k: [deck.key(label, o) for o in v] for k, v in mark.items()}
            out[name] = mark
    return out


# ---------------------------------------------------------------------- feeds


class _Feed:
    interval = 0.25

    def __init__(self, pool: DeckPool):
        self.pool = pool
        self.wake = threading.Event()
        self._last_problem = 0.0

    def poke(self) -> None:
        """Run the next tick now."""
        self.wake.set()

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        if stop.is_set():
            return
        self.wake.wait(seconds)
        self.wake.clear()

    def _problem(self, post: Post, name: str, exc: BaseException) -> None:
        """Report a failure at most every 10 s (a feed never dies of one)."""
        from agentdeck.tui.messages import FeedProblem

        now = time.monotonic()
        if now - self._last_problem >= 10.0:
            self._last_problem = now
            post(FeedProblem(name, f"{type(exc).__name__}: {exc}" if not _is_ours(exc) else str(exc)))


def _is_ours(exc: BaseException) -> bool:
    from agentdeck.errors import AgentdeckError

    return isinstance(exc, AgentdeckError)


class StatusFeed(_Feed):
    """Polls the store; posts :class:`AgentsChanged` when the rows changed.

    Each tick asks SQLite whether anyone committed since the last look
    (``PRAGMA data_version``, no table read); only then, or once a second, it
    reads the agents (one ``SELECT``) and compares them with what it posted.
    """

    def __init__(self, pool: DeckPool, interval: float = 0.1, watcher_every: float = 2.0,
                 full_every: float = 1.0):
        super().__init__(pool)
        self.interval = interval
        self.watcher_every = watcher_every
        self.full_every = full_every
        self._last: tuple | None = None
        self._version: Any = None
        self._read_at = float("-inf")
        self.polls = 0  # full reads (tests, benchmarks)

    def changed_since_last_look(self) -> bool:
        deck = self.pool.get()
        if getattr(deck, "multi", False):  # several repositories (agentdeck.tui.multideck)
            version = deck.data_version()
        else:
            version = deck.store.conn.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._version
        self._version = version
        return changed or time.monotonic() - self._read_at >= self.full_every

    def read(self) -> list[AgentRow] | None:
        """One poll: the rows when they changed since the last poll, else None."""
        deck = self.pool.get()
        records = deck.records() if getattr(deck, "multi", False) else deck.store.list_agents()
        rows = [AgentRow.from_record(r) for r in records]
        self.polls += 1
        self._read_at = time.monotonic()
        if tuple(rows) == self._last:
            return None
        self._last = tuple(rows)
        return rows

    def ensure_watcher(self) -> None:
        """Keep a status watcher running while agents live (it exits by itself when none do)."""
        from agentdeck import status

        main = self.pool.get()
        for deck in (main.decks.values() if getattr(main, "multi", False) else [main]):
            if not status.watcher_alive(deck):
                deck.refresh(settle=False)
                self._read_at = float("-inf")  # this thread's own writes do not move data_version

    def run(self, post: Post, stop: threading.Event) -> None:
        from agentdeck.tui.messages import AgentsChanged

        try:  # first paint from what the store knows, before any tmux call
            self.changed_since_last_look()
            rows = self.read()
            if rows is not None:
                post(AgentsChanged(rows))
        except Exception as exc:
            self._problem(post, "status", exc)
        last_check = float("-inf")
        while not stop.is_set():
            now = time.monotonic()
            if now - last_check >= self.watcher_every:
                last_check = now
                try:
                    self.ensure_watcher()
                except Exception as exc:
                    self._problem(post, "status watcher", exc)
            try:
                if self.changed_since_last_look():
                    rows = self.read()
                    if rows is not None:
                        post(AgentsChanged(rows))
            except Exception as exc:
                self._problem(post, "status", exc)
            self._sleep(stop, self.interval)


class PreviewFeed(_Feed):
    """Captures the pane of ``target()`` (None: nothing to show) and posts changed captures."""

    def __init__(self, pool: DeckPool, target: Callable[[], str | None], interval: float = 0.2):
        super().__init__(pool)
        self.target = target
        self.interval = interval
        self._last: tuple[str, str] | None = None
        self.captures = 0

    def capture(self) -> tuple[str, str] | None:
        """One tick: (name, text) when the selected pane changed since the last post."""
        name = self.target()
        if not name:
            self._last = None
            return None
        text = self.pool.get().peek(name, colors=True)
        self.captures += 1
        digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()
        if self._last == (name, digest):
            return None
        self._last = (name, digest)
        return name, text

    def forget(self) -> None:
        """Post the next capture even if unchanged (the widget was cleared)."""
        self._last = None

    def run(self, post: Post, stop: threading.Event) -> None:
        from agentdeck.errors import UsageError
        from agentdeck.tui.messages import PreviewCaptured

        while not stop.is_set():
            try:
                got = self.capture()
                if got is not None:
                    post(PreviewCaptured(*got))
            except UsageError:
                self._last = None  # the agent was removed meanwhile
            except Exception as exc:
                self._problem(post, "preview", exc)
            self._sleep(stop, self.interval)


class DiffFeed(_Feed):
    """Diff sizes, recomputed for worktrees whose files changed (debounced)."""

    IGNORED_EVENTS = {"opened", "closed_no_write", "attrib"}

    def __init__(self, pool: DeckPool, debounce: float = 0.4, max_delay: float = 2.0,
                 size_fn: Callable[[Any, str], tuple[int, int]] = diff_size, watch: bool = True,
                 shared_root: Path | None = None,
                 radar_fn: Callable[[Any], dict[str, dict[str, Any]]] | None = conflict_marks):
        super().__init__(pool)
        # the conflict radar runs right after sizes were recomputed (so only when a worktree changed)
        self.radar_fn = radar_fn
        self._last_marks: dict[str, dict[str, Any]] | None = None
        self.radar_runs = 0  # (tests, benchmarks)
        # agentdeck's own worktree folder holds nothing else: one recursive watch covers every agent
        # there. A worktree elsewhere ([deck] worktree_dir) is watched on its own, never its parent.
        self.shared_root = str(shared_root) if shared_root else None
        self.debounce = debounce
        self.max_delay = max_delay
        self.size_fn = size_fn
        self.watch_enabled = watch
        self._lock = threading.Lock()
        self._worktrees: dict[str, str] = {}  # worktree path -> agent name
        self._dirty: dict[str, tuple[float, float]] = {}  # name -> (first event, last event)
        self._observer: Any = None
        self._watches: dict[str, Any] = {}  # watched folder -> ObservedWatch
        self._unwatched: set[str] = set()  # agents whose folder could not be watched
        self.computed: list[str] = []  # names, in the order sizes were computed (tests, benchmarks)
        self.errors: dict[str, str] = {}  # last failure per agent (retried a few times)
        self._retries: dict[str, int] = {}
        self.watch_problem = ""

    # -- main thread ---------------------------------------------------------------
    def track(self, rows: list[AgentRow]) -> None:
        """The agents now listed: new ones get a first size; removed ones are forgotten."""
        now = time.monotonic()
        with self._lock:
            wanted = {str(Path(r.worktree)): r.name for r in rows if r.worktree}
            for wt, name in wanted.items():
                if self._worktrees.get(wt) != name:
                    self._dirty[name] = (now - self.max_delay, now - self.max_delay)  # due at once
            self._worktrees = wanted
            names = set(wanted.values())
            for name in list(self._dirty):
                if name not in names:
                    del self._dirty[name]
        self.wake.set()

    def touch(self, name: str) -> None:
        """Recompute *name*'s size soon (e.g. after a commit or on selection if unwatched)."""
        now = time.monotonic()
        with self._lock:
            first = self._dirty.get(name, (now, now))[0]
            self._dirty[name] = (first, now)
        self.wake.set()

    def needs_touch_on_select(self, name: str) -> bool:
        return name in self._unwatched or not self.watch_enabled

    # -- watchdog thread -------------------------------------------------------------
    def on_fs_event(self, event: Any) -> None:
        if event.event_type in self.IGNORED_EVENTS:
            return
        for path in (getattr(event, "src_path", ""), getattr(event, "dest_path", "")):
            if not path:
                continue
            path = path.decode() if isinstance(path, bytes) else str(path)
            if "/.git/" in path or path.endswith("/.git"):
                continue
            name = self._owner(path)
            if name:
                now = time.monotonic()
                with self._lock:
                    first = self._dirty.get(name, (now, now))[0]
                    self._dirty[name] = (first, now)
                self.wake.set()

    def _owner(self, path: str) -> str | None:
        with self._lock:
            items = list(self._worktrees.items())
        for wt, name in items:
            if path == wt or path.startswith(wt + "/"):
                return name
        return None

    # -- worker thread ---------------------------------------------------------------
    def _sync_watches(self) -> None:
        if not self.watch_enabled:
            return
        with self._lock:
            worktrees = dict(self._worktrees)
        folders: dict[str, list[str]] = {}
        for wt, name in worktrees.items():
            parent = str(Path(wt).parent)
            folders.setdefault(parent if parent == self.shared_root else wt, []).append(name)
        if self._observer is None and folders:
            from watchdog.observers import Observer

            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        handler = _Handler(self)
        for folder, names in folders.items():
            if folder in self._watches:
                continue
            if not Path(folder).is_dir():
                continue
            try:
                self._watches[folder] = self._observer.schedule(handler, folder, recursive=True)
                self._unwatched.difference_update(names)
            except Exception as exc:  # inotify limits: fall back to recomputing on selection
                self._unwatched.update(names)
                self.watch_problem = (f"cannot watch {folder} for changes ({exc}); diff sizes refresh "
                                      f"when you select an agent")
        for folder in list(self._watches):
            if folder not in folders:
                try:
                    self._observer.unschedule(self._watches.pop(folder))
                except Exception:
                    pass

    def due(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            ready = [n for n, (first, last) in self._dirty.items()
                     if now - last >= self.debounce or now - first >= self.max_delay]
            for n in ready:
                del self._dirty[n]
        return ready

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
            for name, size in pairs:
                if size is not None:
                    self._retries.pop(name, None)
                    self.errors.pop(name, None)
                elif self._retries.get(name, 0) < 3:  # git busy (a lock), worktree mid-creation...
                    self._retries[name] = self._retries.get(name, 0) + 1
                    self._dirty[name] = (now, now + 1.0)
        return dict(pairs)

    def run(self, post: Post, stop: threading.Event) -> None:
        from agentdeck.tui.messages import DiffSizes, FeedProblem

        reported = ""
        try:
            while not stop.is_set():
                try:
                    self._sync_watches()
                    if self.watch_problem and self.watch_problem != reported:
                        reported = self.watch_problem
                        post(FeedProblem("diff", self.watch_problem))
                    names = self.due()
                    if names:
                        post(DiffSizes(self.compute(names)))
                        self._run_radar(post)
                except Exception as exc:
                    self._problem(post, "diff sizes", exc)
                with self._lock:
                    pending = bool(self._dirty)
                self._sleep(stop, self.debounce / 2 if pending else 5.0)
        finally:
            self.close()

    def _run_radar(self, post: Post) -> None:
        """Conflict radar after a recompute; posts :class:`ConflictMarks` only when the marks changed."""
        from agentdeck.tui.messages import ConflictMarks

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

    def close(self) -> None:
        obs, self._observer = self._observer, None
        self._watches.clear()
        if obs is not None:
            try:
                obs.stop()
            except Exception:
                pass


class _Handler:
    """A minimal watchdog handler (duck-typed: watchdog only calls ``dispatch``)."""

    def __init__(self, feed: DiffFeed):
        self.feed = feed

    def dispatch(self, event: Any) -> None:
        self.feed.on_fs_event(event)
