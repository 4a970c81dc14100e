"""The agent's own git repository, and bringing its branch back to the host.

Inside its sandbox an agent commits to a repository of its own (``<sandbox>/git``, objects in
``<sandbox>/objects`` with the main repository's object store as an alternate):
:func:`make_repository` builds it at the first launch (its branch at the host's tip, the other
branches and tags as a snapshot).  Its branch comes back on the host with :func:`sync_back`
(the engine calls it before it reads the branch: diff, commit list, merge, radar): the new
objects are copied into the main object store and ``refs/heads/<branch>`` is fast-forwarded;
a diverged branch is left alone and reported.  :func:`follow_host` moves the agent's branch
after agentdeck moved the host's; :func:`keep_tip` / :func:`unsaved_tip` save an agent's own
tip before its sandbox goes.

The agent's repository is never used as a git directory on the host (its config is the
agent's): only its branch's ref file is read (no symlinks followed, the value checked) and its
objects (as an alternate object directory, re-hashed on import).  Git runs on the main
repository itself (its own config only: trusted).

Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from agentdeck.errors import Refused, UsageError
from agentdeck.sandbox.agent_fs import read_agent_file, write_agent_file
from agentdeck.sandbox.agent_hostgit import host_git_argv, host_git_env
from agentdeck.sandbox.agent_record import AgentSandbox, load_record, locked
from agentdeck.sandbox.agent_registry import entries, inside

_HEX = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


# ----------------------------------------------------------------------------- public API
def sync_back(sandbox: AgentSandbox) -> str:
    """Bring the agent's branch back into the main repository (host side; safe to call often).

    Returns ``"same"`` (nothing new), ``"fast-forward"`` (the host's ``refs/heads/<branch>``
    moved to the agent's tip, its new objects copied into the main object store, the host's
    index of the worktree reset to it) or ``"diverged"`` (the host's branch is not an ancestor
    of the agent's: left alone; the caller may say so).  Reads only the agent's ref file (no
    symlinks followed, the value checked) and its objects; never runs git in its repository.
    Raises Refused (one line) when the agent's tip is not a commit in its store.
    """
    with locked(sandbox):
        return sync_locked(sandbox)


def keep_tip(sandbox: AgentSandbox, ref: str) -> str | None:
    """Save the agent's own tip under *ref* in the main repository (e.g. a recovery ref under
    ``refs/agentdeck/trash/`` when :func:`sync_back` said ``diverged`` and the agent is being
    killed): its objects copied, the ref written.  Returns the commit, None when it has none."""
    if not ref.startswith("refs/"):
        raise UsageError(f"{ref!r} is not a full ref name; use refs/...")
    with locked(sandbox):
        tip = agent_tip(sandbox)
        if tip is None or not _is_commit(sandbox, tip):
            return None
        _import_objects(sandbox, tip)
        _git(sandbox.common_dir, "update-ref", "-m", f"agentdeck: {sandbox.name}'s own tip", ref, tip)
        return tip


def unsaved_tip(sandbox: AgentSandbox) -> str | None:
    """The agent's own tip when no ref of the main repository reaches it (commits that live only
    in its sandbox: what :func:`keep_tip` must save before the sandbox is removed), else None.
    Never creates or moves a host ref (unlike :func:`sync_back`: for a sandbox whose branch is
    gone)."""
    with locked(sandbox):
        tip = agent_tip(sandbox)
        if tip is None or not _is_commit(sandbox, tip):
            return None
        left = _git(sandbox.common_dir, "rev-list", "-n1", tip, "--not", "--all",
                    env_extra=_agent_objects(sandbox), check=False)
        return tip if left.returncode == 0 and _out(left) else None


def follow_host(sandbox: AgentSandbox) -> bool:
    """After agentdeck moved the agent's branch on the host (``agentdeck commit`` of its worktree,
    a merge into its branch): move the agent's own branch there too, with the host's index of
    the worktree, when the agent's is an ancestor of it (else nothing: True only when moved).
    Call :func:`sync_back` first; the host's side must be complete (its index matching)."""
    with locked(sandbox):
        before = agent_tip(sandbox)
        follow_host_locked(sandbox)
        return agent_tip(sandbox) != before


def sync_branch(cwd: Path | str, branch: str) -> str | None:
    """:func:`sync_back` for the sandboxed agent (if any) whose branch is *branch* in the
    repository of *cwd* (a checkout or its git directory): for code that reads a branch by name
    (review's ``branch_tip``).  None when no sandbox has that branch; cheap then (one ``stat``)."""
    reg = entries()
    if not reg:
        return None
    for entry in reg.values():
        if entry.get("branch") != branch:
            continue
        here = os.path.realpath(cwd)
        roots = [entry.get("common", ""), entry.get("repo_root", "")]
        if not any(r and inside(here, r) for r in roots):
            continue
        sb = load_record(Path(entry["root"]))
        return sync_back(sb) if sb is not None else None
    return None


def admin_dir(common: Path, worktree: Path) -> Path:
    """The admin folder of *worktree*, from the main repository's own records (its ``gitdir``
    files), never from the worktree's ``.git`` file.  Raises Refused when there is none."""
    want = str(worktree / ".git")
    base = common / "worktrees"
    try:
        names = sorted(os.listdir(base))
    except OSError:
        names = []
    for name in names:
        try:
            recorded = (base / name / "gitdir").read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if os.path.realpath(recorded) == want or recorded == want:
            return base / name
    raise Refused(f"{worktree} is not a worktree of {common}; recreate the agent with `agentdeck restart`")


# ----------------------------------------------------------------------------- with the lock held
def agent_tip(sb: AgentSandbox) -> str | None:
    """The agent's ``refs/heads/<branch>`` in its own repository (loose, else packed)."""
    rel = f"refs/heads/{sb.branch}"
    raw = read_agent_file(sb.git_dir, rel)
    if raw is not None:
        value = raw.decode("ascii", "replace").strip()
        return value if _HEX.match(value) else None
    packed = read_agent_file(sb.git_dir, "packed-refs", limit=64 << 20)
    if packed is None:
        return None
    for line in packed.decode("utf-8", "replace").splitlines():
        fields = line.split(" ", 1)
        if len(fields) == 2 and fields[1] == rel and _HEX.match(fields[0]):
            return fields[0]
    return None


def make_repository(sb: AgentSandbox) -> None:
    """The agent's own git repository (see the module docstring)."""
    common = sb.common_dir
    tip = _host_tip(sb)
    if tip is None:
        raise Refused(f"branch {sb.branch} does not exist in {common}; recreate the agent")
    git = sb.git_dir
    for sub in ("refs/heads", "refs/tags", "info", "logs/refs/heads"):
        (git / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("info", "pack"):
        (sb.objects_dir / sub).mkdir(parents=True, exist_ok=True)
    os.symlink("../objects", git / "objects")
    (git / "HEAD").write_text(f"ref: refs/heads/{sb.branch}\n")
    fmt = _out(_git(common, "config", "--get", "core.repositoryformatversion", check=False)) or "0"
    objfmt = _out(_git(common, "config", "--get", "extensions.objectformat", check=False))
    lines = ["[core]", f"\trepositoryformatversion = {fmt}", "\tfilemode = true", "\tbare = false",
             "\tlogallrefupdates = true"]
    if objfmt:
        lines += ["[extensions]", f"\tobjectformat = {objfmt}"]
    ident = []
    for key in ("name", "email"):
        value = _out(_git(common, "config", "--get", f"user.{key}", check=False))
        if value and "\n" not in value:
            ident.append(f"\t{key} = {json.dumps(value, ensure_ascii=False)}")
    if ident:
        lines += ["[user]", *ident]
    (git / "config").write_text("\n".join(lines) + "\n")
    # The other branches and tags as they are now (read-only in effect: never brought back).
    refs = _out(_git(common, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"))
    packed = ["# pack-refs with: peeled fully-peeled sorted "]
    packed += [line for line in refs.splitlines() if line and not line.endswith(f" refs/heads/{sb.branch}")]
    (git / "packed-refs").write_text("\n".join(packed) + "\n")
    write_agent_file(git, f"refs/heads/{sb.branch}", f"{tip}\n".encode(), 0o644)
    with contextlib.suppress(OSError):
        shutil.copyfile(common / "info" / "exclude", git / "info" / "exclude")
    if (sb.admin_dir / "index").is_file():
        shutil.copyfile(sb.admin_dir / "index", git / "index")
    (git / "description").write_text("agentdeck sandbox\n")


def follow_host_locked(sb: AgentSandbox) -> None:
    """On restart: when the host's branch is ahead of the agent's (agentdeck moved it on the
    host), the agent's follows, with the host's index of the worktree."""
    host, agent = _host_tip(sb), agent_tip(sb)
    if host is None or host == agent:
        return
    env = _agent_objects(sb)
    if agent is not None and _git(sb.common_dir, "merge-base", "--is-ancestor", agent, host,
                                  env_extra=env, check=False).returncode != 0:
        return  # diverged: the agent's own history stays; sync_back reports it
    write_agent_file(sb.git_dir, f"refs/heads/{sb.branch}", f"{host}\n".encode(), 0o644)
    if (sb.admin_dir / "index").is_file():
        write_agent_file(sb.git_dir, "index", (sb.admin_dir / "index").read_bytes(), 0o644)


def sync_locked(sb: AgentSandbox) -> str:
    """:func:`sync_back` with the sandbox's lock held (as :func:`~agentdeck.sandbox.agent_bwrap.prepare`
    holds it on restart)."""
    tip = agent_tip(sb)
    host = _host_tip(sb)
    if tip is None or tip == host:
        return "same"
    if not _is_commit(sb, tip):
        raise Refused(f"{sb.name}'s branch {sb.branch} points at {tip[:12]}, which is not a commit in its "
                      f"repository; look at it with `agentdeck peek {sb.name}`")
    if host is not None and _git(sb.common_dir, "merge-base", "--is-ancestor", host, tip,
                                 env_extra=_agent_objects(sb), check=False).returncode != 0:
        return "diverged"
    _import_objects(sb, tip)
    _git(sb.common_dir, "update-ref", "-m", f"agentdeck: sync from {sb.name}'s sandbox",
         f"refs/heads/{sb.branch}", tip, host or "0" * len(tip))
    # The host's index of the worktree follows the branch (stat data kept where unchanged).
    if (sb.admin_dir / "HEAD").exists():
        head = _out(subprocess.run([*host_git_argv(sb), "symbolic-ref", "-q", "HEAD"], capture_output=True,
                                   env=host_git_env(), cwd=str(sb.admin_dir)))
        if head == f"refs/heads/{sb.branch}":
            subprocess.run([*host_git_argv(sb), "reset", "-q", "--no-refresh"], capture_output=True,
                           env=host_git_env(), cwd=str(sb.admin_dir))
    return "fast-forward"


# ----------------------------------------------------------------------------- internals
def _import_objects(sb: AgentSandbox, tip: str) -> None:
    """Copy into the main object store what *tip* needs and no host ref reaches: packed with the
    agent's store as an alternate, unpacked without it (so each object is hashed and really copied)."""
    env = _agent_objects(sb)
    listing = _git(sb.common_dir, "rev-list", "--objects", tip, "--not", "--all", env_extra=env).stdout
    if listing.strip():
        pack = _git(sb.common_dir, "pack-objects", "--stdout", "-q", env_extra=env, input=listing).stdout
        _git(sb.common_dir, "unpack-objects", "-q", "--strict", input=pack)


def _is_commit(sb: AgentSandbox, sha: str) -> bool:
    """Whether *sha* names a commit in the main object store or the agent's."""
    kind = _out(_git(sb.common_dir, "cat-file", "-t", sha, env_extra=_agent_objects(sb), check=False))
    return kind == "commit"


def _agent_objects(sb: AgentSandbox) -> dict[str, str]:
    """The environment that lets git on the main repository read the agent's objects (as an
    alternate: nothing is copied)."""
    return {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(sb.objects_dir)}


def _git(common: Path, *args: str, env_extra: Mapping[str, str] | None = None, input: bytes | None = None,
         check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """git on the main repository itself (its own config only: trusted)."""
    env = host_git_env()
    env.update(env_extra or {})
    # The agent's store is read as an alternate: none of its side files (commit-graph,
    # multi-pack-index) is trusted; every object copied is hashed again by unpack-objects.
    argv = ["git", f"--git-dir={common}", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null",
            "-c", "core.commitGraph=false", "-c", "core.multiPackIndex=false", *args]
    proc = subprocess.run(argv, capture_output=True, env=env, input=input, cwd=str(common))
    if check and proc.returncode != 0:
        from agentdeck.git import GitError

        raise GitError(list(args), proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode("utf-8", "replace").strip()


def _host_tip(sb: AgentSandbox) -> str | None:
    proc = _git(sb.common_dir, "rev-parse", "-q", "--verify", f"refs/heads/{sb.branch}^{{commit}}", check=False)
    return _out(proc) or None
