"""Making and restarting agents: ``new``, ``new_many``, ``fork``, ``restart``, ``restart_all``.

Every creation either completes or leaves nothing behind (no stray branch, worktree,
pane or row): the row is reserved first (marked ``launching`` with the launching
process's identity, so a launch whose process was killed reads as ``exited``), and
any failure undoes each step taken.  ``restart`` finishes such an interrupted launch.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from agentdeck import git, paths, snapshots
from agentdeck.agents import get_adapter
from agentdeck.errors import AgentdeckError, Refused, UsageError
from agentdeck.faults import fault_point
from agentdeck.procutil import process_identity
from agentdeck.sandbox import agent_mode
from agentdeck.store import AgentRecord, utc_iso

from .names import validate_name
from .removal import RemovalOps
from .setup_files import SetupOps


class LifecycleOps(SetupOps, RemovalOps):
    """Creating (all or nothing) and restarting agents."""

    # ------------------------------------------------------------------ create
    def new(self, name: str, definition: str | None = None, prompt: str = "", base: str | None = None,
            cwd_subdir: str = "", *, sandbox: str | None = None, autonomy: str | None = None,
            unsandboxed_ok: bool = False) -> AgentRecord:
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
        choice = agent_mode.choose(self.config, definition, adapter.kind, sandbox=sandbox, autonomy=autonomy,
                                   unsandboxed_ok=unsandboxed_ok)  # issue 17: refused before anything is made
        rec = self._reserve(name, definition, adapter.kind, prompt, base_name, base_commit, cwd_subdir)
        created_branch = created_worktree = False
        try:
            self.store.merge_extra(name, **{agent_mode.EXTRA_KEY: choice.to_json()})
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
                    raise UsageError(
                        f"an agent named {name!r} already exists in this repository; choose another name"
                    ) from None
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

    # ------------------------------------------------------------------ fan-out, fork
    def new_many(self, specs: list[tuple[str, str]], definition: str | None = None, base: str | None = None,
                 cwd_subdir: str = "", *, sandbox: str | None = None, autonomy: str | None = None,
                 unsandboxed_ok: bool = False) -> list[AgentRecord]:
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
        definition = definition or self.config.deck.default_agent
        agent_mode.choose(self.config, definition, get_adapter(definition, self.config).kind, sandbox=sandbox,
                          autonomy=autonomy, unsandboxed_ok=unsandboxed_ok)  # ... and a sandbox that cannot run
        made: list[AgentRecord] = []
        try:
            for name, prompt in specs:
                made.append(self.new(name, definition, prompt, base, cwd_subdir, sandbox=sandbox, autonomy=autonomy,
                                     unsandboxed_ok=unsandboxed_ok))
        except BaseException:
            for rec in made:
                self.kill(rec.name, discard=False)
            raise
        return made

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
        snapshot = snapshots.snapshot_commit(src.worktree, tip, exclude=copied)
        copy_plan = self._setup_copy_plan()
        inherited = agent_mode.recorded(src.extra)  # a fork runs in its source's sandbox (issue 17)
        agent_mode.choose(self.config, src.definition, adapter.kind, sandbox=inherited.mode,
                          autonomy=inherited.autonomy, network=inherited.network,
                          unsandboxed_ok=inherited.unsandboxed_ok)
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
                                   forked_from=src.name, fork_session_id=src.session_id,
                                   **{agent_mode.EXTRA_KEY: inherited.to_json()})
            self._run_setup_command(rec)
            self._launch(self.get(new_name), adapter, resume=False)
        except BaseException:
            self._undo_new(rec, created, created)
            raise
        self.store.add_event(new_name, "fork", "user", detail={"from": src.name, "commit": tip})
        from agentdeck import status

        status.ensure_watcher(self)
        return self.get(new_name)

    # ------------------------------------------------------------------ restart
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
        # Until the pane is respawned it shows the old process: what it says is not the new one's status.
        self.store.merge_extra(name, relaunching=time.time())
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
