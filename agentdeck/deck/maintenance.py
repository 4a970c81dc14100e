"""Finding and cleaning up what interrupted operations left: ``stuck`` (for ``doctor``),
``gc_plan``/``gc``, and recovery refs (``recover``).

``gc`` acts only on what :class:`~agentdeck.deck.removal.RemovalOps` would: every item of
a plan is checked again before it is removed (a plan may come from elsewhere).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from agentdeck import git, paths, snapshots
from agentdeck.errors import Refused, UsageError

from .names import SLUG_RE, TRASH_PREFIX
from .removal import RemovalOps
from .results import GcPlan, GcReport, StuckItem


class MaintenanceOps(RemovalOps):
    """``doctor``'s findings, ``gc`` and recovery refs."""

    # ------------------------------------------------------------------ problems (doctor)
    def stuck(self) -> list[StuckItem]:
        """Agents and folders left by an interrupted operation, each with its fix (for ``doctor``).
        Marks abandoned launches ``exited`` on the way."""
        from agentdeck import status

        status.Sampler(self).liveness()
        found: list[StuckItem] = []
        for rec in self.store.list_agents():
            interrupted = rec.extra.get("launch_interrupted")
            if rec.extra.get("removing"):
                found.append(StuckItem(f"agent {rec.name}", "an interrupted `kill` left it half removed",
                                       f"run `agentdeck kill {rec.name} --discard` to finish (or `agentdeck gc`)"))
            elif os.path.lexists(rec.worktree) and not os.path.isfile(os.path.join(rec.worktree, ".git")):
                found.append(StuckItem(f"agent {rec.name}", f"its worktree {rec.worktree} is half removed",
                                       f"run `agentdeck kill {rec.name} --discard` (what is left is saved first)"))
            elif isinstance(interrupted, dict) and rec.status == "exited":
                found.append(StuckItem(f"agent {rec.name}", str(interrupted.get("reason", "")),
                                       f"run `agentdeck restart {rec.name}` to finish starting it, "
                                       f"or `agentdeck kill {rec.name}`"))
        for trash in self._trash_folders():
            found.append(StuckItem("worktree folder", f"{trash} is left from an interrupted removal",
                                   "run `agentdeck gc --yes` to delete it"))
        return found

    def _trash_folders(self) -> list[str]:
        claimed = {str((r.extra.get("removing") or {}).get("trash")) for r in self.store.list_agents()
                   if isinstance(r.extra.get("removing"), dict)}
        out = []
        for root in self._worktree_roots():
            if root.is_dir():
                out += [str(p) for p in sorted(root.glob(f"{TRASH_PREFIX}*")) if str(p) not in claimed]
        return out + self._orphan_sandboxes()

    def _sandbox_folder(self) -> Path:
        from agentdeck.sandbox import agent_bwrap

        return Path(self.repo.state_dir) / agent_bwrap.SANDBOXES

    def _orphan_sandboxes(self) -> list[str]:
        """bwrap sandbox folders no agent owns (a removal interrupted after its row went, an
        interrupted first launch): no row by that slug, and no worktree left at the recorded place."""
        from agentdeck.sandbox import agent_bwrap

        base = self._sandbox_folder()
        if not base.is_dir():
            return []
        owned = set()
        for rec in self.store.list_agents():
            owned |= {rec.slug, paths.slugify(rec.name)}
        out = []
        for folder in sorted(base.iterdir()):
            if folder.name in owned or folder.is_symlink() or not folder.is_dir():
                continue
            sandbox = agent_bwrap.load_at(folder)
            if sandbox is not None and os.path.lexists(sandbox.worktree):
                continue  # a worktree without a row: gc offers the worktree (and settles this then)
            out.append(str(folder))
        return out

    def _sync_worktree_sandbox(self, worktree: Path) -> tuple[Path | None, str | None]:
        """Before ``gc`` removes a worktree no agent owns: the sandbox working in it (a row lost)
        brings its commits back (its branch exists: the worktree has it out), a diverged tip kept
        under a recovery ref; (its folder, to remove once the worktree is gone, and that ref)."""
        from agentdeck.sandbox import agent_bwrap

        base = self._sandbox_folder()
        real = worktree.resolve()
        for folder in sorted(base.iterdir()) if base.is_dir() else []:
            sandbox = agent_bwrap.load_at(folder)
            if sandbox is None or folder.is_symlink() or Path(sandbox.worktree).resolve() != real:
                continue
            try:
                agent_bwrap.sync_back(sandbox)
            except Refused:
                pass
            return folder, self._keep_sandbox_tip(folder.name, sandbox)
        return None, None

    def _settle_sandbox_folder(self, folder: Path) -> str | None:
        """Remove an orphan sandbox folder, its own commits first kept under a recovery ref when no
        ref of the repository reaches them (never a sync: its branch may be gone on purpose)."""
        from agentdeck.sandbox import agent_bwrap

        if folder.parent != self._sandbox_folder() or folder.is_symlink():
            raise Refused(f"refused to delete {folder}: it is not one of agentdeck's sandbox folders; "
                          f"nothing was deleted")
        sandbox = agent_bwrap.load_at(folder)
        if sandbox is None:
            agent_bwrap.remove_leftover(folder)
            return None
        ref = self._keep_sandbox_tip(folder.name, sandbox)
        agent_bwrap.remove(sandbox, sync=False)
        return ref

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

    def gc_plan(self, max_age_days: float | None = None) -> GcPlan:
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
        plan = GcPlan()
        for wt in git.list_worktrees(self.repo.root)[1:]:
            resolved = wt.path.resolve() if wt.path.exists() else wt.path
            if not wt.path.exists():
                plan.prune.append(str(wt.path))
            elif resolved not in known_worktrees and wt.branch not in known_branches and self._is_ours(wt.path):
                plan.worktrees.append(str(wt.path))
        for session in self.tmux.session_names():
            if session.startswith(self.session_prefix) and session not in known_sessions:
                plan.sessions.append(session)
        for rec in records:
            broken = os.path.lexists(rec.worktree) and not os.path.isfile(os.path.join(rec.worktree, ".git"))
            interrupted = rec.extra.get("launch_interrupted") and rec.status == "exited" and not rec.kept
            if rec.extra.get("removing") or broken or interrupted:
                try:
                    self._kill_checks(rec)  # an altered row is never acted upon (kill would refuse it)
                except Refused:
                    continue
                plan.agents.append(rec.name)
        plan.trash = self._trash_folders()
        cutoff = time.time() - days * 86400
        for ref in self.recovery_refs():
            ts = git.run(self.repo.root, "log", "-1", "--format=%ct", ref["ref"], check=False)
            if ts.isdigit() and int(ts) < cutoff:
                plan.refs.append(ref["ref"])
        return plan

    def _is_ours(self, path: Path) -> bool:
        real = path.resolve()
        return any(real != r and r in real.parents for r in self._worktree_roots())

    def gc(self, plan: GcPlan) -> GcReport:
        """Carry out a :meth:`gc_plan` (each item is checked again: a plan may come from elsewhere)."""
        self.check_writable()
        done = GcReport()
        for name in plan.agents:
            if self.store.get_agent(name) is None:
                continue
            result = self.kill(name, discard=True)  # a recovery ref first when there is work
            done.agents.append(name)
            if result.recovery_ref:
                done.saved.append(result.recovery_ref)
        for session in plan.sessions:
            if session.startswith(self.session_prefix):
                self.tmux.kill_session(session)
                done.sessions.append(session)
        for wt in plan.worktrees:
            path = Path(wt)
            if not os.path.lexists(path):
                continue
            self._check_removable(path)
            sandbox_folder, sandbox_ref = self._sync_worktree_sandbox(path)
            if sandbox_ref:
                done.saved.append(sandbox_ref)
            if git.worktree_health(path, self.repo.common_dir) == "ok":
                branch = git.current_branch(path)
                if git.status_porcelain(path) or branch:
                    done.saved.append(snapshots.save_recovery_ref(self.repo.root, paths.slugify(path.name), path,
                                                               branch or "HEAD"))
            else:
                head = next((w.head for w in git.list_worktrees(self.repo.root) if w.path.resolve() == path.resolve()),
                            "") or git.head_commit(self.repo.root)
                if not head:  # nothing to save its files over: keep the folder
                    raise Refused(f"{path} cannot be saved before it is removed: the repository has no commit; "
                                  f"commit once, then run `agentdeck gc` again")
                commit = git.snapshot_remains(self.repo.common_dir, path, head)
                done.saved.append(git.keep_recovery_commit(self.repo.root, paths.slugify(path.name), commit,
                                                              "HEAD"))
            self._remove_worktree_folder(None, path, None)
            if sandbox_folder is not None:  # only now: until the worktree is gone its git stays guarded
                self._settle_sandbox_folder(sandbox_folder)
            done.worktrees.append(wt)
        sandboxes = self._sandbox_folder()
        for trash in plan.trash:
            path = Path(trash)
            if path.parent == sandboxes:  # an orphan bwrap sandbox (its own commits kept first)
                if os.path.lexists(path) and str(path) in self._orphan_sandboxes():
                    saved = self._settle_sandbox_folder(path)
                    done.saved += [saved] if saved else []
                    done.trash.append(trash)
            elif os.path.lexists(path):
                self._check_trash(path)
                self._remove_tree(path)
                done.trash.append(trash)
        git.prune_worktrees(self.repo.root)
        done.pruned = [p for p in plan.prune if not os.path.lexists(p)]
        for ref in plan.refs:
            if ref.startswith(git.TRASH_PREFIX):
                git.run(self.repo.root, "update-ref", "-d", ref)
                done.refs.append(ref)
        return done
