"""A worktree's files as git objects, without touching what the agent sees: the one temporary-index
snapshot (review's diffs, fork, recovery refs) and the recovery ref that keeps a worktree's work.

Composes :mod:`agentdeck.git`'s calls (every git command runs there, with a sandboxed worktree's
safe options); applying a snapshot back (:func:`agentdeck.git.apply_snapshot`) and saving what a
half-removed worktree left (:func:`agentdeck.git.snapshot_remains`) need git's plumbing with their
own input or environment and stay there.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from agentdeck import git
from agentdeck.errors import Refused


@dataclass
class Snapshot:
    """A worktree's state on disk: HEAD plus every change (untracked included)."""

    tree: str
    head: str | None  # None on an unborn branch
    dirty: bool  # the tree differs from HEAD's
    commit: str | None = None  # HEAD, or a commit of the tree on top of HEAD (when the caller made one)


_counter = itertools.count()


def _worktree_info(wt: Path) -> tuple[Path, str | None, str | None]:
    """(index path, HEAD, HEAD's tree) in one git call when HEAD exists."""
    proc = git.run_proc(wt, "rev-parse", "--git-path", "index", "HEAD", "HEAD^{tree}")
    lines = proc.stdout.split("\n")
    head: str | None
    head_tree: str | None
    if proc.returncode == 0 and len(lines) >= 3:
        index, head, head_tree = Path(lines[0]), lines[1].strip(), lines[2].strip()
    else:  # unborn branch (no commit yet)
        index, head, head_tree = Path(git.run(wt, "rev-parse", "--git-path", "index")), None, None
    if not index.is_absolute():
        index = wt / index
    return index, head, head_tree


def snapshot(worktree: Path | str, exclude: set[str] | frozenset[str] | None = None) -> Snapshot:
    """The tree of *worktree* as it is on disk now (tracked and untracked files), touching
    nothing the agent can see: the one temporary-index snapshot (review, recovery refs, fork).

    Files in *exclude* (copied setup files) keep their committed state (usually: absent).
    ``git add -A`` runs on a private index (so git's stat cache makes it fast) and never takes
    the worktree's own ``index.lock``.  The private index is kept beside the worktree's
    (``agentdeck-review-idx-<key>.index`` in its git dir) and reused while the worktree's own
    index and ignore files are unchanged, so files git would have to re-read on every call
    (racily clean entries right after a checkout) are read once.  An unreadable file is
    skipped rather than hiding every other change.
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
        excludes = [f":(exclude,literal){p}" for p in sorted(exclude or ())]
        proc = git.run_proc(wt, "--no-optional-locks", "add", "-A", "--ignore-errors", "--", ".", *excludes, env=env)
        if proc.returncode not in (0, 1) or (proc.returncode == 1 and "fatal:" in proc.stderr):
            raise Refused(f"could not read the worktree {wt}: {proc.stderr.strip() or 'git add failed'}")
        proc = git.run_proc(wt, "write-tree", env=env)
        if proc.returncode != 0:
            raise Refused(f"could not snapshot the worktree {wt}: {proc.stderr.strip()}")
        tree = proc.stdout.strip()
        os.replace(tmp, private)  # the refreshed stat cache, for the next snapshot
        for old in gitdir.glob("agentdeck-review-idx-*.index"):
            if old != private:
                old.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".lock").unlink(missing_ok=True)
    return Snapshot(tree=tree, head=head, dirty=head is None or tree != head_tree)


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


def snapshot_commit(worktree: Path | str, parent: str, exclude: set[str] | None = None) -> str:
    """A commit of *worktree*'s files (tracked and untracked, see :func:`snapshot`) on top of
    *parent*, with the user's identity; the worktree and its index are untouched.  Returns
    *parent* when the files are *parent*'s."""
    tree = snapshot(worktree, exclude).tree
    if tree == git.tree_of(worktree, parent):
        return parent
    return git.commit_tree(worktree, tree, parent, "agentdeck: snapshot of uncommitted work")


def save_recovery_ref(cwd: Path | str, label: str, worktree: Path | None, branch: str,
                      exclude: set[str] | None = None) -> str:
    """Keep the branch tip *and* uncommitted work of *worktree* under refs/agentdeck/trash/.

    Uncommitted work (tracked and untracked files) is captured as a commit on top
    of the branch tip without touching the worktree or its index (a temporary
    index file).  Files in *exclude* (copied setup files such as ``.env``) are
    left out of the snapshot.  Returns the ref name.
    """
    tip = git.head_commit(cwd, f"refs/heads/{branch}") if git.branch_exists(cwd, branch) else None
    commit = tip
    if worktree is not None and Path(worktree).is_dir():
        parent = git.head_commit(worktree) or tip
        if parent:
            commit = snapshot_commit(worktree, parent, exclude=exclude)
    if commit is None:
        raise Refused(f"nothing to save for {label}: no branch {branch!r} and no worktree")
    return git.keep_recovery_commit(cwd, label, commit, branch)
