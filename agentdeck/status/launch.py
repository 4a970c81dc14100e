"""Who is launching an agent, and whether that process is gone.

`new` marks its row ``launching`` while it creates branch, worktree, setup and pane; the row
records which process does it (:func:`process_identity`), so a launch that no process is finishing
any more (`new` killed during a slow setup_command) is seen at read time (:func:`launch_abandoned`)
and shown ``exited`` instead of ``starting`` forever.  A pid alone could be reused: the process's
start time (/proc/<pid>/stat field 22) makes the identity exact where /proc exists.  Standard
library only: the light commands and the merge journal use it too.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

LEGACY_LAUNCH_S = 6 * 3600  # a row from before launchers were recorded: given up after this long


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from /proc/<pid>/stat; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    if len(fields) <= 19:
        return None
    return fields[0], fields[19]  # fields 3 and 22 of the whole line: state, starttime


def _proc_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_identity(pid: int | None = None) -> dict[str, object]:
    """Who is launching: pid, start time, host and pid namespace (recorded in the agent's row)."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start": _proc_start(pid) or "", "host": socket.gethostname(), "pidns": _pid_namespace()}


def process_gone(ident: dict[str, object]) -> bool:
    """True only when the recorded process is certainly gone (unknown means alive: a launcher on
    another host or in another pid namespace is never declared dead)."""
    pid = ident.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if ident.get("host") and ident.get("host") != socket.gethostname():
        return False
    if ident.get("pidns") and ident.get("pidns") != _pid_namespace():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # someone else's process with that pid: compare start times below
    stat = _proc_stat(pid)
    if stat is None:  # no /proc (macOS): the pid answering is all we can tell
        return not os.path.exists(f"/proc/{pid}") and os.path.isdir("/proc/self")
    state, start = stat
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return True
    return bool(ident.get("start")) and start != ident.get("start")


def launch_abandoned(rec: Any) -> bool:
    """A row still marked ``launching`` whose launching process is gone."""
    if not rec.extra.get("launching"):
        return False
    ident = rec.extra.get("launcher")
    if isinstance(ident, dict):
        return process_gone(ident)
    return time.time() - (rec.status_at or 0) > LEGACY_LAUNCH_S
