"""Processes by pid: is one still running, and is it still the same process.

A pid alone can be reused, so where it matters a process is recorded with its start time
(``/proc/<pid>/stat`` field 22, clock ticks since boot): a pid that answers with another start
time is another process.  Used by the deck's launches and the merge journal (who is doing it,
:func:`process_identity`; is that one gone, :func:`process_gone`), the MCP server's record and
the local research executor (:func:`pid_alive`).

Standard library only, at the bottom of the house (the light commands use it).
"""

from __future__ import annotations

import os
import socket

#: ``/proc/<pid>/stat`` states of a process that has ended (a zombie waits for its parent's reap).
_ENDED_STATES = ("Z", "X")


def proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of *pid* from ``/proc/<pid>/stat``; None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command name, in parentheses, may hold spaces
    if len(fields) <= 19:
        return None
    return fields[0], fields[19]  # fields 3 and 22 of the whole line: state, starttime


def start_time(pid: int) -> str:
    """The kernel's start time of *pid* (clock ticks since boot), or "" where it cannot be read."""
    stat = proc_stat(pid)
    return stat[1] if stat else ""


def pid_alive(pid: object, start: str = "") -> bool:
    """True while *pid* runs (a zombie does not) and, given its recorded *start* time, is still
    that process.  Anything but a positive int is no process; someone else's process with that
    pid counts as running."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: /proc still says whether it ended, and when it started
    stat = proc_stat(pid)
    if stat is None:  # no /proc (or it went away meanwhile): the pid answering is all we can tell
        return True
    state, started = stat
    if state in _ENDED_STATES:
        return False
    return not start or started == start


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_identity(pid: int | None = None) -> dict[str, object]:
    """Who is doing something: pid, start time, host and pid namespace (recorded in a row or a
    journal, and given back to :func:`process_gone`)."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start": start_time(pid), "host": socket.gethostname(), "pidns": _pid_namespace()}


def process_gone(ident: dict[str, object]) -> bool:
    """True only when the recorded process is certainly gone (unknown means alive: a process on
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
    stat = proc_stat(pid)
    if stat is None:  # no /proc (macOS): the pid answering is all we can tell
        return not os.path.exists(f"/proc/{pid}") and os.path.isdir("/proc/self")
    state, start = stat
    if state in _ENDED_STATES:  # killed, not yet reaped by its parent
        return True
    return bool(ident.get("start")) and start != ident.get("start")
