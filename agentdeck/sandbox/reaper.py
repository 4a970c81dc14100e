"""The job launcher: a child subreaper that ends every process its command started.

``python3 -I reaper.py EXIT_FILE -- COMMAND...`` runs COMMAND and waits.  It
marks itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), so a
process the command leaves behind — a ``setsid`` daemon, a data loader whose
parent died — is re-parented to the reaper instead of to init, and stays
findable.  When the command ends, every process left under the reaper is
killed (SIGKILL, repeated until none is left) before the reaper exits; on
SIGTERM/SIGINT/SIGHUP (a timeout or a cancel) the whole tree gets SIGTERM,
then SIGKILL after ``GRACE_S``.  The command's exit status (128+N for a
signal) is written to EXIT_FILE (atomically: a ``.tmp`` renamed), so an
agentdeck that restarted still learns how the job ended; ``-`` writes none.

This file runs as a script with ``-I`` (no site, no user packages, no
``PYTHONPATH``): it imports only the standard library and starts in about
20 ms.  Sandboxed jobs run under it too (reaper -> bwrap -> command): the
sandbox's own pid namespace already takes every process down with it, and
the reaper still writes the exit status and catches bwrap itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 1.5  # after a SIGTERM to the tree, SIGKILL what is still running
KILL_ROUNDS = 400  # SIGKILL rounds before giving up on a process that keeps forking
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def set_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (Linux >= 3.4)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, state letter) of *pid*, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return int(fields[1]), fields[0]
    except (IndexError, ValueError):
        return None


def descendants(root: int) -> list[int]:
    """Live (non-zombie) processes under *root*, parents before children."""
    children: dict[int, list[int]] = {}
    states: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        info = _stat(int(name))
        if info is None:
            continue
        children.setdefault(info[0], []).append(int(name))
        states[int(name)] = info[1]
    out: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        if states.get(pid) != "Z":
            out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(main: int, status: dict[str, int]) -> None:
    """Collect every exited child without blocking; remember the main command's status."""
    while True:
        try:
            pid, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == main:
            status["main"] = st


def kill_tree(root: int, main: int, status: dict[str, int]) -> None:
    """SIGKILL everything under *root* until nothing is left (a process that forks while it is
    being killed is caught by the next round: it cannot leave the subreaper's tree)."""
    for _ in range(KILL_ROUNDS):
        alive = descendants(root)
        if not alive:
            break
        _signal_all(alive, signal.SIGKILL)
        time.sleep(0.005)
        _reap(main, status)
    _reap(main, status)


def exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def write_exit(path: str, code: int) -> None:
    if not path or path == "-":
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(f"{code}\n")
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: reaper.py EXIT_FILE -- COMMAND...", file=sys.stderr)
        return 2
    exit_file, command = argv[1], argv[3:]
    set_subreaper()
    me = os.getpid()
    watched = {signal.SIGCHLD, *SIGNALS}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    pid = os.fork()
    if pid == 0:  # the command: default signal handling, nothing blocked
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"agentdeck: cannot run {command[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    status: dict[str, int] = {}
    cancelled_at: float | None = None
    while "main" not in status:
        _reap(pid, status)
        if "main" in status:
            break
        if cancelled_at is not None and time.monotonic() - cancelled_at > GRACE_S:
            _signal_all(descendants(me), signal.SIGKILL)
        info = signal.sigtimedwait(watched, 0.5)
        if info is not None and info.si_signo in SIGNALS and cancelled_at is None:
            cancelled_at = time.monotonic()
            _signal_all(descendants(me), signal.SIGTERM)
    kill_tree(me, pid, status)  # whatever the command left behind goes with it
    code = exit_code(status["main"])
    try:
        write_exit(exit_file, code)
    except OSError as exc:
        print(f"agentdeck: cannot record the exit status in {exit_file}: {exc}", file=sys.stderr)
    return code


def argv_prefix(exit_file: str = "-") -> list[str]:
    """The command line that runs a command under the reaper (append the command)."""
    return [sys.executable, "-I", os.path.abspath(__file__), exit_file, "--"]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
