"""The local executor: one subprocess per trial, in its own process group.

The job runs under a tiny ``/bin/sh`` wrapper that writes the job's exit
status to ``<log>.exit`` when it ends, so an agentdeck that restarted (and is
no longer the job's parent) still learns how the job ended.  The process id,
group id and start time are recorded in the ledger; a restarted loop finds the
job again by them (the start time guards against a recycled pid).  A timeout
or a cancel kills the whole group (SIGTERM, then SIGKILL), and whatever the
job left running in its group is killed when the trial is recorded, so a
stray data loader never holds a GPU the next trial leases.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from agentdeck.research.executors.base import Executor, JobHandle, JobSpec, JobState, read_log_tail

_WRAPPER = '/bin/sh -c "$1"; rc=$?; printf "%s\\n" "$rc" > "$2.tmp" && mv -f "$2.tmp" "$2"; exit $rc'
KILL_GRACE_S = 2.0


def proc_start_time(pid: int) -> str:
    """The kernel's start time of *pid* (clock ticks since boot) or "" where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    # fields[0] is the state (field 3); starttime is field 22 -> index 19.
    return fields[19] if len(fields) > 19 else ""


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else ""


def pid_alive(pid: int, start_time: str = "") -> bool:
    """True when *pid* runs and is the same process (same start time) as recorded."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if _proc_state(pid) == "Z":
        return False
    if start_time:
        now = proc_start_time(pid)
        if now and now != start_time:
            return False
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    if pgid <= 1:
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalExecutor(Executor):
    name = "local"
    pins_devices = True

    def __init__(self) -> None:
        super().__init__()
        self._cancelled: set[int] = set()

    def submit(self, spec: JobSpec) -> JobHandle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        exit_file = Path(str(spec.log_path) + ".exit")
        exit_file.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(spec.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        started = time.time()
        with open(spec.log_path, "wb") as log:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", _WRAPPER, "agentdeck-job", spec.command, str(exit_file)],
                cwd=str(spec.cwd), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        data = {
            "pid": proc.pid,
            "pgid": proc.pid,  # start_new_session: the job leads its own session and group
            "start_time": proc_start_time(proc.pid),
            "exit_file": str(exit_file),
            "log_path": str(spec.log_path),
            "submitted_at": started,
            "running_at": started,  # a local job runs as soon as it is submitted
        }
        handle = JobHandle(self.name, str(proc.pid), data, node="", runtime=proc)
        threading.Thread(target=self._wait, args=(proc,), name=f"job-{spec.trial_id}", daemon=True).start()
        return handle

    def _wait(self, proc: subprocess.Popen) -> None:
        try:
            proc.wait()
        finally:
            self.wake.set()

    def _exit_code_from_file(self, handle: JobHandle) -> int | None:
        path = Path(handle.data.get("exit_file", ""))
        try:
            text = path.read_text().strip()
        except OSError:
            return None
        try:
            return int(text)
        except ValueError:
            return None

    def poll(self, handle: JobHandle) -> JobState:
        proc = handle.runtime
        if proc is not None:
            rc = proc.poll()
            if rc is None:
                return JobState("running")
            code = self._exit_code_from_file(handle)
            if code is None:
                # The wrapper itself was killed (a cancel, or a signal from outside).
                return JobState("done", rc if rc >= 0 else 128 - rc, detail=f"killed by signal {-rc}" if rc < 0 else "")
            return JobState("done", code)
        pid = int(handle.data.get("pid", 0))
        if pid_alive(pid, handle.data.get("start_time", "")):
            return JobState("running")
        code = self._exit_code_from_file(handle)
        if code is not None:
            return JobState("done", code)
        return JobState("lost", None, detail="the job's process ended while agentdeck was not running, "
                                               "leaving no exit status")

    def read_log(self, handle: JobHandle) -> str:
        return read_log_tail(handle.data.get("log_path", ""))

    def cancel(self, handle: JobHandle) -> None:
        pgid = int(handle.data.get("pgid", 0))
        if pgid <= 1 or pgid in self._cancelled:
            return
        self._cancelled.add(pgid)
        kill_group(pgid, signal.SIGTERM)

        def finish_off() -> None:
            deadline = time.monotonic() + KILL_GRACE_S
            while time.monotonic() < deadline and group_alive(pgid):
                time.sleep(0.05)
            kill_group(pgid, signal.SIGKILL)
            self.wake.set()

        threading.Thread(target=finish_off, name=f"kill-{pgid}", daemon=True).start()

    def reattach(self, data: dict[str, Any]) -> JobHandle | None:
        if not data.get("pid"):
            return None
        return JobHandle(self.name, str(data["pid"]), dict(data), node="", runtime=None)

    def finish(self, handle: JobHandle) -> None:
        # Called after the job ended: anything it left in its group (data loaders, a stray
        # server) goes with it, so the next trial on this slot gets the whole GPU.
        kill_group(int(handle.data.get("pgid", 0)), signal.SIGKILL)
