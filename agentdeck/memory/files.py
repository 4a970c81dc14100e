"""The store's file primitives: reading a regular file without following links, creating a file
whole, and wording a failed write.

Every read of a document goes through :func:`read_regular` (``O_NOFOLLOW``, ``O_NONBLOCK``): a
planted symlink, a FIFO or a device is refused, never followed or waited on.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from pathlib import Path

from agentdeck import fsutil
from agentdeck.errors import Refused


def read_regular(path: Path) -> tuple[str, tuple[int, int, int], float]:
    """Text, fingerprint and mtime of a regular file, refusing symlinks (and FIFOs, devices: no hang)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused(f"{path} is a symlink; the memory store never follows links (remove it)") from exc
        raise
    try:
        st = os.fstat(fd)
        if stat_mod.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if not stat_mod.S_ISREG(st.st_mode):
            raise Refused(f"{path} is not a regular file; the memory store reads only plain files (remove it)")
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return text, (st.st_ino, st.st_mtime_ns, st.st_size), st.st_mtime


def create_if_missing(path: Path, text: str) -> None:
    """Create *path* whole with *text* unless something is already there (never half a file)."""
    try:
        fsutil.atomic_write(path, text.encode("utf-8"), exclusive=True)
    except FileExistsError:
        pass


def reason(exc: BaseException, where: Path | None = None) -> str:
    """Why a write failed, in a few words (``disk full`` first)."""
    if fsutil.disk_full(exc, where):
        return "disk full"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def write_failure(exc: OSError, what: str, root: Path) -> str:
    """One line for a failed write: what, why, and that nothing was written."""
    if fsutil.disk_full(exc):
        return (f"disk full: could not write {what} in {root}; nothing was written "
                "(free some space and try again)")
    where = exc.filename or root
    return f"could not write {what} ({exc.strerror or exc}: {where}); nothing was written"
