"""The deck's background feeds; they run in worker threads and only post messages.

With nothing changing, none of them does any work: each sleeps until it is told.

- :class:`DeckPool` gives each thread its own :class:`~agentdeck.deck.Deck`
  (SQLite connections belong to the thread that opened them).
- :class:`StatusFeed` sleeps on ONE inotify watch per repository (the state
  folder: every commit of every process writes ``state.db-wal``) and on the
  status watcher's pidfd; on a commit by another connection (``PRAGMA
  data_version``, asked again a few times in the second after a notice: a
  commit shows a moment after its writes) it reads the agents (one ``SELECT``)
  and posts them when they changed; when the watcher ends while agents live, it
  starts another.
- :class:`PreviewFeed` keeps one tmux control-mode client on the selected
  agent's session (``switch-client`` when the selection moves): tmux tells it
  when that pane draws, and only then is it captured (through that client), at
  most every ``interval`` while it keeps drawing; only captures whose hash
  changed are posted.
- :class:`DiffFeed` recomputes an agent's diff size when its work may have
  changed: its status moved (a turn ended, a prompt came), every few seconds
  while it works, when it is selected, or when the deck acted on it (commit,
  merge); never git for every agent on a timer, and no watch per folder.

Nothing here touches a widget.
"""

from __future__ import annotations

import hashlib
import os
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
        self._pipe: tuple[int, int] | None = None  # feeds that sleep in select() are poked through it
        self._last_problem = 0.0

    def poke(self) -> None:
        """Look now (the selection moved, an action was taken, the deck is closing)."""
        self.wake.set()
        if self._pipe is not None:
            try:
                os.write(self._pipe[1], b"x")
            except OSError:  # full (already poked) or closed
                pass

    def _open_pipe(self) -> int:
        if self._pipe is None:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._pipe = (r, w)
        return self._pipe[0]

    def _drain_pipe(self) -> None:
        if self._pipe is not None:
            try:
                while os.read(self._pipe[0], 4096):
                    pass
            except OSError:
                pass
        self.wake.clear()

    def _close_pipe(self) -> None:
        pipe, self._pipe = self._pipe, None
        if pipe is not None:
            for fd in pipe:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _sleep(self, stop: threading.Event, seconds: float | None) -> None:
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


def _plain_decks(deck: Any) -> list[Any]:
    return list(deck.decks.values()) if getattr(deck, "multi", False) else [deck]


class StatusFeed(_Feed):
    """Posts :class:`AgentsChanged` when the rows changed; sleeps until the state is written.

    It wakes on the state folders' inotify watch (one per repository), on the status
    watcher's pidfd (the watcher ended: another is started while agents live) and on
    :meth:`poke`.  A wake that another connection's commit caused (``PRAGMA
    data_version``) reads the agents; other wakes cost one pragma.  Where inotify is missing
    it falls back to asking ``data_version`` every *interval*.
    """

    def __init__(self, pool: DeckPool, interval: float = 0.1, watcher_every: float | None = None,
                 full_every: float | None = None):
        super().__init__(pool)
        self.interval = interval  # only where inotify is missing
        self._last: tuple | None = None
        self._version: Any = None
        self._force = True
        self.polls = 0  # full reads (tests, benchmarks)
        self.wakes = 0  # times the thread woke (tests, benchmarks)
        self._watcher_fds: dict[str, int] = {}  # state dir -> pidfd of its watcher

    def changed_since_last_look(self) -> bool:
        deck = self.pool.get()
        if getattr(deck, "multi", False):  # several repositories (agentdeck.tui.multideck)
            version = deck.data_version()
        else:
            version = deck.store.conn.execute("PRAGMA data_version").fetchone()[0]
        changed = version != self._version or self._force
        self._version = version
        self._force = False
        return changed

    def read(self) -> list[AgentRow] | None:
        """One read: the rows when they changed since the last one, else None."""
        deck = self.pool.get()
        records = deck.records() if getattr(deck, "multi", False) else deck.store.list_agents()
        rows = [AgentRow.from_record(r) for r in records]
        self.polls += 1
        if tuple(rows) == self._last:
            return None
        self._last = tuple(rows)
        return rows

    def ensure_watcher(self) -> None:
        """Keep a status watcher running while agents live (it exits by itself when none do), and
        follow it through its pidfd."""
        from agentdeck import fswatch, status

        for deck in _plain_decks(self.pool.get()):
            key = str(deck.repo.state_dir)
            if key in self._watcher_fds:
                continue
            if not status.watcher_alive(deck):
                if not any(r.status != "exited" for r in deck.store.list_agents()):
                    continue  # nothing to watch; `new` starts one
                deck.refresh(settle=False)
                self._force = True  # this thread's own writes do not move data_version
            pid = status.watcher_pid(deck)
            fd = fswatch.process_fd(pid) if pid else None
            if fd is not None:
                self._watcher_fds[key] = fd

    def run(self, post: Post, stop: threading.Event) -> None:
        import selectors

        from agentdeck import fswatch
        from agentdeck.tui.messages import AgentsChanged

        def publish() -> None:
            if self.changed_since_last_look():
                rows = self.read()
                if rows is not None:
                    post(AgentsChanged(rows))

        try:  # first paint from what the store knows, before any tmux call
            publish()
        except Exception as exc:
            self._problem(post, "status", exc)
        sel = selectors.DefaultSelector()
        sel.register(self._open_pipe(), selectors.EVENT_READ, "poke")
        watch = None
        if fswatch.available():
            try:
                watch = fswatch.FolderWatch([d.repo.state_dir for d in _plain_decks(self.pool.get())],
                                            ("state.db",))
                sel.register(watch, selectors.EVENT_READ, "state")
            except OSError as exc:
                self._problem(post, "status", exc)
                watch = None
        registered: set[int] = set()
        settle = fswatch.Settle()  # a commit becomes visible a moment after the writes that woke us
        try:
            while not stop.is_set():
                try:
                    self.ensure_watcher()
                except Exception as exc:
                    self._problem(post, "status watcher", exc)
                for fd in self._watcher_fds.values():
                    if fd not in registered:
                        sel.register(fd, selectors.EVENT_READ, "watcher")
                        registered.add(fd)
                try:
                    publish()
                except Exception as exc:
                    self._problem(post, "status", exc)
                timeout = None if watch is not None else self.interval
                later = settle.next()
                if later is not None:
                    timeout = max(0.0, later - time.monotonic())
                ready = sel.select(timeout)
                self.wakes += 1
                settle.due(time.monotonic())
                for key, _ in ready:
                    if key.data == "poke":
                        self._drain_pipe()
                    elif key.data == "state":
                        if watch.read():
                            settle.notice(time.monotonic())
                    else:  # the watcher ended
                        fd = key.fd
                        sel.unregister(fd)
                        registered.discard(fd)
                        os.close(fd)
                        self._watcher_fds = {k: v for k, v in self._watcher_fds.items() if v != fd}
                        self._force = True
        finally:
            sel.close()
            if watch is not None:
                watch.close()
            for fd in self._watcher_fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._watcher_fds.clear()
            self._close_pipe()


def _live_pane(deck: Any, name: str) -> tuple[str, str] | None:
    """(tmux socket, session) of *name* when its pane may be alive; None for an exited agent."""
    rec = deck.get(name)
    if rec.status == "exited" or rec.extra.get("launching"):
        return None
    one = deck.deck_of(name) if getattr(deck, "multi", False) else deck
    return one.tmux.socket, rec.session


class PreviewFeed(_Feed):
    """Shows the pane of ``target()`` (None: nothing to show), captured only when it drew.

    One control-mode client follows the selected agent's session (``switch-client``); tmux's
    ``%output`` for its pane schedules a capture *settle* seconds after the pane went still, and
    at most every *interval* while it keeps drawing.  An agent without a live pane shows its last
    screen (``deck.peek``) once.  Only captures whose hash changed are posted.
    """

    def __init__(self, pool: DeckPool, target: Callable[[], str | None], interval: float = 0.2,
                 settle: float = 0.03):
        super().__init__(pool)
        self.target = target
        self.interval = interval
        self.settle = settle
        self._last: tuple[str, str] | None = None
        self.captures = 0  # (tests, benchmarks)
        self.wakes = 0
        self._client: Any = None
        self._showing: tuple[str, str, str] | None = None  # (name, socket, session) followed now
        self._pane_id = ""
        self._dirty_since: float | None = None
        self._last_output = 0.0
        self._last_capture = 0.0
        self._refollow_at = 0.0  # after a lost client, not before this (monotonic)

    def forget(self) -> None:
        """Post the next capture even if unchanged (the widget was cleared)."""
        self._last = None
        self._showing = None  # look again at once

    def capture(self) -> tuple[str, str] | None:
        """Capture the target now: (name, text) when it changed since the last post."""
        name = self.target()
        if not name:
            self._last = None
            return None
        if self._client is not None and self._pane_id and self._showing and self._showing[0] == name:
            text = self._client.capture(self._pane_id, colors=True)
        else:
            text = self.pool.get().peek(name, colors=True)
        self.captures += 1
        self._last_capture = time.monotonic()
        digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()
        if self._last == (name, digest):
            return None
        self._last = (name, digest)
        return name, text

    def _follow(self, name: str | None) -> None:
        """Point the control client at *name*'s session (or at nothing)."""
        from agentdeck.tmux import ControlClient, TmuxGone

        where = _live_pane(self.pool.get(), name) if name else None
        if where is None:
            self._showing = (name, "", "") if name else None
            self._pane_id = ""
            return
        socket, session = where
        try:
            if self._client is not None and (self._client.closed or self._client.socket != socket):
                self._drop_client()
            if self._client is None:
                self._client = ControlClient(socket, session)
            elif self._client.session != session:
                result = self._client.command("switch-client", "-t", f"={session}")
                if result.returncode != 0:
                    raise TmuxGone(" ".join(result.stderr))
            result = self._client.command("display-message", "-p", "-t", f"={session}:", "#{pane_id}")
            self._pane_id = result.stdout[0] if result.returncode == 0 and result.stdout else ""
            self._client.session = session
        except (TmuxGone, OSError):
            self._drop_client()
            self._pane_id = ""
        self._showing = (name, socket, session)  # type: ignore[assignment]

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def run(self, post: Post, stop: threading.Event) -> None:
        import select

        from agentdeck.errors import UsageError
        from agentdeck.tui.messages import PreviewCaptured

        wake = self._open_pipe()
        try:
            while not stop.is_set():
                name = self.target()
                now = time.monotonic()
                try:
                    if name is None:  # nothing shown: no client, so no output of anyone's wakes this thread
                        if self._showing is not None or self._client is not None:
                            self._showing, self._pane_id, self._last = None, "", None
                            self._drop_client()
                        self._dirty_since = None
                    elif (self._showing is None or self._showing[0] != name) and now >= self._refollow_at:
                        self._follow(name)
                        self._dirty_since = now - self.settle  # a first look at once
                    if name is not None and self._dirty_since is not None and (
                            now - self._last_output >= self.settle or now - self._dirty_since >= self.interval):
                        self._dirty_since = None
                        got = self.capture()
                        if got is not None:
                            post(PreviewCaptured(*got))
                except UsageError:
                    self._last, self._showing = None, None  # the agent was removed meanwhile
                except Exception as exc:
                    self._problem(post, "preview", exc)
                    self._showing = (name, "", "") if name else None
                    self._drop_client()
                if self._client is not None and self._client.pending:
                    self._on_client(read=False)  # output met while a capture waited for its answer
                fds = [wake] + ([self._client.fileno()] if self._client is not None else [])
                timeout = None
                if self._showing is None and name is not None and self._refollow_at > now:
                    timeout = self._refollow_at - now
                elif self._dirty_since is not None:
                    timeout = max(0.0, min(self._last_output + self.settle, self._dirty_since + self.interval)
                                  - time.monotonic())
                ready, _, _ = select.select(fds, [], [], timeout)
                self.wakes += 1
                if wake in ready:
                    self._drain_pipe()
                if self._client is not None and self._client.fileno() in ready:
                    self._on_client()
        finally:
            self._drop_client()
            self._close_pipe()

    def _on_client(self, read: bool = True) -> None:
        client = self._client
        if read:
            client.read()
        now = time.monotonic()
        for kind, value in client.events():
            if kind == "output" and value == self._pane_id:
                self._last_output = now
                if self._dirty_since is None:
                    self._dirty_since = now
            elif kind == "pause":
                client.send("refresh-client", "-A", f"{value}:continue")
            elif kind in ("exit", "eof"):
                # Detached (someone ran `detach-client -s`), or the session went: follow the agent
                # again shortly (a new client; its last screen when it has exited).
                self._drop_client()
                self._pane_id = ""
                self._showing = None
                self._refollow_at = now + 0.2
                return


class DiffFeed(_Feed):
    """Diff sizes, recomputed for agents whose work may have changed (debounced).

    A worktree's files change when its agent works, or when someone acts on it: its status
    moving (:meth:`track`, from the status feed's rows) marks it, and while it is ``working``
    it is recomputed every *working_every* seconds; selection and the deck's own actions
    (commit, merge) :meth:`touch` it.  No file-system watch per folder: the deck's memory and
    inotify use do not grow with the size or number of worktrees.
    """

    def __init__(self, pool: DeckPool, debounce: float = 0.4, max_delay: float = 2.0,
                 size_fn: Callable[[Any, str], tuple[int, int]] = diff_size, watch: bool = True,
                 shared_root: Path | None = None,
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
        self.watch_problem = ""

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
        from agentdeck.tui.messages import DiffSizes

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
        """Nothing to release (kept for callers of the watching version)."""
