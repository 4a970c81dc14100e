"""Re-adopting agents from what is on disk when the state database was lost.

The state database is the index of agents, not the agents themselves: those
are tmux sessions on agentdeck's server, git worktrees and branches.  When the
database is deleted, or ``doctor --fix`` moves a corrupt one aside, a new empty
one would forget every running agent, and ``gc`` would then offer to delete
their sessions and worktrees.  Instead, the first Deck that opens a database
created from nothing (its meta key ``adopt_pending``, written only by the first
migration) looks for this repository's agents and writes their rows back:

* **tmux sessions** on agentdeck's server named ``ad-<repo id>-<slug>``; the
  session's environment (``tmux show-environment``), or the pane process's
  own (``/proc/<pid>/environ``), gives the agent's name and worktree and
  proves it belongs to this repository (``AGENTDECK_STATE_DIR``);
* **worktrees** under the worktree folder (``git worktree list``), with their
  branch; the branch's first reflog entry gives the commit it was created
  from (the base), and the definition is the one whose command the pane runs.

Adopted rows say so (``extra.adopted`` and an ``adopt`` event).  A live pane
is ``starting`` until the next sample classifies its screen; an agent without
a live pane is ``exited`` (restart or kill it as usual).  The database's own
history (events, session ids of conversations) is gone with the file; what is
on disk is kept as it is: adoption never deletes or changes a session,
worktree or branch.

Runs under a file lock (``adopt.lock``), so two commands opening a new
database at once adopt each agent once.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agentdeck import git, paths
from agentdeck.store import ADOPT_PENDING, AgentRecord, Store, utc_iso

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.config import Config
    from agentdeck.tmux import Tmux


class DeckState(Protocol):
    """What adoption reads of the deck that opens the database (a :class:`agentdeck.deck.Deck`, or
    any part of it: adoption runs while the deck is being built, and from ``gc``).  A protocol,
    so this module sits beside the deck without importing it."""

    repo: paths.RepoPaths
    config: Config
    store: Store
    tmux: Tmux

    @property
    def session_prefix(self) -> str: ...
    @property
    def worktree_root(self) -> Path: ...

# One tmux call: every pane with what adoption needs.
_PANE_FORMAT = "\t".join(["#{session_name}", "#{pane_dead}", "#{pane_pid}", "#{session_created}",
                          "#{pane_start_command}"])


@dataclass
class Found:
    """One agent found on disk that no row of the state database claims."""

    slug: str
    name: str
    session: str
    live: bool = False  # a tmux session whose pane still runs
    session_exists: bool = False
    worktree: str = ""
    branch: str = ""
    created: float = 0.0
    start_command: str = ""
    sources: list[str] = field(default_factory=list)  # "session", "worktree"

    def describe(self) -> str:
        what = []
        if self.session_exists:
            what.append(f"tmux session {self.session} ({'running' if self.live else 'exited'})")
        if self.worktree:
            what.append(f"worktree {self.worktree}" + (f" on {self.branch}" if self.branch else ""))
        return f"{self.name}: " + ", ".join(what)


# ---------------------------------------------------------------------- finding


def _session_env(deck: DeckState, session: str, pane_pid: int) -> dict[str, str]:
    env: dict[str, str] = {}
    result = deck.tmux.server.cmd("show-environment", "-t", f"={session}")
    if result.returncode == 0:
        for line in result.stdout:
            key, sep, value = line.partition("=")
            if sep and key.startswith("AGENTDECK_"):
                env[key] = value
    if paths.ENV_AGENT not in env and pane_pid > 0:
        # The environment may reach the agent another way than the session's: read the process's.
        try:
            raw = Path(f"/proc/{pane_pid}/environ").read_bytes()
        except OSError:
            raw = b""
        for item in raw.split(b"\0"):
            key, sep, value = item.decode("utf-8", "replace").partition("=")
            if sep and key.startswith("AGENTDECK_"):
                env.setdefault(key, value)
    return env


def _same_path(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def scan(deck: DeckState) -> list[Found]:
    """This repository's agents on disk (sessions, worktrees) that no row claims."""
    records = deck.store.list_agents()
    known_slugs = {r.slug for r in records}
    known_sessions = {r.session for r in records}
    known_names = {r.name for r in records}
    known_worktrees = set()
    for r in records:
        try:
            known_worktrees.add(Path(r.worktree).resolve())
        except OSError:
            pass
    prefix = deck.session_prefix
    found: dict[str, Found] = {}

    if deck.tmux.is_alive():
        result = deck.tmux.server.cmd("list-panes", "-a", "-F", _PANE_FORMAT)
        seen: set[str] = set()
        for line in result.stdout if result.returncode == 0 else []:
            parts = line.split("\t")
            if len(parts) != 5 or not parts[0].startswith(prefix) or parts[0] in seen:
                continue
            session, dead, pid, created, command = parts
            seen.add(session)
            slug = session[len(prefix):]
            if not slug or session in known_sessions or slug in known_slugs:
                continue
            env = _session_env(deck, session, int(pid) if pid.isdigit() else 0)
            state_dir = env.get(paths.ENV_STATE_DIR)
            if state_dir and not _same_path(state_dir, deck.repo.state_dir):
                continue  # another repository's agent that happens to share the prefix
            item = Found(slug=slug, name=env.get(paths.ENV_AGENT) or slug, session=session, live=dead != "1",
                         session_exists=True, created=float(created) if created.isdigit() else 0.0,
                         start_command=command, sources=["session"])
            env_worktree = env.get(paths.ENV_WORKTREE)
            if env_worktree:
                item.worktree = env_worktree
            found[slug] = item

    roots = set()
    for root in (deck.worktree_root, deck.repo.default_worktree_root):  # the configured and the default
        try:
            roots.add(root.resolve())
        except OSError:
            pass
    worktrees = git.list_worktrees(deck.repo.root)
    for wt in worktrees[1:]:
        if getattr(wt, "prunable", False) or not wt.path.is_dir() or wt.path.resolve().parent not in roots:
            continue  # agentdeck makes each worktree a direct child of the worktree folder
        resolved = wt.path.resolve()
        slug = wt.path.name
        if resolved in known_worktrees or slug in known_slugs:
            continue
        # A session may have recorded this worktree under another folder name.
        claimed = found.get(slug) or next(
            (f for f in found.values() if f.worktree and _same_path(f.worktree, resolved)), None)
        if claimed is None:
            claimed = found[slug] = Found(slug=slug, name=slug, session=f"{prefix}{slug}", sources=[])
        item = claimed
        item.worktree = str(resolved)
        item.branch = wt.branch or ""
        item.sources.append("worktree")
        if not item.created:
            try:
                item.created = wt.path.stat().st_mtime
            except OSError:
                pass
    # A session whose worktree was not listed: keep the path only if git knows it for this repository.
    listed = {w.path.resolve() for w in worktrees if w.path.exists()}
    for item in found.values():
        if item.worktree and "worktree" not in item.sources:
            try:
                ok = Path(item.worktree).resolve() in listed
            except OSError:
                ok = False
            if not ok:
                item.worktree = ""
    # Names must stay unique: a clash (or an invalid name) falls back to the slug.
    taken = set(known_names)
    for item in sorted(found.values(), key=lambda f: f.slug):
        try:
            item.name = paths.validate_name(item.name)
        except Exception:
            item.name = item.slug
        if item.name in taken:
            item.name = item.slug if item.slug not in taken else f"{item.slug}-adopted"
        taken.add(item.name)
    return sorted(found.values(), key=lambda f: (f.created, f.slug))


# ---------------------------------------------------------------------- adopting


def _definition_for(deck: DeckState, command: str) -> str:
    """The definition whose command the pane runs (the default when nothing matches better)."""
    from agentdeck.agents import get_adapter

    default = deck.config.deck.default_agent
    try:
        words = set(shlex.split(command))
    except ValueError:
        words = set(command.split())
    best, best_score = default, 0
    for definition in deck.config.definitions():
        try:
            argv = get_adapter(definition, deck.config).command_argv()
        except Exception:
            continue
        score = sum(
            1 for i, a in enumerate(argv)
            if a in words or (i == 0 and any(os.path.basename(w) == os.path.basename(a) for w in words))
        )
        if score > best_score or (score == best_score and score and definition == default):
            best, best_score = definition, score
    return best


def _base_of(deck: DeckState, branch: str) -> tuple[str, str]:
    """(base branch name or commit, base commit) of an agent branch whose row was lost."""
    root = deck.repo.root
    main_branch = git.current_branch(root)
    main_head = git.head_commit(root)
    tip = git.head_commit(root, f"refs/heads/{branch}") if branch and git.branch_exists(root, branch) else None
    base = None
    if tip:
        # The branch's first reflog entry is the commit `git worktree add -b` created it at.
        out = git.run(root, "reflog", "show", "--format=%H", f"refs/heads/{branch}", "--", check=False)
        lines = [x for x in out.splitlines() if x.strip()]
        if lines and git.run_ok(root, "merge-base", "--is-ancestor", lines[-1], tip):
            base = lines[-1]
        if base is None and main_head:
            base = git.run(root, "merge-base", tip, main_head, check=False) or None
    base = base or tip or main_head or ""
    if main_branch and base and git.run_ok(root, "merge-base", "--is-ancestor", base, f"refs/heads/{main_branch}"):
        return main_branch, base
    return base, base


def _copied_files(deck: DeckState, worktree: Path) -> list[str]:
    """setup_copy files present in the worktree, untracked there and identical to the repository's."""
    patterns = deck.config.deck.setup_copy
    if not patterns or not worktree.is_dir():
        return []
    root = deck.repo.root
    try:
        untracked = set(git.status_porcelain(worktree))
    except Exception:
        return []
    copied = []
    for pattern in patterns:
        try:
            matches = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
        except (ValueError, NotImplementedError):
            continue
        for src in matches:
            if not src.exists() or not _under(src, root):
                continue
            files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]
            for f in files:
                rel = f.relative_to(root).as_posix()
                dest = worktree / rel
                try:
                    same = rel in untracked and dest.is_file() and dest.read_bytes() == f.read_bytes()
                except OSError:
                    same = False
                if same:
                    copied.append(rel)
    return sorted(set(copied))


def record_for(deck: DeckState, item: Found) -> AgentRecord:
    """The row an agent found on disk gets back."""
    from agentdeck.agents import get_adapter

    prefix = deck.config.deck.branch_prefix
    definition = _definition_for(deck, item.start_command) if item.start_command else deck.config.deck.default_agent
    try:
        kind = get_adapter(definition, deck.config).kind
    except Exception:
        kind = "generic"
    derived = f"{prefix}{item.slug}"
    branch = item.branch or (derived if git.branch_exists(deck.repo.root, derived) else "")
    base_branch, base_commit = _base_of(deck, branch)
    worktree = item.worktree or str(deck.worktree_root / item.slug)
    now = time.time()
    extra = {
        "adopted": {"at": utc_iso(now), "from": item.sources},
        # Only a branch named the way agentdeck names its own may ever be deleted by `kill`.
        "created_branch": bool(branch) and branch == f"{prefix}{item.slug}",
        "copied": _copied_files(deck, Path(worktree)),
    }
    return AgentRecord(
        name=item.name, slug=item.slug, definition=definition, kind=kind, branch=branch or f"{prefix}{item.slug}",
        base_branch=base_branch, base_commit=base_commit, worktree=worktree, session=item.session,
        created_at=utc_iso(item.created or now), status="starting" if item.live else "exited",
        status_source="adopt", status_at=now, extra=extra,
    )


def adopt(deck: DeckState, found: list[Found] | None = None) -> list[AgentRecord]:
    """Write rows for the agents found on disk (all of them by default); returns the rows written."""
    import sqlite3

    adopted = []
    for item in scan(deck) if found is None else found:
        rec = record_for(deck, item)
        try:
            deck.store.insert_agent(rec)
        except sqlite3.IntegrityError:
            continue  # claimed meanwhile (another process adopted or created it)
        deck.store.add_event(rec.name, "adopt", "adopt", status=rec.status,
                             detail={"from": item.sources, "session": rec.session, "worktree": rec.worktree})
        adopted.append(rec)
    return adopted


@contextmanager
def _locked(deck: DeckState) -> Iterator[None]:
    path = deck.repo.state_dir / "adopt.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def pending(deck: DeckState) -> bool:
    """True while the database was created from nothing and no one looked for agents on disk yet."""
    return deck.store.get_meta(ADOPT_PENDING) == "1"


def adopt_if_pending(deck: DeckState) -> list[AgentRecord]:
    """Called by every Deck at open: adopt once into a database created from nothing."""
    if not pending(deck):
        return []
    with _locked(deck):
        if not pending(deck):
            return []
        adopted = adopt(deck)
        deck.store.set_meta(ADOPT_PENDING, "0")
    return adopted


def log_failure(deck: DeckState, exc: BaseException) -> None:
    """Best effort: one line in ``logs/adopt.log`` (the open that tried goes on)."""
    try:
        deck.repo.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(deck.repo.logs_dir / "adopt.log", "a", encoding="utf-8") as fh:
            fh.write(f"{utc_iso()} adoption failed: {type(exc).__name__}: {exc}\n")
    except OSError:
        pass


def adopt_live(deck: DeckState) -> list[AgentRecord]:
    """Adopt every running agent of this repository that no row claims (for ``gc``: a live session
    is someone's work, never an orphan to delete)."""
    live = [f for f in scan(deck) if f.live]
    if not live:
        return []
    with _locked(deck):
        return adopt(deck, [f for f in scan(deck) if f.live])
