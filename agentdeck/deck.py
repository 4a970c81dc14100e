"""The Deck: the one facade every face (CLI, TUI, MCP) calls.

It owns the life cycle of agents: a branch and worktree (``agentdeck.git``), a
tmux session (``agentdeck.tmux``), an adapter (``agentdeck.agents``) and a row
in the state store (``agentdeck.store``).  Every operation either completes or
leaves nothing behind: no stray branch, worktree, pane or row.

When a process is killed half way (``kill -9``), what it left is recognised and
finished later: a launch records its process (pid and start time), and a launch
whose process is gone reads as ``exited`` (``restart`` finishes it); a removal
records its decision in the row, takes the worktree out of git's sight with one
rename before deleting files, and the next ``kill`` (or ``gc``) finishes it.
Nothing is deleted on the word of the state row alone (any process of the user
can write it): only a worktree git lists under the worktree folder, only a
branch named ``<branch prefix><slug>``.  Mutating operations first check that
the state can be written.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Any

from agentdeck import git, paths
from agentdeck.agents import LaunchContext, get_adapter
from agentdeck.config import Config, load_config
from agentdeck.errors import AgentdeckError, Refused, UsageError
from agentdeck.faults import fault_point
from agentdeck.mcp import service as mcp_service
from agentdeck.store import STATUSES, AgentRecord, Store, transaction, utc_iso
from agentdeck.tmux import Tmux, default_socket
from agentdeck.views import AgentView  # noqa: F401  (re-exported: agentdeck.deck.AgentView)

MAX_NAME = 64

# What `paths.slugify` produces; a row whose slug is anything else was not written by agentdeck.
SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Leftovers of a removal: a worktree is first renamed to this (atomic), then deleted.
TRASH_PREFIX = ".agentdeck-trash-"

# The environment a new agent gets is the creating process's own, minus what agentdeck (or tmux)
# sets itself and what would mislead the agent: terminal facts of the creator's terminal, its
# size, its working directory, a test's fault point, the markers of an enclosing agent session.
STRIPPED_ENV = frozenset({
    "TMUX", "TMUX_PANE", "TERM", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "COLUMNS", "LINES", "PWD",
    "OLDPWD", "AGENTDECK_FAULT", "CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT",
    "AGENTDECK_MCP_TOKEN",  # an agent creating another never hands down its own MCP identity
})
# Set by tmux in the pane itself: the launcher keeps the pane's own values.
PANE_ENV = ("TERM", "TMUX", "TMUX_PANE", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "COLORTERM")
STALE_ENV_FILE_S = 600.0

# The pane's first program (`python -S`: no site start-up, standard library only): it loads the
# agent's environment from a 0600 file, deletes the file, and execs the agent.  The environment
# (API keys...) thus never appears on a command line (`ps`), in tmux's environment or on disk
# once the agent runs.  argv[1] is the file, argv[2:] the agent's argv.
LAUNCHER = """import json,os,sys
p=sys.argv[1]
try:
 with open(p) as f:d=json.load(f)
except (OSError,ValueError) as x:
 sys.stderr.write("agentdeck: cannot read the launch environment %s: %s\\n"%(p,x));sys.exit(126)
finally:
 try:os.unlink(p)
 except OSError:pass
e=d["env"]
for k in d["pane"]:
 v=os.environ.get(k)
 if v is not None:e[k]=v
a=sys.argv[2:]
try:os.execvpe(a[0],a,e)
except OSError as x:
 sys.stderr.write("agentdeck: cannot start %s: %s\\n"%(a[0],x));sys.exit(127)
"""


# Control (Cc: \r, \x0c, \x1c-\x1f, \x85 ...), format (Cf: zero-width, bidi), line and paragraph
# separators (Zl, Zp: U+2028, U+2029) and lone surrogates (Cs): a name is written into note front
# matter, file names and screens, and any of these can split a line or hide text there.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def validate_name(name: str) -> str:
    """The agent name, stripped of surrounding spaces; UsageError (exit 2) for one that is empty,
    too long, or holds a control, format or line-separator character."""
    for ch in name:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise UsageError(
                f"agent name contains the control, format or line-separator character U+{ord(ch):04X}; "
                f"use letters, digits and dashes"
            )
    clean = name.strip(" ")
    if not clean:
        raise UsageError("agent name is empty; give a name such as `north-star`")
    if len(clean) > MAX_NAME:
        raise UsageError(f"agent name is longer than {MAX_NAME} characters; choose a shorter name")
    return clean


def _inside(path: Path, folder: Path) -> bool:
    """True when *path* is *folder* or lies under it (both already resolved)."""
    return path == folder or folder in path.parents


class Deck:
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
    def open(cls, cwd: str | os.PathLike[str] | None = None, tmux_socket: str | None = None) -> "Deck":
        repo = paths.find_repo(cwd)
        config = load_config(repo.root)
        return cls(repo, config, tmux_socket)

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------------ subsystems (lazy)
    @functools.cached_property
    def review(self):
        from agentdeck.review import Review

        return Review(self)

    @functools.cached_property
    def memory(self):
        from agentdeck.memory.store import MemoryStore

        return MemoryStore.for_deck(self)

    @functools.cached_property
    def research(self):
        from agentdeck.research import Research

        return Research(self)

    # ------------------------------------------------------------------ lookups
    def get(self, name: str) -> AgentRecord:
        rec = self.store.get_agent(name)
        if rec is None:
            known = ", ".join(r.name for r in self.store.list_agents()) or "none"
            raise UsageError(f"no agent named {name!r} in this repository (agents: {known}); see `agentdeck ls`")
        return rec

    def records(self) -> list[AgentRecord]:
        return self.store.list_agents()

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
                raise Refused(f"{name} is still {rec.status} after {timeout:g}s (waited for {', '.join(sorted(until))})")
            from agentdeck import status

            if not status.watcher_alive(self):
                self.refresh()
            time.sleep(poll)

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

    # ------------------------------------------------------------------ create
    def new(self, name: str, definition: str | None = None, prompt: str = "", base: str | None = None,
            cwd_subdir: str = "") -> AgentRecord:
        name = validate_name(name)
        self.check_writable()
        definition = definition or self.config.deck.default_agent
        adapter = get_adapter(definition, self.config)
        adapter.check_installed()
        if self.store.get_agent(name) is not None:
            raise UsageError(f"an agent named {name!r} already exists in this repository; choose another name")
        base_name, base_commit = git.resolve_base(self.repo.root, base)
        cwd_subdir = self._check_subdir(cwd_subdir, base_commit)
        copy_plan = self._setup_copy_plan()
        rec = self._reserve(name, definition, adapter.kind, prompt, base_name, base_commit, cwd_subdir)
        created_branch = created_worktree = False
        try:
            self.worktree_root.mkdir(parents=True, exist_ok=True)
            git.add_worktree(self.repo.root, Path(rec.worktree), rec.branch, base_commit)
            created_branch = created_worktree = True
            copied = self._copy_setup_files(Path(rec.worktree), copy_plan)
            self.store.merge_extra(name, copied=copied)
            fault_point("new.setup_command")
            self._run_setup_command(rec)
            rec = self.get(name)
            self._launch(rec, adapter, resume=False)
        except BaseException:
            self._undo_new(rec, created_worktree, created_branch)
            raise
        from agentdeck import registry, status

        registry.remember(self.repo.root)
        status.ensure_watcher(self)
        return self.get(name)

    def _check_subdir(self, subdir: str, base_commit: str) -> str:
        if not subdir:
            return ""
        p = Path(subdir)
        if p.is_absolute() or ".." in p.parts:
            raise UsageError(f"--cwd {subdir!r} must be a relative path inside the repository, without '..'")
        clean = p.as_posix().strip("/")
        kind = git.run(self.repo.root, "cat-file", "-t", f"{base_commit}:{clean}", check=False)
        if kind != "tree":
            raise UsageError(f"--cwd {subdir!r} is not a directory in the base commit; check the path")
        return clean

    def _reserve(self, name: str, definition: str, kind: str, prompt: str, base_name: str,
                 base_commit: str, cwd_subdir: str) -> AgentRecord:
        """Insert the agent's row with a free slug (the row reserves name and slug across processes).

        The row is marked ``launching`` and records which process launches it (pid, start time),
        so a reader can tell a launch in progress from one whose process was killed."""
        from agentdeck.status import process_identity

        base_slug = paths.slugify(name)
        prefix = self.config.deck.branch_prefix
        launcher = process_identity()
        for n in range(1, 200):
            slug = base_slug if n == 1 else f"{base_slug}-{n}"
            branch = f"{prefix}{slug}"
            worktree = self.worktree_root / slug
            session = f"{self.session_prefix}{slug}"
            if not git.is_valid_branch_name(self.repo.root, branch):
                raise UsageError(
                    f"branch name {branch!r} is not valid; fix [deck] branch_prefix in .agentdeck.toml"
                )
            if any(r.slug == slug for r in self.store.list_agents()):
                continue
            if git.branch_exists(self.repo.root, branch) or worktree.exists() or self.tmux.has_session(session):
                continue
            rec = AgentRecord(
                name=name, slug=slug, definition=definition, kind=kind, branch=branch, base_branch=base_name,
                base_commit=base_commit, worktree=str(worktree), session=session, created_at=utc_iso(),
                cwd_subdir=cwd_subdir, prompt=prompt,
                extra={"launching": True, "launcher": launcher, "created_branch": True, "branch_prefix": prefix},
            )
            try:
                self.store.insert_agent(rec)
            except sqlite3.IntegrityError:
                if self.store.get_agent(name) is not None:
                    raise UsageError(f"an agent named {name!r} already exists in this repository; choose another name")
                continue  # another process took this slug a moment ago
            return rec
        raise Refused(f"could not find a free branch name for {name!r}; remove old agentdeck branches")

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

    def _undo_new(self, rec: AgentRecord, created_worktree: bool, created_branch: bool) -> None:
        try:
            self.tmux.kill_session(rec.session)
        except Exception:
            pass
        if created_worktree and Path(rec.worktree).exists():
            git.remove_worktree(self.repo.root, Path(rec.worktree), force=True)
        git.prune_worktrees(self.repo.root)
        if created_branch and git.branch_exists(self.repo.root, rec.branch):
            git.delete_branch(self.repo.root, rec.branch)
        self.store.delete_agent(rec.name)
        self._purge_agent_files(rec)
        with self.store.conn:
            self.store.conn.execute("DELETE FROM events WHERE agent = ?", (rec.name,))

    def _purge_agent_files(self, rec: AgentRecord) -> None:
        self._screen_file(rec).unlink(missing_ok=True)
        agents_dir = self.repo.state_dir / "agents"
        # Adapters keep per-agent files under the slug of the *name*; only a clean slug is ever
        # joined to a path (a row is writable by any process of the user).
        others = {paths.slugify(r.name) for r in self.store.list_agents() if r.name != rec.name}
        for slug in {rec.slug, paths.slugify(rec.name)}:
            if SLUG_RE.fullmatch(slug) and slug not in others:
                shutil.rmtree(agents_dir / slug, ignore_errors=True)

    # ------------------------------------------------------------------ setup files
    def _setup_copy_plan(self) -> list[str]:
        """The files ``[deck] setup_copy`` names, relative to the repository, checked before anything
        is created: UsageError (exit 2) for an entry that is absolute, leaves the repository or
        reaches outside it through a symbolic link.  Files inside ``.git`` and the worktree folder
        are skipped; tracked files too (the checkout has them)."""
        patterns = self.config.deck.setup_copy
        if not patterns:
            return []
        root = self.repo.root.resolve()
        common = self.repo.common_dir.resolve()
        wt_root = self.worktree_root.resolve()

        def bad(entry: str, why: str) -> UsageError:
            return UsageError(f"[deck] setup_copy entry {entry!r} {why}; list only paths inside the repository, "
                              f"relative to its top (e.g. \".env\" or \"config/*.local\")")

        def skipped(real: Path, rel: PurePosixPath) -> bool:
            return ".git" in rel.parts or _inside(real, common) or _inside(real, wt_root)

        found: dict[str, None] = {}
        for entry in patterns:
            pure = PurePosixPath(entry)
            if not entry.strip():
                raise bad(entry, "is empty")
            if pure.is_absolute() or entry.startswith("~"):
                raise bad(entry, "is an absolute path")
            if ".." in pure.parts:
                raise bad(entry, "leaves the repository ('..')")
            if any(c in entry for c in "*?["):
                try:
                    matches = sorted(root.glob(entry))
                except (ValueError, NotImplementedError) as exc:
                    raise bad(entry, f"is not a valid pattern ({exc})") from exc
            else:
                matches = [root / entry]
            for src in matches:
                rel = PurePosixPath(src.relative_to(root).as_posix())
                if ".." in rel.parts or not os.path.lexists(src):
                    continue
                real = src.resolve()
                if not _inside(real, root):
                    raise bad(entry, f"reaches {real}, outside the repository, through a symbolic link")
                if skipped(real, rel):
                    continue
                if not src.is_dir():
                    if src.is_file():
                        found[rel.as_posix()] = None
                    continue
                for dirpath, dirnames, filenames in os.walk(src):
                    here = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
                    dirnames[:] = [d for d in dirnames if d != ".git"]
                    for leaf in [*dirnames, *filenames]:
                        item = Path(dirpath) / leaf
                        target = item.resolve()
                        if not _inside(target, root):
                            raise bad(entry, f"holds {here / leaf}, a link to {target} outside the repository")
                        if leaf in filenames and item.is_file() and not skipped(target, here / leaf):
                            found[(here / leaf).as_posix()] = None
        if not found:
            return []
        names = list(found)
        tracked: set[str] = set()
        for i in range(0, len(names), 500):
            out = git.run(root, "ls-files", "-z", "--", *names[i:i + 500], check=False)
            tracked.update(p for p in out.split("\0") if p)
        return [n for n in names if n not in tracked]

    def _copy_setup_files(self, worktree: Path, plan: list[str]) -> list[str]:
        """Copy the planned files (see :meth:`_setup_copy_plan`) into *worktree*, never outside it."""
        copied: list[str] = []
        wt_real = worktree.resolve()
        for rel in plan:
            dest = worktree / rel
            if not _inside(dest.parent.resolve(), wt_real) or dest.is_symlink():
                raise UsageError(
                    f"[deck] setup_copy file {rel!r} would be written outside the new worktree (a link in the "
                    f"checkout); remove it from [deck] setup_copy"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.repo.root / rel, dest)
            copied.append(rel)
        return copied

    def _run_setup_command(self, rec: AgentRecord) -> None:
        command = self.config.deck.setup_command
        if not command:
            return
        env = dict(os.environ)
        env.pop("AGENTDECK_FAULT", None)
        env.update(self._agent_env(rec))
        proc = subprocess.run(command, shell=True, cwd=rec.worktree, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise Refused(
                f"setup_command failed in the new worktree (exit {proc.returncode}): {tail[0]}; "
                f"fix [deck] setup_command and try again"
            )

    # ------------------------------------------------------------------ launch
    def _agent_env(self, rec: AgentRecord) -> dict[str, str]:
        return {
            paths.ENV_AGENT: rec.name,
            paths.ENV_WORKTREE: rec.worktree,
            paths.ENV_STATE_DIR: str(self.repo.state_dir),
            paths.ENV_REPO: str(self.repo.root),
            paths.ENV_TMUX_SOCKET: self.tmux.socket,
        }

    def launch_environment(self, rec: AgentRecord, adapter_env: dict[str, str]) -> dict[str, str]:
        """The agent's whole environment: this process's own (the CLI's or the deck's), minus
        :data:`STRIPPED_ENV`, plus the adapter's and ``[agents.X] env``, plus agentdeck's own."""
        env = {k: v for k, v in os.environ.items() if k not in STRIPPED_ENV}
        env.update(adapter_env)
        env.update(self._agent_env(rec))
        env["PWD"] = rec.start_dir
        return env

    def _write_env_file(self, env: dict[str, str]) -> Path:
        """A 0600 file, in a 0700 folder of the state directory, read and deleted by the launcher."""
        folder = self.repo.state_dir / "launch"
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
        now = time.time()
        for old in folder.glob("env-*.json"):  # a launcher that never ran (its pane was killed at once)
            try:
                if now - old.stat().st_mtime > STALE_ENV_FILE_S:
                    old.unlink()
            except OSError:
                pass
        path = folder / f"env-{secrets.token_hex(8)}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"env": env, "pane": list(PANE_ENV)}, fh)
        return path

    def _await_launcher(self, session: str, env_file: Path, timeout: float = 5.0) -> None:
        """Wait (briefly) until the pane's launcher has taken its environment file; delete the file
        when the pane died before that, so no environment stays on disk."""
        deadline = time.monotonic() + timeout
        next_pane_check = time.monotonic() + 0.2
        while env_file.exists() and time.monotonic() < deadline:
            if time.monotonic() >= next_pane_check:
                info = self.tmux.panes().get(session)
                if info is None or info.dead:
                    break
                next_pane_check = time.monotonic() + 0.2
            time.sleep(0.01)
        else:
            return
        env_file.unlink(missing_ok=True)

    @staticmethod
    def agentdeck_argv(*args: str) -> list[str]:
        """argv that runs this agentdeck (installed or from a source checkout) with *args*."""
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        argv = [sys.executable, "-m", "agentdeck", *args]
        if "site-packages" in pkg_parent or "dist-packages" in pkg_parent:
            return argv
        return ["env", f"PYTHONPATH={pkg_parent}", *argv]

    @staticmethod
    def hook_argv() -> list[str]:
        """argv prefix of ``agentdeck hook``: standard library only, so ``python -S`` (no site
        start-up cost) with the package's folder on PYTHONPATH."""
        pkg_parent = str(Path(__file__).resolve().parent.parent)
        return ["env", f"PYTHONPATH={pkg_parent}", sys.executable, "-S", "-m", "agentdeck", "hook"]

    def _context(self, rec: AgentRecord, resume: bool) -> LaunchContext:
        return LaunchContext(
            name=rec.name, worktree=Path(rec.worktree), start_dir=Path(rec.start_dir),
            state_dir=self.repo.state_dir, repo_root=self.repo.root, prompt=rec.prompt,
            session_id=rec.session_id, resume=resume, hook_command=self.hook_argv(),
            mcp_command=self.agentdeck_argv("mcp"), extra=dict(rec.extra),
        )

    def _launch(self, rec: AgentRecord, adapter, resume: bool) -> None:
        ctx = self._context(rec, resume)
        mcp_service.wire_launch(self, rec, adapter, ctx)  # the repository's MCP server: URL, a fresh token
        adapter.prepare(ctx)
        argv = adapter.launch_argv(ctx)
        # The first prompt held until its MCP client lists the tools; the pane waits for a cold server.
        pane_cmd = mcp_service.pane_command(self, rec, adapter, ctx, argv)
        env_file = self._write_env_file(self.launch_environment(rec, adapter.launch_env(ctx)))
        pane_argv = [sys.executable, "-S", "-c", LAUNCHER, str(env_file), *pane_cmd]
        try:
            if self.tmux.has_session(rec.session):
                pane = self.tmux.respawn(rec.session, Path(rec.start_dir), pane_argv)
            else:
                pane = self.tmux.new_session(rec.session, Path(rec.start_dir), pane_argv)
                # Not secret, and lets adopt.py name the agent where /proc/<pid>/environ is not readable.
                self.tmux.cmd("set-environment", "-t", f"={rec.session}", "AGENTDECK_AGENT", rec.name, check=False)
        except BaseException:
            env_file.unlink(missing_ok=True)
            raise
        self._await_launcher(rec.session, env_file)
        extra = dict(ctx.extra)
        for key in ("launching", "launcher", "launch_interrupted"):
            extra.pop(key, None)
        fields: dict[str, Any] = {"extra": extra}
        if ctx.session_id != rec.session_id:
            fields["session_id"] = ctx.session_id
        self.store.update_agent(rec.name, **fields)
        self.store.add_event(rec.name, "launch", "deck", detail={"argv": argv[:1], "resume": resume})
        io = self.tmux.pane_io(pane)
        updates = adapter.after_launch(ctx, io) or {}
        if "session_id" in updates:
            self.store.update_agent(rec.name, session_id=updates.pop("session_id"))
        if updates:
            self.store.merge_extra(rec.name, **updates)
        if adapter.prompt_typed_after_start(ctx):
            self._wait_ready(pane)
            adapter.submit(io, rec.prompt)

    def _wait_ready(self, pane: str, timeout: float = 10.0, still_for: float = 0.4) -> None:
        """Wait until the program has drawn something and stopped drawing for a moment."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            screen = self.tmux.capture(pane)
            if screen != last:
                last, since = screen, time.monotonic()
            elif screen.strip() and time.monotonic() - since >= still_for:
                return
            time.sleep(0.05)

    # ------------------------------------------------------------------ input
    def _live_pane(self, rec: AgentRecord, action: str) -> str:
        pane = self.tmux.pane_id(rec.session) if self.tmux.has_session(rec.session) else None
        panes = self.tmux.panes()
        info = panes.get(rec.session)
        if pane is None or info is None or info.dead:
            self.refresh(settle=False)
            raise Refused(f"cannot {action} {rec.name}: it has exited; run `agentdeck restart {rec.name}` first")
        return pane

    def send(self, name: str, text: str, force: bool = False) -> None:
        rec = self.get(name)
        if not text:
            raise UsageError("nothing to send: give the text to type")
        self.refresh(settle=False)
        rec = self.get(name)
        if rec.status == "exited":
            raise Refused(f"cannot send to {name}: it has exited; run `agentdeck restart {name}` first")
        if rec.status == "waiting" and not force:
            raise Refused(
                f"{name} is waiting for an answer (typed text could answer its prompt); "
                f"use `agentdeck approve/deny {name}`, or `send --force`"
            )
        pane = self._live_pane(rec, "send to")
        mcp_service.settle_before_typing(self, rec)  # a CLI connecting its MCP server drops typed Enters
        get_adapter(rec.definition, self.config).submit(self.tmux.pane_io(pane), text)
        self.store.add_event(name, "send", "user", detail={"chars": len(text)})

    def _answer(self, name: str, approve: bool) -> None:
        rec = self.get(name)
        self.refresh(settle=False)
        rec = self.get(name)
        verb = "approve" if approve else "deny"
        if rec.status != "waiting":
            raise Refused(f"{name} has no pending question to {verb} (it is {rec.status})")
        pane = self._live_pane(rec, verb)
        adapter = get_adapter(rec.definition, self.config)
        io = self.tmux.pane_io(pane)
        adapter.approve(io) if approve else adapter.deny(io)
        self.store.add_event(name, verb, "user")

    def approve(self, name: str) -> None:
        self._answer(name, True)

    def deny(self, name: str) -> None:
        self._answer(name, False)

    def attach_argv(self, name: str) -> list[str]:
        rec = self.get(name)
        if not self.tmux.has_session(rec.session):
            raise Refused(f"{name} has no tmux session (it exited); run `agentdeck restart {name}` first")
        return self.tmux.attach_argv(rec.session)

    # ------------------------------------------------------------------ trusted paths
    def _check_row(self, rec: AgentRecord) -> None:
        """Refuse to act on a row that agentdeck did not write: the hooks write ``state.db`` directly
        and any process of the user can, so its slug, session and (when ``kill`` would delete it)
        branch are checked against what agentdeck derives itself before anything is stopped or
        deleted: the branch must be ``<branch prefix><slug>``, the prefix being the configured one
        or the one the row recorded at creation (a ``.../`` namespace)."""
        prefixes = {self.config.deck.branch_prefix}
        recorded = rec.extra.get("branch_prefix")
        if isinstance(recorded, str) and recorded.endswith("/"):
            prefixes.add(recorded)
        problem = ""
        if not SLUG_RE.fullmatch(rec.slug or ""):
            problem = f"slug {rec.slug!r}"
        elif rec.session != f"{self.session_prefix}{rec.slug}":
            problem = f"tmux session {rec.session!r}"
        elif (rec.branch and rec.extra.get("created_branch", True)
              and not any(rec.branch == f"{p}{rec.slug}" for p in prefixes)):
            problem = f"branch {rec.branch!r} (not under the branch prefix {self.config.deck.branch_prefix!r})"
        if problem:
            raise Refused(
                f"refused: the state row of {rec.name!r} names {problem}, which agentdeck never writes "
                f"(the row was altered); nothing was stopped or deleted: check `git worktree list` and "
                f"`git branch` and remove what is yours by hand"
            )

    def _worktree_roots(self) -> list[Path]:
        roots = [self.worktree_root.resolve()]
        default = self.repo.default_worktree_root.resolve()
        if default not in roots:
            roots.append(default)
        return roots

    def _check_removable(self, path: Path, slug: str | None = None) -> None:
        """Refuse (and delete nothing) unless *path* is a worktree git lists for this repository,
        lying under the worktree folder (``[deck] worktree_dir``), and neither the main checkout
        nor its git directory.  A broken folder (an interrupted removal whose entry git already
        pruned) passes only at the agent's own place, ``<worktree folder>/<slug>``."""
        real = path.resolve()
        repo_root, common = self.repo.root.resolve(), self.repo.common_dir.resolve()
        under = [r for r in self._worktree_roots() if real != r and r in real.parents]
        reason = ""
        if not under:
            reason = f"it is not under the worktree folder {self.worktree_root}"
        elif _inside(repo_root, real) or _inside(real, common) or _inside(common, real):
            reason = "it is the repository itself"
        else:
            listed = {wt.path.resolve() for wt in git.list_worktrees(self.repo.root)[1:]}
            if real not in listed:
                own_place = slug is not None and any(real == (r / slug).resolve() for r in under)
                if not (own_place and not os.path.lexists(path / ".git")):
                    reason = "git does not list it as a worktree of this repository"
        if reason:
            raise Refused(
                f"refused to delete {path}: {reason} (an altered state row?); nothing was deleted: "
                f"check `git worktree list` and remove it by hand if it is yours"
            )

    def _check_trash(self, path: Path) -> None:
        real = path.resolve()
        if not (path.name.startswith(TRASH_PREFIX) and real.parent in self._worktree_roots()):
            raise Refused(f"refused to delete {path}: it is not a leftover of agentdeck's own removal; "
                          f"nothing was deleted")

    def _remove_tree(self, path: Path) -> None:
        """Delete a folder already out of git's sight (renamed to a trash name), one entry at a time
        (a fault point after the first, for the fault tests)."""
        first = True
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    pass
            if first:
                fault_point("kill.removing_files")
                first = False
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            raise Refused(f"could not delete {path} completely; check its permissions and run `agentdeck gc`")

    def _remove_worktree_folder(self, rec_name: str | None, path: Path, pending: dict[str, Any] | None) -> None:
        """Take a (checked) worktree folder out of git's sight at once — rename it to a trash name
        beside it, then prune git's entry — and only then delete the files.  A kill -9 at any point
        leaves either the intact worktree or a trash folder, never a half-deleted worktree."""
        trash = path.parent / f"{TRASH_PREFIX}{path.name}-{int(time.time())}-{os.getpid()}"
        if rec_name is not None and pending is not None:
            self.store.merge_extra(rec_name, removing={**pending, "trash": str(trash)})
        try:
            os.rename(path, trash)
        except OSError:
            trash = path  # a mount point or busy folder: delete it in place
        fault_point("kill.worktree_moved")
        git.prune_worktrees(self.repo.root)
        if trash.exists():
            self._remove_tree(trash)
        git.prune_worktrees(self.repo.root)

    def _screen_file(self, rec: AgentRecord) -> Path:
        slug = rec.slug if SLUG_RE.fullmatch(rec.slug or "") else paths.slugify(rec.name)
        return self.repo.screens_dir / f"{slug}.txt"

    def _save_remains(self, rec: AgentRecord, folder: Path) -> str | None:
        """A recovery ref for a half-removed worktree: the branch tip plus the files still there."""
        parent = git.head_commit(self.repo.root, f"refs/heads/{rec.branch}") if git.branch_exists(
            self.repo.root, rec.branch) else None
        parent = parent or rec.base_commit
        commit = parent
        if folder.is_dir() and not folder.is_symlink():
            commit = git.snapshot_remains(self.repo.common_dir, folder, parent,
                                          exclude=set(rec.extra.get("copied", [])))
        if commit == rec.base_commit and not git.branch_exists(self.repo.root, rec.branch):
            return None  # nothing beyond the base: nothing to keep
        return git.keep_recovery_commit(self.repo.root, rec.slug, commit, rec.branch)

    # ------------------------------------------------------------------ restart / kill
    def restart(self, name: str) -> AgentRecord:
        self.check_writable()
        rec = self.get(name)
        self._check_row(rec)
        if rec.extra.get("launching"):
            from agentdeck import status

            if not status.launch_abandoned(rec):
                pid = (rec.extra.get("launcher") or {}).get("pid")
                raise Refused(f"{name} is still being created (by process {pid}); wait for it, then try again")
            self.mark_launch_interrupted(rec, "launch interrupted: the process creating it is gone")
            rec = self.get(name)
        if rec.extra.get("removing"):
            raise Refused(f"cannot restart {name}: an interrupted `agentdeck kill` was removing it; run "
                          f"`agentdeck kill {name} --discard` to finish (its work is kept in a recovery ref)")
        worktree = Path(rec.worktree)
        health = git.worktree_health(worktree, self.repo.common_dir)
        if health == "broken":
            raise Refused(f"cannot restart {name}: its worktree {worktree} is half removed (an interrupted kill); "
                          f"run `agentdeck kill {name} --discard` to finish (what is left is saved in a recovery "
                          f"ref first)")
        interrupted = bool(rec.extra.get("launch_interrupted"))
        if health == "missing" and not interrupted:
            raise Refused(f"cannot restart {name}: its worktree {rec.worktree} is gone; see `agentdeck recover`")
        adapter = get_adapter(rec.definition, self.config)
        adapter.check_installed()
        if interrupted:
            self._finish_setup(rec, health == "missing")
        self.store.update_agent(name, kept=False, launch_count=rec.launch_count + 1)
        self.store.set_status(name, "starting", "restart")
        self.store.put_screen_state(name, fingerprint="", screen_hash="", verdict="", candidate="", candidate_at=0.0)
        # A launch that never started the agent starts it afresh (initial prompt, no conversation to resume).
        self._launch(self.get(name), adapter, resume=not interrupted)
        from agentdeck import status

        status.ensure_watcher(self)
        return self.get(name)

    def _finish_setup(self, rec: AgentRecord, recreate: bool) -> None:
        """Redo what an interrupted ``new`` may not have finished: the worktree (from the agent's
        branch, or a new branch at its base commit), the setup_copy files and setup_command."""
        worktree = Path(rec.worktree)
        if recreate:
            if not any(worktree.resolve() == (r / rec.slug).resolve() for r in self._worktree_roots()):
                raise Refused(f"cannot recreate {worktree}: it is not {self.worktree_root / rec.slug} "
                              f"(an altered state row?); nothing was changed")
            plan = self._setup_copy_plan()
            git.prune_worktrees(self.repo.root)
            worktree.parent.mkdir(parents=True, exist_ok=True)
            if git.branch_exists(self.repo.root, rec.branch):
                git.run(self.repo.root, "worktree", "add", "--quiet", str(worktree), rec.branch)
            else:
                git.add_worktree(self.repo.root, worktree, rec.branch, rec.base_commit)
                self.store.merge_extra(rec.name, created_branch=True)
        else:
            plan = self._setup_copy_plan()
        copied = self._copy_setup_files(worktree, plan)
        self.store.merge_extra(rec.name, copied=sorted(set(rec.extra.get("copied", [])) | set(copied)))
        self._run_setup_command(rec)

    def restart_all(self) -> list[str]:
        """Restart every exited agent; the ones that cannot be are named in one Refused at the end."""
        self.check_writable()
        self.refresh(settle=False)
        done: list[str] = []
        failed: list[str] = []
        for rec in self.store.list_agents():
            if rec.status == "exited":
                try:
                    self.restart(rec.name)
                    done.append(rec.name)
                except AgentdeckError as err:
                    failed.append(f"{rec.name} ({err})")
        if failed:
            raise Refused(f"restarted {', '.join(done) or 'none'}; could not restart {'; '.join(failed)}")
        return done

    def agent_changes(self, rec: AgentRecord) -> tuple[list[str], int]:
        """(uncommitted paths excluding copied files, commits beyond the base).  A half-removed
        worktree counts as one change (``<half-removed worktree>``): it is never clean."""
        copied = set(rec.extra.get("copied", []))
        health = git.worktree_health(rec.worktree, self.repo.common_dir)
        if health == "ok":
            dirty = git.status_porcelain(rec.worktree, ignore=copied)
        else:
            dirty = ["<half-removed worktree>"] if health == "broken" or rec.extra.get("removing") else []
        ahead = git.commits_beyond(self.repo.root, rec.branch, rec.base_commit)
        return dirty, ahead

    def kill(self, name: str, discard: bool = False) -> dict[str, Any]:
        """Stop an agent; remove its worktree and branch when they hold no work (or with *discard*,
        after saving a recovery ref), else keep both.  Checked first: a writable state, a row
        agentdeck wrote, a worktree path git lists under the worktree folder.  An interrupted kill
        (or a worktree half removed by one) is finished; what is left is saved first."""
        self.check_writable()
        rec = self.get(name)
        health = self._kill_checks(rec)
        worktree = Path(rec.worktree)
        pending = rec.extra.get("removing")
        self.tmux.kill_session(rec.session)
        result: dict[str, Any] = {"name": name, "removed": False, "kept": False, "recovery_ref": None,
                                  "uncommitted": 0, "commits": 0}
        if isinstance(pending, dict):
            result["recovery_ref"] = pending.get("ref")  # an interrupted kill: finish what it decided
        elif health == "broken":
            # Half removed by a removal this version did not record (or by hand): save what is left.
            ahead = git.commits_beyond(self.repo.root, rec.branch, rec.base_commit)
            result.update(uncommitted=1, commits=ahead, recovery_ref=self._save_remains(rec, worktree))
            pending = {"ref": result["recovery_ref"], "keep_branch": bool(ahead and not discard)}
        else:
            dirty, ahead = self.agent_changes(rec)
            result.update(uncommitted=len(dirty), commits=ahead)
            if (dirty or ahead) and not discard:
                self.store.update_agent(name, kept=True)
                self.store.set_status(name, "exited", "kill")
                result["kept"] = True
                return result
            if dirty or ahead:
                result["recovery_ref"] = git.save_recovery_ref(
                    self.repo.root, rec.slug, worktree if health == "ok" else None, rec.branch,
                    exclude=set(rec.extra.get("copied", [])),
                )
            pending = {"ref": result["recovery_ref"], "keep_branch": False}
        self.store.merge_extra(name, removing=pending)
        self.store.set_status(name, "exited", "kill")
        fault_point("kill.after_ref")
        return self._finish_removal(rec, pending, result, discard)

    def _kill_checks(self, rec: AgentRecord) -> str:
        """Everything ``kill`` checks before it changes anything; returns the worktree's health."""
        self._check_row(rec)
        health = git.worktree_health(rec.worktree, self.repo.common_dir)
        if health != "missing":
            self._check_removable(Path(rec.worktree), rec.slug)
        pending = rec.extra.get("removing")
        if isinstance(pending, dict) and pending.get("trash") and os.path.lexists(pending["trash"]):
            self._check_trash(Path(pending["trash"]))
        return health

    def _finish_removal(self, rec: AgentRecord, pending: dict[str, Any], result: dict[str, Any],
                        discard: bool) -> dict[str, Any]:
        name = rec.name
        worktree = Path(rec.worktree)
        if os.path.lexists(worktree):
            self._remove_worktree_folder(name, worktree, pending)
        trash = pending.get("trash")
        if trash and os.path.lexists(trash):
            self._remove_tree(Path(trash))
        git.prune_worktrees(self.repo.root)
        if pending.get("keep_branch"):
            # The branch has commits and no --discard: keep it; the agent stays listed, kept.
            extra = {k: v for k, v in self.get(name).extra.items() if k != "removing"}
            self.store.update_agent(name, kept=True, extra=extra)
            result["kept"] = True
            return result
        if rec.extra.get("created_branch", True) and git.branch_exists(self.repo.root, rec.branch):
            git.delete_branch(self.repo.root, rec.branch)
        self.store.add_event(name, "kill", "user", detail={"discard": discard, "ref": result["recovery_ref"]})
        self.store.delete_agent(name)
        self._purge_agent_files(rec)
        result["removed"] = True
        return result

    # ------------------------------------------------------------------ problems (doctor)
    def stuck(self) -> list[dict[str, str]]:
        """Agents and folders left by an interrupted operation, each with its fix (for ``doctor``):
        ``{"name", "detail", "fix"}``.  Marks abandoned launches ``exited`` on the way."""
        from agentdeck import status

        status.Sampler(self).liveness()
        found: list[dict[str, str]] = []
        for rec in self.store.list_agents():
            interrupted = rec.extra.get("launch_interrupted")
            if rec.extra.get("removing"):
                found.append({"name": f"agent {rec.name}", "detail": "an interrupted `kill` left it half removed",
                              "fix": f"run `agentdeck kill {rec.name} --discard` to finish (or `agentdeck gc`)"})
            elif os.path.lexists(rec.worktree) and not os.path.isfile(os.path.join(rec.worktree, ".git")):
                found.append({"name": f"agent {rec.name}", "detail": f"its worktree {rec.worktree} is half removed",
                              "fix": f"run `agentdeck kill {rec.name} --discard` (what is left is saved first)"})
            elif isinstance(interrupted, dict) and rec.status == "exited":
                found.append({"name": f"agent {rec.name}", "detail": str(interrupted.get("reason", "")),
                              "fix": f"run `agentdeck restart {rec.name}` to finish starting it, "
                                     f"or `agentdeck kill {rec.name}`"})
        for trash in self._trash_folders():
            found.append({"name": "worktree folder", "detail": f"{trash} is left from an interrupted removal",
                          "fix": "run `agentdeck gc --yes` to delete it"})
        return found

    def _trash_folders(self) -> list[str]:
        claimed = {str((r.extra.get("removing") or {}).get("trash")) for r in self.store.list_agents()
                   if isinstance(r.extra.get("removing"), dict)}
        out = []
        for root in self._worktree_roots():
            if root.is_dir():
                out += [str(p) for p in sorted(root.glob(f"{TRASH_PREFIX}*")) if str(p) not in claimed]
        return out

    # ------------------------------------------------------------------ recovery / gc
    def recovery_refs(self) -> list[dict[str, str]]:
        return git.list_recovery_refs(self.repo.root)

    def recover(self, ref: str) -> str:
        """Restore a recovery ref as a new branch; returns the branch name."""
        full = ref if ref.startswith("refs/") else f"{git.TRASH_PREFIX}{ref}"
        commit = git.head_commit(self.repo.root, full)
        if commit is None:
            raise UsageError(f"no recovery ref {ref!r}; list them with `agentdeck recover`")
        label = full.removeprefix(git.TRASH_PREFIX).replace("/", "-")
        branch = f"{self.config.deck.branch_prefix}recovered/{label}"
        n = 1
        while git.branch_exists(self.repo.root, branch):
            n += 1
            branch = f"{self.config.deck.branch_prefix}recovered/{label}-{n}"
        git.run(self.repo.root, "branch", branch, commit)
        return branch

    def gc_plan(self, max_age_days: float | None = None) -> dict[str, list[str]]:
        """What ``gc`` would remove: ``worktrees`` no agent owns, ``sessions`` no agent owns, expired
        recovery ``refs``, git entries to ``prune``, ``agents`` left by an interrupted launch or
        removal, and ``trash`` folders of an interrupted removal."""
        from agentdeck import adopt, status

        days = self.config.deck.recovery_days if max_age_days is None else max_age_days
        adopt.adopt_live(self)  # a live agent missing from the database is adopted, never offered for removal
        status.Sampler(self).liveness()  # abandoned launches become `exited` (and so listed below)
        records = self.store.list_agents()
        # What an agent owns, by what its row says and by the names agentdeck derives from its slug.
        known_worktrees = {Path(r.worktree).resolve() for r in records}
        known_worktrees |= {(root / r.slug).resolve() for r in records if SLUG_RE.fullmatch(r.slug or "")
                            for root in self._worktree_roots()}
        known_branches = {r.branch for r in records if r.branch}
        known_sessions = {r.session for r in records} | {f"{self.session_prefix}{r.slug}" for r in records}
        plan: dict[str, list[str]] = {"worktrees": [], "sessions": [], "refs": [], "prune": [], "agents": [],
                                      "trash": []}
        for wt in git.list_worktrees(self.repo.root)[1:]:
            resolved = wt.path.resolve() if wt.path.exists() else wt.path
            if not wt.path.exists():
                plan["prune"].append(str(wt.path))
            elif resolved not in known_worktrees and wt.branch not in known_branches and self._is_ours(wt.path):
                plan["worktrees"].append(str(wt.path))
        for session in self.tmux.session_names():
            if session.startswith(self.session_prefix) and session not in known_sessions:
                plan["sessions"].append(session)
        for rec in records:
            broken = os.path.lexists(rec.worktree) and not os.path.isfile(os.path.join(rec.worktree, ".git"))
            interrupted = rec.extra.get("launch_interrupted") and rec.status == "exited" and not rec.kept
            if rec.extra.get("removing") or broken or interrupted:
                try:
                    self._kill_checks(rec)  # an altered row is never acted upon (kill would refuse it)
                except Refused:
                    continue
                plan["agents"].append(rec.name)
        plan["trash"] = self._trash_folders()
        cutoff = time.time() - days * 86400
        for ref in self.recovery_refs():
            ts = git.run(self.repo.root, "log", "-1", "--format=%ct", ref["ref"], check=False)
            if ts.isdigit() and int(ts) < cutoff:
                plan["refs"].append(ref["ref"])
        return plan

    def _is_ours(self, path: Path) -> bool:
        real = path.resolve()
        return any(real != r and r in real.parents for r in self._worktree_roots())

    def gc(self, plan: dict[str, list[str]]) -> dict[str, list[str]]:
        """Carry out a :meth:`gc_plan` (each item is checked again: a plan may come from elsewhere)."""
        self.check_writable()
        done: dict[str, list[str]] = {"worktrees": [], "sessions": [], "refs": [], "pruned": [], "agents": [],
                                      "trash": [], "saved": []}
        for name in plan.get("agents", []):
            if self.store.get_agent(name) is None:
                continue
            result = self.kill(name, discard=True)  # a recovery ref first when there is work
            done["agents"].append(name)
            if result.get("recovery_ref"):
                done["saved"].append(result["recovery_ref"])
        for session in plan.get("sessions", []):
            if session.startswith(self.session_prefix):
                self.tmux.kill_session(session)
                done["sessions"].append(session)
        for wt in plan.get("worktrees", []):
            path = Path(wt)
            if not os.path.lexists(path):
                continue
            self._check_removable(path)
            if git.worktree_health(path, self.repo.common_dir) == "ok":
                branch = git.current_branch(path)
                if git.status_porcelain(path) or branch:
                    done["saved"].append(git.save_recovery_ref(self.repo.root, paths.slugify(path.name), path,
                                                               branch or "HEAD"))
            else:
                head = next((w.head for w in git.list_worktrees(self.repo.root) if w.path.resolve() == path.resolve()),
                            "") or git.head_commit(self.repo.root)
                commit = git.snapshot_remains(self.repo.common_dir, path, head)
                done["saved"].append(git.keep_recovery_commit(self.repo.root, paths.slugify(path.name), commit,
                                                              "HEAD"))
            self._remove_worktree_folder(None, path, None)
            done["worktrees"].append(wt)
        for trash in plan.get("trash", []):
            path = Path(trash)
            if os.path.lexists(path):
                self._check_trash(path)
                self._remove_tree(path)
                done["trash"].append(trash)
        git.prune_worktrees(self.repo.root)
        done["pruned"] = [p for p in plan.get("prune", []) if not os.path.lexists(p)]
        for ref in plan.get("refs", []):
            if ref.startswith(git.TRASH_PREFIX):
                git.run(self.repo.root, "update-ref", "-d", ref)
                done["refs"].append(ref)
        return done

    # ------------------------------------------------------------------ fan-out, broadcast, fork
    def new_many(self, specs: list[tuple[str, str]], definition: str | None = None, base: str | None = None,
                 cwd_subdir: str = "") -> list[AgentRecord]:
        """Create several agents (name, prompt) all or nothing: on a failure the ones made are removed."""
        names = [validate_name(n) for n, _ in specs]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise UsageError(f"names repeat: {', '.join(sorted(dupes))}; every agent needs its own name")
        taken = [n for n in names if self.store.get_agent(n) is not None]
        if taken:
            raise UsageError(f"agents already exist: {', '.join(taken)}; choose other names")
        self.check_writable()
        self._setup_copy_plan()  # a bad [deck] setup_copy fails before the first agent is made
        made: list[AgentRecord] = []
        try:
            for name, prompt in specs:
                made.append(self.new(name, definition, prompt, base, cwd_subdir))
        except BaseException:
            for rec in made:
                self.kill(rec.name, discard=False)
            raise
        return made

    def broadcast(self, names: list[str], text: str, force: bool = False) -> dict[str, str]:
        """Send *text* to each agent; returns name -> "sent" or the reason it was not."""
        for name in names:
            self.get(name)
        results: dict[str, str] = {}
        for name in names:
            try:
                self.send(name, text, force=force)
                results[name] = "sent"
            except Refused as err:
                results[name] = str(err)
        return results

    def fork(self, name: str, new_name: str, prompt: str = "") -> AgentRecord:
        """A new agent from *name*'s current state: its branch tip plus uncommitted work, and its
        conversation where the adapter can fork it (Claude ``--fork-session``)."""
        src = self.get(name)
        new_name = validate_name(new_name)
        self.check_writable()
        if self.store.get_agent(new_name) is not None:
            raise UsageError(f"an agent named {new_name!r} already exists in this repository; choose another name")
        if not Path(src.worktree).is_dir():
            raise Refused(f"cannot fork {name}: its worktree {src.worktree} is gone")
        adapter = get_adapter(src.definition, self.config)
        adapter.check_installed()
        tip = git.head_commit(src.worktree) or src.base_commit
        copied = set(src.extra.get("copied", []))
        snapshot = git.snapshot_commit(src.worktree, tip, exclude=copied)
        copy_plan = self._setup_copy_plan()
        rec = self._reserve(new_name, src.definition, adapter.kind, prompt, src.base_branch, src.base_commit,
                            src.cwd_subdir)
        created = False
        try:
            self.worktree_root.mkdir(parents=True, exist_ok=True)
            git.add_worktree(self.repo.root, Path(rec.worktree), rec.branch, tip)
            created = True
            if snapshot != tip:
                git.apply_snapshot(Path(rec.worktree), tip, snapshot)
            self.store.merge_extra(new_name, copied=self._copy_setup_files(Path(rec.worktree), copy_plan),
                                   forked_from=src.name, fork_session_id=src.session_id)
            self._run_setup_command(rec)
            self._launch(self.get(new_name), adapter, resume=False)
        except BaseException:
            self._undo_new(rec, created, created)
            raise
        self.store.add_event(new_name, "fork", "user", detail={"from": src.name, "commit": tip})
        from agentdeck import status

        status.ensure_watcher(self)
        return self.get(new_name)

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
        except Exception as exc:  # noqa: BLE001 - logged; the next open (or doctor --fix) tries again
            adopt.log_failure(self, exc)
