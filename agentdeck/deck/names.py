"""Names the deck gives and trusts: agent names, slugs, trash folders.

An agent's name is what the user typed (checked here); its slug (``paths.slugify``)
names its branch, worktree, tmux session and files.  A state row is writable by any
process of the user, so a slug is only joined to a path after :data:`SLUG_RE` says
agentdeck could have written it.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from agentdeck.errors import UsageError

MAX_NAME = 64

# What `paths.slugify` produces; a row whose slug is anything else was not written by agentdeck.
SLUG_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# Leftovers of a removal: a worktree is first renamed to this (atomic), then deleted.
TRASH_PREFIX = ".agentdeck-trash-"

# Control (Cc: \r, \x0c, \x1c-\x1f, \x85 ...), format (Cf: zero-width, bidi), line and paragraph
# separators (Zl, Zp: U+2028, U+2029) and lone surrogates (Cs): a name is written into note front
# matter, file names and screens, and any of these can split a line or hide text there.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def validate_name(name: str) -> str:
    """The agent name, stripped of surrounding spaces; UsageError (exit 2) for one that is empty,
    too long, or holds a control, format or line-separator character."""
    for ch in name:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise UsageError(
                f"agent name contains the control, format or line-separator character U+{ord(ch):04X}; "
                f"use letters, digits and dashes"
            )
    clean = name.strip(" ")
    if not clean:
        raise UsageError("agent name is empty; give a name such as `north-star`")
    if len(clean) > MAX_NAME:
        raise UsageError(f"agent name is longer than {MAX_NAME} characters; choose a shorter name")
    return clean


def inside(path: Path, folder: Path) -> bool:
    """True when *path* is *folder* or lies under it (both already resolved)."""
    return path == folder or folder in path.parents
