"""Being told instead of looking: one inotify watch per folder, process-exit descriptors.

* :class:`FolderWatch` — one inotify instance with one (non-recursive) watch per folder
  given; its descriptor turns readable when an entry of one of those folders whose name
  starts with one of the given prefixes is written, created, deleted or renamed.  The
  state database in WAL mode is written through ``state.db-wal`` by every process (CLI,
  hooks, the watcher, MCP servers), so a watch on the state folder with the prefix
  ``state.db`` hears every commit of every writer, and nothing else.
* :func:`process_fd` — a descriptor that turns readable when a process ends (``pidfd``).

Both are Linux facilities; where they are missing (:func:`available` is False, or
``process_fd`` returns None) callers fall back to looking now and then.  Standard library
only (``ctypes`` for the three inotify calls).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

IN_MODIFY = 0x00000002
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

CHANGES = IN_MODIFY | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
GONE = IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF

_HEADER = struct.Struct("iIII")
_libc = None


def _lib():
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return _libc


def available() -> bool:
    """True where inotify can be used (Linux)."""
    if not os.path.isdir("/proc/self"):
        return False
    try:
        return hasattr(_lib(), "inotify_init1")
    except OSError:
        return False


class FolderWatch:
    """One inotify descriptor watching *folders* (not recursively) for entries named ``PREFIX*``."""

    def __init__(self, folders: list[Path], prefixes: tuple[str, ...] = ("",)):
        lib = _lib()
        self.prefixes = tuple(prefixes)
        self.fd = lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            import ctypes

            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._folders: dict[int, Path] = {}
        for folder in folders:
            self.add(folder)

    def add(self, folder: Path) -> None:
        wd = _lib().inotify_add_watch(self.fd, os.fsencode(str(folder)), CHANGES)
        if wd < 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, f"cannot watch {folder}: {os.strerror(err)}")
        self._folders[wd] = Path(folder)

    @property
    def count(self) -> int:
        """How many inotify watches this holds (one per folder)."""
        return len(self._folders)

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[tuple[Path, str, int]]:
        """The changes waiting: (folder, entry name, mask), only names with a watched prefix;
        an overflow is reported as (folder, "", IN_Q_OVERFLOW) so the caller rereads everything."""
        out: list[tuple[Path, str, int]] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            except OSError:
                return out
            if not data:
                return out
            pos = 0
            while pos + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, pos)
                raw = data[pos + _HEADER.size: pos + _HEADER.size + length]
                pos += _HEADER.size + length
                name = raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                folder = self._folders.get(wd, Path())
                if mask & IN_Q_OVERFLOW:
                    out.append((folder, "", IN_Q_OVERFLOW))
                elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                    out.append((folder, "", mask))
                elif name.startswith(self.prefixes):
                    out.append((folder, name, mask))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def process_fd(pid: int) -> int | None:
    """A descriptor readable once process *pid* has ended; None where pidfds do not exist (or the
    process is already gone: ask :func:`agentdeck.procutil.process_gone`)."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None or pid <= 0:
        return None
    try:
        return opener(pid)
    except OSError:
        return None


class Settle:
    """When to look again after a change notice.

    SQLite writes a commit's frames to the WAL (the writes inotify reports) a moment before it
    publishes the commit in the shared index (a memory map: no inotify event); a reader that
    asks at once may not see it yet, and nothing else would wake it.  So a notice is followed by
    a few looks: at once, then at :data:`DELAYS` after it (each look costs one ``PRAGMA
    data_version``).  A later notice starts the series again."""

    DELAYS = (0.005, 0.02, 0.06, 0.2, 0.5, 1.0)

    def __init__(self) -> None:
        self._at: list[float] = []

    def notice(self, now: float) -> None:
        self._at = [now + d for d in self.DELAYS]

    def due(self, now: float) -> bool:
        """True when a look is due now (and forgets the looks due)."""
        due = False
        while self._at and self._at[0] <= now:
            self._at.pop(0)
            due = True
        return due

    def next(self) -> float | None:
        """When the next look is due (None: none)."""
        return self._at[0] if self._at else None
