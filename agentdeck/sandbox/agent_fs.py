"""Files of an agent's sandbox, written and read by the host without trusting the agent.

The folders below a sandbox's ``home/``, ``git/`` and ``objects/`` are the agent's: a symlink
or a file it planted there must never lead the host elsewhere.  :func:`read_agent_file` and
:func:`write_agent_file` walk such a folder without following symlinks; :func:`write_host_file`
writes (atomically) in a folder only the host can change; :func:`rmtree_forcing` deletes a
sandbox's folder even where the agent made parts of it read-only.

Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_host_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file in a host-only folder (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _open_dir_nofollow(root: Path, parts: Sequence[str], create: bool = False) -> int:
    """A file descriptor of ``root/parts...``, each step refusing symlinks (the folders below
    *root* are the agent's: a symlink there must not lead the host elsewhere).  With *create*,
    missing folders are made and a symlink or file in the way is removed (not followed)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(root, flags)
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise OSError(f"bad path part {part!r}")
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except OSError:
                if not create:
                    raise
                os.unlink(part, dir_fd=fd)  # a planted symlink or file: replaced, never followed
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_agent_file(root: Path, rel: str, limit: int = 1 << 20) -> bytes | None:
    """The content of ``root/rel`` (a regular file reached without symlinks), None if absent."""
    parts = rel.split("/")
    try:
        dfd = _open_dir_nofollow(root, parts[:-1])
    except OSError:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def write_agent_file(root: Path, rel: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``root/rel`` in a folder the agent can change: folders made or entered without
    following symlinks, the file replaced atomically (a planted symlink is replaced, not followed)."""
    parts = rel.split("/")
    dfd = _open_dir_nofollow(root, parts[:-1], create=True)
    try:
        tmp = f".{parts[-1]}.agentdeck-tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode, dir_fd=dfd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def rmtree_forcing(root: Path) -> None:
    """``rm -rf`` *root* (never following symlinks), making a folder writable where a
    deletion in it failed (the agent may ``chmod`` its own folders)."""
    def retry(func: Any, path: str, _exc: Any) -> None:  # shutil's onerror/onexc signature
        parent = os.path.dirname(path)
        with contextlib.suppress(OSError):
            if not os.path.islink(parent):
                os.chmod(parent, 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)
            else:
                func(path)

    if not os.path.lexists(root):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(root, onexc=retry)
    else:
        shutil.rmtree(root, onerror=retry)
