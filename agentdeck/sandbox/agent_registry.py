"""The user's list of sandboxed worktrees: which folder belongs to which agent's sandbox.

Every worktree with a ``bwrap`` sandbox is listed in one user-level file (:func:`registry_path`,
in agentdeck's user data folder, hidden from every sandbox): worktree -> its admin folder, the
sandbox's folder, its branch, the main repository.  :func:`update` adds or drops an entry
(under a lock); :func:`holding` finds the entries whose worktree holds a path, read through a
cache that costs one ``stat`` while the file is unchanged (git asks for every command:
:func:`agentdeck.sandbox.agent_hostgit.guard`).

Standard library only.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from agentdeck.sandbox.agent_fs import write_host_file
from agentdeck.sandbox.agent_record import AgentSandbox, load_record

_cache: dict[str, object] = {"key": None, "map": {}}


def registry_path() -> Path:
    """The user's list of sandboxed worktrees (worktree -> admin folder), read by
    :func:`agentdeck.sandbox.agent_hostgit.guard`; in agentdeck's user data folder (hidden from
    every sandbox)."""
    from agentdeck import paths

    return paths.user_data_dir() / "sandboxed-worktrees.json"


def entries() -> dict[str, dict[str, str]]:
    """worktree -> its entry (``admin``, ``root``, ``branch``, ``common``, ``repo_root``); {} when
    no worktree is sandboxed (cheap then: one ``stat``)."""
    path = registry_path()
    try:
        st = os.stat(path)
    except OSError:
        return {}
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    if _cache["key"] != key:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        _cache["map"] = {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("admin"), str)}
        _cache["key"] = key
    return _cache["map"]  # type: ignore[return-value]


def update(worktree: Path, sb: AgentSandbox | None) -> None:
    """List *worktree* as *sb*'s, or (*sb* None) drop it from the list."""
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if sb is None:
            data.pop(str(worktree), None)
        else:
            data[str(worktree)] = {"admin": str(sb.admin_dir), "root": str(sb.root), "branch": sb.branch,
                                   "common": str(sb.common_dir), "repo_root": str(sb.repo_root)}
        write_host_file(path, json.dumps(data, indent=1, sort_keys=True) + "\n", 0o600)
    finally:
        os.close(fd)


def inside(here: str, folder: str) -> bool:
    """Whether path *here* (real) is *folder* or lies below it."""
    return here == folder or here.startswith(folder.rstrip("/") + "/")


def holding(cwd: Path | str) -> Iterator[tuple[str, dict[str, str]]]:
    """(worktree, entry) for each sandboxed worktree that holds *cwd*, in the list's order."""
    reg = entries()
    if not reg:
        return
    here = os.path.realpath(cwd)
    for wt, entry in reg.items():
        if inside(here, wt):
            yield wt, entry


def for_worktree(cwd: Path | str) -> AgentSandbox | None:
    """The sandbox of the agent whose worktree holds *cwd* (from the user-level registry), None
    when *cwd* lies in no sandboxed worktree (cheap then: one ``stat``)."""
    for _wt, entry in holding(cwd):
        return load_record(Path(entry["root"]))
    return None
