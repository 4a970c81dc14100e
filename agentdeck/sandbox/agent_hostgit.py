"""Git on the host for a sandboxed worktree: everything the agent could write is hostile.

The worktree's ``.git`` file, its config, an index, a nested repository: all are the agent's.
:func:`host_git` (and :func:`host_git_argv` / :func:`host_git_env`) run git on a sandboxed
worktree with an explicit ``GIT_DIR`` (the worktree's admin folder in the main repository,
found from the host's own records), ``core.fsmonitor`` and hooks off, and submodules ignored
(:data:`HOST_GIT_CONFIG`).  :func:`guard` gives :mod:`agentdeck.git` those options for any
command whose ``cwd`` lies in a sandboxed worktree (from the user-level list,
:mod:`agentdeck.sandbox.agent_registry`).

Standard library only.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentdeck.sandbox.agent_record import TOKEN_FILE, AgentSandbox
from agentdeck.sandbox.agent_registry import holding

#: Options every host git command on a sandboxed worktree gets (config on the command line
#: wins over every file, and reaches git's child processes through GIT_CONFIG_PARAMETERS).
HOST_GIT_CONFIG = (
    "core.fsmonitor=", "core.hooksPath=/dev/null", "core.untrackedCache=false", "core.pager=cat",
    "diff.ignoreSubmodules=all", "status.submoduleSummary=false", "submodule.recurse=false",
)


def host_git_argv(sandbox_or_admin: AgentSandbox | Path, worktree: Path | None = None) -> list[str]:
    """``git --git-dir=ADMIN --work-tree=WT -c core.fsmonitor= -c core.hooksPath=/dev/null ...``:
    the argv prefix of every git command agentdeck runs on a sandboxed worktree on the host."""
    if isinstance(sandbox_or_admin, AgentSandbox):
        admin, wt = sandbox_or_admin.admin_dir, sandbox_or_admin.worktree
    else:
        admin, wt = Path(sandbox_or_admin), Path(worktree or ".")
    argv = ["git", f"--git-dir={admin}", f"--work-tree={wt}"]
    for item in HOST_GIT_CONFIG:
        argv += ["-c", item]
    return argv


def host_git_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for :func:`host_git_argv`: *base* (default: this process's) without any
    ``GIT_*`` variable that could redirect git, plus no prompts and no optional locks."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("GIT_")}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C",
                "GIT_NO_REPLACE_OBJECTS": "1"})
    return env


def host_git(sandbox: AgentSandbox, *args: str, check: bool = True, input: str | None = None) -> str:
    """Run ``git ARGS`` on *sandbox*'s worktree on the host, safely (:func:`host_git_argv`);
    stdout without its last newline.  Raises :class:`agentdeck.git.GitError` when it fails."""
    from agentdeck.git import GitError

    argv = host_git_argv(sandbox)
    proc = subprocess.run([*argv, *args], cwd=str(sandbox.worktree), capture_output=True, text=True,
                          env=host_git_env(), input=input)
    if check and proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr)
    return proc.stdout.rstrip("\n")


def host_git_for(repo: Any, worktree: Path | str) -> list[str] | None:
    """The safe git argv prefix for *worktree* (or a folder in it) when it belongs to a sandboxed
    agent, else None (plain ``git -C``).  For call sites that hold a path; *repo* is unused (the
    user-level registry covers every repository)."""
    extra = guard(worktree)
    return ["git", *extra] if extra else None


def guard(cwd: Path | str) -> list[str]:
    """git's global options for a command run in *cwd*: for a folder inside a sandboxed worktree,
    ``--git-dir``/``--work-tree`` of its host records and :data:`HOST_GIT_CONFIG` (as
    :func:`host_git_argv`, without the leading ``git``); elsewhere ``[]``.  Cheap (one ``stat``
    of the registry while it is unchanged): meant for :mod:`agentdeck.git` to call for every
    command.  An entry whose worktree was removed (its admin folder has no :data:`TOKEN_FILE`)
    no longer counts."""
    for wt, entry in holding(cwd):
        if os.path.exists(os.path.join(entry["admin"], TOKEN_FILE)):
            return host_git_argv(Path(entry["admin"]), Path(wt))[1:]
    return []
