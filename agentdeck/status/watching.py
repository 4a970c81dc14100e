"""Whether a status watcher runs for a repository, and starting one.

One watcher per repository holds an exclusive ``flock`` on ``<state>/watcher.lock`` (its pid
written inside).  Any command that reads or changes status starts one on demand
(:func:`ensure_watcher`: ``agentdeck _watch``, detached, logging to ``<logs>/watcher.log``); the
light commands only ask whether one runs (:func:`watcher_alive`), with the standard library.
The watcher writes its log lines with :func:`log`.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def lock_path(deck: Any) -> Path:
    return deck.repo.state_dir / "watcher.lock"


def watcher_pid(deck: Any) -> int | None:
    """The pid of the watcher running for this repository, None when none runs."""
    path = lock_path(deck)
    if not watcher_alive(deck):
        return None
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def watcher_alive(deck: Any) -> bool:
    """True while a watcher holds the lock (*deck* needs only ``.repo.state_dir``: the light
    commands pass their own state object)."""
    path = lock_path(deck)
    if not path.exists():
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)  # read-only: works on a read-only state dir
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def ensure_watcher(deck: Any) -> bool:
    """Start the watcher if none runs for this repository. Returns True when one was started."""
    if os.environ.get("AGENTDECK_NO_WATCHER") == "1" or watcher_alive(deck):
        return False
    deck.repo.logs_dir.mkdir(parents=True, exist_ok=True)
    log = open(deck.repo.logs_dir / "watcher.log", "ab")
    env = dict(os.environ)
    env["AGENTDECK_TMUX_SOCKET"] = deck.tmux.socket
    pkg_parent = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    subprocess.Popen(
        [sys.executable, "-m", "agentdeck", "_watch"], cwd=str(deck.repo.root), env=env,
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
    )
    log.close()
    return True


def log(message: str) -> None:
    """One line of the watcher's log (its stderr is ``<logs>/watcher.log``)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)
