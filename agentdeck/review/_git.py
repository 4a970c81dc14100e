"""Small git building blocks shared by the review modules.

Everything goes through :mod:`agentdeck.git` (``run`` / ``run_ok`` / ``run_proc``).
Nothing here touches a checkout or an index the user or an agent can see:
snapshots use a temporary index file, merges are computed with
``git merge-tree --write-tree`` in the object database only.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from agentdeck import git
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

_counter = itertools.count()


_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _immutable(*ids: str) -> bool:
    """True when every id is a full object id (so results about them can be cached forever)."""
    return all(_SHA.match(i or "") for i in ids)


def rev(cwd: Path | str, spec: str) -> str | None:
    """The commit id of *spec*, or None (one git call)."""
    proc = git.run_proc(cwd, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{spec}^{{commit}}")
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


def tree_of(cwd: Path | str, commit: str) -> str:
    if _immutable(commit):
        return _tree_of_cached(str(cwd), commit)
    return git.run(cwd, "rev-parse", f"{commit}^{{tree}}")


@functools.lru_cache(maxsize=4096)
def _tree_of_cached(cwd: str, commit: str) -> str:
    return git.run(cwd, "rev-parse", f"{commit}^{{tree}}")


def is_ancestor(cwd: Path | str, older: str, newer: str) -> bool:
    return git.run_ok(cwd, "merge-base", "--is-ancestor", older, newer)


def merge_base(cwd: Path | str, a: str, b: str) -> str | None:
    if _immutable(a, b):
        return _merge_base_cached(str(cwd), a, b)
    return _merge_base(cwd, a, b)


def _merge_base(cwd: Path | str, a: str, b: str) -> str | None:
    out = git.run(cwd, "merge-base", a, b, check=False).strip()
    return out.splitlines()[0] if out else None


@functools.lru_cache(maxsize=4096)
def _merge_base_cached(cwd: str, a: str, b: str) -> str | None:
    return _merge_base(cwd, a, b)


def base_tip(root: Path | str, base_branch: str, base_commit: str) -> str:
    """The current commit of the agent's base: its branch tip, else the recorded base commit."""
    if base_branch:
        commit = rev(root, f"refs/heads/{base_branch}") or rev(root, base_branch)
        if commit:
            return commit
    if base_commit:
        commit = rev(root, base_commit)
        if commit:
            return commit
    raise UsageError(
        f"the base {base_branch or base_commit!r} no longer exists in this repository; "
        "recreate the branch or merge with --into BRANCH"
    )


def branch_tip(root: Path | str, branch: str) -> str:
    commit = rev(root, f"refs/heads/{branch}")
    if commit is None:
        raise UsageError(f"branch {branch!r} does not exist; check `git branch` (was it deleted?)")
    return commit


def worktree_ok(worktree: Path | str | None) -> bool:
    return bool(worktree) and Path(worktree).is_dir() and (Path(worktree) / ".git").exists()  # type: ignore[arg-type]


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


@dataclass
class Snapshot:
    """A worktree's state on disk: HEAD plus every change (untracked included)."""

    tree: str
    head: str | None  # None on an unborn branch
    dirty: bool  # the tree differs from HEAD's
    commit: str | None = None  # HEAD, or a dangling commit of the tree on top of HEAD (want_commit)


def _worktree_info(wt: Path) -> tuple[Path, str | None, str | None]:
    """(index path, HEAD, HEAD's tree) in one git call when HEAD exists."""
    proc = git.run_proc(wt, "rev-parse", "--git-path", "index", "HEAD", "HEAD^{tree}")
    lines = proc.stdout.split("\n")
    if proc.returncode == 0 and len(lines) >= 3:
        index, head, head_tree = Path(lines[0]), lines[1].strip(), lines[2].strip()
    else:  # unborn branch (no commit yet)
        index, head, head_tree = Path(git.run(wt, "rev-parse", "--git-path", "index")), None, None
    if not index.is_absolute():
        index = wt / index
    return index, head, head_tree


def snapshot(worktree: Path | str, ignore: set[str] | frozenset[str] | None = None,
             want_commit: bool = False) -> Snapshot:
    """Snapshot *worktree* as it is on disk now, touching nothing the agent can see.

    Copied setup files (*ignore*) keep their committed state (usually: absent).
    ``git add -A`` runs on a private index (so git's stat cache makes it fast)
    and never takes the worktree's own ``index.lock``.  The private index is
    kept beside the worktree's (``agentdeck-review-idx-<key>.index`` in its git
    dir) and reused while the worktree's own index and ignore files are
    unchanged, so files git would have to re-read on every call (racily clean
    entries right after a checkout) are read once.  With *want_commit*, also a
    commit of that tree on top of HEAD: dangling (no ref points to it) and
    deterministic, so refreshes add no objects and gc drops it.
    """
    wt = Path(worktree)
    index, head, head_tree = _worktree_info(wt)
    gitdir = index.parent
    private = gitdir / f"agentdeck-review-idx-{_index_key(index, wt)}.index"
    tmp = gitdir / f"agentdeck-review-tmp-{os.getpid()}-{threading.get_ident()}-{next(_counter)}.index"
    try:
        for base in (private, index):
            try:
                shutil.copy2(base, tmp)  # keep the mtime: git's racy-clean check depends on it
                break
            except FileNotFoundError:
                continue
        env = {"GIT_INDEX_FILE": str(tmp)}
        # Copied files that git ignores anyway make `add` exit 1 after adding the rest: accepted.
        excludes = [f":(exclude,literal){p}" for p in sorted(ignore or ())]
        proc = git.run_proc(wt, "--no-optional-locks", "add", "-A", "--ignore-errors", "--", ".", *excludes, env=env)
        # --ignore-errors: an unreadable file is skipped (exit 1) rather than hiding every change.
        if proc.returncode not in (0, 1) or (proc.returncode == 1 and "fatal:" in proc.stderr):
            raise Refused(f"could not read the worktree {wt}: {proc.stderr.strip() or 'git add failed'}")
        proc = git.run_proc(wt, "write-tree", env=env)
        if proc.returncode != 0:
            raise Refused(f"could not snapshot the worktree {wt}: {proc.stderr.strip()}")
        tree = proc.stdout.strip()
        os.replace(tmp, private)  # the refreshed stat cache, for the next snapshot
        _prune_private(gitdir, keep=private)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".lock").unlink(missing_ok=True)
    dirty = head is None or tree != head_tree
    snap = Snapshot(tree=tree, head=head, dirty=dirty)
    if want_commit:
        snap.commit = _snapshot_commit(str(wt), tree, head or "") if dirty else head
    return snap


def _index_key(index: Path, wt: Path) -> str:
    """Changes whenever the worktree's index or its top-level ignore rules change."""
    parts = []
    for path in (index, wt / ".gitignore"):
        try:
            st = path.stat()
            parts.append(f"{st.st_ino:x}.{st.st_size:x}.{st.st_mtime_ns:x}")
        except OSError:
            parts.append("0")
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:16]


def _prune_private(gitdir: Path, keep: Path) -> None:
    for old in gitdir.glob("agentdeck-review-idx-*.index"):
        if old != keep:
            old.unlink(missing_ok=True)


def _snapshot_commit(cwd: str, tree: str, head: str) -> str:
    args = ["commit-tree", tree, "-m", "agentdeck snapshot of uncommitted work"]
    if head:
        args[2:2] = ["-p", head]
    proc = git.run_proc(cwd, *args, env=_SNAPSHOT_ENV)
    if proc.returncode != 0:
        raise Refused(f"could not snapshot the worktree {cwd}: {proc.stderr.strip()}")
    return proc.stdout.strip()


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


def changed_paths(cwd: Path | str, old: str, new: str) -> list[str]:
    """Every path that differs between two tree-ishes (renames as delete + add)."""
    if _immutable(old, new):
        return list(_changed_paths_cached(str(cwd), old, new))
    return _changed_paths(cwd, old, new)


def _changed_paths(cwd: Path | str, old: str, new: str) -> list[str]:
    out = git.run(cwd, "diff-tree", "-r", "--no-renames", "--name-only", "-z", old, new)
    return [p for p in out.split("\0") if p]


@functools.lru_cache(maxsize=4096)
def _changed_paths_cached(cwd: str, old: str, new: str) -> tuple[str, ...]:
    return tuple(_changed_paths(cwd, old, new))


def find_checkout(root: Path | str, branch: str) -> Path | None:
    """The worktree that has *branch* checked out, if any."""
    for info in git.list_worktrees(root):
        if info.branch == branch:
            return info.path
    return None


def tracked_changes(worktree: Path | str) -> list[str]:
    """Staged or unstaged changes to tracked files (untracked files do not count)."""
    return git.status_porcelain(worktree, untracked=False)


def uncommitted(worktree: Path | str, ignore: set[str] | None = None) -> list[str]:
    """Changed paths in an agent worktree (untracked included), minus copied setup files."""
    if not worktree_ok(worktree):
        return []
    return git.status_porcelain(worktree, ignore=ignore)


def short(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
