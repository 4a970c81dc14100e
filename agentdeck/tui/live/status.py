"""The status feed: the agents' rows, read only when another process committed to the state."""

from __future__ import annotations

import os
import selectors
import threading
import time
from typing import Any

from agentdeck import fswatch
from agentdeck.tui.live.pool import DeckPool, Feed, Post
from agentdeck.tui.messages import AgentsChanged
from agentdeck.tui.model import AgentRow


class StatusFeed(Feed):
    """Posts :class:`AgentsChanged` when the rows changed; sleeps until the state is written.

    It wakes on the state folders' inotify watch (one per repository), on the status
    watcher's pidfd (the watcher ended: another is started while agents live) and on
    :meth:`poke`.  A wake that another connection's commit caused (``PRAGMA
    data_version``) reads the agents; other wakes cost one pragma.  Where inotify is missing
    it falls back to asking ``data_version`` every *interval*.
    """

    def __init__(self, pool: DeckPool, interval: float = 0.1):
        super().__init__(pool)
        self.interval = interval  # only where inotify is missing
        self._last: tuple | None = None
        self._version: Any = None
        self._force = True
        self.polls = 0  # full reads (tests, benchmarks)
        self.wakes = 0  # times the thread woke (tests, benchmarks)
        self._watcher_fds: dict[str, int] = {}  # state dir -> pidfd of its watcher

    def changed_since_last_look(self) -> bool:
        version = self.pool.get().data_version()  # a tuple over several repositories
        changed = version != self._version or self._force
        self._version = version
        self._force = False
        return changed

    def read(self) -> list[AgentRow] | None:
        """One read: the rows when they changed since the last one, else None."""
        deck = self.pool.get()
        rows = [AgentRow.from_record(r) for r in deck.records()]
        self.polls += 1
        if tuple(rows) == self._last:
            return None
        self._last = tuple(rows)
        return rows

    def ensure_watcher(self) -> None:
        """Keep a status watcher running while agents live (it exits by itself when none do), and
        follow it through its pidfd."""
        for _label, deck in self.pool.get().by_repo():
            key = str(deck.repo.state_dir)
            if key in self._watcher_fds:
                continue
            pid = deck.watcher_pid()
            if pid is None:
                if not any(r.status != "exited" for r in deck.records()):
                    continue  # nothing to watch; `new` starts one
                deck.refresh(settle=False)
                self._force = True  # this thread's own writes do not move data_version
                pid = deck.watcher_pid()
            fd = fswatch.process_fd(pid) if pid else None
            if fd is not None:
                self._watcher_fds[key] = fd

    def run(self, post: Post, stop: threading.Event) -> None:
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
                watch = fswatch.FolderWatch([d.repo.state_dir for _, d in self.pool.get().by_repo()],
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
                        if watch is not None and watch.read():
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
