"""Where the memory of a repository lives: its folder and its index database.

An explicit repository (the deck, ``--repo``) decides alone; otherwise the agent's environment
(``AGENTDECK_MEMORY_DIR``, ``AGENTDECK_STATE_DIR``, set in every agent pane) comes first, so every
process an agent starts finds the same store wherever its cwd is; then the repository of the cwd.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdeck import paths
from agentdeck.config import load_config
from agentdeck.errors import UsageError
from agentdeck.memory.notes import ENV_MEMORY_DIR


@dataclass(frozen=True)
class Locations:
    """A store's folder, and the state folder and repository root it belongs to (None when unknown)."""

    memory_dir: Path
    state_dir: Path | None
    repo_root: Path | None

    @property
    def index_path(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir / "memory-index.db"
        return self.memory_dir / ".cache" / "index.db"


def memory_dir_for(repo_root: Path | None, state_dir: Path, configured: str) -> Path:
    """``[memory] dir`` (relative = from the repository root) or ``<state dir>/memory``."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_absolute():
            if repo_root is None:
                raise UsageError(
                    f"[memory] dir {configured!r} is relative but the repository root is unknown; "
                    "use an absolute path or run inside the repository"
                )
            path = repo_root / path
        return path.absolute()
    return state_dir / "memory"


def locate(cwd: str | os.PathLike[str] | None = None, repo: Any = None, config: Any = None) -> Locations:
    """Where the memory of a repository lives.

    An explicit *repo* (RepoPaths: the deck, ``--repo``) decides alone.  Otherwise
    the agent's environment comes first, so every process an agent starts finds
    the same store wherever its cwd is: ``AGENTDECK_MEMORY_DIR``, then
    ``AGENTDECK_STATE_DIR`` (both set for agents by their launch); then the
    repository containing *cwd*.
    """
    state_dir: Path | None = None
    root: Path | None = None
    env_memory = "" if repo is not None else os.environ.get(ENV_MEMORY_DIR, "").strip()
    env_state = "" if repo is not None else os.environ.get(paths.ENV_STATE_DIR, "").strip()
    if repo is not None:
        state_dir, root = Path(repo.state_dir), Path(repo.root)
    elif env_state:
        state_dir = Path(env_state).expanduser().absolute()
        env_root = os.environ.get(paths.ENV_REPO, "").strip()
        if env_root:
            root = Path(env_root)
        elif state_dir.parent.name == ".git":
            root = state_dir.parent.parent
    else:
        try:
            found = paths.find_repo(cwd)
        except UsageError:
            if not env_memory:
                raise
        else:
            state_dir, root = found.state_dir, found.root
    if env_memory:
        return Locations(Path(env_memory).expanduser().absolute(), state_dir, root)
    assert state_dir is not None
    if config is None:
        config = load_config(root)
    return Locations(memory_dir_for(root, state_dir, config.memory.dir), state_dir, root)
