"""Stopping and removing an agent (``kill``), and the checks that guard every deletion.

Nothing is deleted on the word of the state row alone (any process of the user can
write it): only a worktree git lists under the worktree folder, only a branch named
``<branch prefix><slug>``.  A removal records its decision in the row, takes the
worktree out of git's sight with one rename before deleting files, and the next
``kill`` (or ``gc``) finishes an interrupted one; what is left is saved first.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from agentdeck import git, snapshots
from agentdeck.errors import Refused
from agentdeck.faults import fault_point
from agentdeck.store import AgentRecord

from .base import DeckBase
from .names import SLUG_RE, TRASH_PREFIX, inside
from .results import KillResult


class RemovalOps(DeckBase):
    """``kill`` and the trusted-path checks ``gc`` shares."""

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
        elif inside(repo_root, real) or inside(real, common) or inside(common, real):
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

    # ------------------------------------------------------------------ deleting
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

    # ------------------------------------------------------------------ kill
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

    def kill(self, name: str, discard: bool = False) -> KillResult:
        """Stop an agent; remove its worktree and branch when they hold no work (or with *discard*,
        after saving a recovery ref), else keep both.  Checked first: a writable state, a row
        agentdeck wrote, a worktree path git lists under the worktree folder.  An interrupted kill
        (or a worktree half removed by one) is finished; what is left is saved first.  A ``bwrap``
        agent's commits are brought from its sandbox onto its branch before anything is decided
        (a diverged sandbox counts as unmerged work; with *discard* its own tip is kept under
        ``refs/agentdeck/trash/<slug>-sandbox/<stamp>``); its sandbox goes with its worktree."""
        self.check_writable()
        rec = self.get(name)
        health = self._kill_checks(rec)
        worktree = Path(rec.worktree)
        pending = rec.extra.get("removing")
        self.tmux.kill_session(rec.session)
        # A bwrap agent's commits live in its sandbox until synced: onto its branch first, so
        # that the checks and the recovery ref below see them (a diverged tip is kept apart).
        sandbox, synced = self._sync_sandbox(rec)
        fault_point("kill.sandbox_synced")
        result = KillResult(name=name)
        if isinstance(pending, dict):
            result.recovery_ref = pending.get("ref")  # an interrupted kill: finish what it decided
        elif health == "broken":
            # Half removed by a removal this version did not record (or by hand): save what is left.
            ahead = git.commits_beyond(self.repo.root, rec.branch, rec.base_commit)
            result.uncommitted, result.commits = 1, ahead
            result.recovery_ref = self._save_remains(rec, worktree)
            pending = {"ref": result.recovery_ref, "keep_branch": bool(ahead and not discard)}
        else:
            dirty, ahead = self.agent_changes(rec)
            if synced == "diverged":
                ahead = max(ahead, 1)  # its own commits, which its branch does not hold: unmerged work
            result.uncommitted, result.commits = len(dirty), ahead
            if (dirty or ahead) and not discard:
                self.store.update_agent(name, kept=True)
                self.store.set_status(name, "exited", "kill")
                result.kept = True
                return result
            if dirty or ahead:
                result.recovery_ref = snapshots.save_recovery_ref(
                    self.repo.root, rec.slug, worktree if health == "ok" else None, rec.branch,
                    exclude=set(rec.extra.get("copied", [])),
                )
            pending = {"ref": result.recovery_ref, "keep_branch": False}
        if sandbox is not None and synced == "diverged":
            kept_tip = self._keep_sandbox_tip(rec.slug, sandbox)
            if kept_tip:
                pending = {**pending, "sandbox_ref": kept_tip}
                result.recovery_ref = result.recovery_ref or kept_tip
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

    def _finish_removal(self, rec: AgentRecord, pending: dict[str, Any], result: KillResult,
                        discard: bool) -> KillResult:
        name = rec.name
        worktree = Path(rec.worktree)
        if os.path.lexists(worktree):
            self._remove_worktree_folder(name, worktree, pending)
        trash = pending.get("trash")
        if trash and os.path.lexists(trash):
            self._remove_tree(Path(trash))
        git.prune_worktrees(self.repo.root)
        # The worktree is gone: its sandbox goes too (synced at the start of this kill; no sync
        # now, which could bring back a branch deleted below by an interrupted earlier run).
        self._remove_sandbox(rec)
        if pending.get("keep_branch"):
            # The branch has commits and no --discard: keep it; the agent stays listed, kept.
            extra = {k: v for k, v in self.get(name).extra.items() if k != "removing"}
            self.store.update_agent(name, kept=True, extra=extra)
            result.kept = True
            return result
        if rec.extra.get("created_branch", True) and git.branch_exists(self.repo.root, rec.branch):
            git.delete_branch(self.repo.root, rec.branch)
        self.store.add_event(name, "kill", "user", detail={"discard": discard, "ref": result.recovery_ref,
                                                            "sandbox_ref": pending.get("sandbox_ref")})
        self.store.delete_agent(name)
        self._purge_agent_files(rec)
        result.removed = True
        return result

    # ------------------------------------------------------------------ bwrap sandboxes
    def _sync_sandbox(self, rec: AgentRecord) -> tuple[Any, str]:
        """(agent *rec*'s bwrap sandbox or None, :func:`~agentdeck.sandbox.agent_bwrap.sync_back`'s
        answer): its commits brought onto its branch.  A tip that is no commit (the agent's own
        doing) counts as ``same``: there is nothing there to save."""
        from agentdeck.sandbox import agent_bwrap

        sandbox = agent_bwrap.load(self.repo, rec.name)
        if sandbox is None:
            return None, "none"
        try:
            return sandbox, agent_bwrap.sync_back(sandbox)
        except Refused:
            return sandbox, "same"

    def _keep_sandbox_tip(self, slug: str, sandbox: Any) -> str | None:
        """Save a sandbox's own tip that no ref reaches under ``refs/agentdeck/trash/<slug>-sandbox/<stamp>``
        (a recovery ref like the others); the ref, or None when there was nothing to save."""
        from agentdeck.sandbox import agent_bwrap

        if agent_bwrap.unsaved_tip(sandbox) is None:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        ref = f"{git.TRASH_PREFIX}{slug}-sandbox/{stamp}"
        n = 1
        while git.run_ok(self.repo.root, "show-ref", "--verify", "--quiet", ref):
            n += 1
            ref = f"{git.TRASH_PREFIX}{slug}-sandbox/{stamp}-{n}"
        return ref if agent_bwrap.keep_tip(sandbox, ref) else None

    def _remove_sandbox(self, rec: AgentRecord) -> None:
        """Delete agent *rec*'s sandbox folder (its worktree is gone and it was synced), also one
        half deleted by an interrupted removal (no record left)."""
        from agentdeck.sandbox import agent_bwrap

        sandbox = agent_bwrap.load(self.repo, rec.name)
        if sandbox is not None:
            agent_bwrap.remove(sandbox, sync=False)
        else:
            agent_bwrap.remove_leftover(agent_bwrap.sandbox_root(self.repo, rec.name))
