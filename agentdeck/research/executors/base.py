"""The executor interface: where and how a trial's job runs.

The loop owns the trial semantics (time budget, timeout, metric, guards,
ledger); an executor only runs a shell command in a directory with an
environment, and answers these questions:

- ``submit(spec) -> JobHandle`` — start the job (returns at once).
- ``poll(handle) -> JobState`` — ``pending`` (accepted, not yet running: a
  cluster queue), ``running``, ``done`` (with the exit code) or ``lost`` (the
  job vanished without an exit status: its node or cluster went away, or its
  process died while agentdeck was not watching).
- ``read_log(handle) -> str`` — the job's output so far (stdout and stderr).
- ``cancel(handle)`` — stop it, everything it started included.
- ``settle(handle) -> str`` — after a job (and its evaluation) ended, before its
  slot is leased again: "" when nothing of it still holds the device (the local
  executor checks ``nvidia-smi``), else what does.
- ``reattach(data) -> JobHandle | None`` — rebuild a handle from the
  JSON-able ``handle.data`` recorded in the ledger, after agentdeck restarted;
  None when the job is gone (the loop then reads what it left, if anything).

``handle.data`` is everything needed to find the job again: process ids for
the local executor, a deterministic submission id for Ray (so a restarted
agentdeck never submits twice), a job id for Slurm.  The loop enforces
``timeout_s`` itself by calling ``cancel`` (Ray has no per-job timeout), and
starts the clock when a job is first seen ``running``, not when it was queued.

An executor whose jobs run on this machine (``runs_here``: the local one) gets
the job's whole, allow-listed environment (``spec.clean_env``) and may get a
sandbox profile (``spec.sandbox``) to run it in; cluster executors get only the
``AGENTDECK_*`` variables to add to their own.

Slots: ``slots(setting)`` returns the lanes the loop leases one job to at a
time.  The local executor pins a job to its GPU with ``CUDA_VISIBLE_DEVICES``;
a cluster executor may instead ask its scheduler for one GPU per job and use
the slots only to bound how many jobs it keeps in flight (``pins_devices``): what the
cluster executors share is :mod:`.cluster`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentdeck.research.gpus import resolve_slots


@dataclass
class JobSpec:
    """One job: run *command* (a shell command line) in *cwd*."""

    trial_id: int
    tag: str
    command: str
    cwd: Path
    env: dict[str, str]  # added to the executor's environment
    log_path: Path  # where the job's output must end up
    slot: str  # the slot the loop leased for it
    budget_s: float
    timeout_s: float
    name: str = ""  # a stable, unique job name: "<repo_id>-<tag>-<trial>"
    #: True: *env* is the job's whole environment (an allow-list built by the loop), not an addition.
    clean_env: bool = False
    #: A :class:`agentdeck.sandbox.Profile` to run the job in (executors that run jobs here); None: none.
    sandbox: Any = None
    #: The trial's artifact folder (``AGENTDECK_ARTIFACT_DIR``; already in *env*).
    artifact_dir: Path | None = None


@dataclass
class JobHandle:
    executor: str
    job_id: str
    #: JSON-able; stored in the ledger.  An executor whose jobs run at once sets ``running_at``
    #: (epoch seconds) so the loop times them from their start, not from its next poll.
    data: dict[str, Any] = field(default_factory=dict)
    node: str = ""  # where it runs (a hostname for cluster executors)
    runtime: Any = None  # process-local object (a Popen); never stored


@dataclass
class JobState:
    state: str  # "pending" | "running" | "done" | "lost"
    exit_code: int | None = None
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("done", "lost")


class Executor(ABC):
    """Runs trial jobs; see the module docstring for the contract."""

    name = "base"
    #: True when the executor pins each job to its slot's device itself (CUDA_VISIBLE_DEVICES).
    pins_devices = True
    #: True when jobs run on this machine: they can be sandboxed, and get an allow-listed environment.
    runs_here = False

    def __init__(self) -> None:
        #: Set when a job may have changed state, so the loop wakes at once instead of at its next tick.
        self.wake = threading.Event()

    def slots(self, setting: Any) -> list[str]:
        return resolve_slots(setting)

    def check(self, research_dir: Path | None = None) -> None:  # noqa: B027  optional hook: by default there is nothing to do
        """Raise a UsageError naming the fix when this executor cannot run here (called before a run
        with the repository's research dir, where trial worktrees and logs live)."""

    @abstractmethod
    def submit(self, spec: JobSpec) -> JobHandle: ...

    @abstractmethod
    def poll(self, handle: JobHandle) -> JobState: ...

    @abstractmethod
    def read_log(self, handle: JobHandle) -> str: ...

    @abstractmethod
    def cancel(self, handle: JobHandle) -> None: ...

    @abstractmethod
    def reattach(self, data: dict[str, Any]) -> JobHandle | None: ...

    def finish(self, handle: JobHandle) -> None:  # noqa: B027  optional hook: by default there is nothing to do
        """Called once a finished job is recorded: release what the executor still holds."""

    def settle(self, handle: JobHandle) -> str:
        """Called after a job (and its evaluation) ended, before its slot is leased again: "" when
        nothing of the job still holds the slot's device, else what does (the loop asks again)."""
        return ""

    def close(self) -> None:  # noqa: B027  optional hook: by default there is nothing to do
        """Called when the loop exits (jobs still running are left running)."""


#: The most of a job's log any executor reads back (its tail).
MAX_LOG_READ = 8 * 1024 * 1024


def read_log_tail(path: Path | str, limit: int = MAX_LOG_READ) -> str:
    """The last *limit* bytes of a job's log file ("" when there is none yet)."""
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as fh:
            if size > limit:
                fh.seek(size - limit)
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
