"""What wakes the watcher: the file descriptors its loop sleeps on, and their bookkeeping.

- one tmux control-mode client per agent session (``%output`` marks a pane dirty; ``%exit``,
  ``%sessions-changed`` and the like ask for a liveness pass);
- a pidfd per pane process, readable when the program ends (tmux can miss the SIGCHLD that fires
  its ``pane-died`` hook: the pidfd does not);
- a ``tmux wait-for`` on the channel the server's ``pane-died`` hook signals;
- a pidfd per launching process (``new`` still creating the agent);
- the inotify watch on the state folder (:mod:`agentdeck.fswatch`), which hears every commit.

:class:`Sources` is a part of :class:`~agentdeck.status.watcher.Watcher`; each handler only
records what it heard (a dirty pane, a liveness pass due, the state to re-read) for the loop.
"""

from __future__ import annotations

import os
import selectors
import time
from typing import Any

from agentdeck import fswatch
from agentdeck.procutil import process_gone
from agentdeck.status.looks import SETTLE_S, PaneState
from agentdeck.status.sampler import Sampler
from agentdeck.status.watching import log
from agentdeck.tmux import TmuxGone
from agentdeck.tmux.control import ControlClient


class Sources:
    """The event sources of the watcher's loop (mixed into :class:`~agentdeck.status.watcher.Watcher`)."""

    deck: Any
    sampler: Sampler
    sel: selectors.BaseSelector
    records: dict[str, Any]
    clients: dict[str, ControlClient]
    panes: dict[str, PaneState]
    by_pane: dict[str, PaneState]
    waiter: Any
    launch_fds: dict[str, int]
    pane_fds: dict[str, tuple[int, int]]
    rechecks: list[float]
    dbwatch: Any
    settle: Any
    db_dirty: bool
    live_due: bool
    hooks_set: bool
    next_safety: float

    def _refresh_record(self, name: str) -> None:
        raise NotImplementedError  # pragma: no cover - the watcher's

    def _on_state(self, _fileobj: Any) -> None:
        if self.dbwatch.read():
            self.db_dirty = True
            self.settle.notice(time.time())

    def _on_client(self, client: Any) -> None:
        client.read()
        self._client_events(client)

    def _client_events(self, client: Any) -> None:
        now = time.time()
        for kind, value in client.events():
            if kind == "output":
                pane = self.by_pane.get(value)
                if pane is not None:
                    pane.last_output = now
                    if pane.dirty_since is None:
                        pane.dirty_since = now
            elif kind == "structure":
                self.live_due = True
            elif kind in ("exit", "eof"):
                self._drop_client(client)
                self.live_due = True
            elif kind == "pause":
                client.send("refresh-client", "-A", f"{value}:continue")

    def _on_waiter(self, _fileobj: Any) -> None:
        self._drop_waiter()
        self.live_due = True

    def _on_pane_exit(self, fileobj: Any) -> None:
        """A pane's program ended (its pidfd): look now, and again shortly - tmux may not have read
        the end of the pane's output yet, and its pane-died hook needs it to have reaped the
        process, which it can miss (a lost SIGCHLD leaves the pane dead with no hook)."""
        for name, (_, fd) in list(self.pane_fds.items()):
            if fd == fileobj:
                self._drop_pane_fd(name)
        now = time.time()
        self.live_due = True
        self.rechecks = sorted(set(self.rechecks) | {now + 0.1, now + 0.5, now + 2.0})

    def _follow_pane(self, name: str, pid: int) -> None:
        held = self.pane_fds.get(name)
        if held is not None and held[0] == pid:
            return
        self._drop_pane_fd(name)
        # A program already ended while its pane lives on (a child holds the terminal): nothing to follow.
        fd = fswatch.process_fd(pid) if pid > 0 and not process_gone({"pid": pid}) else None
        if fd is not None:
            self.pane_fds[name] = (pid, fd)
            self.sel.register(fd, selectors.EVENT_READ, self._on_pane_exit)

    def _drop_pane_fd(self, name: str) -> None:
        held = self.pane_fds.pop(name, None)
        if held is not None:
            try:
                self.sel.unregister(held[1])
            except (KeyError, ValueError):
                pass
            os.close(held[1])

    def _on_launch(self, fileobj: Any) -> None:
        for name, fd in list(self.launch_fds.items()):
            if fd == fileobj:
                self._drop_launch(name)
        self.live_due = True

    def _attach(self, rec: Any, info: Any) -> None:
        client = self.clients.get(rec.session)
        if client is None:
            if not self.hooks_set:
                self.deck.tmux.ensure_hooks()  # a server started before agentdeck's conf had the hook
                self.hooks_set = True
            try:
                client = ControlClient(self.deck.tmux.socket, rec.session)
            except OSError as exc:
                log(f"cannot attach to {rec.session}: {exc}")
                return
            self.clients[rec.session] = client
            self.sel.register(client, selectors.EVENT_READ, self._on_client)
            try:
                client.send("refresh-client", "-f", "pause-after=10")  # never hold an agent back
            except TmuxGone:
                pass
        pane = self.panes.get(rec.name)
        if pane is None or pane.pane_id != info.pane_id or pane.client is not client:
            if pane is not None:
                self.by_pane.pop(pane.pane_id, None)
            old = pane
            pane = PaneState(rec.name, rec.session, info.pane_id, client, rec.launch_count)
            if old is not None and old.pane_id == info.pane_id:
                pane.screen_hash, pane.verdict, pane.changed_at = old.screen_hash, old.verdict, old.changed_at
            else:  # what the last watcher (or a one-off pass) saw: still the same screen means quiet since
                state = self.deck.store.screen_states().get(rec.name)
                if state is not None and state["screen_hash"]:
                    pane.screen_hash, pane.verdict = state["screen_hash"], state["verdict"]
                    pane.changed_at = float(state["changed_at"])
                    pane.persisted = (pane.screen_hash, pane.verdict, pane.changed_at)
            self.panes[rec.name] = pane
            self.by_pane[info.pane_id] = pane
            now = time.time()
            pane.dirty_since = pane.last_output = now - SETTLE_S  # a first look now: what it shows already

    def _forget_pane(self, name: str) -> None:
        pane = self.panes.pop(name, None)
        if pane is not None:
            self.by_pane.pop(pane.pane_id, None)

    def _drop_client(self, client: ControlClient) -> None:
        if self.clients.get(client.session) is client:
            del self.clients[client.session]
        else:
            for session, c in list(self.clients.items()):
                if c is client:
                    del self.clients[session]
        try:
            self.sel.unregister(client)
        except (KeyError, ValueError):
            pass
        client.close()
        for name in [n for n, p in self.panes.items() if p.client is client]:
            self._forget_pane(name)

    def _start_waiter(self) -> None:
        try:
            self.waiter = self.deck.tmux.died_waiter()
        except OSError:
            self.waiter = None
            return
        self.sel.register(self.waiter.stdout, selectors.EVENT_READ, self._on_waiter)

    def _drop_waiter(self) -> None:
        waiter, self.waiter = self.waiter, None
        try:
            self.sel.unregister(waiter.stdout)
        except (KeyError, ValueError):
            pass
        if waiter.poll() is None:
            waiter.kill()
        waiter.wait()
        waiter.stdout.close()

    def _follow_launch(self, rec: Any) -> None:
        """A launch in progress: abandoned already, or followed through its process's pidfd."""
        self.sampler._check_launch(rec)
        self._refresh_record(rec.name)
        if rec.name in self.launch_fds or not self.records.get(rec.name, rec).extra.get("launching"):
            return
        ident = rec.extra.get("launcher")
        pid = ident.get("pid") if isinstance(ident, dict) else None
        fd = fswatch.process_fd(pid) if isinstance(pid, int) and not process_gone(ident) else None
        if fd is None:  # no pidfd (or another host): look again at the next safety pass, soon
            self.next_safety = min(self.next_safety, time.time() + 2.0)
            return
        self.launch_fds[rec.name] = fd
        self.sel.register(fd, selectors.EVENT_READ, self._on_launch)

    def _drop_launch(self, name: str) -> None:
        fd = self.launch_fds.pop(name, None)
        if fd is not None:
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
            os.close(fd)
