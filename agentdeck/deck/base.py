"""The deck's core: its state (repository, config, store, tmux), lookups, status, screens, and
the answers of one repository to :class:`~agentdeck.deck.DeckLike` (``by_repo``, ``key``...).

Every part of the deck (``launch``, ``lifecycle``, ``removal``, ``maintenance``,
``interact``) builds on :class:`DeckBase`; :class:`agentdeck.deck.Deck` joins them.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from agentdeck import git, paths
from agentdeck.config import Config, load_config
from agentdeck.errors import Refused, UsageError
from agentdeck.store import STATUSES, AgentRecord, Store, transaction
from agentdeck.tmux import Tmux, default_socket
from agentdeck.views import AgentView

from .names import SLUG_RE

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.memory.store import MemoryStore
    from agentdeck.research import Research
    from agentdeck.review import Review

D = TypeVar("D", bound="DeckBase")


class DeckBase:
    """One repository's deck: ``repo`` (RepoPaths), ``config``, ``store`` and ``tmux``."""

    #: False: one repository, whose agents go by their plain names (the TUI's
    #: :class:`~agentdeck.tui.multideck.MultiDeck` says True: its names are ``label/name`` keys).
    multi: ClassVar[bool] = False

    def __init__(self, repo: paths.RepoPaths, config: Config, tmux_socket: str | None = None):
        self.repo = repo
        self.config = config
        self.tmux = Tmux(tmux_socket or default_socket(config.deck.tmux_socket), paths.agentdeck_home())
        try:
            repo.ensure_state_dir()
            self.store = Store(repo.db_path)
        except (OSError, sqlite3.OperationalError) as exc:
            readonly = self._readonly_path()
            if readonly is not None:
                raise Refused(self._readonly_message(readonly)) from exc
            raise
        self._adopt_lost_agents()  # a database created from nothing: re-adopt agents on disk (adopt.py)

    # ------------------------------------------------------------------ writable state
    def _readonly_path(self) -> Path | None:
        """The first of the state directory and database files that cannot be written, if any."""
        state = self.repo.state_dir
        if not state.exists():
            parent = state.parent
            return parent if not os.access(parent, os.W_OK | os.X_OK) else None
        probe = state / f".write-probe-{os.getpid()}-{secrets.token_hex(4)}"
        try:  # a real write: permission bits say nothing to root; a read-only mount answers only a write
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError:
            return state
        db = self.repo.db_path
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            if path.exists() and not os.access(path, os.W_OK):
                return path
        return None

    def _readonly_message(self, path: Path) -> str:
        return (f"agentdeck's state {path} is read-only, so nothing was changed; make it writable "
                f"(`chmod u+w {path}`, or remount it read-write) and try again")

    def check_writable(self) -> None:
        """Refuse (exit 1) before a change when the state directory or database is read-only:
        a kill must never remove a worktree and then fail to delete its row."""
        readonly = self._readonly_path()
        if readonly is not None:
            raise Refused(self._readonly_message(readonly))

    @classmethod
    def open(cls: type[D], cwd: str | os.PathLike[str] | None = None, tmux_socket: str | None = None) -> D:
        repo = paths.find_repo(cwd)
        config = load_config(repo.root)
        return cls(repo, config, tmux_socket)

    def close(self) -> None:
        self.store.close()

    def reopen(self: D) -> D:
        """A new deck on the same repository, config and tmux server, for another thread (a
        SQLite connection belongs to the thread that opened it)."""
        return type(self)(self.repo, self.config, self.tmux.socket)

    # ------------------------------------------------------------------ subsystems (lazy)
    @functools.cached_property
    def review(self) -> Review:
        from agentdeck.review import Review

        return Review(self)

    @functools.cached_property
    def memory(self) -> MemoryStore:
        from agentdeck.memory.store import MemoryStore

        return MemoryStore.for_deck(self)

    @functools.cached_property
    def research(self) -> Research:
        from agentdeck.research import Research
        from agentdeck.research.runner import runners_like

        return Research(self.repo, self.config, runners_like(self))

    def research_reader(self) -> Research:
        """A Research that only reads (the deck's research pane): no panes, no tmux."""
        from agentdeck.research import Research

        return Research(self.repo, self.config)

    # ------------------------------------------------------------------ lookups
    def get(self, name: str) -> AgentRecord:
        rec = self.store.get_agent(name)
        if rec is None:
            known = ", ".join(r.name for r in self.store.list_agents()) or "none"
            raise UsageError(f"no agent named {name!r} in this repository (agents: {known}); see `agentdeck ls`")
        return rec

    def records(self) -> list[AgentRecord]:
        return self.store.list_agents()

    def data_version(self) -> tuple[int, ...]:
        """Changes when another connection commits to the state (SQLite ``PRAGMA data_version``):
        a cheap "did anything change?" for the deck's status feed."""
        return (int(self.store.conn.execute("PRAGMA data_version").fetchone()[0]),)

    def resolve_base(self, base: str | None) -> tuple[str, str]:
        """(branch name, commit) a new agent would start from (UsageError for an unknown *base*)."""
        return git.resolve_base(self.repo.root, base)

    def pane_address(self, name: str) -> tuple[str, str] | None:
        """(tmux socket, session) of *name* when its pane may be alive; None for an exited agent
        or one still being created."""
        rec = self.get(name)
        if rec.status == "exited" or rec.extra.get("launching"):
            return None
        return self.tmux.socket, rec.session

    def watcher_pid(self) -> int | None:
        """The pid of this repository's status watcher, None when none runs."""
        from agentdeck import status

        return status.watcher_pid(self)

    def copied_files(self, name: str) -> set[str]:
        return set(self.get(name).extra.get("copied", []))

    @property
    def session_prefix(self) -> str:
        return f"ad-{self.repo.repo_id}-"

    @property
    def worktree_root(self) -> Path:
        configured = self.config.deck.worktree_dir
        if not configured:
            return self.repo.default_worktree_root
        path = Path(configured).expanduser()
        return path if path.is_absolute() else (self.repo.root / path).resolve()

    def _worktree_roots(self) -> list[Path]:
        roots = [self.worktree_root.resolve()]
        default = self.repo.default_worktree_root.resolve()
        if default not in roots:
            roots.append(default)
        return roots

    # ------------------------------------------------------------------ one repository (DeckLike)
    def title(self) -> str:
        return self.repo.root.name

    def by_repo(self: D) -> list[tuple[str, D]]:
        """(label, Deck) per repository: this one, with an empty label."""
        return [("", self)]

    def deck_of(self: D, name: str) -> D:
        return self

    def key(self, label: str, name: str) -> str:
        return name

    def plain_name(self, name: str) -> str:
        return name

    def label_of(self, name: str) -> str:
        return ""

    def focus_on(self, name: str) -> None:
        """New agents go to *name*'s repository: there is only this one."""

    # ------------------------------------------------------------------ status
    def refresh(self, settle: bool = True) -> None:
        """Make the recorded statuses true now; keep a watcher running."""
        from agentdeck import status

        if not status.watcher_alive(self):
            status.Sampler(self).sample(settle=settle)
            if any(r.status != "exited" for r in self.store.list_agents()):
                status.ensure_watcher(self)
        else:
            # The watcher keeps screens and liveness current (tmux tells it); a read checks only what
            # it cannot see: abandoned launches, a server gone (no tmux call).
            status.Sampler(self).liveness(watched=True)

    def agents(self, refresh: bool = True) -> list[AgentView]:
        if refresh:
            self.refresh()
        return [AgentView(r) for r in self.store.list_agents()]

    def events(self, name: str) -> list[dict[str, Any]]:
        self.get(name)
        return self.store.events(name)

    def wait(self, name: str, until: set[str], timeout: float | None = None, poll: float = 0.1) -> str:
        bad = until - set(STATUSES)
        if not until or bad:
            raise UsageError(
                f"unknown status {', '.join(sorted(bad)) or '(none)'}; use one or more of {', '.join(STATUSES)}"
            )
        self.get(name)
        deadline = None if timeout is None else time.monotonic() + timeout
        self.refresh()
        while True:
            rec = self.get(name)
            if rec.status in until:
                return rec.status
            if deadline is not None and time.monotonic() > deadline:
                raise Refused(
                    f"{name} is still {rec.status} after {timeout:g}s (waited for {', '.join(sorted(until))})"
                )
            from agentdeck import status

            if not status.watcher_alive(self):
                self.refresh()
            time.sleep(poll)

    # ------------------------------------------------------------------ launches the watcher finds abandoned
    def mark_launch_interrupted(self, rec: AgentRecord, reason: str) -> bool:
        """Record that the launch of *rec* will never finish (its process is gone): ``exited``, with
        *reason* as the event.  Only if the row is still the same launch (one transaction), so a
        launch that just finished is never marked.  Returns True when the row was changed."""
        now = time.time()
        with transaction(self.store.conn) as c:
            row = c.execute("SELECT extra FROM agents WHERE name = ?", (rec.name,)).fetchone()
            if row is None:
                return False
            extra = json.loads(row["extra"] or "{}")
            if not extra.get("launching") or extra.get("launcher") != rec.extra.get("launcher"):
                return False
            extra.pop("launching", None)
            extra["launch_interrupted"] = {"reason": reason, "at": now}
            c.execute("UPDATE agents SET extra = ?, status = 'exited', status_source = 'liveness', status_at = ? "
                      "WHERE name = ?", (json.dumps(extra), now, rec.name))
            c.execute("INSERT INTO events (agent, ts, type, status, source, detail) VALUES (?,?,?,?,?,?)",
                      (rec.name, now, "status", "exited", "liveness", json.dumps({"reason": reason})))
        return True

    # ------------------------------------------------------------------ screens
    def save_last_screen(self, name: str, screen: str) -> None:
        from agentdeck.status import write_atomic

        rec = self.store.get_agent(name)
        if rec is not None:
            write_atomic(self._screen_file(rec), screen)

    def peek(self, name: str, colors: bool = False) -> str:
        rec = self.get(name)
        if self.tmux.has_session(rec.session):
            pane = self.tmux.pane_id(rec.session)
            if pane:
                return self.tmux.capture(pane, colors=colors)
        path = self._screen_file(rec)
        return path.read_text(encoding="utf-8") if path.is_file() else ""

    def _screen_file(self, rec: AgentRecord) -> Path:
        slug = rec.slug if SLUG_RE.fullmatch(rec.slug or "") else paths.slugify(rec.name)
        return self.repo.screens_dir / f"{slug}.txt"

    def _purge_agent_files(self, rec: AgentRecord) -> None:
        self._screen_file(rec).unlink(missing_ok=True)
        agents_dir = self.repo.state_dir / "agents"
        # Adapters keep per-agent files under the slug of the *name*; only a clean slug is ever
        # joined to a path (a row is writable by any process of the user).
        others = {paths.slugify(r.name) for r in self.store.list_agents() if r.name != rec.name}
        for slug in {rec.slug, paths.slugify(rec.name)}:
            if SLUG_RE.fullmatch(slug) and slug not in others:
                shutil.rmtree(agents_dir / slug, ignore_errors=True)
        if paths.slugify(rec.name) not in others:  # a bwrap sandbox (its worktree is gone; no sync now)
            from agentdeck.sandbox import agent_bwrap

            sandbox = agent_bwrap.load(self.repo, rec.name)
            if sandbox is not None:
                agent_bwrap.remove(sandbox, sync=False)
            else:
                agent_bwrap.remove_leftover(agent_bwrap.sandbox_root(self.repo, rec.name))

    # ------------------------------------------------------------------ re-adoption (issue 12: state faults)
    def _adopt_lost_agents(self) -> None:
        """A state database created from nothing (deleted, or moved aside by ``doctor --fix``):
        write back the rows of this repository's agents found on disk (``agentdeck.adopt``), so
        running agents are not forgotten and ``gc`` never offers their sessions or worktrees.
        Never fails the open: on an error the database stays marked and ``doctor`` names it."""
        from agentdeck import adopt
        from agentdeck.store import CorruptState

        try:
            adopt.adopt_if_pending(self)
        except CorruptState:
            raise
        except Exception as exc:  # logged; the next open (or doctor --fix) tries again
            adopt.log_failure(self, exc)
