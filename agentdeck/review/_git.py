"""Review's use of :mod:`agentdeck.git`: composition only, no git command of its own.

What is particular to review lives here: answers about full object ids are cached (they never
change; the radar asks the same questions every refresh), ``merge-tree`` is read as a verdict,
an agent's base and branch are resolved with review's error messages, and a worktree snapshot
can come with a deterministic commit.  Every git call is :mod:`agentdeck.git`'s.  Nothing here
touches a checkout or an index the user or an agent can see.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from agentdeck import git, snapshots
from agentdeck.errors import Refused, UsageError

# Fixed identity and dates for snapshot commits: the same worktree state always
# gives the same commit id, so repeated refreshes add no new objects.
_SNAPSHOT_ENV = {
    "GIT_AUTHOR_NAME": "agentdeck",
    "GIT_AUTHOR_EMAIL": "agentdeck@localhost",
    "GIT_COMMITTER_NAME": "agentdeck",
    "GIT_COMMITTER_EMAIL": "agentdeck@localhost",
    "GIT_AUTHOR_DATE": "@0 +0000",
    "GIT_COMMITTER_DATE": "@0 +0000",
}

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _immutable(*ids: str) -> bool:
    """True when every id is a full object id (so results about them can be cached forever)."""
    return all(_SHA.match(i or "") for i in ids)


def tree_of(cwd: Path | str, commit: str) -> str:
    if _immutable(commit):
        return _tree_of_cached(str(cwd), commit)
    return git.tree_of(cwd, commit)


@functools.lru_cache(maxsize=4096)
def _tree_of_cached(cwd: str, commit: str) -> str:
    return git.tree_of(cwd, commit)


def merge_base(cwd: Path | str, a: str, b: str) -> str | None:
    if _immutable(a, b):
        return _merge_base_cached(str(cwd), a, b)
    return git.merge_base(cwd, a, b)


@functools.lru_cache(maxsize=4096)
def _merge_base_cached(cwd: str, a: str, b: str) -> str | None:
    return git.merge_base(cwd, a, b)


def changed_paths(cwd: Path | str, old: str, new: str) -> list[str]:
    """Every path that differs between two tree-ishes (renames as delete + add)."""
    if _immutable(old, new):
        return list(_changed_paths_cached(str(cwd), old, new))
    return git.changed_paths(cwd, old, new)


@functools.lru_cache(maxsize=4096)
def _changed_paths_cached(cwd: str, old: str, new: str) -> tuple[str, ...]:
    return tuple(git.changed_paths(cwd, old, new))


@dataclass
class MergeTreeResult:
    tree: str
    conflicts: list[str]

    @property
    def clean(self) -> bool:
        return not self.conflicts


def merge_tree(cwd: Path | str, ours: str, theirs: str, cache: bool = False) -> MergeTreeResult:
    """``git merge-tree --write-tree``: the merged tree and the conflicted paths (no checkout).

    *cache*: remember the answer for these two commit ids (the radar, which only
    reads the verdict; a merge that uses the tree always asks git).
    """
    if cache and _immutable(ours, theirs):
        cached = _merge_tree_cached(str(cwd), ours, theirs)
        return MergeTreeResult(cached.tree, list(cached.conflicts))
    return _merge_tree(cwd, ours, theirs)


@functools.lru_cache(maxsize=4096)
def _merge_tree_cached(cwd: str, ours: str, theirs: str) -> MergeTreeResult:
    return _merge_tree(cwd, ours, theirs)


def _merge_tree(cwd: Path | str, ours: str, theirs: str) -> MergeTreeResult:
    proc = git.run_proc(cwd, "merge-tree", "--write-tree", "--name-only", "-z", ours, theirs)
    if proc.returncode not in (0, 1):
        raise Refused(f"git merge-tree failed: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    parts = proc.stdout.split("\0")
    tree = parts[0].strip()
    conflicts: list[str] = []
    if proc.returncode == 1:
        for name in parts[1:]:
            if not name:
                break
            if name not in conflicts:
                conflicts.append(name)
        if not conflicts:  # conflicts without a path (should not happen): report the message
            conflicts.append("(unknown)")
    return MergeTreeResult(tree, conflicts)


def clear_caches() -> None:
    """Forget every cached answer (benchmarks measure cold calls)."""
    for cached in (_tree_of_cached, _merge_base_cached, _changed_paths_cached, _merge_tree_cached):
        cached.cache_clear()


def base_tip(root: Path | str, base_branch: str, base_commit: str) -> str:
    """The current commit of the agent's base: its branch tip, else the recorded base commit."""
    if base_branch:
        commit = git.head_commit(root, f"refs/heads/{base_branch}") or git.head_commit(root, base_branch)
        if commit:
            return commit
    if base_commit:
        commit = git.head_commit(root, base_commit)
        if commit:
            return commit
    raise UsageError(
        f"the base {base_branch or base_commit!r} no longer exists in this repository; "
        "recreate the branch or merge with --into BRANCH"
    )


def branch_tip(root: Path | str, branch: str) -> str:
    from agentdeck.sandbox.agent_bwrap import sync_branch

    sync_branch(root, branch)  # a sandboxed agent's commits live in its own repository until now
    commit = git.head_commit(root, f"refs/heads/{branch}")
    if commit is None:
        raise UsageError(f"branch {branch!r} does not exist; check `git branch` (was it deleted?)")
    return commit


def worktree_ok(worktree: Path | str | None) -> bool:
    return worktree is not None and str(worktree) != "" and Path(worktree).is_dir() and (
        Path(worktree) / ".git").exists()


def exclude_pathspecs(worktree: Path | str, ignore: set[str] | frozenset[str] | None) -> list[str]:
    """``:(exclude)`` pathspecs keeping the copied setup files out of ``git add -A``.

    Files git already ignores are left out: ``git add -A`` never adds them, and
    naming an ignored file in a pathspec makes it fail.
    """
    if not ignore:
        return []
    names = sorted(ignore)
    proc = git.run_proc(worktree, "check-ignore", "-z", "--stdin", input="\0".join(names) + "\0")
    ignored = set(proc.stdout.split("\0")) if proc.returncode == 0 else set()
    return [f":(exclude,literal){p}" for p in names if p not in ignored]


def snapshot(worktree: Path | str, ignore: set[str] | frozenset[str] | None = None,
             want_commit: bool = False) -> snapshots.Snapshot:
    """:func:`agentdeck.snapshots.snapshot` of *worktree*; with *want_commit*, also a commit of that
    tree on top of HEAD: dangling (no ref points to it) and deterministic (fixed identity and
    date), so refreshes add no objects and gc drops it."""
    snap = snapshots.snapshot(worktree, ignore)
    if want_commit:
        snap.commit = (git.commit_tree(worktree, snap.tree, snap.head, "agentdeck snapshot of uncommitted work",
                                       env=_SNAPSHOT_ENV) if snap.dirty else snap.head)
    return snap


def uncommitted(worktree: Path | str | None, ignore: set[str] | None = None) -> list[str]:
    """Changed paths in an agent worktree (untracked included), minus copied setup files."""
    if worktree is None or not worktree_ok(worktree):
        return []
    return git.status_porcelain(worktree, ignore=ignore)


def short(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
