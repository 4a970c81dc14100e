"""The research loop's git work, through :mod:`agentdeck.git` (its ``run``).

Trial worktrees are detached checkouts (never deck agents, never branches);
every trial commit is kept reachable under
``refs/agentdeck/research/<tag>/<trial>``; only ``research/<tag>`` (and
``research/<tag>@<class>`` for the run's other hardware classes) are branches,
and they only ever fast-forward to a kept trial.

It also gathers the facts the policy's file rules need about a trial's
worktree: the git modes of its committed files (:func:`tree_modes`), what
``lstat`` says about the files on disk (:func:`disk_facts`) and a fingerprint
of the git directory a job could write into (:func:`git_dir_fingerprint`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from agentdeck import git
from agentdeck.git import GitError
from agentdeck.research.model import PathFacts

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


def match(workdir: str, patterns: list[str], repo_paths: Iterable[str]) -> list[str]:
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


def tree_modes(root: Path, commit: str, workdir: str) -> dict[str, str]:
    """Every entry under *workdir* at *commit* with its git mode (files, symlinks 120000 and
    submodules 160000 alike): repository path -> mode."""
    args = ["ls-tree", "-r", "-z", "--full-tree", commit]
    wd = join(workdir, ".")
    if wd != ".":
        args += ["--", wd]
    modes = {}
    for entry in git.run(root, *args).split("\0"):
        meta, _, path = entry.partition("\t")
        parts = meta.split()
        if path and len(parts) >= 3:
            modes[path] = parts[0]
    return modes


def clean_worktree(worktree: Path) -> None:
    """Remove every file of *worktree* that is not committed, ignored ones included: the job runs
    exactly what was committed (a proposer's leftovers, e.g. a ``__pycache__`` entry for a
    protected module, never reach it)."""
    git.run(worktree, "clean", "-ffdxq")


def disk_facts(base: Path, paths: list[str]) -> dict[str, PathFacts]:
    """What ``lstat`` says about each of *paths* (relative to *base*); links are not followed."""
    facts = {}
    for rel in paths:
        try:
            st = os.lstat(base / rel)
        except FileNotFoundError:
            facts[rel] = PathFacts("missing", 0)
            continue
        except OSError:
            facts[rel] = PathFacts("other", 0)
            continue
        kind = ("file" if stat.S_ISREG(st.st_mode) else "symlink" if stat.S_ISLNK(st.st_mode)
                else "dir" if stat.S_ISDIR(st.st_mode) else "other")
        facts[rel] = PathFacts(kind, st.st_nlink, st.st_dev, st.st_ino)
    return facts


def git_dirs(worktree: Path) -> tuple[Path | None, Path | None]:
    """(the worktree's own git dir, the repository's common dir), read from the ``.git`` file and
    ``commondir`` without running git; (None, None) when *worktree* is not a linked worktree."""
    try:
        text = (worktree / ".git").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None, None
    if not text.startswith("gitdir:"):
        return None, None
    gitdir = Path(text[len("gitdir:"):].strip())
    if not gitdir.is_absolute():
        gitdir = (worktree / gitdir).resolve()
    try:
        common = Path((gitdir / "commondir").read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return gitdir, None
    return gitdir, (common if common.is_absolute() else (gitdir / common).resolve())


#: Parts of the common git dir a job has no business writing (refs, objects and agentdeck's own
#: state change while jobs run, as the harness records trials; they are left out).
COMMON_WATCHED = ("config", "hooks", "info", "modules")
MAX_FINGERPRINT_ENTRIES = 5000


def _digest(path: Path) -> str:
    try:
        st = os.lstat(path)
    except OSError:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        return "link:" + os.readlink(path)
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if not stat.S_ISREG(st.st_mode):
        return "other"
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 16), b""):
                h.update(block)
    except OSError:
        return "unreadable"
    return f"{stat.S_IMODE(st.st_mode):o}:{h.hexdigest()}"


def _walk(top: Path, label: str, out: dict[str, str]) -> None:
    if not os.path.lexists(top):
        return
    out[label] = _digest(top)
    if not top.is_dir() or top.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            out[f"{label}/{full.relative_to(top).as_posix()}"] = _digest(full)
            if len(out) > MAX_FINGERPRINT_ENTRIES:
                return


def git_dir_fingerprint(worktree: Path, dirs: tuple[Path | None, Path | None] | None = None) -> dict[str, str]:
    """A digest of everything git-related a job in *worktree* could change: the worktree's ``.git``
    file, its own git dir (HEAD, ... but not the index, which ``git status`` may refresh) and the
    common dir's ``config``, ``hooks``, ``info`` and ``modules``.  Pass the *dirs* found before
    the job (:func:`git_dirs`) so a job that rewrites the ``.git`` file cannot redirect the check."""
    gitdir, common = dirs if dirs is not None else git_dirs(worktree)
    out: dict[str, str] = {".git": _digest(worktree / ".git")}
    if gitdir is not None and gitdir.is_dir():
        for child in sorted(gitdir.iterdir()):
            if not child.name.startswith("index"):
                _walk(child, f"worktree/{child.name}", out)
    if common is not None:
        for name in COMMON_WATCHED:
            if name == "config":
                out[name] = _config_digest(common / name)
            else:
                _walk(common / name, name, out)
    return out


def _config_digest(path: Path) -> str:
    """The repository config's digest, without its ``[branch "..."]`` sections (git writes those
    itself when a branch is created with tracking, e.g. a deck agent started from a remote
    branch).  Read as text, no git process: it is on the path from a freed lane to its next job."""
    if not os.path.lexists(path):
        return "missing"
    if os.path.islink(path) or not path.is_file():
        return _digest(path)
    try:
        text = path.read_bytes()
    except OSError:
        return "unreadable"
    kept, skipping = [], False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(b"["):
            head, _, rest = line.partition(b"]")
            name = head[1:].strip().lower()
            # A header with a setting after it on the same line is never skipped.
            skipping = name.startswith((b"branch ", b"branch.", b'branch"')) and not rest.strip()
        if not skipping:
            kept.append(raw)
    return hashlib.sha256(b"\n".join(kept)).hexdigest()
