"""Status truth: fuse the agent's own events, its screen and its liveness.

Sources, best first (DESIGN.md section 2):

1. **Events** — hooks / notify callbacks write a status straight into the
   database (``agentdeck hook``, source ``hook``).
2. **Screen** — the watcher below samples panes and asks the adapter to
   classify what it sees (patterns), plus *quietness* (no output for
   ``quiet_s``) for agents without events.  For agents with events the screen
   only fills gaps: a pattern verdict that contradicts the hook status (an
   interrupt fires no hook; a quota message looks idle) wins once it has held
   for the persistence window and the hook status is older than the grace time.
3. **Liveness** — a dead pane, a missing session or a dead tmux server is
   ``exited``, at once, whatever else says.

Flicker is suppressed with a persistence window: a screen verdict must hold for
``PERSIST_S`` (two consecutive samples) before it changes the recorded status;
a permission prompt matched on screen (``waiting``) is unambiguous and applies
at once.

Cost: every tick is ONE ``tmux list-panes -a`` call; a pane is captured only
when its fingerprint (activity second, scrollback size, cursor) moved, so 30
idle agents cost one small subprocess per tick instead of 30 captures.

Who samples: a light watcher process, started on demand by any command that
reads or changes status (``new``, ``ls``, ``wait``, the deck) and exiting by
itself once no agent has been alive for a grace period.  A command that finds
no watcher running does one synchronous pass first, so what it prints is true
even before the watcher's first tick.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.deck import Deck

PERSIST_S = 0.2
HOOK_GRACE_S = 1.5
SAVE_SCREEN_EVERY_S = 5.0
WATCH_GRACE_S = float(os.environ.get("AGENTDECK_WATCH_GRACE", "15"))


def _hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------- launching processes
# `new` marks its row ``launching`` while it creates branch, worktree, setup and pane; the row
# records which process does it, so a launch that no process is finishing any more (`new` killed
# during a slow setup_command) is seen at read time and shown ``exited`` instead of ``starting``
# forever.  A pid alone could be reused: the process's start time (/proc/<pid>/stat field 22)
# makes the identity exact where /proc exists.
LEGACY_LAUNCH_S = 6 * 3600  # a row from before launchers were recorded: given up after this long


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from /proc/<pid>/stat; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    if len(fields) <= 19:
        return None
    return fields[0], fields[19]  # fields 3 and 22 of the whole line: state, starttime


def _proc_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_identity(pid: int | None = None) -> dict[str, object]:
    """Who is launching: pid, start time, host and pid namespace (recorded in the agent's row)."""
    import socket

    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start": _proc_start(pid) or "", "host": socket.gethostname(), "pidns": _pid_namespace()}


def process_gone(ident: dict[str, object]) -> bool:
    """True only when the recorded process is certainly gone (unknown means alive: a launcher on
    another host or in another pid namespace is never declared dead)."""
    import socket

    pid = ident.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if ident.get("host") and ident.get("host") != socket.gethostname():
        return False
    if ident.get("pidns") and ident.get("pidns") != _pid_namespace():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # someone else's process with that pid: compare start times below
    stat = _proc_stat(pid)
    if stat is None:  # no /proc (macOS): the pid answering is all we can tell
        return not os.path.exists(f"/proc/{pid}") and os.path.isdir("/proc/self")
    state, start = stat
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return True
    return bool(ident.get("start")) and start != ident.get("start")


def launch_abandoned(rec) -> bool:
    """A row still marked ``launching`` whose launching process is gone."""
    if not rec.extra.get("launching"):
        return False
    ident = rec.extra.get("launcher")
    if isinstance(ident, dict):
        return process_gone(ident)
    return time.time() - (rec.status_at or 0) > LEGACY_LAUNCH_S


class Sampler:
    """One pass over every agent of a repository: liveness, screen, fusion."""

    def __init__(self, deck: "Deck"):
        self.deck = deck
        self._adapters: dict[str, object] = {}

    def adapter(self, rec):
        key = rec.definition
        if key not in self._adapters:
            from agentdeck.agents import get_adapter

            try:
                self._adapters[key] = get_adapter(rec.definition, self.deck.config)
            except Exception:  # definition removed from the config: fall back to generic rules
                from agentdeck.agents.generic import GenericAdapter
                from agentdeck.config import AgentDef

                self._adapters[key] = GenericAdapter(rec.definition, AgentDef(command="?"), self.deck.config)
        return self._adapters[key]

    def sample(self, settle: bool = False) -> int:
        """Sample every agent once; returns how many panes were alive.

        *settle*: when the stored sample is stale (no watcher was running), take a
        second look ``quiet_s`` later before calling changed output ``working``.
        """
        deck = self.deck
        store = deck.store
        tmux = deck.tmux
        now = time.time()
        listed = tmux.list_panes()  # one tmux call; None when the server is down
        server_alive = listed is not None
        panes = listed or {}
        states = store.screen_states()
        work = []
        for rec in store.list_agents():
            if rec.status == "exited" and rec.kept:
                continue
            if rec.extra.get("launching"):
                self._check_launch(rec)
                continue  # `new` is still creating it (or it was just found abandoned)
            pane = panes.get(rec.session)
            if pane is None or pane.dead:
                self._exited(rec, pane, server_alive)
                continue
            work.append((rec, pane, states.get(rec.name)))
        first: dict[str, str] = {}
        if settle:
            # Nobody watched: capture every stale pane, wait ONCE, and let the second look tell
            # still screens from changing ones.
            for rec, pane, state in work:
                if state is None or now - state["sampled_at"] > 3 * deck.config.deck.status_interval:
                    first[rec.name] = tmux.capture(pane.pane_id)
            if first:
                time.sleep(min(0.6, min(self.adapter(rec).quiet_s for rec, _, _ in work)))
        pending = {}
        for rec, pane, state in work:
            updates = self._sample_pane(rec, pane, state, now, first.get(rec.name))
            if updates:
                pending[rec.name] = updates
        if pending:
            store.put_screen_states(pending)  # one transaction for the whole pass
        return len(work)

    # ------------------------------------------------------------------ liveness
    def liveness(self) -> None:
        """Only the cheap part (one tmux call): mark dead panes and a dead server ``exited`` now."""
        tmux = self.deck.tmux
        listed = tmux.list_panes()  # one tmux call; None when the server is down
        server_alive = listed is not None
        panes = listed or {}
        for rec in self.deck.store.list_agents():
            if rec.extra.get("launching"):
                self._check_launch(rec)
                continue
            if rec.status == "exited":
                continue
            pane = panes.get(rec.session)
            if pane is None or pane.dead:
                self._exited(rec, pane, server_alive)

    def _check_launch(self, rec) -> None:
        """A launch whose process is gone: ``exited``, with the reason as its event."""
        if not launch_abandoned(rec):
            return
        ident = rec.extra.get("launcher") or {}
        pid = ident.get("pid") if isinstance(ident, dict) else None
        reason = (f"launch interrupted: the process creating it (pid {pid}) ended before the agent started"
                  if pid else "launch interrupted: no process is creating it any more")
        self.deck.mark_launch_interrupted(rec, reason)

    def _exited(self, rec, pane, server_alive: bool) -> None:
        if rec.status == "exited":
            return
        detail: dict[str, object] = {}
        if pane is not None:
            detail["exit_status"] = pane.dead_status
            try:
                self.deck.save_last_screen(rec.name, self.deck.tmux.capture(pane.pane_id))
            except Exception:
                pass
        else:
            detail["reason"] = "tmux server gone" if not server_alive else "tmux session gone"
        self.deck.store.set_status(rec.name, "exited", "liveness", detail)

    # ------------------------------------------------------------------ screen
    def _sample_pane(self, rec, pane, state, now: float, first_look: str | None) -> dict | None:
        """Classify one pane; returns the screen-state fields to store, None when nothing moved."""
        deck = self.deck
        store = deck.store
        adapter = self.adapter(rec)
        fingerprint = pane.fingerprint
        settled = first_look is not None
        changed_fp = state is None or state["fingerprint"] != fingerprint
        verdict = state["verdict"] if state is not None else ""
        screen_hash = state["screen_hash"] if state is not None else ""
        changed_at = state["changed_at"] if state is not None else now
        saved_at = state["saved_at"] if state is not None else 0.0
        updates: dict[str, object] = {"fingerprint": fingerprint, "sampled_at": now}
        # window_activity counts whole seconds: look again at panes active in the last two.
        if settled or changed_fp or not screen_hash or now - pane.activity <= 2:
            screen = deck.tmux.capture(pane.pane_id)
            new_hash = _hash(screen)
            if settled and new_hash != screen_hash:
                # Unwatched until now: still since the first look means quiet for as long as we can tell.
                changed_at = now - adapter.quiet_s if _hash(first_look) == new_hash else time.time()
            elif new_hash != screen_hash:
                changed_at = now
            keys = adapter.dialog_action(screen)
            if keys and self._dialog_recently_answered(rec.name, now):
                keys = None  # the last answer is still being processed; never send it twice
            if keys:
                deck.tmux.send_keys(pane.pane_id, *keys)
                store.add_event(rec.name, "dialog", "screen", detail={"keys": keys})
            v = adapter.classify(screen)
            verdict = v.status or ""
            updates.update(screen_hash=new_hash, changed_at=changed_at, verdict=verdict)
            if new_hash != screen_hash and now - saved_at >= SAVE_SCREEN_EVERY_S:
                deck.save_last_screen(rec.name, screen)
                updates["saved_at"] = now
        decision = self._decide(rec, adapter, verdict, changed_at, now)
        candidate = state["candidate"] if state is not None else ""
        candidate_at = state["candidate_at"] if state is not None else 0.0
        if decision is None or decision == rec.status:
            updates.update(candidate="", candidate_at=0.0)
        elif decision != candidate:
            updates.update(candidate=decision, candidate_at=now)
            # A prompt on screen is unambiguous: no persistence window for `waiting`; and a
            # one-off reader (no watcher running) cannot wait for one.
            if decision == "waiting" and verdict == "waiting" or settled:
                store.set_status(rec.name, decision, "screen", {"verdict": verdict}, if_status_at=rec.status_at)
                updates.update(candidate="", candidate_at=0.0)
        elif now - candidate_at >= PERSIST_S:
            store.set_status(rec.name, decision, "screen", {"verdict": verdict}, if_status_at=rec.status_at)
            updates.update(candidate="", candidate_at=0.0)
        if state is not None and all(state[k] == v for k, v in updates.items() if k != "sampled_at"):
            return None  # an idle pane costs no write
        return updates

    def _dialog_recently_answered(self, name: str, now: float, within: float = 3.0) -> bool:
        last = self.deck.store.last_event(name, "dialog")
        return last is not None and now - last["ts"] < within

    def _decide(self, rec, adapter, verdict: str, changed_at: float, now: float) -> str | None:
        quiet = now - changed_at >= adapter.quiet_s
        if adapter.has_events and rec.status_source == "hook":
            # Events lead; the screen only corrects them with a clear pattern verdict.
            if not verdict or verdict == rec.status:
                return None
            if now - rec.status_at < HOOK_GRACE_S:
                return None
            if verdict == "idle" and not quiet:
                return None
            return verdict
        if verdict in ("waiting", "working"):
            return verdict
        if not quiet:
            return "working"
        if verdict == "idle" or quiet:
            return "idle"
        return None


# ---------------------------------------------------------------------- the watcher process


def _lock_path(deck: "Deck") -> Path:
    return deck.repo.state_dir / "watcher.lock"


def watcher_alive(deck: "Deck") -> bool:
    path = _lock_path(deck)
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # read-only: works on a read-only state dir
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def ensure_watcher(deck: "Deck") -> bool:
    """Start the watcher if none runs for this repository. Returns True when one was started."""
    if os.environ.get("AGENTDECK_NO_WATCHER") == "1" or watcher_alive(deck):
        return False
    deck.repo.logs_dir.mkdir(parents=True, exist_ok=True)
    log = open(deck.repo.logs_dir / "watcher.log", "ab")
    env = dict(os.environ)
    env["AGENTDECK_TMUX_SOCKET"] = deck.tmux.socket
    pkg_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.Popen(
        [sys.executable, "-m", "agentdeck", "_watch"], cwd=str(deck.repo.root), env=env,
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
    )
    log.close()
    return True


def run_watcher(deck: "Deck") -> int:
    """The watcher loop (``agentdeck _watch``): one instance per repository (a file lock).

    Each tick first checks, with two ``stat`` calls, that the state database and the lock file
    are still the files it opened.  When one was deleted or replaced (``rm state.db``, ``doctor
    --fix`` moving a corrupt one aside), the watcher stops at once, releases its lock and starts
    a fresh watcher, which opens (or creates) the database now at that path and re-adopts the
    agents on disk: it never goes on writing into a file no one else sees.
    """
    path = _lock_path(deck)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another watcher owns this repository
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    from agentdeck.mcp.service import tick as mcp_tick
    from agentdeck.notify import Notifier

    sampler = Sampler(deck)
    notifier = Notifier(deck)
    interval = deck.config.deck.status_interval
    last_alive = time.monotonic()
    replaced = ""
    try:
        while True:
            started = time.monotonic()
            replaced = _state_replaced(deck, path, fh)
            if replaced:
                print(f"{time.strftime('%H:%M:%S')} {replaced}: handing over to a fresh watcher",
                      file=sys.stderr, flush=True)
                return 0
            try:
                alive = sampler.sample()
                notifier.update()
                mcp_tick(deck)  # first prompts due; the MCP server back if it was killed
            except Exception as exc:  # never die on one bad pass; log and go on
                print(f"{time.strftime('%H:%M:%S')} watcher pass failed: {exc!r}", file=sys.stderr, flush=True)
                alive = 1
            if alive:
                last_alive = time.monotonic()
            elif time.monotonic() - last_alive > WATCH_GRACE_S:
                return 0
            time.sleep(max(0.05, interval - (time.monotonic() - started)))
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
        if replaced:
            deck.store.close()
            ensure_watcher(deck)


def _state_replaced(deck: "Deck", lock_path: Path, fh) -> str:
    """Why this watcher must hand over ('' when it need not): its database or lock file is no
    longer the file at that path."""
    if deck.store.file_changed():
        return f"the state database {deck.store.path} was deleted or replaced"
    try:
        st, own = os.stat(lock_path), os.fstat(fh.fileno())
    except OSError:
        return f"the watcher lock {lock_path} was deleted"
    if (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino):
        return f"the watcher lock {lock_path} was replaced"
    return ""
