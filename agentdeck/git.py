"""git: the one module that talks to git for the engine (GitPython underneath).

Worktrees, branches, recovery refs.  Subsystems with larger git needs (review,
research) run their commands through :func:`run` / :func:`repo` here, so every
call shares the same error handling and environment.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from agentdeck.errors import MissingTool, NotARepository, Refused, UsageError

TRASH_PREFIX = "refs/agentdeck/trash/"
MIN_GIT = (2, 38)


class GitError(Refused):
    """A git command failed (exit 1 unless re-raised as something else)."""

    def __init__(self, args: list[str], returncode: int, stderr: str):
        self.args_ = args
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
            ["git", *args], cwd=str(cwd), capture_output=True, text=True, env=_env(), input=input,
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
            ["git", *args], cwd=str(cwd), capture_output=True, env=_env()
        ).returncode == 0
    except FileNotFoundError as exc:
        raise MissingTool("git is not installed; install git >= 2.38 and try again") from exc


def repo(path: Path | str):
    """A GitPython Repo for *path* (imported lazily: it costs start-up time)."""
    import git as gitpython

    return gitpython.Repo(str(path))


def version() -> tuple[int, int]:
    out = run(".", "--version")  # "git version 2.39.5"
    parts = out.split()[2].split(".")
    return int(parts[0]), int(parts[1])


def repo_paths(cwd: Path):
    """Resolve the main checkout, common dir and current toplevel for *cwd*."""
    from agentdeck.paths import RepoPaths

    if not cwd.is_dir():
        raise NotARepository(f"{cwd} is not a directory; run agentdeck inside a git repository")
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "--git-common-dir"],
            cwd=str(cwd), capture_output=True, text=True, env=_env(),
        )
    except FileNotFoundError as exc:
        raise MissingTool("git is not installed; install git >= 2.38 and try again") from exc
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
    return RepoPaths(root=root.resolve(), common_dir=common_path, cwd_toplevel=Path(toplevel).resolve())


def head_commit(cwd: Path | str, rev: str = "HEAD") -> str | None:
    if not run_ok(cwd, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"):
        return None
    return run(cwd, "rev-parse", "--verify", f"{rev}^{{commit}}")


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
    for line in out.splitlines() + [""]:
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


def add_worktree(cwd: Path | str, path: Path, branch: str, base_commit: str) -> None:
    """Create *branch* at *base_commit* and check it out at *path* (one git call)."""
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


def save_recovery_ref(cwd: Path | str, label: str, worktree: Path | None, branch: str,
                      exclude: set[str] | None = None) -> str:
    """Keep the branch tip *and* uncommitted work of *worktree* under refs/agentdeck/trash/.

    Uncommitted work (tracked and untracked files) is captured as a commit on top
    of the branch tip without touching the worktree or its index (a temporary
    index file).  Files in *exclude* (copied setup files such as ``.env``) are
    left out of the snapshot.  Returns the ref name.
    """
    tip = head_commit(cwd, f"refs/heads/{branch}") if branch_exists(cwd, branch) else None
    commit = tip
    if worktree is not None and Path(worktree).is_dir():
        parent = head_commit(worktree) or tip
        if parent:
            commit = snapshot_commit(worktree, parent, exclude=exclude)
    if commit is None:
        raise Refused(f"nothing to save for {label}: no branch {branch!r} and no worktree")
    return keep_recovery_commit(cwd, label, commit, branch)


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


# --------------------------------------------------------------------------- added by review (issue 5)
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
            ["git", *args], cwd=str(cwd), capture_output=True, text=True, env=full_env, input=input,
            encoding="utf-8", errors="replace",
        )
    except FileNotFoundError as exc:
        raise MissingTool("git is not installed; install git >= 2.38 and try again") from exc


def snapshot_commit(worktree: Path | str, parent: str, exclude: set[str] | None = None) -> str:
    """A commit of *worktree*'s files (tracked and untracked) on top of *parent*, made through a
    temporary index; the worktree and its index are untouched.  Returns *parent* when clean."""
    if not status_porcelain(worktree, ignore=exclude):
        return parent
    index = Path(run(worktree, "rev-parse", "--git-path", "index"))
    if not index.is_absolute():
        index = Path(worktree) / index
    tmp_index = index.with_name(f"agentdeck-snap-{os.getpid()}.index")
    env = _env()
    env["GIT_INDEX_FILE"] = str(tmp_index)
    try:
        for args in (["read-tree", parent], ["add", "-A", "."]):
            subprocess.run(["git", *args], cwd=str(worktree), env=env, check=True, capture_output=True)
        if exclude:
            subprocess.run(["git", "rm", "-q", "--cached", "--ignore-unmatch", "--", *sorted(exclude)],
                           cwd=str(worktree), env=env, check=True, capture_output=True)
        tree = subprocess.run(["git", "write-tree"], cwd=str(worktree), env=env, check=True,
                              capture_output=True, text=True).stdout.strip()
    finally:
        tmp_index.unlink(missing_ok=True)
    return run(worktree, "commit-tree", tree, "-p", parent, "-m", "agentdeck: snapshot of uncommitted work")


def apply_snapshot(worktree: Path, base: str, snapshot: str) -> None:
    """Recreate the uncommitted work captured by :func:`snapshot_commit` as uncommitted work."""
    patch = subprocess.run(["git", "diff", "--binary", base, snapshot], cwd=str(worktree), env=_env(),
                           capture_output=True, check=True).stdout
    if patch:
        proc = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=str(worktree), env=_env(),
                              input=patch, capture_output=True)
        if proc.returncode != 0:
            raise GitError(["apply"], proc.returncode, proc.stderr.decode(errors="replace"))


# --------------------------------------------------------------------------- half-removed worktrees (issue 12)
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
