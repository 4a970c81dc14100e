"""The repositories agentdeck has created agents in (for `ls --all` and a multi-repo deck).

One path per line in ``$AGENTDECK_HOME/repos``, appended with a single
``O_APPEND`` write (atomic for short lines), de-duplicated on read.
"""

from __future__ import annotations

import os
from pathlib import Path

from agentdeck.paths import agentdeck_home


def _file() -> Path:
    return agentdeck_home() / "repos"


def remember(root: Path) -> None:
    root = Path(root).resolve()
    if root in known_repos(existing_only=False):
        return
    path = _file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (str(root) + "\n").encode())
    finally:
        os.close(fd)


def known_repos(existing_only: bool = True) -> list[Path]:
    path = _file()
    if not path.is_file():
        return []
    seen: list[Path] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        p = Path(line.strip())
        if line.strip() and p not in seen and (not existing_only or (p / ".git").exists()):
            seen.append(p)
    return seen
