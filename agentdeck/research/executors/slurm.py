"""The Slurm executor: one ``sbatch`` job per trial (``executor = "slurm"``).

Each trial becomes a batch job::

    sbatch --parsable --job-name=<spec.name> --chdir=<worktree> --output=<log> --open-mode=truncate
           --time=<time> [--partition=P] [--gres=gpu:1] [sbatch_args...] <log>.sbatch

The batch script (kept next to the log, for whoever debugs it) exports the trial's environment
(``AGENTDECK_BUDGET_S`` ...), enters the worktree and runs the command; when the command ends it
writes its exit status to ``<log>.exit``, like the local executor.  Slurm's scheduler picks the
GPU (``--gres``) and sets ``CUDA_VISIBLE_DEVICES``, so ``pins_devices`` is False and the slots only
bound how many jobs agentdeck keeps in flight.

State: the exit file first (exact, and it survives Slurm forgetting the job), then one batched
``squeue -t all -j ID,ID,...`` per ``QUERY_INTERVAL_S``, then ``scontrol show job`` and ``sacct``
for a job ``squeue`` no longer lists.  A job whose node failed, or that Slurm no longer knows and
that left no exit status, is ``lost``; so is every job once the controller has not answered for
``LOST_AFTER_S`` (the loop would otherwise wait forever).  Cancel is ``scancel``.

Shared filesystem: the job runs in the trial's worktree and writes its log under the
repository's ``.git/agentdeck``, so both must be visible on the compute nodes.  ``check()`` sends
a tiny probe job (no GPU) that reads a token written in the research folder and writes an answer
back; a probe that cannot see the token or whose answer never comes back means the folders are not
shared, and the run is refused with that explanation.  No Python dependency beyond the standard
library: only Slurm's own commands.
"""

from __future__ import annotations

import getpass
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from agentdeck.config import ResearchSettings
from agentdeck.errors import Refused, UsageError
from agentdeck.research.executors.base import JobHandle, JobSpec, JobState, read_log_tail
from agentdeck.research.executors.cluster import ClusterExecutor, ProbeResult, Silence, note_in_log
from agentdeck.research.executors.slurm_probe import probe
from agentdeck.research.executors.slurm_states import (  # noqa: F401 - COMMANDS and the states are re-exported
    COMMANDS,
    DONE,
    FALLBACK_CODE,
    LOST,
    NO_WORKTREE_CODE,
    PENDING,
    RUNNING,
    SlurmUnreachable,
    exit_code_of,
    gpus_in_gres,
    time_limit,
)
from agentdeck.research.gpus import CPU_SLOT


class SlurmExecutor(ClusterExecutor):
    name = "slurm"
    lane_prefix = "slurm"
    title = "Slurm"
    unreachable = SlurmUnreachable
    QUERY_INTERVAL_S = 1.0  # controller queries at most this often (one batched squeue for all jobs)
    LOST_AFTER_S = 120.0  # the controller silent this long: running jobs are recorded lost
    COMMAND_TIMEOUT_S = 30.0

    def __init__(self, settings: Any = None):
        super().__init__()
        self.settings = settings if settings is not None else ResearchSettings()
        self.slurm = self.settings.slurm
        self._lock = threading.RLock()
        self._active: dict[str, dict[str, Any]] = {}  # job id -> handle data
        self._info: dict[str, tuple[str, str, str]] = {}  # job id -> (state, node, ExitCode)
        self._unknown: set[str] = set()
        self._last_query = 0.0
        self._silence = Silence()
        self._pending_cancels: set[str] = set()
        self._node_asked: set[str] = set()  # finished jobs whose node was looked up once

    # ------------------------------------------------------------------ commands
    def _run(self, *argv: str, input: str | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(list(argv), capture_output=True, text=True, input=input,
                                  timeout=timeout or self.COMMAND_TIMEOUT_S,
                                  stdin=None if input else subprocess.DEVNULL)
        except FileNotFoundError:
            raise SlurmUnreachable(f"{argv[0]} is not on PATH") from None
        except subprocess.TimeoutExpired:
            waited = timeout or self.COMMAND_TIMEOUT_S
            raise SlurmUnreachable(f"`{argv[0]}` did not answer within {waited:g}s") from None

    @staticmethod
    def _first_line(proc: subprocess.CompletedProcess) -> str:
        text = (proc.stderr or "").strip() or (proc.stdout or "").strip()
        return text.splitlines()[-1] if text else f"exit status {proc.returncode}"

    # ------------------------------------------------------------------ checks
    def missing_commands(self) -> list[str]:
        return [c for c in COMMANDS if shutil.which(c) is None]

    def ping(self) -> str:
        """The controller's answer to ``scontrol ping``; raises SlurmUnreachable when it is down."""
        proc = self._run("scontrol", "ping", timeout=20)
        out = (proc.stdout or "").strip()
        if proc.returncode != 0 or "UP" not in out:
            raise SlurmUnreachable(out.splitlines()[0] if out else self._first_line(proc))
        return out.splitlines()[0]

    def nodes(self) -> list[dict[str, Any]]:
        """The partition's nodes: ``{"name", "state", "gres", "gpus"}`` (``sinfo -N``)."""
        argv = ["sinfo", "-h", "-N", "-o", "%N|%T|%G"]
        if self.slurm.partition:
            argv[1:1] = ["-p", self.slurm.partition]
        proc = self._run(*argv, timeout=20)
        if proc.returncode != 0:
            raise SlurmUnreachable(self._first_line(proc))
        seen: dict[str, dict[str, Any]] = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 3 or parts[0] in seen:
                continue
            seen[parts[0]] = {"name": parts[0], "state": parts[1].rstrip("*~#!%$@^-"), "gres": parts[2],
                              "gpus": gpus_in_gres(parts[2])}
        return list(seen.values())

    def usable_nodes(self) -> list[dict[str, Any]]:
        """The partition's nodes that are not down, drained or failed."""
        return [n for n in self.nodes() if not n["state"].startswith(("down", "drain", "fail"))]

    def gpus_per_job(self) -> int:
        return gpus_in_gres(self.slurm.gres)

    def unanswered(self, exc: Exception) -> str:
        return f"`sinfo` failed ({exc})"

    def check(self, research_dir: Path | str | None = None) -> None:
        missing = self.missing_commands()
        if missing:
            raise UsageError(
                f"the Slurm executor needs Slurm's commands on PATH (missing: {', '.join(missing)}); run agentdeck "
                "on a login node of the cluster, or set [research] executor = \"local\""
            )
        try:
            self.ping()
        except SlurmUnreachable as exc:
            raise UsageError(f"the Slurm controller does not answer (`scontrol ping`: {exc}); check that slurmctld "
                             "runs and this machine can reach it") from None
        try:
            nodes = self.nodes()
        except SlurmUnreachable as exc:
            raise UsageError(f"`sinfo` failed ({exc}); check [research.slurm] partition") from None
        where = f"partition {self.slurm.partition!r}" if self.slurm.partition else "the default partitions"
        if not nodes:
            raise UsageError(f"Slurm lists no node in {where}; fix [research.slurm] partition (see `sinfo`)")
        if self.lacks_gpus(nodes):
            raise UsageError(
                f"no node in {where} offers {self.gpus_per_job()} GPU(s) (GRES {self.slurm.gres!r}); pick a "
                "partition with GPUs, or set [research.slurm] gres = \"\" to run trials without a GPU"
            )
        self.check_shared(research_dir)

    def _probe(self, research_dir: Path, timeout_s: float) -> ProbeResult:
        return probe(self, research_dir, timeout_s)

    # ------------------------------------------------------------------ submit
    def script_for(self, spec: JobSpec, exit_file: Path) -> str:
        lines = ["#!/bin/sh", f"# agentdeck trial {spec.trial_id} of research run {spec.tag} (written by agentdeck)"]
        for key, value in spec.env.items():
            if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                lines.append(f"export {key}={shlex.quote(str(value))}")
        lines.append('export PYTHONUNBUFFERED="${PYTHONUNBUFFERED:-1}"')
        cwd = shlex.quote(str(spec.cwd))
        lines.append(f"cd {cwd} || {{ echo \"agentdeck: node $(hostname) cannot enter {spec.cwd}: the worktree is "
                     f"not on a filesystem this node shares\" >&2; exit {NO_WORKTREE_CODE}; }}")
        lines.append(f"/bin/sh -c {shlex.quote(spec.command)}")
        exit_q, tmp_q = shlex.quote(str(exit_file)), shlex.quote(str(exit_file) + ".tmp")
        lines.append("rc=$?")
        lines.append(f'printf "%s\\n" "$rc" > {tmp_q} && mv -f {tmp_q} {exit_q}')
        lines.append("exit $rc")
        return "\n".join(lines) + "\n"

    def sbatch_argv(self, spec: JobSpec, script: Path) -> list[str]:
        argv = ["sbatch", "--parsable", f"--job-name={self.job_name(spec)}", f"--chdir={spec.cwd}",
                f"--output={spec.log_path}", "--open-mode=truncate",
                f"--time={self.slurm.time or time_limit(spec.timeout_s)}"]
        if self.slurm.partition:
            argv.append(f"--partition={self.slurm.partition}")
        if self.slurm.gres and spec.slot != CPU_SLOT:
            argv.append(f"--gres={self.slurm.gres}")
        argv += [str(a) for a in self.slurm.sbatch_args]
        argv.append(str(script))
        return argv

    @staticmethod
    def job_name(spec: JobSpec) -> str:
        name = spec.name or f"agentdeck-{spec.tag}-{spec.trial_id}"
        return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:200]

    def submit(self, spec: JobSpec) -> JobHandle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        exit_file = Path(str(spec.log_path) + ".exit")
        data: dict[str, Any] = {
            "job_id": "", "name": self.job_name(spec), "log_path": str(spec.log_path),
            "exit_file": str(exit_file), "cwd": str(spec.cwd), "submitted_at": time.time(),
        }
        adopted = self._find_live(data["name"], str(spec.cwd))
        if adopted:
            # A job for this very trial was submitted by an agentdeck that died before recording it.
            data.update(job_id=adopted, adopted=True)
            return self._register(JobHandle(self.name, adopted, data))
        exit_file.unlink(missing_ok=True)
        script = Path(str(spec.log_path) + ".sbatch")
        script.write_text(self.script_for(spec, exit_file))
        try:
            proc = self._run(*self.sbatch_argv(spec, script))
        except SlurmUnreachable as exc:
            # sbatch may have reached the controller before it stopped answering: a job nobody
            # records must not hold a GPU (the name is this trial's alone).
            try:
                self._run("scancel", "-n", data["name"], timeout=10)
            except SlurmUnreachable:
                pass
            raise Refused(f"sbatch failed: {exc}") from None
        if proc.returncode != 0:
            raise Refused(f"sbatch failed: {self._first_line(proc)}")
        job_id = proc.stdout.strip().split(";")[0].strip()
        if not re.match(r"^\d+(_\d+)?$", job_id):
            raise Refused(f"sbatch answered {proc.stdout.strip()!r}, not a job id")
        data["job_id"] = job_id
        return self._register(JobHandle(self.name, job_id, data))

    def _register(self, handle: JobHandle) -> JobHandle:
        with self._lock:
            self._active[handle.job_id] = handle.data
            self._unknown.discard(handle.job_id)
        return handle

    def _find_live(self, name: str, cwd: str) -> str | None:
        try:
            user = ["-u", getpass.getuser()]
        except (KeyError, OSError):  # no passwd entry (some containers): the working directory still tells
            user = []
        try:
            proc = self._run("squeue", "-h", *user, "-n", name,
                             "-t", "PENDING,CONFIGURING,RUNNING,COMPLETING,SUSPENDED", "-o", "%i|%Z", timeout=20)
        except SlurmUnreachable:
            return None
        if proc.returncode != 0:
            return None
        for line in proc.stdout.splitlines():
            job_id, _, workdir = line.strip().partition("|")
            if job_id and workdir.rstrip("/") == cwd.rstrip("/"):
                return job_id
        return None

    # ------------------------------------------------------------------ state
    def _exit_from_file(self, data: dict[str, Any]) -> int | None:
        try:
            text = Path(data.get("exit_file", "")).read_text().strip()
            return int(text)
        except (OSError, ValueError):
            return None

    def _parse_scontrol(self, text: str) -> tuple[str, str, str] | None:
        fields = {m.group(1): m.group(2) for m in re.finditer(r"(\w+)=(\S*)", text)}
        state = fields.get("JobState", "")
        if not state:
            return None
        node = fields.get("BatchHost") or fields.get("NodeList", "")
        return state, "" if node == "(null)" else node, fields.get("ExitCode", "0:0")

    def _query_one(self, job_id: str) -> tuple[str, str, str] | None:
        """(state, node, ExitCode) from squeue, scontrol, then sacct; None when nobody knows the job."""
        proc = self._run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i|%T|%N")
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) >= 3 and parts[0] == job_id and parts[1] not in DONE | LOST:
                    return parts[1], parts[2], "0:0"
        elif "invalid job id" not in (proc.stderr or "").lower():
            raise SlurmUnreachable(self._first_line(proc))
        return self._query_finished(job_id)

    def _query_finished(self, job_id: str) -> tuple[str, str, str] | None:
        proc = self._run("scontrol", "show", "job", "-o", job_id)
        if proc.returncode == 0:
            parsed = self._parse_scontrol(proc.stdout)
            if parsed is not None:
                return parsed
        elif "invalid job id" not in (proc.stderr or "").lower():
            raise SlurmUnreachable(self._first_line(proc))
        if shutil.which("sacct"):
            acct = self._run("sacct", "-X", "-n", "-P", "-j", job_id, "-o", "JobID,State,ExitCode,NodeList")
            if acct.returncode == 0:
                for line in acct.stdout.splitlines():
                    parts = line.strip().split("|")
                    if len(parts) >= 4 and parts[0] == job_id:
                        return parts[1].split()[0] if parts[1] else "", parts[3], parts[2]
        return None

    def _refresh(self) -> None:
        """One batched squeue for every active job; scontrol/sacct for those it no longer lists."""
        with self._lock:
            ids = [j for j in self._active if j]
        if not ids:
            return
        proc = self._run("squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%N")
        seen: dict[str, tuple[str, str, str]] = {}
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) >= 3 and parts[0] in ids:
                    seen[parts[0]] = (parts[1], parts[2], "0:0")
        elif "invalid job id" not in (proc.stderr or "").lower():
            raise SlurmUnreachable(self._first_line(proc))
        for job_id in ids:
            info = seen.get(job_id)
            if info is None or info[0] in DONE or info[0] in LOST:
                info = self._query_finished(job_id)
            with self._lock:
                if info is None:
                    self._unknown.add(job_id)
                    self._info.pop(job_id, None)
                else:
                    self._unknown.discard(job_id)
                    self._info[job_id] = info
        for job_id in list(self._pending_cancels):
            if self._run("scancel", job_id, timeout=20).returncode == 0:
                self._pending_cancels.discard(job_id)

    def _learn_node(self, handle: JobHandle) -> None:
        """Fill ``handle.node`` for a job whose exit file came before any poll saw it run (a short job, a
        busy machine): one lookup while Slurm still remembers the job."""
        if handle.node or not handle.job_id or handle.job_id in self._node_asked:
            return
        self._node_asked.add(handle.job_id)
        with self._lock:
            info = self._info.get(handle.job_id)
        if not info or not info[1]:
            try:
                info = self._query_one(handle.job_id)
            except SlurmUnreachable:
                return
        if info and info[1]:
            handle.node = info[1]
            handle.data["node"] = info[1]

    def poll(self, handle: JobHandle) -> JobState:
        data = handle.data
        code = self._exit_from_file(data)
        if code is not None:
            self._learn_node(handle)
            return JobState("done", code)
        with self._lock:
            if handle.job_id not in self._active:
                self._active[handle.job_id] = data
            stale = time.monotonic() - self._last_query >= self.QUERY_INTERVAL_S or bool(self._pending_cancels) or (
                handle.job_id not in self._info and handle.job_id not in self._unknown)
        if stale:
            try:
                self._refresh()
                self._silence.heard()
            except SlurmUnreachable as exc:
                silent = self._silence.unheard()
                if silent >= self.LOST_AFTER_S:
                    return JobState("lost", None, detail=f"the Slurm controller has not answered for "
                                                         f"{silent:.0f}s ({exc})")
                last = self._info.get(handle.job_id)
                return JobState(self._simple_state(last[0]) if last else "pending", detail=f"controller silent: {exc}")
            finally:
                self._last_query = time.monotonic()
        with self._lock:
            info = self._info.get(handle.job_id)
            unknown = handle.job_id in self._unknown
        if info is None:
            code = self._exit_from_file(data)
            if code is not None:
                self._learn_node(handle)
                return JobState("done", code)
            if unknown:
                return JobState("lost", None, detail=f"Slurm no longer knows job {handle.job_id} and it left no "
                                                     "exit status")
            return JobState("pending")
        state, node, exit_code = info
        if node:
            handle.node = node
            data["node"] = node
        simple = self._simple_state(state)
        if simple in ("pending", "running"):
            return JobState(simple, detail=state)
        code = self._exit_from_file(data)
        if code is not None:
            return JobState("done", code, detail=state)
        if simple == "lost":
            return JobState("lost", None, detail=f"Slurm job {handle.job_id} ended {state}")
        rc = exit_code_of(state, exit_code)
        self._explain_missing_output(handle, state, exit_code, rc)
        return JobState("done", rc, detail=f"Slurm job {handle.job_id} ended {state} (ExitCode {exit_code})")

    @staticmethod
    def _simple_state(state: str) -> str:
        state = state.split()[0] if state else ""
        if state in PENDING:
            return "pending"
        if state in RUNNING:
            return "running"
        if state in LOST:
            return "lost"
        if state in DONE:
            return "done"
        return "running" if state else "pending"

    def _explain_missing_output(self, handle: JobHandle, state: str, code: str, rc: int) -> None:
        """A job that ended without writing its exit file: say why in the log agentdeck shows."""
        if handle.data.get("explained"):
            return
        path = Path(handle.data.get("log_path", ""))
        if rc == NO_WORKTREE_CODE or not path.exists() or path.stat().st_size == 0:
            why = ("its output never reached this machine: is the repository on a filesystem the nodes share? "
                   "(`agentdeck doctor` checks)")
        else:
            why = "it was stopped before the command finished"
        note_in_log(handle, f"Slurm job {handle.job_id} ended {state} (ExitCode {code}); {why}", flag="explained")

    def read_log(self, handle: JobHandle) -> str:
        return read_log_tail(handle.data.get("log_path", ""))

    def cancel(self, handle: JobHandle) -> None:
        if not handle.job_id:
            return
        try:
            proc = self._run("scancel", handle.job_id, timeout=20)
            ok = proc.returncode == 0 or "already completing or completed" in (proc.stderr or "").lower()
        except SlurmUnreachable:
            ok = False
        if not ok:
            self._pending_cancels.add(handle.job_id)  # retried with the next state query
        with self._lock:
            self._last_query = 0.0  # look again at once
        self.wake.set()

    def reattach(self, data: dict[str, Any]) -> JobHandle | None:
        handle = self.recorded_handle(data, "job_id")
        if handle is None:
            return None
        if self._exit_from_file(handle.data) is not None:
            return self._register(handle)
        try:
            info = self._query_one(handle.job_id)
        except SlurmUnreachable:
            return self._register(handle)  # the controller may come back; poll decides
        if info is None:
            return None
        return self._register(handle)

    def finish(self, handle: JobHandle) -> None:
        with self._lock:
            self._active.pop(handle.job_id, None)
            self._info.pop(handle.job_id, None)
            self._unknown.discard(handle.job_id)


def make_executor(settings: Any = None) -> SlurmExecutor:
    return SlurmExecutor(settings)
