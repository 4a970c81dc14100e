"""Status truth: fuse the agent's own events, its screen and its liveness.

Sources, best first (DESIGN.md section 2):

1. **Events** — hooks / notify callbacks write a status straight into the
   database (``agentdeck hook``, source ``hook``).
2. **Screen** — the adapter classifies what the pane shows (patterns), plus
   *quietness* (no change for ``quiet_s``) for agents without events.  For
   agents with events the screen only fills gaps: a pattern verdict that
   contradicts the hook status (an interrupt fires no hook; a quota message
   looks idle) wins once the hook status is older than the grace time.
3. **Liveness** — a dead pane, a missing session or a dead tmux server is
   ``exited``, at once, whatever else says.

Push, not poll.  The watcher (one process per repository, ``agentdeck _watch``)
is told of every change instead of looking for it:

* pane output: one tmux control-mode client per agent session (``tmux -C
  attach``; tmux sends ``%output`` for a session's panes only to clients attached
  to it).  A pane that drew is captured - through that client, no subprocess -
  once it has been still for :data:`SETTLE_S` (and at least every
  :data:`BATCH_S` while it keeps drawing), classified, and looked at once more
  when it has been quiet for ``quiet_s`` (or a hook's grace time ends).  A pane
  that does not move costs nothing.  Every screen that stays :data:`SETTLE_S`
  is classified, so every status that lasts 20 ms or more reaches the events.
* liveness: each pane's process is followed through a pidfd (readable when it
  ends); the server's ``pane-died`` hook signals a ``tmux wait-for`` channel the
  watcher waits on (tmux can miss the SIGCHLD that fires it: the pidfd does
  not); a killed session ends its client (``%exit``) and tells the others
  (``%sessions-changed``); a dead server ends them all.  Each of these runs one
  ``list-panes`` (through a client).  A slow safety pass (:data:`SAFETY_S`) runs
  it anyway.
* the state: one inotify watch on the state folder hears every commit of every
  process (hooks, ``new``, ``kill``, ``restart``); the watcher then re-reads the
  agents (only when ``PRAGMA data_version`` says another connection wrote; asked
  again a few times in the second after a notice, since a commit becomes visible
  a moment after the writes that woke it), so it attaches to new sessions, drops
  removed ones, and sees a launch starting.
  A launch in progress is watched through its process's pidfd.

Services (:func:`watcher_services`) ride on the same loop: each is called when
its interval is due and whenever the state changed.

Who watches: started on demand by any command that reads or changes status
(``new``, ``ls``, ``wait``, the deck), exiting by itself once no agent has been
alive for a grace period.  A command that finds no watcher running does one
synchronous pass first (:class:`Sampler`), so what it prints is true even
before the watcher's first look.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.deck import Deck

PERSIST_S = 0.2  # one-off passes (no watcher): a screen verdict must hold this long across passes
HOOK_GRACE_S = 1.5
SAVE_SCREEN_EVERY_S = 5.0
WATCH_GRACE_S = float(os.environ.get("AGENTDECK_WATCH_GRACE", "15"))
#: A pane still this long after drawing is captured and classified.
SETTLE_S = 0.008
#: A pane that keeps drawing is captured at least this often.
BATCH_S = 0.04
#: One liveness pass this often whatever happens (tmux notifications are the prompt path).
SAFETY_S = 30.0
#: While a pane keeps changing, its screen state is written to the database at most this often.
PERSIST_SCREEN_EVERY_S = 1.0
#: A restarted agent whose pane is still the dead one is given this long before it counts as exited.
RESTART_GRACE_S = 10.0


def _hash(text: str) -> str:
    import hashlib

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
                if not restart_pending(rec, pane, now):
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
    def liveness(self, watched: bool = False) -> None:
        """Only the cheap part (one tmux call): mark dead panes and a dead server ``exited`` now.

        *watched*: a watcher runs, and it records dead panes and killed sessions the moment tmux
        reports them; then only what it cannot see is checked here, with no tmux call at all:
        abandoned launches, and a server that is gone (its socket refuses connections)."""
        tmux = self.deck.tmux
        now = time.time()
        if watched and tmux.is_alive():
            for rec in self.deck.store.list_agents():
                if rec.extra.get("launching"):
                    self._check_launch(rec)
            return
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
            if (pane is None or pane.dead) and not restart_pending(rec, pane, now):
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

    def _exited(self, rec, pane, server_alive: bool) -> bool:
        """Record *rec* ``exited`` (a dead pane keeps its last screen); True when it was changed."""
        if rec.status == "exited":
            return False
        detail: dict[str, object] = {}
        if pane is not None:
            detail["exit_status"] = pane.dead_status
            try:
                self.deck.save_last_screen(rec.name, self.deck.tmux.capture(pane.pane_id))
            except Exception:
                pass
        else:
            detail["reason"] = "tmux server gone" if not server_alive else "tmux session gone"
        return self.deck.store.set_status(rec.name, "exited", "liveness", detail)

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
        """The status the screen implies now (None: it says nothing against the recorded one)."""
        return decide(rec, adapter, verdict, changed_at, now)


def decide(rec, adapter, verdict: str, changed_at: float, now: float) -> str | None:
    """The status a screen verdict implies for *rec*, given when the screen last changed.

    * An agent with events whose status came from a hook: the screen only corrects it, with a
      pattern verdict, once the hook status is older than :data:`HOOK_GRACE_S` (an ``idle``
      verdict only once the screen is quiet).
    * Otherwise a ``waiting`` or ``working`` pattern says so at once.  The agent's prompt
      (``idle`` pattern) is ``idle`` at once after start or while idle; after a turn or an
      answer it is ``idle`` once the screen fell quiet (a TUI may show its prompt while it still
      works), ``working`` until then.  No pattern: ``working`` while the screen changes (an
      agent started without a prompt stays ``starting`` meanwhile), ``idle`` once it has been
      quiet for ``quiet_s``.
    * An agent whose first prompt has not been typed yet (it waits for the agent's MCP client to
      list agentdeck's tools, :mod:`agentdeck.mcp.first_prompt`) stays ``starting`` unless the
      screen shows it waiting: ``idle`` would tell a script its task is done before it began;
      so does one whose first prompt is being typed (:func:`agentdeck.mcp.first_prompt.typing`)
      until the CLI shows it working (or waiting).
    """
    if rec.extra.get("pending_prompt") and verdict != "waiting":
        return None
    if verdict not in ("waiting", "working") and _prompt_typing(rec.extra, now):
        return None
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
    if verdict == "idle":
        return "idle" if quiet or rec.status in ("starting", "idle") else "working"
    if not quiet and rec.status == "starting" and not getattr(rec, "prompt", ""):
        return None  # still drawing itself, with nothing to work on yet: starting until its prompt shows
    return "idle" if quiet else "working"


def _prompt_typing(extra: dict, now: float) -> bool:
    from agentdeck.mcp.first_prompt import typing

    return typing(extra, now)


def _prompt_typing_ends(extra: dict) -> float:
    from agentdeck.mcp.first_prompt import TYPING_HOLD_S

    return float(extra["prompt_typing"]) + TYPING_HOLD_S


def restart_pending(rec, pane, now: float) -> bool:
    """True while a ``restart`` of *rec* is under way: the row says ``starting`` (source restart)
    but its session is not there yet, or its pane is still the one that died before the restart
    (pane_dead_time, in whole seconds); for at most :data:`RESTART_GRACE_S`.  Not a new exit."""
    if rec.status != "starting" or rec.status_source != "restart" or now - rec.status_at > RESTART_GRACE_S:
        return False
    if pane is None:
        return True  # its session (or the whole server) is being made again
    # a dead pane tmux has not reaped yet (no time of death) died before the restart too
    return pane.dead and (not pane.dead_time or pane.dead_time <= int(rec.status_at))
# ---------------------------------------------------------------------- the watcher process


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
    from agentdeck.mcp.service import CHECK_EVERY_S, tick as mcp_tick

    return [Service("mcp", mcp_tick, CHECK_EVERY_S)]  # first prompts due; the MCP server back if killed


def _lock_path(deck: "Deck") -> Path:
    return deck.repo.state_dir / "watcher.lock"


def watcher_pid(deck: "Deck") -> int | None:
    """The pid of the watcher running for this repository, None when none runs."""
    path = _lock_path(deck)
    if not watcher_alive(deck):
        return None
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


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
    import subprocess

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


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def run_watcher(deck: "Deck") -> int:
    """The watcher (``agentdeck _watch``): one instance per repository (a file lock).

    Whenever it wakes it first checks, with two ``stat`` calls, that the state database and the
    lock file are still the files it opened (the state folder's inotify watch wakes it when
    either is deleted or renamed).  When one was deleted or replaced (``rm state.db``, ``doctor
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
            _log(f"{replaced}: handing over to a fresh watcher")
        return 0
    finally:
        watcher.close()
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


class _Pane:
    """What the watcher keeps of one agent's pane between looks."""

    __slots__ = ("name", "session", "pane_id", "client", "dirty_since", "last_output", "screen_hash",
                 "changed_at", "verdict", "saved_at", "check_at", "persisted", "persisted_at", "launch_count")

    def __init__(self, name: str, session: str, pane_id: str, client: Any, launch_count: int):
        self.name = name
        self.session = session
        self.pane_id = pane_id
        self.client = client
        self.launch_count = launch_count
        self.dirty_since: float | None = None  # first output not looked at yet
        self.last_output = 0.0
        self.screen_hash = ""
        self.changed_at = 0.0
        self.verdict = ""
        self.saved_at = 0.0
        self.check_at = 0.0  # a look without output (quiet reached, a hook's grace over); 0 = none
        self.persisted: tuple[str, str, float] = ("", "", 0.0)
        self.persisted_at = 0.0

    def due(self) -> float:
        """When this pane next needs a look (inf: not until it draws)."""
        when = float("inf")
        if self.dirty_since is not None:
            when = min(self.last_output + SETTLE_S, self.dirty_since + BATCH_S)
        if self.check_at:
            when = min(when, self.check_at)
        return when


class Watcher:
    """The watcher's event loop (see the module docstring): it sleeps until tmux, the state
    folder, a launching process or a timer it set has something to say."""

    def __init__(self, deck: "Deck", lock_path: Path, lock_fh: Any):
        import selectors

        from agentdeck import fswatch

        self.deck = deck
        self.lock_path = lock_path
        self.lock_fh = lock_fh
        self.sampler = Sampler(deck)
        self.sel = selectors.DefaultSelector()
        self.records: dict[str, Any] = {}
        self.clients: dict[str, Any] = {}  # session -> ControlClient
        self.panes: dict[str, _Pane] = {}  # agent name -> pane state
        self.by_pane: dict[str, _Pane] = {}  # pane id -> pane state
        self.waiter: Any = None  # `tmux wait-for` on the pane-died channel
        self.launch_fds: dict[str, int] = {}  # agent name -> pidfd of its launching process
        self.pane_fds: dict[str, tuple[int, int]] = {}  # agent name -> (pane pid, its pidfd)
        self.rechecks: list[float] = []  # liveness passes due after a pane's process ended
        self.services = watcher_services()
        from agentdeck.notify import Notifier

        self.notifier = Notifier(deck)  # desktop and tmux status-line notices, fed after every pass
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
        self.looks = 0  # captures taken (logs, tests)
        self.dbwatch: Any = None
        if fswatch.available():
            try:
                self.dbwatch = fswatch.FolderWatch([deck.repo.state_dir], ("state.db", "watcher.lock"))
                self.sel.register(self.dbwatch, selectors.EVENT_READ, self._on_state)
            except OSError as exc:
                _log(f"cannot watch {deck.repo.state_dir} ({exc}); reading the state every second")
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
                _log(f"watcher pass failed: {exc!r}")
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

    # ------------------------------------------------------------------ what wakes it
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
        import selectors

        from agentdeck import fswatch

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
        from agentdeck.tmux import PANE_FORMAT, TmuxGone, parse_panes, server_running

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
        for session, (rec, info) in live_sessions.items():
            self._attach(rec, info)
            self._follow_pane(rec.name, info.pid)

    def _attach(self, rec: Any, info: Any) -> None:
        import selectors

        from agentdeck.tmux import TmuxGone

        client = self.clients.get(rec.session)
        if client is None:
            if not self.hooks_set:
                self.deck.tmux.ensure_hooks()  # a server started before agentdeck's conf had the hook
                self.hooks_set = True
            try:
                client = self.deck.tmux.control(rec.session)
            except OSError as exc:
                _log(f"cannot attach to {rec.session}: {exc}")
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
            pane = _Pane(rec.name, rec.session, info.pane_id, client, rec.launch_count)
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

    def _drop_client(self, client: Any) -> None:
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
        import selectors

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
        import selectors

        from agentdeck import fswatch

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

    def _refresh_record(self, name: str) -> None:
        rec = self.deck.store.get_agent(name)
        if rec is None:
            self.records.pop(name, None)
        else:
            self.records[name] = rec

    # ------------------------------------------------------------------ screens
    def look_due(self) -> None:
        now = time.time()
        pending: dict[str, dict[str, Any]] = {}
        for pane in list(self.panes.values()):
            if pane.due() > now:
                continue
            captured = pane.dirty_since is not None
            pane.dirty_since, pane.check_at = None, 0.0
            updates = self.look(pane, now, capture=captured)
            if updates:
                pending[pane.name] = updates
        if pending:
            self.deck.store.put_screen_states(pending)

    def look(self, pane: _Pane, now: float, capture: bool) -> dict[str, Any] | None:
        """Classify one pane (capturing it when it drew); returns the screen state to store, if any."""
        from agentdeck.tmux import TmuxGone

        rec = self.records.get(pane.name)
        if rec is None or rec.extra.get("launching"):
            return None
        deck = self.deck
        adapter = self.sampler.adapter(rec)
        changed = False
        if capture:
            try:
                screen = pane.client.capture(pane.pane_id)
            except (TmuxGone, Exception) as exc:  # the pane or its client went meanwhile
                if not isinstance(exc, TmuxGone):
                    _log(f"capture of {pane.name} failed: {exc!r}")
                self.live_due = True
                return None
            self.looks += 1
            digest = _hash(screen)
            if digest != pane.screen_hash:
                changed = True
                pane.screen_hash, pane.changed_at = digest, now
                keys = adapter.dialog_action(screen)
                if keys and self.sampler._dialog_recently_answered(rec.name, now):
                    keys = None  # the last answer is still being processed; never send it twice
                if keys:
                    pane.client.send("send-keys", "-t", pane.pane_id, *keys)
                    deck.store.add_event(rec.name, "dialog", "screen", detail={"keys": keys})
                pane.verdict = adapter.classify(screen).status or ""
                if now - pane.saved_at >= SAVE_SCREEN_EVERY_S:
                    deck.save_last_screen(rec.name, screen)
                    pane.saved_at = now
        decision = decide(rec, adapter, pane.verdict, pane.changed_at, now)
        if decision is not None and decision != rec.status:
            if deck.store.set_status(rec.name, decision, "screen", {"verdict": pane.verdict}, ts=now,
                                     if_status_at=rec.status_at):
                self._refresh_record(rec.name)
                rec = self.records.get(pane.name, rec)
            else:  # a hook or a command wrote meanwhile: read it again and look once more
                self._refresh_record(rec.name)
                pane.check_at = now + SETTLE_S
        # The next look without output: once quiet, or once a hook's grace time is over.
        later = []
        if now - pane.changed_at < adapter.quiet_s:
            later.append(pane.changed_at + adapter.quiet_s + 0.001)
        if adapter.has_events and rec.status_source == "hook" and now - rec.status_at < HOOK_GRACE_S:
            later.append(rec.status_at + HOOK_GRACE_S + 0.001)
        if _prompt_typing(rec.extra, now):  # the hold ends even if the screen never changes again
            later.append(_prompt_typing_ends(rec.extra) + 0.001)
        if later:
            pane.check_at = min(pane.check_at or float("inf"), *later)
        state = (pane.screen_hash, pane.verdict, pane.changed_at)
        if state == pane.persisted:
            return None
        urgent = (pane.verdict != pane.persisted[1] or not capture or not changed
                  or isinstance(rec.extra.get("pending_prompt"), dict) or bool(rec.extra.get("prompt_typing")))
        if not urgent and now - pane.persisted_at < PERSIST_SCREEN_EVERY_S:
            pane.check_at = min(pane.check_at or float("inf"), pane.persisted_at + PERSIST_SCREEN_EVERY_S)
            return None
        pane.persisted, pane.persisted_at = state, now
        return {"fingerprint": "", "screen_hash": pane.screen_hash, "changed_at": pane.changed_at,
                "sampled_at": now, "verdict": pane.verdict, "candidate": "", "candidate_at": 0.0,
                "saved_at": pane.saved_at}

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
                _log(f"{service.name} failed: {exc!r}")
                continue
            if isinstance(sooner, (int, float)) and not isinstance(sooner, bool) and sooner >= 0:
                service.next_at = now + float(sooner)
