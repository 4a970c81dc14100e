"""One agent's ``bwrap`` sandbox as a record: its folder's layout, where it lives, reading it back.

An :class:`AgentSandbox` is kept in ``<state dir>/sandboxes/<slug>/`` (:func:`sandbox_root`),
its record in :data:`RECORD` there; :func:`load` / :func:`load_at` read it back (None without
one).  :func:`locked` is the folder's lock (``sync.lock``), held by whatever changes the
agent's repository from the host (:mod:`agentdeck.sandbox.agent_repo`) or the folder
(:func:`agentdeck.sandbox.agent_bwrap.prepare`).  The layout itself is described in
:mod:`agentdeck.sandbox.agent_bwrap`.

Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

#: Where the sandboxes of a repository live, under its state directory.
SANDBOXES = "sandboxes"
#: The record of one sandbox, in its folder (host only).
RECORD = "sandbox.json"
#: The sandbox's token in the worktree's admin folder (host only; gone with the worktree).
TOKEN_FILE = "agentdeck-sandbox"


class _Below:
    """A sub-folder of the sandbox's folder (``root / name``), read as a ``Path`` attribute."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, sb: Any, owner: Any = None) -> Path:
        return Path(sb.root) / self.name


@dataclass(frozen=True)
class AgentSandbox:
    """One agent's sandbox (see :mod:`agentdeck.sandbox.agent_bwrap` for the folder's layout)."""

    name: str
    slug: str
    kind: str
    worktree: Path
    branch: str
    network: bool
    root: Path
    """``<state dir>/sandboxes/<slug>``: host only, never writable inside."""
    common_dir: Path
    """The main repository's git common directory."""
    admin_dir: Path
    """The worktree's admin folder in the main repository (``<common>/worktrees/<id>``): the
    ``GIT_DIR`` of every host git command on this worktree."""
    repo_root: Path
    """The main checkout (hidden inside)."""
    token: str = ""
    """Also written in the worktree's admin folder (:data:`TOKEN_FILE`): a sandbox whose token is
    not there belongs to an earlier worktree of the same name and is started afresh."""

    # The folders of the layout (not fields: they follow ``root``).
    home = _Below("home")
    git_dir = _Below("git")
    objects_dir = _Below("objects")
    dotgit = _Below("dotgit")

    @property
    def state_dir(self) -> Path:
        return self.common_dir / "agentdeck"

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


def sandbox_root(repo: Any, name: str) -> Path:
    """Where agent *name*'s sandbox lives (whether or not it exists)."""
    from agentdeck.paths import slugify

    return Path(repo.state_dir) / SANDBOXES / slugify(name)


def load(repo: Any, name: str) -> AgentSandbox | None:
    """The sandbox :func:`~agentdeck.sandbox.agent_bwrap.prepare` made for agent *name*, None
    when it has none."""
    return load_record(sandbox_root(repo, name))


def load_at(root: Path) -> AgentSandbox | None:
    """The sandbox whose folder is *root* (``<state dir>/sandboxes/<slug>``), None without a
    record; its ``root`` is *root* whatever the record says (a folder moved or copied there)."""
    sb = load_record(Path(root))
    if sb is None:
        return None
    return replace(sb, root=Path(os.path.realpath(root)))


def load_record(root: Path) -> AgentSandbox | None:
    """The record in folder *root* as it was written (its ``root`` included), None without one."""
    try:
        data = json.loads((root / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        return AgentSandbox(
            name=data["name"], slug=data["slug"], kind=data["kind"], worktree=Path(data["worktree"]),
            branch=data["branch"], network=bool(data["network"]), root=Path(data["root"]),
            common_dir=Path(data["common_dir"]), admin_dir=Path(data["admin_dir"]),
            repo_root=Path(data["repo_root"]), token=str(data.get("token", "")))
    except (KeyError, TypeError):
        return None


@contextlib.contextmanager
def locked(sb: AgentSandbox) -> Iterator[None]:
    """Hold the sandbox folder's ``sync.lock`` (host only; made with the folder when missing)."""
    sb.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(sb.root / "sync.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
