"""The research loop's git work, through :mod:`agentdeck.git` (its ``run``).

Trial worktrees are detached checkouts under the research dir (never deck
agents, never branches); every trial commit is kept reachable under
``refs/agentdeck/research/<tag>/<trial>``; only ``research/<tag>`` is a
branch, and it only ever fast-forwards to a kept trial.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import shutil
import threading
from pathlib import Path

from agentdeck import git
from agentdeck.git import GitError

REF_PREFIX = "refs/agentdeck/research/"
IDENTITY = ("-c", "user.name=agentdeck research", "-c", "user.email=research@agentdeck.invalid",
            "-c", "commit.gpgsign=false", "-c", "gc.auto=0")
NOISE_EXCLUDES = (":(exclude,glob)**/__pycache__/**", ":(exclude,glob)**/*.pyc")

# git worktree add/remove touch shared metadata: one at a time per process.
_worktree_lock = threading.Lock()


def trial_ref(tag: str, trial_id: int) -> str:
    return f"{REF_PREFIX}{tag}/{trial_id}"


def join(workdir: str, rel: str) -> str:
    """A repository path for *rel* inside *workdir* ("." = the root)."""
    wd = workdir.strip("/") if workdir not in ("", ".") else ""
    return posixpath.normpath(posixpath.join(wd, rel)) if wd else posixpath.normpath(rel)


def add_worktree(root: Path, path: Path, commit: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _worktree_lock:
        git.run(root, "worktree", "add", "--detach", "--quiet", str(path), commit)


def remove_worktree(root: Path, path: Path) -> None:
    with _worktree_lock:
        if path.exists():
            try:
                git.run(root, "worktree", "remove", "--force", "--force", str(path))
            except GitError:
                shutil.rmtree(path, ignore_errors=True)
        git.run(root, "worktree", "prune", check=False)


def commit_all(worktree: Path, message: str) -> str | None:
    """Commit every change in *worktree*; the new commit, or None when nothing changed."""
    git.run(worktree, "add", "-A", "--", ".", *NOISE_EXCLUDES)
    if git.run_ok(worktree, "diff", "--cached", "--quiet"):
        return None
    git.run(worktree, *IDENTITY, "commit", "--no-verify", "-q", "-m", message)
    return git.run(worktree, "rev-parse", "HEAD")


def reset_hard(worktree: Path, commit: str) -> None:
    git.run(worktree, "reset", "--hard", "-q", commit)
    git.run(worktree, "clean", "-fdq")


def cherry_pick(worktree: Path, commit: str, message: str) -> str | None:
    """Apply *commit*'s change onto the worktree's HEAD; the new commit, or None when it does not
    apply (or is already there).

    A 3-way cherry-pick first; when git calls it a conflict, the change is applied again with no
    context lines (``git apply --unidiff-zero``): two proposals that edit neighbouring lines (two
    constants one under the other) conflict for a merge but combine cleanly line by line.
    """
    if git.run_ok(worktree, *IDENTITY, "cherry-pick", "--no-commit", commit):
        return commit_all(worktree, message)
    git.run(worktree, "cherry-pick", "--abort", check=False)
    git.run(worktree, "reset", "--hard", "-q", "HEAD", check=False)
    patch = git.run(worktree, "diff", "-U0", "--binary", "--no-color", f"{commit}^", commit)
    if not patch.strip():
        return None
    try:
        git.run(worktree, "apply", "--unidiff-zero", "--index", "-", input=patch + "\n")
    except GitError:
        git.run(worktree, "reset", "--hard", "-q", "HEAD", check=False)
        return None
    return commit_all(worktree, message)


def changed_files(root: Path, old: str, new: str) -> list[str]:
    out = git.run(root, "diff", "--name-only", "--no-renames", "-z", old, new)
    return [p for p in out.split("\0") if p]


def diff(root: Path, old: str, new: str, paths: list[str] | None = None, stat: bool = False) -> str:
    args = ["diff", "--no-color"]
    if stat:
        args.append("--stat")
    args += [old, new]
    if paths:
        args += ["--", *paths]
    return git.run(root, *args)


def set_ref(root: Path, ref: str, commit: str) -> None:
    git.run(root, "update-ref", ref, commit)


def advance_branch(root: Path, branch: str, new: str, old: str) -> None:
    """Move *branch* from *old* to *new* (refused by git if it moved meanwhile)."""
    git.run(root, "update-ref", "-m", "agentdeck research: keep", f"refs/heads/{branch}", new, old)


def tree_files(root: Path, commit: str, workdir: str) -> dict[str, str]:
    """Tracked files under *workdir* at *commit*: repository path -> blob id."""
    args = ["ls-tree", "-r", "-z", "--full-tree", commit]
    wd = join(workdir, ".")
    if wd != ".":
        args += ["--", wd]
    out = git.run(root, *args)
    files = {}
    for entry in out.split("\0"):
        if not entry:
            continue
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if len(parts) >= 3 and parts[1] == "blob":
            files[path] = parts[2]
    return files


def match(workdir: str, patterns: list[str], repo_paths: list[str] | set[str]) -> list[str]:
    """Repository paths among *repo_paths* that match *patterns* (relative to *workdir*)."""
    full = [join(workdir, p) for p in patterns]
    return sorted(p for p in repo_paths if any(p == f or fnmatch.fnmatchcase(p, f) for f in full))


def content_hash(blobs: dict[str, str], paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(f"{p}\0{blobs.get(p, '-')}\n".encode())
    return h.hexdigest()


def disk_blob_ids(worktree: Path, paths: list[str]) -> dict[str, str]:
    """Blob ids of the files on disk (what ``git hash-object`` says); "missing" for absent ones."""
    present = [p for p in paths if (worktree / p).is_file()]
    ids = dict.fromkeys(paths, "missing")
    if present:
        out = git.run(worktree, "hash-object", "--", *present).split()
        ids.update(zip(present, out))
    return ids


def merge(root: Path, commit: str, message: str) -> str:
    """``git merge --no-ff`` *commit* into the checked-out branch of *root*; aborted on a conflict."""
    try:
        git.run(root, "merge", "--no-ff", "--no-edit", "-m", message, commit)
    except GitError:
        git.run(root, "merge", "--abort", check=False)
        raise
    return git.run(root, "rev-parse", "HEAD")
