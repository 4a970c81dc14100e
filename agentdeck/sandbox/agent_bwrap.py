"""The ``bwrap`` sandbox for agents: full autonomy that can only touch its own worktree.

One agent = one :class:`AgentSandbox`, kept in ``<state dir>/sandboxes/<slug>/``
(a folder the agent cannot change as a whole: only the sub-folders below are
bound writable into its sandbox)::

    home/       the agent's HOME (writable inside): the CLI's state *copied* in
                (credentials, config), never the user's real ~/.claude or ~/.codex
    git/        the agent's own git directory (writable inside): HEAD, config,
                refs (its branch, a snapshot of the others), index, logs;
                ``git/objects`` is a symlink to ``../objects``
    objects/    the agent's own object store (writable inside); its
                ``info/alternates`` (read-only inside, and ``info/`` cannot be
                moved: both are mount points) names the main repository's
                object store, itself read-only inside
    dotgit      "gitdir: <sandbox>/git", bound read-only over the worktree's
                ``.git`` inside the sandbox (the host's ``.git`` file is untouched)
    sync.lock   taken by :func:`sync_back` (host only)

Inside, the agent commits to its own repository; nothing in the main
repository can change (its refs, objects, other worktrees and agentdeck's
state are hidden or read-only).  Its branch comes back on the host with
:func:`sync_back` (the engine calls it before it reads the branch: diff,
commit list, merge, radar): the new objects are copied into the main object
store and ``refs/heads/<branch>`` is fast-forwarded; a diverged branch is left
alone and reported.

Git on the host treats everything the agent could write as hostile (the worktree's ``.git``
file, its config, an index, a nested repository): it runs on a sandboxed worktree with the
host's own records and safe options (:mod:`~agentdeck.sandbox.agent_hostgit`), for any command
whose ``cwd`` lies in one (:func:`guard`, from a user-level list of sandboxed worktrees hidden
from sandboxes: :mod:`~agentdeck.sandbox.agent_registry`; tried: a nested repository the agent
committed as a gitlink, with ``core.fsmonitor`` in its own config, ran that command on the host
on a plain ``git status`` or ``git diff`` in the worktree).

This module is the engine's one door to agent sandboxes: it owns a sandbox's life
(:func:`prepare`, :func:`remove`, :func:`remove_leftover`) and re-exports the parts, each in
its own module:

- :mod:`~agentdeck.sandbox.agent_record` — :class:`AgentSandbox`, the folder's place and
  layout, :func:`load` / :func:`load_at`, the folder's lock;
- :mod:`~agentdeck.sandbox.agent_repo` — the agent's own repository: :func:`sync_back`,
  :func:`sync_branch`, :func:`follow_host`, :func:`keep_tip`, :func:`unsaved_tip`;
- :mod:`~agentdeck.sandbox.agent_hostgit` — git on a sandboxed worktree from the host:
  :func:`host_git`, :func:`host_git_argv`, :func:`host_git_env`, :func:`guard`;
- :mod:`~agentdeck.sandbox.agent_registry` — the user-level list: :func:`registry_path`,
  :func:`for_worktree`;
- :mod:`~agentdeck.sandbox.agent_wrap` — the bubblewrap command line (mounts, environment,
  seccomp filter, loopback bridge): :func:`wrap`, :func:`command_in_worktree`;
- :mod:`~agentdeck.sandbox.agent_home` — the CLI's state copied into the private home;
- :mod:`~agentdeck.sandbox.agent_fs` — the host's reads and writes in folders the agent can
  change (no symlink followed).

The engine's entry points (``sb`` = :func:`prepare` at launch, :func:`load` later; None
means the agent is not sandboxed):

- launch / restart: :func:`prepare` (idempotent), then :func:`wrap` on the CLI's argv;
- before reading the agent's branch: :func:`sync_back` (or :func:`sync_branch` by name);
- after agentdeck moved the branch on the host (``commit``): :func:`follow_host`;
- git on the worktree: :func:`host_git`, :func:`host_git_argv`, :func:`guard`;
- a command on the agent's files (``compare``'s ``test_command``): :func:`command_in_worktree`;
- kill / gc: :func:`sync_back` first (a ``diverged`` agent's own tip: :func:`keep_tip`, when
  :func:`unsaved_tip` says no ref reaches it), then ``remove(sb, sync=False)`` once the worktree
  is gone (no sync then: it would bring back a branch the removal deleted); a folder without a
  record: :func:`remove_leftover`; ``gc`` finds orphans with :func:`load_at`;
- a path in a sandboxed worktree (``commit``): :func:`for_worktree`.

Known limits: with ``network=True`` the host's network namespace is shared (its loopback
services and abstract unix sockets are reachable); folders on ``PATH`` under the hidden
home come back read-only (minus :data:`HOME_SECRETS`); the agent's objects are parsed by
the host's git during :func:`sync_back`.

Standard library only (no textual, no GitPython).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentdeck.errors import Refused
from agentdeck.sandbox.agent_fs import rmtree_forcing, write_agent_file, write_host_file
from agentdeck.sandbox.agent_home import CLI_STATE, copy_cli_state
from agentdeck.sandbox.agent_hostgit import HOST_GIT_CONFIG, guard, host_git, host_git_argv, host_git_env, host_git_for
from agentdeck.sandbox.agent_record import (
    RECORD,
    SANDBOXES,
    TOKEN_FILE,
    AgentSandbox,
    load,
    load_at,
    load_record,
    locked,
    sandbox_root,
)
from agentdeck.sandbox.agent_registry import for_worktree, registry_path
from agentdeck.sandbox.agent_registry import update as update_registry
from agentdeck.sandbox.agent_repo import (
    admin_dir,
    follow_host,
    follow_host_locked,
    keep_tip,
    make_repository,
    sync_back,
    sync_branch,
    sync_locked,
    unsaved_tip,
)
from agentdeck.sandbox.agent_wrap import HOME_SECRETS, UNSET_ENV, bridge_dir, command_in_worktree, wrap


def prepare(repo: Any, name: str, worktree: Path, branch: str, kind: str, network: bool,
            *, source_home: Path | None = None, source_env: Mapping[str, str] | None = None) -> AgentSandbox:
    """Create (or bring up to date, on restart) agent *name*'s sandbox; idempotent.

    *repo*: :class:`agentdeck.paths.RepoPaths`.  *worktree*/*branch*: the agent's worktree (made
    by ``git worktree add`` on the host) and its branch.  *kind*: the adapter kind (what the
    CLI needs in its home: :data:`CLI_STATE`).  *network*: False = loopback only.
    *source_home* / *source_env*: where the CLI's state is copied from (default: this process's
    ``$HOME`` and environment; ``$CODEX_HOME`` and ``$CLAUDE_CONFIG_DIR`` are honoured).

    First call: the folder, the home with the CLI's state copied in, the agent's own git
    repository (its branch at the host's tip, the other branches and tags as a snapshot, the
    worktree's index copied, ``user.name``/``user.email`` from the host's config).  Later calls
    (restart): bring the agent's commits back first (:func:`sync_back`), re-copy the
    credentials (the user may have logged in again), and move the agent's branch to the host's
    when the host's is ahead (agentdeck changed it on the host).  Raises Refused (one line)
    when the worktree is not a worktree of *repo*.
    """
    worktree = Path(os.path.realpath(worktree))
    common = Path(os.path.realpath(repo.common_dir))
    admin = admin_dir(common, worktree)
    from agentdeck.paths import slugify

    root = sandbox_root(repo, name)
    root.parent.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(root.parent)) / root.name
    old = load_record(root)
    try:
        token = (admin / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        token = ""
    fresh = old is None or not token or old.token != token or old.worktree != worktree or old.branch != branch
    if fresh:
        token = secrets.token_hex(8)
    sb = AgentSandbox(name=name, slug=slugify(name), kind=kind, worktree=worktree, branch=branch,
                      network=network, root=root, common_dir=common, admin_dir=admin,
                      repo_root=Path(os.path.realpath(repo.root)), token=token)
    if fresh and sb.root.exists():  # half made (a crash mid-prepare), or an earlier agent's: start again
        shutil.rmtree(sb.root)
    sb.root.mkdir(mode=0o700, exist_ok=True)
    with locked(sb):
        if fresh:
            make_repository(sb)
        else:
            sync_locked(sb)
            follow_host_locked(sb)
        copy_cli_state(sb, source_home, source_env)
        write_host_file(sb.dotgit, f"gitdir: {sb.git_dir}\n")
        write_agent_file(sb.objects_dir, "info/alternates", f"{common / 'objects'}\n".encode(), 0o644)
        write_host_file(sb.root / RECORD, json.dumps(sb.to_json(), indent=1) + "\n")
        write_host_file(admin / TOKEN_FILE, token + "\n")
    update_registry(sb.worktree, sb)
    return sb


def remove(sandbox: AgentSandbox, sync: bool = True) -> None:
    """Delete the sandbox's folder (kill/gc), after a last :func:`sync_back` where it can (the
    agent's commits are then on its branch).  *sync* False skips that sync (the caller synced
    and may have deleted the branch since: a sync would create it again).  Symlinks inside are
    removed, never followed; folders the agent made read-only are opened again to be deleted."""
    if sync and (sandbox.root / RECORD).exists():
        try:
            sync_back(sandbox)
        except Refused:
            pass
    bridge = bridge_dir(sandbox, create=False)
    shutil.rmtree(bridge, ignore_errors=True)
    update_registry(sandbox.worktree, None)
    rmtree_forcing(sandbox.root)


def remove_leftover(folder: Path) -> None:
    """Delete a sandbox folder that has no record left (a removal or a first :func:`prepare`
    interrupted half way): only a real folder directly under a ``sandboxes`` folder."""
    folder = Path(folder)
    if folder.parent.name == SANDBOXES and folder.is_dir() and not folder.is_symlink():
        rmtree_forcing(folder)


__all__ = [
    "CLI_STATE",
    "HOME_SECRETS",
    "HOST_GIT_CONFIG",
    "SANDBOXES",
    "UNSET_ENV",
    "AgentSandbox",
    "command_in_worktree",
    "follow_host",
    "for_worktree",
    "guard",
    "host_git",
    "host_git_argv",
    "host_git_env",
    "host_git_for",
    "keep_tip",
    "load",
    "load_at",
    "prepare",
    "registry_path",
    "remove",
    "remove_leftover",
    "sandbox_root",
    "sync_back",
    "sync_branch",
    "unsaved_tip",
    "wrap",
]
