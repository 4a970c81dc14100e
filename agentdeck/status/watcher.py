"""The watcher process (``agentdeck _watch``): push, not poll.

One process per repository (a file lock, :mod:`agentdeck.status.watching`) is told of every
change instead of looking for it, and sleeps on file descriptors (:mod:`agentdeck.status.sources`)
until tmux, the state folder, a launching process or a timer it set has something to say:

* pane output: a pane that drew is captured once it has been still for a moment, classified and
  looked at once more when it has been quiet for ``quiet_s`` (:mod:`agentdeck.status.looks`).  A
  pane that does not move costs nothing.
* liveness: a pane's program ending, a killed session, a dead server each run one ``list-panes``
  (:meth:`Watcher.liveness`, through a client); a slow safety pass (:data:`SAFETY_S`) runs it anyway.
* the state: every commit of every process (hooks, ``new``, ``kill``, ``restart``) wakes it; it
  then re-reads the agents (:meth:`Watcher.reconcile`, only when ``PRAGMA data_version`` says
  another connection wrote; asked again a few times in the second after a notice, since a commit
  becomes visible a moment after the writes that woke it), so it attaches to new sessions, drops
  removed ones, and sees a launch starting.

Services (:func:`watcher_services`) ride on the same loop: each is called when its interval is
due and whenever the state changed.  The watcher exits by itself once no agent has been alive for
:data:`WATCH_GRACE_S`, and hands over to a fresh one when its database or lock file is replaced.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentdeck import fswatch
from agentdeck.mcp_link.service import CHECK_EVERY_S
from agentdeck.mcp_link.service import tick as mcp_tick
from agentdeck.notify import Notifier
from agentdeck.status.looks import Looks, PaneState
from agentdeck.status.rules import HOOK_GRACE_S, RESTART_GRACE_S, restart_pending
from agentdeck.status.sampler import Sampler
from agentdeck.status.sources import Sources
from agentdeck.status.watching import ensure_watcher, lock_path, log
from agentdeck.tmux import PANE_FORMAT, TmuxGone, parse_panes, server_running

WATCH_GRACE_S = float(os.environ.get("AGENTDECK_WATCH_GRACE", "15"))
#: One liveness pass this often whatever happens (tmux notifications are the prompt path).
SAFETY_S = 30.0


class Service:
    """Work the watcher keeps doing besides status: ``fn(deck)`` is called whenever the state
    changed (another process committed) and otherwise when due: *every* seconds after the last
    call, or - when it returned a number - that many seconds after it (a service with nothing
    to look after returns a long delay, one with something pending a short one)."""

    def __init__(self, name: str, fn: Callable[[Any], Any], every: float, next_at: float = 0.0):
        self.name = name
        self.fn = fn
        self.every = every
        self.next_at = next_at


def watcher_services() -> list[Service]:
    """The services of the watcher loop (a new one: add it here)."""
    return [Service("mcp", mcp_tick, CHECK_EVERY_S)]  # first prompts due; the MCP server back if killed


def run_watcher(deck: Any) -> int:
    """The watcher (``agentdeck _watch``): one instance per repository (a file lock).

    Whenever it wakes it first checks, with two ``stat`` calls, that the state database and the
    lock file are still the files it opened (the state folder's inotify watch wakes it when
    either is deleted or renamed).  When one was deleted or replaced (``rm state.db``, ``doctor
    --fix`` moving a corrupt one aside), the watcher stops at once, releases its lock and starts
    a fresh watcher, which opens (or creates) the database now at that path and re-adopts the
    agents on disk: it never goes on writing into a file no one else sees.
    """
    path = lock_path(deck)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return 0  # another watcher owns this repository
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    replaced = ""
    watcher = Watcher(deck, path, fh)
    try:
        replaced = watcher.run()
        if replaced:
            log(f"{replaced}: handing over to a fresh watcher")
        return 0
    finally:
        watcher.close()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
        if replaced:
            deck.store.close()
            ensure_watcher(deck)


def _state_replaced(deck: Any, lock_file: Path, fh: Any) -> str:
    """Why this watcher must hand over ('' when it need not): its database or lock file is no
    longer the file at that path."""
    if deck.store.file_changed():
        return f"the state database {deck.store.path} was deleted or replaced"
    try:
        st, own = os.stat(lock_file), os.fstat(fh.fileno())
    except OSError:
        return f"the watcher lock {lock_file} was deleted"
    if (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino):
        return f"the watcher lock {lock_file} was replaced"
    return ""


class Watcher(Sources, Looks):
    """The watcher's event loop (see the module docstring): it sleeps until tmux, the state
    folder, a launching process or a timer it set has something to say.  What wakes it is
    :class:`~agentdeck.status.sources.Sources`; what it does with a pane that drew,
    :class:`~agentdeck.status.looks.Looks`."""

    def __init__(self, deck: Any, lock_path: Path, lock_fh: Any):
        self.deck = deck
        self.lock_path = lock_path
        self.lock_fh = lock_fh
        self.sampler = Sampler(deck)
        self.sel = selectors.DefaultSelector()
        self.records: dict[str, Any] = {}
        self.clients: dict[str, Any] = {}  # session -> ControlClient
        self.panes: dict[str, PaneState] = {}  # agent name -> pane state
        self.by_pane: dict[str, PaneState] = {}  # pane id -> pane state
        self.waiter: Any = None  # `tmux wait-for` on the pane-died channel
        self.launch_fds: dict[str, int] = {}  # agent name -> pidfd of its launching process
        self.pane_fds: dict[str, tuple[int, int]] = {}  # agent name -> (pane pid, its pidfd)
        self.rechecks: list[float] = []  # liveness passes due after a pane's process ended
        self.services = watcher_services()
        self.notifier = Notifier(deck.store, deck.tmux, deck.config.notify)  # desktop and tmux status-line notices
        self.db_dirty = True
        self.live_due = True
        self.hooks_set = False
        self.alive = 0
        self.last_alive = time.monotonic()
        self.next_safety = time.time() + SAFETY_S
        self.next_db_poll = float("inf")
        self._shape: tuple = ()
        self._version: Any = None
        self.settle = fswatch.Settle()  # looks again after a notice: a commit shows a moment after its writes
        self.dbwatch: Any = None
        if fswatch.available():
            try:
                self.dbwatch = fswatch.FolderWatch([deck.repo.state_dir], ("state.db", "watcher.lock"))
                self.sel.register(self.dbwatch, selectors.EVENT_READ, self._on_state)
            except OSError as exc:
                log(f"cannot watch {deck.repo.state_dir} ({exc}); reading the state every second")
                self.dbwatch = None
        if self.dbwatch is None:
            self.next_db_poll = time.time()

    # ------------------------------------------------------------------ the loop
    def run(self) -> str:
        """Watch until no agent lives for the grace period ('') or the state was replaced (why)."""
        while True:
            replaced = _state_replaced(self.deck, self.lock_path, self.lock_fh)
            if replaced:
                return replaced
            now = time.time()
            if now >= self.next_safety:
                self.next_safety = now + SAFETY_S
                self.live_due = self.db_dirty = True
            if now >= self.next_db_poll:
                self.next_db_poll = now + 1.0
                self.db_dirty = True
            if self.settle.due(now):
                self.db_dirty = True
            if self.rechecks and self.rechecks[0] <= now:
                self.rechecks = [t for t in self.rechecks if t > now]
                self.live_due = True
            try:
                changed = self.db_dirty and self.reconcile()
                if self.live_due:
                    self.liveness()
                self.look_due()
                self.run_services(changed)
                self.notifier.update()  # one query; a pass runs only when something woke the watcher
            except Exception as exc:  # never die on one bad pass; log and go on
                log(f"watcher pass failed: {exc!r}")
                self.live_due = self.db_dirty = False
                for pane in self.panes.values():
                    pane.dirty_since, pane.check_at = None, 0.0
                self.next_safety = min(self.next_safety, time.time() + 1.0)
            for client in [c for c in self.clients.values() if c.pending]:
                self._client_events(client)  # read while a capture waited for its answer
            if any(p.dirty_since is not None and p.due() <= time.time() for p in self.panes.values()):
                continue  # output came meanwhile: look again before sleeping
            if self.alive or self.launch_fds:
                self.last_alive = time.monotonic()
            elif time.monotonic() - self.last_alive > WATCH_GRACE_S:
                return ""
            wake = min([self.next_safety, self.next_db_poll, self.settle.next() or float("inf"), *self.rechecks[:1],
                        *(p.due() for p in self.panes.values()), *(s.next_at for s in self.services)])
            timeout = max(0.0, wake - time.time())
            if not self.alive and not self.launch_fds:
                timeout = min(timeout, max(0.0, WATCH_GRACE_S - (time.monotonic() - self.last_alive)) + 0.01)
            for key, _ in self.sel.select(timeout):
                key.data(key.fileobj)

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop_client(client)
        if self.waiter is not None:
            self._drop_waiter()
        for name in list(self.launch_fds):
            self._drop_launch(name)
        for name in list(self.pane_fds):
            self._drop_pane_fd(name)
        if self.dbwatch is not None:
            self.dbwatch.close()
        self.sel.close()

    # ------------------------------------------------------------------ the state
    def reconcile(self) -> bool:
        """Re-read the agents when another process wrote; True when it did."""
        self.db_dirty = False
        store = self.deck.store
        version = store.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return False
        self._version = version
        records = {r.name: r for r in store.list_agents()}
        shape = tuple(sorted((r.name, r.session, r.launch_count, bool(r.extra.get("launching")), r.kept,
                              r.status == "exited") for r in records.values()))
        if shape != self._shape:
            self._shape = shape
            self.live_due = True  # sessions to attach or drop, launches to follow
        old = self.records
        self.records = records
        for name, rec in records.items():
            pane = self.panes.get(name)
            if pane is None:
                continue
            if rec.launch_count != pane.launch_count:  # restarted: a new program in that pane
                pane.launch_count = rec.launch_count
                pane.screen_hash, pane.verdict, pane.changed_at = "", "", time.time()
                pane.dirty_since = pane.dirty_since or time.time()
            before = old.get(name)
            if before is not None and before.status_at != rec.status_at and rec.status_source == "hook":
                # A hook spoke: look again when its grace time is over (the screen may disagree).
                pane.check_at = min(pane.check_at or float("inf"), rec.status_at + HOOK_GRACE_S + 0.001)
        for name in [n for n in self.launch_fds if not (records.get(n) and records[n].extra.get("launching"))]:
            self._drop_launch(name)
        if any(r.session not in self.clients and r.status != "exited" and not r.extra.get("launching")
               for r in records.values()):
            self.live_due = True  # a launch just finished, a restart is under way: attach once its pane lives
        return True

    # ------------------------------------------------------------------ liveness
    def _list_panes(self) -> dict | None:
        if not server_running(self.deck.tmux.socket):
            return None
        for client in list(self.clients.values()):
            try:
                result = client.command("list-panes", "-a", "-F", PANE_FORMAT)
            except TmuxGone:
                self._drop_client(client)
                continue
            if result.returncode == 0:
                return parse_panes(result.stdout)
        return self.deck.tmux.list_panes()

    def liveness(self) -> None:
        """One ``list-panes``: exits recorded, clients attached to live panes, detached from the rest."""
        self.live_due = False
        now = time.time()
        if self.waiter is None and self.deck.tmux.is_alive():
            self._start_waiter()  # before listing: a pane dying from here on wakes the loop
        listed = self._list_panes()
        server_alive = listed is not None
        panes = listed or {}
        live_sessions: dict[str, Any] = {}
        alive = 0
        for rec in list(self.records.values()):
            if rec.extra.get("launching"):
                self._follow_launch(rec)
                continue
            if rec.status == "exited" and rec.kept:
                continue
            pane = panes.get(rec.session)
            if pane is None or pane.dead:
                if restart_pending(rec, pane, now):
                    self.next_safety = min(self.next_safety, rec.status_at + RESTART_GRACE_S + 0.01)
                    continue
                if pane is not None and not pane.dead_time and self.rechecks and rec.status != "exited":
                    continue  # its process ended a moment ago: record it once tmux has its exit status
                if rec.status != "exited" and self.sampler._exited(rec, pane, server_alive):
                    self._refresh_record(rec.name)
                continue
            alive += 1
            live_sessions[rec.session] = (rec, pane)
        self.alive = alive
        for session in [s for s in self.clients if s not in live_sessions]:
            self._drop_client(self.clients[session])
        for name in [n for n, p in self.panes.items() if p.session not in live_sessions]:
            self._forget_pane(name)
        live_names = {rec.name for rec, _ in live_sessions.values()}
        for name in [n for n in self.pane_fds if n not in live_names]:
            self._drop_pane_fd(name)
        for rec, info in live_sessions.values():
            self._attach(rec, info)
            self._follow_pane(rec.name, info.pid)

    def _refresh_record(self, name: str) -> None:
        rec = self.deck.store.get_agent(name)
        if rec is None:
            self.records.pop(name, None)
        else:
            self.records[name] = rec
    # ------------------------------------------------------------------ services
    def run_services(self, state_changed: bool) -> None:
        now = time.time()
        for service in self.services:
            if not state_changed and now < service.next_at:
                continue
            service.next_at = now + service.every
            try:
                sooner = service.fn(self.deck)
            except Exception as exc:  # one service failing never stops the others
                log(f"{service.name} failed: {exc!r}")
                continue
            if isinstance(sooner, (int, float)) and not isinstance(sooner, bool) and sooner >= 0:
                service.next_at = now + float(sooner)
