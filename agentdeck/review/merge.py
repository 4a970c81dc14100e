"""Taking an agent's work back: merge, squash or rebase into a target branch.

How it stays safe:

1. **Check without touching anything.**  The result commit is built in the
   object database only: ``git merge-tree --write-tree`` gives the merged tree
   (or the conflicted files), ``git commit-tree`` makes the commit.  Rebase
   replays the agent's commits one by one the same way (see
   :func:`_replay`), so no checkout, index or ref changes while checking.
2. **Refuse early** (exit 1, nothing changed) on conflicts (naming the files),
   on uncommitted work in the agent's worktree (copied setup files do not
   count), or on uncommitted changes to tracked files in the checkout that has
   the target branch.
3. **Apply in one step.**  If no worktree has the target branch checked out,
   ``git update-ref refs/heads/TARGET NEW OLD`` moves the branch only if it is
   still at OLD.  If one does (the main checkout, usually), that checkout is
   fast-forwarded to the new commit: ``git read-tree -m -u OLD NEW`` there
   (index and files; git itself refuses, changing nothing, if an untracked
   file or a local change is in the way), then ``update-ref``.  The new commit
   always has the target's old tip as an ancestor, so the fast-forward is
   always possible unless someone moved the target meanwhile (then: refused,
   try again).
4. **Journaled.**  Rewriting thousands of files is not atomic: a journal is
   written before the checkout is touched and removed after the branch moved,
   so a merge killed half way is recognised and finished by the next ``merge``
   into that target or by ``doctor --fix`` (:mod:`agentdeck.review.merge_journal`).

Cleanup afterwards deletes the agent's branch only when its changes are in the
target: either its tip is an ancestor, or merging it again would change
nothing (that is what squash and rebase leave behind).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentdeck import git, snapshots
from agentdeck.errors import Refused, UsageError
from agentdeck.faults import fault_point
from agentdeck.review import _git
from agentdeck.review import merge_journal as _journal
from agentdeck.review.diff import STATUS_NAMES

STRATEGIES = ("merge", "squash", "rebase")


@dataclass
class MergeCheck:
    """Everything a merge dialog shows, computed without touching any checkout."""

    agent: str
    branch: str
    target: str
    strategy: str
    target_old: str  # the target's tip when checked
    branch_tip: str
    new_commit: str | None = None  # the commit the target would move to (None: conflicts/up to date)
    fast_forward: bool = False  # the target moves to the agent's own tip
    up_to_date: bool = False  # nothing to merge: the changes are already in the target
    files: list[dict[str, str]] = field(default_factory=list)  # {"path", "status"} the target gains
    commits: int = 0  # agent commits not in the target
    conflicts: list[str] = field(default_factory=list)
    conflict_commit: str | None = None  # rebase: the agent commit that does not apply
    uncommitted: list[str] = field(default_factory=list)  # agent worktree changes (blocking)
    target_dirty: list[str] = field(default_factory=list)  # target checkout changes (blocking)
    checkout: str | None = None  # worktree that has the target checked out
    interrupted: str = ""  # an earlier merge into the target was killed half way (merge_journal)

    @property
    def problems(self) -> list[str]:
        """One line per reason the merge cannot happen now (problem and fix)."""
        out = []
        if self.interrupted:
            out.append(f"{self.interrupted}; `agentdeck merge` finishes it first, or run `agentdeck doctor --fix`")
        if self.uncommitted:
            out.append(
                f"{self.agent} has uncommitted changes ({_git.short(self.uncommitted)}); "
                f"commit them first with `agentdeck commit {self.agent}`"
            )
        if self.target_dirty and not self.up_to_date:  # nothing to write there when up to date
            out.append(
                f"the checkout of {self.target} at {self.checkout} has uncommitted changes "
                f"({_git.short(self.target_dirty)}); commit or stash them there and try again"
            )
        if self.conflicts:
            where = f" (replaying commit {self.conflict_commit[:10]})" if self.conflict_commit else ""
            fix = (
                "try --strategy merge or squash, or have the agent rebase"
                if self.conflict_commit
                else f"have the agent merge {self.target} into its branch and resolve them"
            )
            out.append(
                f"merging {self.branch} into {self.target} would conflict{where} in: "
                f"{_git.short(self.conflicts, 10)}; {fix}"
            )
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "branch": self.branch, "target": self.target, "strategy": self.strategy,
            "ok": self.ok, "up_to_date": self.up_to_date, "fast_forward": self.fast_forward,
            "target_old": self.target_old, "new_commit": self.new_commit, "commits": self.commits,
            "files": self.files, "conflicts": self.conflicts, "uncommitted": self.uncommitted,
            "target_dirty": self.target_dirty, "checkout": self.checkout, "interrupted": self.interrupted or None,
            "problems": self.problems,
        }


@dataclass
class MergeResult:
    check: MergeCheck
    merged: bool  # False when already up to date
    commit: str  # the target's tip afterwards
    recovery_ref: str | None = None  # set by --cleanup
    cleaned_up: bool = False

    def to_json(self) -> dict[str, Any]:
        c = self.check
        return {
            "agent": c.agent, "branch": c.branch, "target": c.target, "strategy": c.strategy,
            "merged": self.merged, "up_to_date": c.up_to_date, "fast_forward": c.fast_forward,
            "old": c.target_old, "commit": self.commit, "files": c.files, "checkout": c.checkout,
            "cleaned_up": self.cleaned_up, "recovery_ref": self.recovery_ref,
        }


def check_merge(
    root: Path | str, *, agent: str, branch: str, worktree: Path | str | None, target: str,
    strategy: str = "merge", ignore: set[str] | frozenset[str] | None = None,
    message: str | None = None, no_ff: bool = False,
) -> MergeCheck:
    """Work out the merge of *branch* into *target*; raises only for bad input (exit 2)."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown merge strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if not git.branch_exists(root, target):
        raise UsageError(f"target branch {target!r} does not exist; name an existing branch with --into")
    if target == branch:
        raise UsageError(f"cannot merge {branch} into itself; name another branch with --into")
    old = _git.branch_tip(root, target)
    tip = _git.branch_tip(root, branch)
    check = MergeCheck(agent=agent, branch=branch, target=target, strategy=strategy, target_old=old, branch_tip=tip)
    check.uncommitted = _git.uncommitted(worktree, set(ignore or ()))
    checkout = git.find_checkout(root, target)
    if checkout is not None:
        check.checkout = str(checkout)
        journal = _journal.journal_for(root, target)
        if journal is not None:
            check.interrupted = _journal.inspect(root, journal).describe()
        check.target_dirty = git.status_porcelain(checkout, untracked=False)
    check.commits = int(git.run(root, "rev-list", "--count", f"{old}..{tip}") or 0)

    if git.is_ancestor(root, tip, old):
        check.up_to_date = True
        return check
    merged = _git.merge_tree(root, old, tip)
    if not merged.clean:
        check.conflicts = merged.conflicts
        return check
    if merged.tree == _git.tree_of(root, old):
        check.up_to_date = True
        return check

    can_ff = git.is_ancestor(root, old, tip)
    if strategy == "merge":
        if can_ff and not no_ff:
            check.fast_forward, new = True, tip
        else:
            msg = message or f"Merge branch '{branch}' into {target}\n\nagentdeck: merge of agent {agent}"
            new = _commit_tree(root, merged.tree, [old, tip], msg)
    elif strategy == "squash":
        msg = message or _squash_message(root, agent, branch, old, tip)
        new = _commit_tree(root, merged.tree, [old], msg)
    else:  # rebase
        if can_ff:
            check.fast_forward, new = True, tip
        else:
            new, bad, files = _replay(root, old, tip)
            if bad is not None:
                check.conflict_commit, check.conflicts = bad, files
                return check
    check.new_commit = new
    check.files = _name_status(root, old, new)
    return check


def merge(
    root: Path | str, *, agent: str, branch: str, worktree: Path | str | None, target: str,
    strategy: str = "merge", ignore: set[str] | frozenset[str] | None = None,
    message: str | None = None, no_ff: bool = False,
) -> MergeResult:
    """Check, then move the target (and its checkout, if any). Raises Refused, changing nothing.

    A merge into *target* that was killed half way is finished first (or refused, naming what
    is in the way), so retrying after a crash just works."""
    resume_interrupted(root, target)
    check = check_merge(
        root, agent=agent, branch=branch, worktree=worktree, target=target, strategy=strategy,
        ignore=ignore, message=message, no_ff=no_ff,
    )
    if check.problems:
        raise Refused(check.problems[0])
    if check.up_to_date:
        return MergeResult(check=check, merged=False, commit=check.target_old)
    assert check.new_commit is not None
    apply_merge(root, check)
    return MergeResult(check=check, merged=True, commit=check.new_commit)


def apply_merge(root: Path | str, check: MergeCheck) -> None:
    """Move the target from ``check.target_old`` to ``check.new_commit``."""
    new, old, target = check.new_commit, check.target_old, check.target
    assert new is not None
    reflog = f"agentdeck: {check.strategy} {check.branch} (agent {check.agent})"
    checkout = git.find_checkout(root, target)
    if checkout is None:
        proc = git.run_proc(root, "update-ref", "-m", reflog, f"refs/heads/{target}", new, old)
        if proc.returncode != 0:
            raise Refused(
                f"{target} moved while merging (or is locked): {proc.stderr.strip()}; nothing changed, try again"
            )
        return
    # Re-check the checkout right before touching it.
    dirty = git.status_porcelain(checkout, untracked=False)
    if dirty:
        raise Refused(
            f"the checkout of {target} at {checkout} has uncommitted changes ({_git.short(dirty)}); "
            "commit or stash them there and try again"
        )
    if git.head_commit(checkout, "HEAD") != old:
        raise Refused(f"{target} moved while merging; nothing changed, try again")
    journal = _journal.write_journal(root, target=target, checkout=checkout, old=old, new=new,
                                     agent=check.agent, branch=check.branch, strategy=check.strategy)
    fault_point("merge.journal")
    proc = git.run_proc(checkout, "read-tree", "-m", "-u", old, new)
    if proc.returncode != 0:
        detail = " ".join(line.strip() for line in proc.stderr.strip().splitlines()[:6])
        recorded = _journal.journal_for(root, target)
        if recorded is not None and _journal.inspect(root, recorded).at_new:
            # git failed while writing (a full disk): the journal stays for the repair.
            raise Refused(f"updating the checkout of {target} at {checkout} failed half way: {detail}; "
                          "fix that, then run `agentdeck doctor --fix` (or merge again) to finish it")
        journal.unlink(missing_ok=True)  # refused before writing anything (a file in the way)
        raise Refused(
            f"could not update the checkout of {target} at {checkout}: {detail}; "
            "nothing changed — move those files away and try again"
        )
    fault_point("merge.checkout")
    proc = git.run_proc(checkout, "update-ref", "-m", reflog, f"refs/heads/{target}", new, old)
    if proc.returncode != 0:
        # Someone moved the branch between our check and now: put the files back as they were.
        undo = git.run_proc(checkout, "read-tree", "-m", "-u", new, old)
        if undo.returncode == 0:
            journal.unlink(missing_ok=True)
        raise Refused(f"{target} moved while merging ({proc.stderr.strip()}); "
                      + ("nothing changed, try again" if undo.returncode == 0
                         else "run `agentdeck doctor` to see what is left"))
    journal.unlink(missing_ok=True)


def resume_interrupted(root: Path | str, target: str) -> str | None:
    """Finish a merge into *target* that was killed half way (see merge_journal); returns what
    was done, None when there was none. Raises Refused when it is running or cannot be finished."""
    journal = _journal.journal_for(root, target)
    if journal is None:
        return None
    return _journal.finish(root, journal)


def changes_in_target(root: Path | str, branch: str, target: str) -> bool:
    """True when every change of *branch* is already in *target* (safe to delete the branch)."""
    tip = _git.branch_tip(root, branch)
    old = _git.branch_tip(root, target)
    if git.is_ancestor(root, tip, old):
        return True
    merged = _git.merge_tree(root, old, tip)
    return merged.clean and merged.tree == _git.tree_of(root, old)


def cleanup(
    root: Path | str, *, agent: str, branch: str, worktree: Path | str | None, target: str,
    ignore: set[str] | frozenset[str] | None = None,
) -> str:
    """Remove the agent's worktree and branch after a merge; returns the recovery ref kept first.

    Used when no Deck is at hand; the Deck's ``kill(name, discard=True)`` does
    the same and also stops the agent's pane.
    """
    ensure_cleanup_safe(root, agent=agent, branch=branch, worktree=worktree, target=target, ignore=ignore)
    ref = snapshots.save_recovery_ref(root, agent, Path(worktree) if worktree else None, branch)
    if _git.worktree_ok(worktree):
        git.remove_worktree(root, Path(worktree), force=True)  # type: ignore[arg-type]
    git.prune_worktrees(root)
    if git.branch_exists(root, branch):
        git.delete_branch(root, branch)
    return ref


def ensure_cleanup_safe(
    root: Path | str, *, agent: str, branch: str, worktree: Path | str | None, target: str,
    ignore: set[str] | frozenset[str] | None = None,
) -> None:
    left = _git.uncommitted(worktree, set(ignore or ()))
    if left:
        raise Refused(
            f"not cleaning up {agent}: its worktree has uncommitted changes ({_git.short(left)}); "
            f"commit and merge them, or remove it with `agentdeck kill {agent} --discard`"
        )
    if git.branch_exists(root, branch) and not changes_in_target(root, branch, target):
        raise Refused(
            f"not cleaning up {agent}: {branch} has changes that are not in {target}; "
            f"merge them first (agentdeck merge {agent}) or use `agentdeck kill {agent} --discard`"
        )


# --------------------------------------------------------------------------- helpers


def _commit_tree(root: Path | str, tree: str, parents: list[str], message: str,
                 env: dict[str, str] | None = None) -> str:
    args = ["commit-tree", tree]
    for p in parents:
        args += ["-p", p]
    args += ["-F", "-"]
    proc = git.run_proc(root, *args, env=env, input=message if message.endswith("\n") else message + "\n")
    if proc.returncode != 0:
        raise Refused(f"could not create the merge commit: {proc.stderr.strip()}; set user.name/user.email?")
    return proc.stdout.strip()


def _squash_message(root: Path | str, agent: str, branch: str, old: str, tip: str) -> str:
    subjects = git.run(root, "log", "--reverse", "--no-merges", "--format=%s", f"{old}..{tip}").splitlines()
    if len(subjects) == 1:
        return git.run(root, "log", "-1", "--format=%B", tip).strip() + "\n"
    head = f"Squashed work of agent {agent} ({branch})"
    body = "\n".join(f"* {s}" for s in subjects)
    return f"{head}\n\n{body}\n" if body else head + "\n"


def _name_status(root: Path | str, old: str, new: str) -> list[dict[str, str]]:
    out = git.run(root, "diff-tree", "-r", "-M", "--name-status", "-z", old, new)
    tokens = out.split("\0")
    files = []
    i = 0
    while i < len(tokens):
        code = tokens[i]
        if not code:
            i += 1
            continue
        if code[0] in "RC":
            files.append({"path": tokens[i + 2], "old_path": tokens[i + 1], "status": STATUS_NAMES[code[0]]})
            i += 3
        else:
            files.append({"path": tokens[i + 1], "status": STATUS_NAMES.get(code[0], "modified")})
            i += 2
    return files


def _replay(root: Path | str, onto: str, tip: str) -> tuple[str, str | None, list[str]]:
    """Replay the agent's commits (``onto..tip``, merges skipped) on *onto*, objects only.

    git 2.39's ``merge-tree`` cannot be given a merge base, so each cherry-pick
    of commit C (parent P) onto the current result R is computed as the merge of
    C with a throw-away commit that has R's tree and P as its only parent: their
    merge base is exactly P, which is what a cherry-pick needs.  Commits keep
    their author, date and message.  Commits whose change is already there are
    dropped, as ``git rebase`` does.

    Returns (new tip, None, []) or (onto, conflicting commit, conflicted files).
    """
    commits = git.run(root, "rev-list", "--reverse", "--no-merges", "--topo-order", f"{onto}..{tip}").split()
    current = onto
    for commit in commits:
        parents = git.run(root, "rev-list", "--parents", "-n", "1", commit).split()[1:]
        current_tree = _git.tree_of(root, current)
        if not parents:
            raise Refused(f"commit {commit[:10]} has no parent and cannot be rebased; use --strategy merge")
        parent = parents[0]
        stand_in = _commit_tree(root, current_tree, [parent], "agentdeck rebase stand-in", env=_STAND_IN_ENV)
        merged = _git.merge_tree(root, stand_in, commit)
        if not merged.clean:
            return onto, commit, merged.conflicts
        if merged.tree == current_tree:
            continue  # already applied
        name, email, date, body = git.run(
            root, "log", "-1", "--date=raw", "--format=%an%x00%ae%x00%ad%x00%B", commit
        ).split("\0", 3)
        env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
        current = _commit_tree(root, merged.tree, [current], body.rstrip("\n") + "\n", env=env)
    return current, None, []


_STAND_IN_ENV = {
    "GIT_AUTHOR_NAME": "agentdeck", "GIT_AUTHOR_EMAIL": "agentdeck@localhost",
    "GIT_COMMITTER_NAME": "agentdeck", "GIT_COMMITTER_EMAIL": "agentdeck@localhost",
    "GIT_AUTHOR_DATE": "@0 +0000", "GIT_COMMITTER_DATE": "@0 +0000",
}
