"""The Deck: the one facade every face (CLI, TUI, MCP) calls.

It owns the life cycle of agents: a branch and worktree (``agentdeck.git``), a
tmux session (``agentdeck.tmux``), an adapter (``agentdeck.agents``) and a row
in the state store (``agentdeck.store``).  Every operation either completes or
leaves nothing behind: no stray branch, worktree, pane or row.
"""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdeck import git, paths
from agentdeck.agents import LaunchContext, get_adapter
from agentdeck.config import Config, load_config
from agentdeck.errors import Refused, UsageError
from agentdeck.store import STATUSES, AgentRecord, Store, utc_iso
from agentdeck.tmux import Tmux, default_socket

MAX_NAME = 64


@dataclass
class AgentView:
    """An agent as listed: the record plus what is derived at read time."""

    rec: AgentRecord

    def __getattr__(self, item: str) -> Any:
        return getattr(self.rec, item)

    def to_json(self) -> dict[str, Any]:
        r = self.rec
        return {
            "name": r.name,
            "agent": r.definition,
            "kind": r.kind,
            "status": r.status,
            "status_source": r.status_source,
            "status_since": utc_iso(r.status_at) if r.status_at else None,
            "branch": r.branch,
            "base": r.base_branch,
            "base_commit": r.base_commit,
            "worktree": r.worktree,
            "cwd": r.start_dir,
            "created_at": r.created_at,
            "kept": r.kept,
            "session_id": r.session_id or None,
            "tmux_session": r.session,
        }


def validate_name(name: str) -> str:
    clean = name.strip()
    if not clean:
        raise UsageError("agent name is empty; give a name such as `north-star`")
    if len(clean) > MAX_NAME:
        raise UsageError(f"agent name is longer than {MAX_NAME} characters; choose a shorter name")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in clean):
        raise UsageError("agent name contains control characters; use letters, digits and dashes")
    return clean


class Deck:
    def __init__(self, repo: paths.RepoPaths, config: Config, tmux_socket: str | None = None):
        self.repo = repo
        self.config = config
        self.tmux = Tmux(tmux_socket or default_socket(config.deck.tmux_socket), paths.agentdeck_home())
        repo.ensure_state_dir()
        self.store = Store(repo.db_path)

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
            # The watcher keeps screens current; liveness is checked at every read (one tmux call).
            status.Sampler(self).liveness()

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
    def _screen_file(self, rec: AgentRecord) -> Path:
        return self.repo.screens_dir / f"{rec.slug}.txt"

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
        definition = definition or self.config.deck.default_agent
        adapter = get_adapter(definition, self.config)
        adapter.check_installed()
        if self.store.get_agent(name) is not None:
            raise UsageError(f"an agent named {name!r} already exists in this repository; choose another name")
        base_name, base_commit = git.resolve_base(self.repo.root, base)
        cwd_subdir = self._check_subdir(cwd_subdir, base_commit)
        rec = self._reserve(name, definition, adapter.kind, prompt, base_name, base_commit, cwd_subdir)
        created_branch = created_worktree = False
        try:
            self.worktree_root.mkdir(parents=True, exist_ok=True)
            git.add_worktree(self.repo.root, Path(rec.worktree), rec.branch, base_commit)
            created_branch = created_worktree = True
            copied = self._copy_setup_files(Path(rec.worktree))
            self.store.merge_extra(name, copied=copied)
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
        """Insert the agent's row with a free slug (the row reserves name and slug across processes)."""
        base_slug = paths.slugify(name)
        prefix = self.config.deck.branch_prefix
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
                cwd_subdir=cwd_subdir, prompt=prompt, extra={"launching": True, "created_branch": True},
            )
            try:
                self.store.insert_agent(rec)
            except sqlite3.IntegrityError:
                if self.store.get_agent(name) is not None:
                    raise UsageError(f"an agent named {name!r} already exists in this repository; choose another name")
                continue  # another process took this slug a moment ago
            return rec
        raise Refused(f"could not find a free branch name for {name!r}; remove old agentdeck branches")

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
        screen = self._screen_file(rec)
        screen.unlink(missing_ok=True)
        shutil.rmtree(self.repo.state_dir / "agents" / rec.slug, ignore_errors=True)

    def _copy_setup_files(self, worktree: Path) -> list[str]:
        copied: list[str] = []
        patterns = self.config.deck.setup_copy
        if not patterns:
            return copied
        root = self.repo.root
        for pattern in patterns:
            matches = sorted(root.glob(pattern)) if any(c in pattern for c in "*?[") else [root / pattern]
            for src in matches:
                if not src.exists():
                    continue
                rel = src.relative_to(root)
                if rel.parts and rel.parts[0] == ".git":
                    continue
                files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]
                for f in files:
                    frel = f.relative_to(root)
                    if git.run_ok(root, "ls-files", "--error-unmatch", "--", frel.as_posix()):
                        continue  # tracked: the checkout already has it
                    dest = worktree / frel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, dest)
                    copied.append(frel.as_posix())
        return copied

    def _run_setup_command(self, rec: AgentRecord) -> None:
        command = self.config.deck.setup_command
        if not command:
            return
        env = dict(os.environ)
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
        adapter.prepare(ctx)
        argv = adapter.launch_argv(ctx)
        env = {**adapter.launch_env(ctx), **self._agent_env(rec)}
        if self.tmux.has_session(rec.session):
            pane = self.tmux.respawn(rec.session, Path(rec.start_dir), argv, env)
        else:
            pane = self.tmux.new_session(rec.session, Path(rec.start_dir), argv, env)
        extra = dict(ctx.extra)
        extra.pop("launching", None)
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

    # ------------------------------------------------------------------ restart / kill
    def restart(self, name: str) -> AgentRecord:
        rec = self.get(name)
        if not Path(rec.worktree).is_dir():
            raise Refused(f"cannot restart {name}: its worktree {rec.worktree} is gone; see `agentdeck recover`")
        adapter = get_adapter(rec.definition, self.config)
        adapter.check_installed()
        self.store.update_agent(name, kept=False, launch_count=rec.launch_count + 1)
        self.store.set_status(name, "starting", "restart")
        self.store.put_screen_state(name, fingerprint="", screen_hash="", verdict="", candidate="", candidate_at=0.0)
        self._launch(self.get(name), adapter, resume=True)
        from agentdeck import status

        status.ensure_watcher(self)
        return self.get(name)

    def restart_all(self) -> list[str]:
        self.refresh(settle=False)
        done = []
        for rec in self.store.list_agents():
            if rec.status == "exited":
                self.restart(rec.name)
                done.append(rec.name)
        return done

    def agent_changes(self, rec: AgentRecord) -> tuple[list[str], int]:
        """(uncommitted paths excluding copied files, commits beyond the base)."""
        copied = set(rec.extra.get("copied", []))
        dirty = git.status_porcelain(rec.worktree, ignore=copied) if Path(rec.worktree).is_dir() else []
        ahead = git.commits_beyond(self.repo.root, rec.branch, rec.base_commit)
        return dirty, ahead

    def kill(self, name: str, discard: bool = False) -> dict[str, Any]:
        rec = self.get(name)
        self.tmux.kill_session(rec.session)
        worktree = Path(rec.worktree)
        dirty, ahead = self.agent_changes(rec)
        result: dict[str, Any] = {"name": name, "removed": False, "kept": False, "recovery_ref": None,
                                  "uncommitted": len(dirty), "commits": ahead}
        if dirty or ahead:
            if not discard:
                self.store.update_agent(name, kept=True)
                self.store.set_status(name, "exited", "kill")
                result["kept"] = True
                return result
            result["recovery_ref"] = git.save_recovery_ref(
                self.repo.root, rec.slug, worktree if worktree.is_dir() else None, rec.branch,
                exclude=set(rec.extra.get("copied", [])),
            )
        if worktree.is_dir():
            git.remove_worktree(self.repo.root, worktree, force=True)
        git.prune_worktrees(self.repo.root)
        if rec.extra.get("created_branch", True) and git.branch_exists(self.repo.root, rec.branch):
            git.delete_branch(self.repo.root, rec.branch)
        self.store.add_event(name, "kill", "user", detail={"discard": discard, "ref": result["recovery_ref"]})
        self.store.delete_agent(name)
        self._purge_agent_files(rec)
        result["removed"] = True
        return result

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
        days = self.config.deck.recovery_days if max_age_days is None else max_age_days
        records = self.store.list_agents()
        known_worktrees = {Path(r.worktree).resolve() for r in records}
        known_sessions = {r.session for r in records}
        plan: dict[str, list[str]] = {"worktrees": [], "sessions": [], "refs": [], "prune": []}
        for wt in git.list_worktrees(self.repo.root)[1:]:
            resolved = wt.path.resolve() if wt.path.exists() else wt.path
            if not wt.path.exists():
                plan["prune"].append(str(wt.path))
            elif resolved not in known_worktrees and self._is_ours(wt.path):
                plan["worktrees"].append(str(wt.path))
        for session in self.tmux.session_names():
            if session.startswith(self.session_prefix) and session not in known_sessions:
                plan["sessions"].append(session)
        cutoff = time.time() - days * 86400
        for ref in self.recovery_refs():
            ts = git.run(self.repo.root, "log", "-1", "--format=%ct", ref["ref"], check=False)
            if ts.isdigit() and int(ts) < cutoff:
                plan["refs"].append(ref["ref"])
        return plan

    def _is_ours(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.worktree_root.resolve())
            return True
        except ValueError:
            return False

    def gc(self, plan: dict[str, list[str]]) -> dict[str, list[str]]:
        done: dict[str, list[str]] = {"worktrees": [], "sessions": [], "refs": [], "saved": []}
        for session in plan.get("sessions", []):
            self.tmux.kill_session(session)
            done["sessions"].append(session)
        for wt in plan.get("worktrees", []):
            path = Path(wt)
            branch = git.current_branch(path)
            if git.status_porcelain(path) or branch:
                done["saved"].append(git.save_recovery_ref(self.repo.root, paths.slugify(path.name), path,
                                                           branch or "HEAD"))
            git.remove_worktree(self.repo.root, path, force=True)
            done["worktrees"].append(wt)
        git.prune_worktrees(self.repo.root)
        for ref in plan.get("refs", []):
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
        if self.store.get_agent(new_name) is not None:
            raise UsageError(f"an agent named {new_name!r} already exists in this repository; choose another name")
        if not Path(src.worktree).is_dir():
            raise Refused(f"cannot fork {name}: its worktree {src.worktree} is gone")
        adapter = get_adapter(src.definition, self.config)
        adapter.check_installed()
        tip = git.head_commit(src.worktree) or src.base_commit
        copied = set(src.extra.get("copied", []))
        snapshot = git.snapshot_commit(src.worktree, tip, exclude=copied)
        rec = self._reserve(new_name, src.definition, adapter.kind, prompt, src.base_branch, src.base_commit,
                            src.cwd_subdir)
        created = False
        try:
            self.worktree_root.mkdir(parents=True, exist_ok=True)
            git.add_worktree(self.repo.root, Path(rec.worktree), rec.branch, tip)
            created = True
            if snapshot != tip:
                git.apply_snapshot(Path(rec.worktree), tip, snapshot)
            self.store.merge_extra(new_name, copied=self._copy_setup_files(Path(rec.worktree)),
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
