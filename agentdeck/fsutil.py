"""File writes that complete or leave nothing, and opens that never follow a planted link.

Standard library only (the hook path may import it).  POSIX semantics; the
helpers raise the ``OSError`` of the failing step, so callers decide how to
word it (:func:`disk_full` recognises a full disk, from the OS or SQLite).

* :func:`atomic_write` -- a whole file or nothing: a temporary file in the same
  folder, ``fsync``, then ``os.replace`` (or a hard link with ``exclusive=True``,
  which fails with ``FileExistsError`` when the name is taken); the temporary
  file is removed on any failure, so a full disk leaves the old file (or no file).
* :func:`append_whole` -- one complete entry appended, or the file exactly as it
  was: on a short write or an error the file is truncated back to its old size.
* :func:`open_regular` -- open a name without following a symlink; a link (or a
  FIFO, socket, device) found there is unlinked and a fresh regular file created,
  so nothing is ever written through it.
* :class:`FileLock` -- an ``flock`` lock file opened with :func:`open_regular`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
import time
from pathlib import Path

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
# Filesystems without hard links: atomic_write(exclusive=True) falls back to O_EXCL.
_NO_LINK_ERRNOS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}
_NOT_REGULAR_ERRNOS = {errno.ELOOP, errno.EMLINK, errno.ENXIO, getattr(errno, "EFTYPE", errno.ELOOP)}
_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def disk_full(exc: BaseException | None, where: str | os.PathLike[str] | None = None) -> bool:
    """True when *exc* (or an exception it was raised from) says the disk or the user's quota is full.

    An ``OSError`` (ENOSPC, EDQUOT) or SQLite's "database or disk is full".  SQLite
    reports a shared-memory file it cannot grow as a plain I/O error: given *where*
    (a path on the filesystem in question), an I/O error with less than 64 KiB
    free there counts as a full disk too.
    """
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError):
            if exc.errno in _FULL_ERRNOS:
                return True
        elif type(exc).__module__ == "sqlite3":
            code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
            text = str(exc).lower()
            if (code is not None and code & 0xFF == 13) or "disk is full" in text:  # SQLITE_FULL
                return True
            io_error = (code is not None and code & 0xFF == 10) or "i/o error" in text  # SQLITE_IOERR
            if io_error and where is not None and _nearly_full(where):
                return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _nearly_full(where: str | os.PathLike[str]) -> bool:
    path = Path(where)
    for candidate in (path, *path.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize < 64 * 1024
    return False


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - a regular file never returns 0 for a non-empty write
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def _fsync_dir(folder: Path) -> None:
    """Make a rename or link durable (best effort: some filesystems refuse to fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unlink_quietly(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_temp(folder: Path, data: bytes, mode: int) -> str:
    """A complete, fsynced temporary file in *folder*; its path.  Removed again on failure."""
    for _ in range(100):
        tmp = folder / f".{os.getpid()}-{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, mode)
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
        try:
            try:
                write_all(fd, data)
                os.fchmod(fd, mode)  # exactly *mode*, whatever the umask
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            unlink_quietly(tmp)
            raise
        return str(tmp)
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(folder))  # pragma: no cover


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o644, *,
                 exclusive: bool = False) -> None:
    """Write *path* whole or not at all (temp file in the same folder, fsync, rename).

    With *exclusive*, the file must not exist yet: ``FileExistsError`` when the
    name is taken (a hard link never replaces anything).  A symlink at *path* is
    replaced, never followed.  On any error no temporary file is left behind and
    *path* is as it was.
    """
    path = Path(path)
    data = _as_bytes(data)
    tmp = _write_temp(path.parent, data, mode)
    try:
        if not exclusive:
            os.replace(tmp, path)
            tmp = ""
        else:
            try:
                os.link(tmp, path, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in _NO_LINK_ERRNOS:
                    raise
                _create_exclusive(path, data, mode)
    finally:
        if tmp:
            unlink_quietly(tmp)
    _fsync_dir(path.parent)


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    """O_EXCL create and write (no hard links here); the file is removed again if the write fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW, mode)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        unlink_quietly(path)
        raise


def open_regular(path: str | os.PathLike[str], flags: int = os.O_RDWR, mode: int = 0o644) -> int:
    """Open (creating if needed) a regular file without following a symlink at its name.

    Whatever else sits at *path* -- a symlink, a FIFO, a socket, a device -- is
    unlinked and replaced by a fresh regular file; a directory there is an
    ``IsADirectoryError``.  ``O_CREAT`` and ``O_NOFOLLOW`` are added to *flags*.
    """
    path = os.fspath(path)
    for _ in range(10):
        try:
            fd = os.open(path, flags | os.O_CREAT | NOFOLLOW | _NONBLOCK, mode)
        except OSError as exc:
            # ELOOP: a symlink (EMLINK/EFTYPE on some BSDs); ENXIO: a socket or a FIFO nobody reads.
            if exc.errno not in _NOT_REGULAR_ERRNOS:
                raise
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                raise
            unlink_quietly(path)
            continue
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if stat.S_ISREG(st.st_mode):
            if _NONBLOCK:
                os.set_blocking(fd, True)
            return fd
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way", path)
        unlink_quietly(path)
    raise OSError(errno.ELOOP, "something keeps replacing this file with a link", path)


def touch_regular(path: str | os.PathLike[str], mode: int = 0o644) -> None:
    """Make sure a regular file exists at *path* (a link there is replaced, never followed)."""
    os.close(open_regular(path, os.O_WRONLY, mode))


def append_whole(path: str | os.PathLike[str], data: bytes | str, *, header: bytes | str = b"",
                 mode: int = 0o644) -> None:
    """Append *data* (after *header* when the file is new or empty) as one entry, or nothing.

    The caller holds a lock that keeps other writers of this file out.  The
    whole buffer goes to one ``os.write`` (a loop only if the kernel writes less);
    after a short write, an error or a failed ``fsync`` the file is truncated back
    to its previous size -- and removed if this call created it -- so a reader
    never sees half an entry.  A symlink at *path* is refused (``ELOOP``).
    """
    path = os.fspath(path)
    data, header = _as_bytes(data), _as_bytes(header)
    created = True
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | NOFOLLOW, mode)
    except FileExistsError:
        created = False
        # O_NONBLOCK: a FIFO planted here must not hang the writer (it is refused just below).
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | NOFOLLOW | _NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if _NONBLOCK:
            os.set_blocking(fd, True)
        before = st.st_size
        buffer = (header + data) if before == 0 else data
        try:
            write_all(fd, buffer)
            os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, before)
            finally:
                if created:
                    unlink_quietly(path)
            raise
    finally:
        os.close(fd)
    if created:
        _fsync_dir(Path(path).parent)


class LockTimeout(Exception):
    """Raised by :meth:`FileLock.acquire` when the lock stayed taken for the whole timeout."""


class FileLock:
    """An exclusive ``flock`` on a lock file, across processes and threads (one open file per holder).

    The lock file is opened with :func:`open_regular`: a symlink planted at its
    name is replaced by a regular file, never followed, and nothing is written to it.
    """

    def __init__(self, path: str | os.PathLike[str], timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._fd: int | None = None

    @property
    def is_locked(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | None = None) -> None:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FileLock")
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, limit)
        delay = 0.001
        while True:
            fd = open_regular(self.path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise LockTimeout(self.path) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            except BaseException:
                os.close(fd)
                raise
            # The name may have been replaced (a link planted and swapped) while we waited:
            # hold the lock only if it is still the file at the name.
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return
            os.close(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
