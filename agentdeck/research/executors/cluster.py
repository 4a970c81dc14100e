"""What the cluster executors (Ray, Slurm) share: lanes instead of pinned GPUs, the shared-filesystem
probe and its cache, the controller's silence, and agentdeck's own notes in a job's log.

A cluster's scheduler picks each job's GPU, so a :class:`ClusterExecutor`'s slots are lanes that only
bound the jobs in flight (``<lane_prefix>:<n>``), sized from the cluster's nodes for ``gpus =
"auto"``.  Each executor says how to list its nodes (:meth:`ClusterExecutor.nodes`), what one job
asks for (:meth:`ClusterExecutor.gpus_per_job`), how its cluster fails to answer
(:attr:`ClusterExecutor.unreachable`) and how to send the probe job (:meth:`ClusterExecutor._probe`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from agentdeck import paths
from agentdeck.errors import UsageError
from agentdeck.research.executors.base import Executor, JobHandle
from agentdeck.research.gpus import CPU_SLOT

#: A probe's answer: True (shared), False (not shared: the detail names the fix), None (unverified).
ProbeResult = tuple[bool | None, str]


class ClusterExecutor(Executor):
    """An executor whose scheduler picks each job's GPU (Ray, Slurm): its slots are lanes that only
    bound the jobs in flight, ``<lane_prefix>:<n>``."""

    pins_devices = False
    lane_prefix = "cluster"
    #: The cluster's name in messages ("Ray", "Slurm").
    title = "cluster"
    #: The error the executor's cluster calls raise when nobody answers.
    unreachable: ClassVar[type[Exception]] = Exception
    PROBE_TIMEOUT_S = 60.0  # how long check() waits for the shared-filesystem probe job

    def __init__(self) -> None:
        super().__init__()
        #: research folder -> the probe's final answer (an unverified one is asked again).
        self.probed: dict[str, ProbeResult] = {}

    # ------------------------------------------------------------------ what each cluster says
    def nodes(self) -> list[dict[str, Any]]:  # pragma: no cover - interface
        """The cluster's nodes, each with at least ``"gpus"``; raises :attr:`unreachable`."""
        raise NotImplementedError

    def usable_nodes(self) -> list[dict[str, Any]]:
        """The nodes that can take a job now (all that :meth:`nodes` lists, unless the cluster says)."""
        return self.nodes()

    def gpus_per_job(self) -> float:  # pragma: no cover - interface
        """The GPUs one trial asks the scheduler for (0: none)."""
        raise NotImplementedError

    def unanswered(self, exc: Exception) -> str:
        """How the cluster failed to answer, for a message ("the cluster at X does not answer (...)")."""
        return f"the {self.title} cluster does not answer ({exc})"

    def _probe(self, research_dir: Path, timeout_s: float) -> ProbeResult:  # pragma: no cover - interface
        """Send the probe job: does a node see *research_dir* (and do its writes come back)?"""
        raise NotImplementedError

    # ------------------------------------------------------------------ slots
    def lacks_gpus(self, nodes: list[dict[str, Any]]) -> bool:
        """True when trials ask for GPUs and no node of *nodes* has enough for one."""
        need = self.gpus_per_job()
        return bool(need) and not any(n["gpus"] >= need for n in nodes)

    def lanes_on(self, nodes: list[dict[str, Any]]) -> int:
        """How many trials *nodes* run at once: their GPUs / GPUs per job (the nodes when jobs take no GPU)."""
        need = self.gpus_per_job()
        return sum(int(n["gpus"] // need) for n in nodes) if need > 0 else len(nodes)

    def auto_lanes(self) -> int:
        """How many jobs the cluster can run at once (``gpus = "auto"``): :meth:`lanes_on` its usable
        nodes; a UsageError naming the fix when it cannot tell."""
        try:
            nodes = self.usable_nodes()
        except self.unreachable as exc:
            raise UsageError(f"cannot size the {self.title} lanes: {self.unanswered(exc)}; give --gpus 0,1,... "
                             "(one lane per job in flight)") from None
        return self.lanes_on(nodes)

    def slots(self, setting: Any) -> list[str]:
        """Lanes bounding the jobs in flight: ``cpu``, ``auto`` (:meth:`auto_lanes`) or one per id listed."""
        if isinstance(setting, str):
            if setting == CPU_SLOT:
                return [CPU_SLOT]
            if setting != "auto":
                raise UsageError(f"[research] gpus = {setting!r}: expected \"auto\" or a list of device ids")
            return [f"{self.lane_prefix}:{i}" for i in range(max(1, self.auto_lanes()))]
        ids = [str(int(i)) for i in setting]
        if not ids:
            raise UsageError("[research] gpus is an empty list; use \"auto\" or one id per job in flight")
        return [f"{self.lane_prefix}:{i}" for i in range(len(ids))]

    def recorded_handle(self, data: dict[str, Any], id_key: str) -> JobHandle | None:
        """The handle the ledger's *data* describes (its job id under *id_key*, its node), for
        :meth:`reattach`; None when it names no job."""
        job_id = str(data.get(id_key) or "")
        if not job_id:
            return None
        return JobHandle(self.name, job_id, dict(data), node=str(data.get("node", "")))

    # ------------------------------------------------------------------ the shared filesystem
    def probe_shared(self, research_dir: Path | str, timeout_s: float | None = None) -> ProbeResult:
        """Does a job on the cluster see *research_dir* (and do its writes come back)?

        ``(True, detail)``, ``(False, detail naming the fix)``, or ``(None, detail)`` when the probe job
        did not run in time (a busy queue): unknown, not a failure.  A final answer is cached per folder.
        """
        key = str(Path(research_dir).resolve())
        if key in self.probed:
            return self.probed[key]
        result = self._probe(Path(key), self.PROBE_TIMEOUT_S if timeout_s is None else timeout_s)
        if result[0] is not None:
            self.probed[key] = result
        return result

    def check_shared(self, research_dir: Path | str | None) -> None:
        """A UsageError naming the fix when the probe finds *research_dir* (default: the research
        folder of the repository around the working directory) not shared with the nodes."""
        if research_dir is None:
            research_dir = research_dir_from_cwd()
        if research_dir is not None:
            ok, detail = self.probe_shared(Path(research_dir))
            if ok is False:
                raise UsageError(detail)


class Silence:
    """How long a cluster has not answered: a job is recorded ``lost`` once that reaches the executor's
    ``LOST_AFTER_S`` (the loop would otherwise wait forever)."""

    def __init__(self) -> None:
        self.since: float | None = None

    def heard(self) -> None:
        """The cluster answered."""
        self.since = None

    def unheard(self) -> float:
        """The cluster did not answer: the seconds it has been silent (0 for the first miss)."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return now - self.since


def note_in_log(handle: JobHandle, line: str, flag: str = "noted") -> None:
    """Append agentdeck's own explanation *line* to the job's log, once per *flag* (a key of
    ``handle.data``, so a reattached job is not explained twice)."""
    if handle.data.get(flag):
        return
    handle.data[flag] = True
    try:
        with open(handle.data.get("log_path", ""), "a", encoding="utf-8") as fh:
            fh.write(f"\n[agentdeck] {line}\n")
    except OSError:
        pass


def research_dir_from_cwd() -> Path | None:
    """The research folder of the repository around the working directory (None outside one)."""
    try:
        return Path(paths.find_repo(None).research_dir)
    except Exception:  # not in a repository: nothing to probe
        return None
