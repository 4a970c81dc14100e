"""git: the one module that talks to git for the engine.

Every call is the ``git`` binary in a subprocess (:func:`run`, :func:`run_ok`, :func:`run_proc`):
worktrees, refs, ``merge-tree``, recovery refs and the plumbing review needs are one short call
each, and this module stays importable without any third-party package (the light CLI path imports
it).  The temporary-index snapshot of a worktree, composed of these calls, is
:mod:`agentdeck.snapshots`.  GitPython is used only through :func:`repo`, imported lazily, where walking a
commit's tree object by object is clearer than parsing ``ls-tree`` (research's evaluation export);
its import (~0.5 s measured here) keeps it off every latency-sensitive path.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeck.errors import MissingTool, NotARepository, Refused, UsageError
from agentdeck.fsutil import FileLock

if TYPE_CHECKING:
    import git as gitpython

TRASH_PREFIX = "refs/agentdeck/trash/"
MIN_GIT = (2, 38)


class GitError(Refused):
    """A git command failed (exit 1 unless re-raised as something else)."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"git {' '.join(args)} failed: {self.stderr or f'exit {returncode}'}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GIT_TERMINAL_PROMPT", "0")
    # Never take an agent's index.lock for a read (status refreshes it opportunistically otherwise).
    env.setdefault("GIT_OPTIONAL_LOCKS", "0")
    env["LC_ALL"] = "C"
    return env


def run(cwd: Path | str, *args: str, check: bool = True, input: str | None = None) -> str:
    """Run ``git ARGS`` in *cwd*; return stdout (stripped of the trailing newline)."""
    try:
        proc = subprocess.run(
            ["git", *_sandbox_guard(cwd), *args], cwd=str(cwd), capture_output=True, text=True, env=_env(), input=input,
        )
    except FileNotFoundError as exc:
        raise MissingTool("git is not installed; install git >= 2.38 and try again") from exc
    if check and proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr)
    return proc.stdout.rstrip("\n")


def run_ok(cwd: Path | str, *args: str) -> bool:
    """True when ``git ARGS`` exits 0 (output discarded)."""
    try:
        return subprocess.run(
            ["git", *_sandbox_guard(cwd), *args], cwd=str(cwd), capture_output=True, env=_env()
        ).returncode == 0
    except FileNotFoundError as exc:
        raise MissingTool("git is not installed; install git >= 2.38 and try again") from exc


def run_proc(
    cwd: Path | str, *args: str, env: dict[str, str] | None = None, input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``git ARGS`` and return the CompletedProcess (never raises on a non-zero exit).

    For callers that need the exit status itself (``merge-tree --write-tree`` exits 1 on
    conflicts) or extra environment (``GIT_INDEX_FILE`` for a temporary index,
    ``GIT_AUTHOR_*`` when replaying commits).  Output is decoded as UTF-8 with
    replacement characters, so patches of files in other encodings never raise.
    """
    full_env = _env()
    if env:
        full_env.update(env)
    try:
        return subprocess.run(
            ["git", *_sandbox_guard(cwd), *args], cwd=str(cwd), capture_output=True, text=True, env=full_env,
            input=input,
            encoding="utf-8", errors="replace",
        )
    except FileNotFoundError as exc:
        raise MissingTool("git is not installed; install git >= 2.38 and try again") from exc


def repo(path: Path | str) -> gitpython.Repo:
    """A GitPython Repo for *path* (imported here, not at the top: it costs ~0.5 s)."""
    import git as gitpython  # lazy on purpose: see the module docstring

    return gitpython.Repo(str(path))


def version() -> tuple[int, int]:
    """git's (major, minor) version."""
    out = run(".", "--version")  # "git version 2.39.5"
    parts = out.split()[2].split(".")
    return int(parts[0]), int(parts[1])


@dataclass(frozen=True)
class Location:
    """Where a repository is, as git reports it for a folder inside it."""

    root: Path  # the main worktree's top level
    common_dir: Path  # the git common directory (.git of the main checkout)


def locate(cwd: Path) -> Location:
    """The main checkout and common dir of the repository around *cwd* (one git call).

    :func:`agentdeck.paths.find_repo` builds the repository's locations from this answer.
    """
    if not cwd.is_dir():
        raise NotARepository(f"{cwd} is not a directory; run agentdeck inside a git repository")
    proc = run_proc(cwd, "rev-parse", "--show-toplevel", "--git-common-dir")
    if proc.returncode != 0:
        raise NotARepository(
            f"{cwd} is not inside a git repository; cd into one (or run `git init` and make a first commit)"
        )
    toplevel, common = proc.stdout.strip().splitlines()
    common_path = Path(common)
    if not common_path.is_absolute():
        common_path = (Path(toplevel) if not (cwd / common).exists() else cwd) / common
    common_path = common_path.resolve()
    # The main worktree is the parent of the common dir for a normal repository.
    root = common_path.parent if common_path.name == ".git" else Path(toplevel).resolve()
    return Location(root=root.resolve(), common_dir=common_path)


def head_commit(cwd: Path | str, rev: str = "HEAD") -> str | None:
    """The commit id *rev* names (a branch, tag, commit or ``HEAD``), or None (one git call)."""
    proc = run_proc(cwd, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    out = proc.stdout.strip()
    return out if proc.returncode == 0 and out else None


def current_branch(cwd: Path | str) -> str | None:
    """The checked-out branch name, or None when HEAD is detached."""
    out = run(cwd, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return out or None


def branch_exists(cwd: Path | str, branch: str) -> bool:
    return run_ok(cwd, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}")


def is_valid_branch_name(cwd: Path | str, branch: str) -> bool:
    return run_ok(cwd, "check-ref-format", "--branch", branch)


def resolve_base(cwd: Path | str, base: str | None) -> tuple[str, str]:
    """(base branch name or rev, base commit). Default: the current branch's HEAD."""
    if base is None:
        commit = head_commit(cwd)
        if commit is None:
            raise UsageError("this repository has no commits yet; make a first commit (git commit) and try again")
        branch = current_branch(cwd)
        return (branch or commit), commit
    commit = head_commit(cwd, base)
    if commit is None:
        raise UsageError(f"base {base!r} is not a branch, tag or commit of this repository; check `git branch -a`")
    return base, commit


@dataclass
class WorktreeInfo:
    path: Path
    head: str
    branch: str | None
    prunable: bool = False  # git's admin entry points at a folder (or .git file) that is gone


def list_worktrees(cwd: Path | str) -> list[WorktreeInfo]:
    """Every worktree git knows for the repository of *cwd*, the main one first."""
    out = run(cwd, "worktree", "list", "--porcelain")
    items: list[WorktreeInfo] = []
    current: dict[str, str] = {}
    for line in [*out.splitlines(), ""]:
        if not line:
            if current.get("worktree"):
                branch = current.get("branch", "")
                items.append(
                    WorktreeInfo(
                        Path(current["worktree"]), current.get("HEAD", ""),
                        branch.removeprefix("refs/heads/") if branch else None,
                        prunable="prunable" in current,
                    )
                )
            current = {}
            continue
        key, _, value = line.partition(" ")
        current[key] = value
    return items


def find_checkout(root: Path | str, branch: str) -> Path | None:
    """The worktree that has *branch* checked out, if any."""
    for info in list_worktrees(root):
        if info.branch == branch:
            return info.path
    return None


#: In the git common directory: held while a worktree is added (see :func:`add_worktree`).
WORKTREE_LOCK = "agentdeck-worktree-add.lock"


def add_worktree(cwd: Path | str, path: Path, branch: str, base_commit: str) -> None:
    """Create *branch* at *base_commit* and check it out at *path* (one git call).

    One at a time per repository (an flock in the git common directory): while it adds a
    worktree, git reads every other worktree's admin files, and dies on one that a concurrent
    ``worktree add`` is still writing ("failed to read .git/worktrees/X/commondir") - after it
    has already made the branch."""
    common = Path(run(cwd, "rev-parse", "--path-format=absolute", "--git-common-dir").strip())
    with FileLock(common / WORKTREE_LOCK, timeout=300):
        run(cwd, "worktree", "add", "--quiet", "-b", branch, str(path), base_commit)


def worktree_health(path: Path | str, common_dir: Path) -> str:
    """``ok``, ``missing`` or ``broken`` for the worktree folder *path* of the repository whose git
    common directory is *common_dir*.

    ``broken`` is a folder that is no longer a working worktree of this repository: its ``.git``
    file is gone (a removal killed half way: git deletes the files first) or git no longer takes
    it for one of this repository's worktrees.  Git is never run in such a folder for anything
    else: a worktree folder inside the main checkout would otherwise answer for the main checkout.
    """
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return "missing"
    if p.is_symlink() or not p.is_dir() or not (p / ".git").is_file():
        return "broken"
    out = run(p, "rev-parse", "--path-format=absolute", "--show-toplevel", "--git-common-dir", check=False)
    lines = out.splitlines()
    if len(lines) != 2:
        return "broken"
    try:
        same = Path(lines[0]).resolve() == p.resolve() and Path(lines[1]).resolve() == common_dir.resolve()
    except OSError:
        return "broken"
    return "ok" if same else "broken"


def remove_worktree(cwd: Path | str, path: Path, force: bool = False) -> None:
    args = ["worktree", "remove"]
    if force:
        args += ["--force", "--force"]
    run(cwd, *args, str(path))


def delete_branch(cwd: Path | str, branch: str) -> None:
    run(cwd, "branch", "-D", branch)


def prune_worktrees(cwd: Path | str) -> None:
    run(cwd, "worktree", "prune", check=False)


def commits_beyond(cwd: Path | str, branch: str, base_commit: str) -> int:
    out = run(cwd, "rev-list", "--count", f"{base_commit}..refs/heads/{branch}", check=False)
    return int(out) if out.isdigit() else 0


def tree_of(cwd: Path | str, commit: str) -> str:
    """The tree id of *commit*."""
    return run(cwd, "rev-parse", f"{commit}^{{tree}}")


def is_ancestor(cwd: Path | str, older: str, newer: str) -> bool:
    return run_ok(cwd, "merge-base", "--is-ancestor", older, newer)


def merge_base(cwd: Path | str, a: str, b: str) -> str | None:
    out = run(cwd, "merge-base", a, b, check=False).strip()
    return out.splitlines()[0] if out else None


def changed_paths(cwd: Path | str, old: str, new: str) -> list[str]:
    """Every path that differs between two tree-ishes (renames as delete + add)."""
    out = run(cwd, "diff-tree", "-r", "--no-renames", "--name-only", "-z", old, new)
    return [p for p in out.split("\0") if p]


def commit_tree(cwd: Path | str, tree: str, parent: str | None, message: str,
                env: dict[str, str] | None = None) -> str:
    """A new commit of *tree* on *parent* (none: a root commit), referenced by nothing."""
    args = ["commit-tree", tree, *(["-p", parent] if parent else []), "-m", message]
    proc = run_proc(cwd, *args, env=env)
    if proc.returncode != 0:
        raise GitError(args, proc.returncode, proc.stderr)
    return proc.stdout.strip()


def status_porcelain(worktree: Path | str, ignore: set[str] | None = None, untracked: bool = True) -> list[str]:
    """Changed paths in a worktree (untracked files too unless *untracked* is False), minus *ignore*
    (copied setup files). Never takes the worktree's index lock (``GIT_OPTIONAL_LOCKS=0``)."""
    out = run(worktree, "status", "--porcelain=v1", "-z", f"--untracked-files={'all' if untracked else 'no'}")
    paths = []
    entries = out.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            i += 1  # the source path follows
        if ignore and path in ignore:
            continue
        paths.append(path)
    return paths


def keep_recovery_commit(cwd: Path | str, label: str, commit: str, branch: str) -> str:
    """Store *commit* under a new ``refs/agentdeck/trash/<label>/<stamp>`` ref; returns the ref."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    ref = f"{TRASH_PREFIX}{label}/{stamp}"
    n = 1
    while run_ok(cwd, "show-ref", "--verify", "--quiet", ref):
        n += 1
        ref = f"{TRASH_PREFIX}{label}/{stamp}-{n}"
    run(cwd, "update-ref", "-m", f"agentdeck recovery of {branch}", ref, commit)
    return ref


def list_recovery_refs(cwd: Path | str) -> list[dict[str, str]]:
    out = run(
        cwd, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(creatordate:iso-strict)%00%(subject)",
        TRASH_PREFIX,
    )
    refs = []
    for line in out.splitlines():
        name, sha, date, subject = line.split("\0")
        refs.append({"ref": name, "commit": sha, "date": date, "subject": subject})
    return refs


def apply_snapshot(worktree: Path, base: str, snapshot: str) -> None:
    """Recreate the uncommitted work captured by :func:`agentdeck.snapshots.snapshot_commit` as
    uncommitted work (a binary patch: bytes in and out, hence a subprocess of its own)."""
    guard = _sandbox_guard(worktree)
    patch = subprocess.run(["git", *guard, "diff", "--binary", base, snapshot], cwd=str(worktree), env=_env(),
                           capture_output=True, check=True).stdout
    if patch:
        proc = subprocess.run(["git", *guard, "apply", "--whitespace=nowarn", "-"], cwd=str(worktree), env=_env(),
                              input=patch, capture_output=True)
        if proc.returncode != 0:
            raise GitError(["apply"], proc.returncode, proc.stderr.decode(errors="replace"))


def snapshot_remains(common_dir: Path, folder: Path, parent: str, exclude: set[str] | None = None) -> str:
    """A commit over *parent* of the files still in *folder*, a worktree folder that is no longer a
    working worktree (a removal killed half way).  Added and changed files are captured; files
    already deleted stay as they are in *parent* (``add --ignore-removal``): what remains is saved,
    the removal is not recorded as the agent's work.  Runs with ``GIT_DIR`` set to the common
    directory and a temporary index, so git never looks for a repository around *folder*.
    Returns *parent* when nothing differs from it.
    """
    tmp_index = Path(common_dir) / f"agentdeck-remains-{os.getpid()}.index"
    env = _env()
    env.update(GIT_DIR=str(common_dir), GIT_WORK_TREE=str(folder), GIT_INDEX_FILE=str(tmp_index))
    env.pop("GIT_OPTIONAL_LOCKS", None)

    def git_(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=str(folder), env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise GitError(list(args), proc.returncode, proc.stderr)
        return proc.stdout.strip()

    try:
        git_("read-tree", parent)
        git_("add", "--ignore-removal", "--", ".")
        if exclude:
            git_("rm", "-q", "--cached", "--ignore-unmatch", "--", *sorted(exclude))
        tree = git_("write-tree")
    finally:
        tmp_index.unlink(missing_ok=True)
    if tree == run(common_dir, "rev-parse", f"{parent}^{{tree}}"):
        return parent
    return run(common_dir, "commit-tree", tree, "-p", parent, "-m",
               "agentdeck: files left in a half-removed worktree")


def _sandbox_guard(cwd: Path | str) -> list[str]:
    """git's global options for a command in *cwd* when it lies in a sandboxed agent's worktree
    (explicit ``--git-dir``/``--work-tree``, ``core.fsmonitor`` and hooks off, submodules
    ignored: the worktree's files are the agent's), else ``[]``; see
    :func:`agentdeck.sandbox.agent_bwrap.guard` (one ``stat`` per call when none is sandboxed)."""
    from agentdeck.sandbox.agent_bwrap import guard

    return guard(cwd)
