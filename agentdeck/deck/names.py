"""Names the deck gives and trusts: agent names, slugs, trash folders.

An agent's name is what the user typed (checked by :func:`agentdeck.paths.validate_name`,
re-exported here); its slug (``paths.slugify``) names its branch, worktree, tmux session
and files.  A state row is writable by any process of the user, so a slug is only joined
to a path after :data:`SLUG_RE` says agentdeck could have written it.
"""

from __future__ import annotations

import re
from pathlib import Path

# Agent names are checked one level down, beside `paths.slugify`, where adoption can reach them too.
from agentdeck.paths import MAX_NAME, validate_name

__all__ = ["MAX_NAME", "SLUG_RE", "TRASH_PREFIX", "inside", "validate_name"]

# What `paths.slugify` produces; a row whose slug is anything else was not written by agentdeck.
SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Leftovers of a removal: a worktree is first renamed to this (atomic), then deleted.
TRASH_PREFIX = ".agentdeck-trash-"


def inside(path: Path, folder: Path) -> bool:
    """True when *path* is *folder* or lies under it (both already resolved)."""
    return path == folder or folder in path.parents
