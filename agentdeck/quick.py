"""Light commands: what scripts and agents call often, without building the deck.

``agentdeck ls``, ``peek``, ``wait`` and ``events`` read the state database (and, for
``peek``, run one tmux command) when a status watcher runs: the watcher keeps statuses and
liveness current as tmux and the hooks report them, so nothing needs sampling here.  These
paths import the standard library, :mod:`agentdeck.paths`, :mod:`agentdeck.store`,
:mod:`agentdeck.status` and :mod:`agentdeck.tmux` - no configuration, no adapters, no
Textual, no SDK (``tests/test_light_cli.py`` holds them to it).

Each function returns None when the light path cannot answer truthfully (no watcher, a
database to re-adopt, a launch to mark interrupted, an unknown name whose error the deck
words, a server gone): the caller then takes the full path through :class:`agentdeck.deck.Deck`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from agentdeck.errors import Refused


class _State:
    """The repository's paths and state store, opened without the deck."""

    def __init__(self, repo: Any, store: Any):
        self.repo = repo
        self.store = store
        self.watched = False
        self._socket: str | None = None

    @property
    def socket(self) -> str:
        """agentdeck's tmux socket: the environment's (set in every agent pane), else the config's."""
        if self._socket is None:
            from agentdeck.tmux import default_socket

            env = os.environ.get("AGENTDECK_TMUX_SOCKET")
            if env:
                self._socket = env
            else:
                from agentdeck.config import load_config

                self._socket = default_socket(load_config(self.repo.root).deck.tmux_socket)
        return self._socket

    def close(self) -> None:
        self.store.close()


def _open(repo_opt: str | None, need_watcher: bool = True) -> _State | None:
    """The state of the repository, when a watcher keeps it current (or *need_watcher* is False:
    the caller checks that nothing needs one); None otherwise."""
    from agentdeck import paths, status
    from agentdeck.store import ADOPT_PENDING, Store

    repo = paths.find_repo(repo_opt)
    if not repo.db_path.is_file():
        return None
    state = _State(repo, None)
    state.watched = status.watcher_alive(state)  # duck-typed: watcher_alive reads .repo.state_dir only
    if need_watcher and not state.watched:
        return None
    try:
        store = Store(repo.db_path)
    except Exception:  # read-only, corrupt...: the deck words the error
        return None
    state.store = store
    if store.get_meta(ADOPT_PENDING) == "1":
        store.close()
        return None
    return state


def _records_true(state: _State, records: list[Any]) -> bool:
    """False when something only the deck may write is pending: an abandoned launch, or live
    agents on a tmux server that is gone (the watcher records that too, within milliseconds)."""
    from agentdeck import status
    from agentdeck.tmux import server_running

    if any(r.extra.get("launching") and status.launch_abandoned(r) for r in records):
        return False
    if any(r.status != "exited" and not r.extra.get("launching") for r in records):
        return server_running(state.socket)
    return True


def ls(repo_opt: str | None) -> list[dict[str, Any]] | None:
    """``ls --json``'s rows, or None (take the deck's path)."""
    from agentdeck.views import AgentView

    state = _open(repo_opt, need_watcher=False)
    if state is None:
        return None
    try:
        records = state.store.list_agents()
        if not state.watched and any(r.status != "exited" for r in records):
            return None  # nobody watches: the deck samples (and starts a watcher)
        if not _records_true(state, records):
            return None
        return [AgentView(r).to_json() for r in records]
    finally:
        state.close()


def events(repo_opt: str | None, name: str) -> list[dict[str, Any]] | None:
    from agentdeck import paths
    from agentdeck.store import Store

    repo = paths.find_repo(repo_opt)
    if not repo.db_path.is_file():
        return None
    try:
        store = Store(repo.db_path)
    except Exception:
        return None
    try:
        if store.get_agent(name) is None:
            return None
        return store.events(name)
    finally:
        store.close()


def peek(repo_opt: str | None, name: str) -> str | None:
    """The agent's screen, captured in one tmux call; None (the deck's path) when the agent or
    its pane is not there (the deck then prints the last screen kept on disk, or the error)."""
    import subprocess

    state = _open(repo_opt)
    if state is None:
        return None
    try:
        rec = state.store.get_agent(name)
        if rec is None or rec.status == "exited":
            return None
        proc = subprocess.run(["tmux", "-L", state.socket, "capture-pane", "-p", "-J", "-t", f"={rec.session}:"],
                              capture_output=True, text=True, encoding="utf-8", errors="backslashreplace")
        if proc.returncode != 0:
            return None
        lines = proc.stdout.split("\n")
        while lines and lines[-1] == "":
            lines.pop()
        return "\n".join(lines)
    finally:
        state.close()


def wait(repo_opt: str | None, name: str, until: set[str], timeout: float | None) -> str | None:
    """Block until *name* reaches a status in *until*; woken by the state folder's inotify watch
    (every commit of every process), not by polling.  None: the deck's path (no watcher, an
    unknown name or status, no inotify); it then also takes over should the watcher stop."""
    from agentdeck import fswatch, status
    from agentdeck.store import STATUSES

    if not until or until - set(STATUSES) or not fswatch.available():
        return None
    state = _open(repo_opt)
    if state is None:
        return None
    watch = None
    try:
        rec = state.store.get_agent(name)
        if rec is None:
            return None
        watch = fswatch.FolderWatch([state.repo.state_dir], ("state.db",))
        settle = fswatch.Settle()  # a commit shows a moment after the writes that woke us
        deadline = None if timeout is None else time.monotonic() + timeout
        import select

        while True:
            rec = state.store.get_agent(name)
            if rec is None:
                return None
            if not _records_true(state, [rec]):
                return None
            if rec.status in until:
                return rec.status
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise Refused(f"{name} is still {rec.status} after {timeout:g}s "
                              f"(waited for {', '.join(sorted(until))})")
            # at most 2 s asleep: a watcher that stopped is noticed and the deck takes over
            nap = 2.0 if left is None else min(2.0, left)
            later = settle.next()
            if later is not None:
                nap = min(nap, max(0.0, later - time.monotonic()))
            ready, _, _ = select.select([watch], [], [], nap)
            settle.due(time.monotonic())
            if ready and watch.read():
                settle.notice(time.monotonic())
            if not status.watcher_alive(state):
                return None
    finally:
        if watch is not None:
            watch.close()
        state.close()


def remaining(timeout: float | None, started: float) -> float | None:
    """What is left of *timeout* after a light attempt that began at *started* (monotonic)."""
    if timeout is None:
        return None
    return max(0.0, timeout - (time.monotonic() - started))

