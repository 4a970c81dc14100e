"""The local executor: one subprocess per trial, under a reaper, in its own session.

The job runs under :mod:`agentdeck.sandbox.reaper`, a child subreaper: every
process the job starts — a ``setsid`` daemon included — stays under it and is
killed when the job ends, or when a timeout or a cancel sends it SIGTERM
(then SIGKILL).  With a sandbox profile in the spec the command runs inside
bubblewrap as well (reaper -> bwrap -> command; the sandbox's own pid
namespace dies with it).  The reaper writes the job's exit status to
``<log>.exit``, so an agentdeck that restarted (and is no longer the job's
parent) still learns how the job ended.  The process id, group id and start
time are recorded in the ledger; a restarted loop finds the job again by them
(the start time guards against a recycled pid).

Before a GPU slot is leased again, :meth:`LocalExecutor.settle` checks that
``nvidia-smi --query-compute-apps`` lists none of the job's processes (found
by the ``AGENTDECK_JOB`` marker in their environment), killing any it finds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from agentdeck.procutil import pid_alive
from agentdeck.procutil import start_time as proc_start_time
from agentdeck.research.executors.base import Executor, JobHandle, JobSpec, JobState, read_log_tail

KILL_GRACE_S = 5.0  # the reaper ends its tree within ~2 s of a SIGTERM; SIGKILL the group after this
#: The variable that marks a job's processes (see agentdeck.research.isolation.JOB_ENV).
JOB_MARKER = "AGENTDECK_JOB"
SETTLE_TRIES = 20  # nvidia-smi rounds (0.25 s apart) before settle() reports the slot still held


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
    runs_here = True

    def __init__(self, settings: Any = None) -> None:  # (the settings are the loop's: nothing here needs them)
        super().__init__()
        self._cancelled: set[int] = set()

    def submit(self, spec: JobSpec) -> JobHandle:
        from agentdeck import sandbox

        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        exit_file = Path(str(spec.log_path) + ".exit")
        exit_file.unlink(missing_ok=True)
        if spec.clean_env:
            env = dict(spec.env)
        else:
            env = dict(os.environ)
            env.update(spec.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = sandbox.command(["/bin/sh", "-c", spec.command], spec.sandbox, str(exit_file))
        started = time.time()
        with open(spec.log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, cwd=str(spec.cwd), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        data = {
            "pid": proc.pid,
            "pgid": proc.pid,  # start_new_session: the reaper leads its own session and group
            "start_time": proc_start_time(proc.pid),
            "exit_file": str(exit_file),
            "log_path": str(spec.log_path),
            "submitted_at": started,
            "running_at": started,  # a local job runs as soon as it is submitted
            "job_name": spec.name,
            "slot": spec.slot,
            "sandboxed": spec.sandbox is not None,
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
        # Called after the job ended: the reaper already ended its tree; anything left in its
        # group (a job of an older agentdeck, started without the reaper) goes too.
        kill_group(int(handle.data.get("pgid", 0)), signal.SIGKILL)

    def settle(self, handle: JobHandle) -> str:
        slot = str(handle.data.get("slot", ""))
        name = str(handle.data.get("job_name", ""))
        if not slot or slot == "cpu" or not name or shutil.which("nvidia-smi") is None:
            return ""
        left: list[int] = []
        for _ in range(SETTLE_TRIES):
            left = job_gpu_pids(name)
            if not left:
                return ""
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.25)
        return f"nvidia-smi still lists process(es) {', '.join(map(str, left))} of {name} on the GPU"


def gpu_pids(timeout: float = 10.0) -> list[int]:
    """Pids of every compute process ``nvidia-smi`` lists ([] without nvidia-smi or on error)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [int(line.strip()) for line in out.splitlines() if line.strip().isdigit()]


def marked_with(pid: int, marker: str) -> bool:
    """True when *pid*'s environment carries ``AGENTDECK_JOB=<marker>`` (or ``<marker>-eval``)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            entries = fh.read().split(b"\0")
    except OSError:
        return False
    wanted = (f"{JOB_MARKER}={marker}".encode(), f"{JOB_MARKER}={marker}-eval".encode())
    return any(entry in wanted for entry in entries)


def job_gpu_pids(marker: str) -> list[int]:
    """The processes of job *marker* that nvidia-smi still lists."""
    return [pid for pid in gpu_pids() if marked_with(pid, marker)]
