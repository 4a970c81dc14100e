"""The Ray executor: one Ray job per trial, through Ray's Jobs API (``executor = "ray"``).

Each trial is ``JobSubmissionClient(address).submit_job(...)`` with

- ``submission_id`` derived from the job's stable name (``agentdeck-<repo>-<tag>-<trial>``): Ray
  rejects a second job with the same id, so an agentdeck that died between submitting and recording
  resubmits nothing — the rejection is answered by adopting the job already there (its metadata
  must name the same worktree; a stale job of an older ledger gets a suffixed id instead);
- ``entrypoint_num_gpus`` = ``[research.ray] num_gpus`` (0 on the ``cpu`` slot): Ray's scheduler
  picks the GPU and sets ``CUDA_VISIBLE_DEVICES``, so ``pins_devices`` is False and the slots only
  bound the jobs in flight; jobs beyond the free GPUs wait in Ray's queue as ``pending``, and the
  loop's clock starts only when Ray says ``RUNNING``;
- ``runtime_env.env_vars`` = the trial's environment (``AGENTDECK_BUDGET_S`` ...) over
  ``[research.ray] runtime_env``'s own.

Where the job runs.  A cluster that shares this machine's filesystem — a local one (address on
this host, or none: Ray's own discovery of the local cluster), or one declared shared with
``shared_fs = true`` — runs ``cd <worktree> && exec sh -c <command>``: nothing is uploaded, the job
edits and reads the very worktree agentdeck checks afterwards (protected-file checksums), and a
large lab costs nothing to start.  A remote cluster gets the worktree as ``runtime_env.working_dir``
(Ray zips and uploads it, up to Ray's package limit; ``.git`` excluded); the guard then sees only
this machine's copy, so prefer a shared filesystem for untrusted proposers.

agentdeck enforces the timeout (``cancel`` -> ``stop_job``: SIGTERM, then SIGKILL after Ray's
grace), streams each job's log into ``spec.log_path`` (a background thread, every
``LOG_INTERVAL_S``), reads the driver's exit code, and maps Ray's states onto ``JobState``: a job
the cluster no longer knows (it restarted), whose supervisor died with its node, or whose cluster
has not answered for ``LOST_AFTER_S`` is ``lost``.  Every HTTP call is bounded by
``REQUEST_TIMEOUT_S`` (Ray's client has no timeout of its own).

Optional dependency: ``pip install 'agentdeck[ray]'``; without it ``check()`` says so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentdeck.config import ResearchSettings
from agentdeck.errors import Refused, UsageError
from agentdeck.research.executors.base import JobHandle, JobSpec, JobState, read_log_tail
from agentdeck.research.executors.cluster import ClusterExecutor, ProbeResult, Silence, note_in_log
from agentdeck.research.executors.ray_support import (  # noqa: F401 - is_local_address and the errors are re-exported
    DuplicateJob,
    JobMissing,
    RayUnreachable,
    _LogSync,
    is_local_address,
    job_request,
    probe,
    submission_id_for,
    worktree_root,
)

INSTALL_HINT = "pip install 'agentdeck[ray]'"
#: The exit status reported for a job Ray could not start (runtime env setup failed ...).
NOT_STARTED_CODE = 127
LOST_ERRORS = {"JOB_SUPERVISOR_ACTOR_DIED", "JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE"}
QUIET_LOGGERS = ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging",
                 "ray._private.runtime_env.working_dir")


class RayExecutor(ClusterExecutor):
    name = "ray"
    lane_prefix = "ray"
    title = "Ray"
    unreachable = RayUnreachable
    LOG_INTERVAL_S = 0.25  # the watcher's round (longer with many jobs): state and new log lines
    STATE_TTL_S = 1.0  # poll answers from the watcher's state when it is this fresh
    LOST_AFTER_S = 30.0
    REQUEST_TIMEOUT_S = 20.0
    NODES_WAIT_S = 15.0

    def __init__(self, settings: Any = None):
        super().__init__()
        self.settings = settings if settings is not None else ResearchSettings()
        self.ray = self.settings.ray
        self.address = (self.ray.address or os.environ.get("RAY_ADDRESS", "")).strip()
        shared = getattr(self.ray, "shared_fs", None)  # an optional key; see docs/cluster.md
        self.upload = (not shared) if shared is not None else not is_local_address(self.address)
        self._client: Any = None
        self._closed_for_good = False
        self._lock = threading.RLock()
        self._logs: dict[str, _LogSync] = {}  # submission id -> its log file's sync state
        self._handles: dict[str, JobHandle] = {}  # the jobs the watcher refreshes
        self._last: dict[str, tuple[JobState, float]] = {}  # submission id -> (state, when, monotonic)
        self._pending_stops: set[str] = set()
        self._nodes: dict[str, str] = {}
        self._silence = Silence()
        self._pump: threading.Thread | None = None
        self._closed = threading.Event()

    # ------------------------------------------------------------------ plumbing
    @property
    def where(self) -> str:
        return self.address or "the local Ray cluster (auto-detected)"

    def _import(self):
        try:
            from ray import job_submission
        except ImportError:
            raise UsageError(f"the Ray executor needs Ray on this machine: {INSTALL_HINT}") from None
        # Ray's client narrates each upload on stderr ("Uploading package ..."); agentdeck's own
        # display (the run's progress, the deck) must not be interleaved with it.
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        return job_submission

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call with a deadline (Ray's client has none); classify its failure.

        The call runs on a daemon thread, so a dashboard that never answers can neither freeze the
        loop nor keep agentdeck from exiting.
        """
        if self._closed_for_good:
            raise RayUnreachable("the executor is closed")
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name="ray-call", daemon=True).start()
        if not done.wait(self.REQUEST_TIMEOUT_S):
            raise RayUnreachable(f"no answer within {self.REQUEST_TIMEOUT_S:g}s")
        exc = box.get("error")
        if exc is None:
            return box.get("value")
        if isinstance(exc, (JobMissing, DuplicateJob, RayUnreachable, UsageError)):
            raise exc
        text = str(exc)
        if "already exists" in text:
            raise DuplicateJob(text) from None
        if "404" in text or "does not exist" in text:
            raise JobMissing(text.splitlines()[0] if text else "no such job") from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise RayUnreachable(first[:300]) from None

    def client(self) -> Any:
        if self._client is None:
            job_submission = self._import()

            def make():
                return job_submission.JobSubmissionClient(self.address or None)

            self._client = self._call(make)
        return self._client

    def nodes(self) -> list[dict[str, Any]]:
        """Alive nodes: ``{"id", "name", "gpus", "cpus"}`` (Ray's state API)."""
        self._import()
        from ray.util.state import list_nodes

        address = self.address or None
        if address and "://" not in address:
            address = f"http://{address}"
        deadline = time.monotonic() + self.NODES_WAIT_S
        while True:
            found = self._call(list_nodes, address=address, detail=True, raise_on_missing_output=False)
            out = []
            for node in found:
                if getattr(node, "state", "") != "ALIVE":
                    continue
                total = dict(getattr(node, "resources_total", {}) or {})
                out.append({"id": node.node_id, "name": getattr(node, "node_name", "") or getattr(node, "node_ip", ""),
                            "gpus": float(total.get("GPU", 0.0)), "cpus": float(total.get("CPU", 0.0))})
            # A cluster that has just started answers the Jobs API before its nodes are listed.
            if out or time.monotonic() > deadline:
                return out
            time.sleep(0.25)

    def gpus_per_job(self) -> float:
        return float(self.ray.num_gpus or 0)

    def unanswered(self, exc: Exception) -> str:
        return f"the cluster at {self.where} does not answer ({exc})"

    # ------------------------------------------------------------------ checks
    def check(self, research_dir: Path | str | None = None) -> None:
        self._import()
        if self.address.startswith("ray://"):
            raise UsageError(f"[research.ray] address {self.address!r} is a Ray Client address; agentdeck uses the "
                             "Jobs API: give the dashboard address, e.g. \"http://HEAD:8265\"")
        if not isinstance(self.ray.runtime_env, dict):
            raise UsageError("[research.ray] runtime_env must be a table, e.g. { env_vars = { HF_HOME = \"/data\" } }")
        try:
            self.client()
            nodes = self.nodes()
        except RayUnreachable as exc:
            raise UsageError(
                f"the Ray cluster at {self.where} does not answer ({exc}); start it (`ray start --head "
                "--num-gpus=N`) or set [research.ray] address = \"http://HEAD:8265\""
            ) from None
        if self.lacks_gpus(nodes):
            total = sum(n["gpus"] for n in nodes)
            raise UsageError(
                f"no node of the Ray cluster at {self.where} has {self.gpus_per_job():g} GPU(s) for a trial (the "
                f"cluster has {total:g} in all); add GPU nodes, or set [research.ray] num_gpus = 0 to run trials "
                "on CPUs"
            )
        if not self.upload and not is_local_address(self.address):
            self.check_shared(research_dir)

    def _probe(self, research_dir: Path, timeout_s: float) -> ProbeResult:
        if is_local_address(self.address):
            return True, "the Ray cluster runs on this machine"
        return probe(self, str(research_dir), timeout_s)

    # ------------------------------------------------------------------ submit
    def job_request(self, spec: JobSpec, submission_id: str) -> dict[str, Any]:
        """The keyword arguments of ``submit_job`` for *spec* (pure: no cluster needed)."""
        return job_request(spec, submission_id, self.ray, upload=self.upload)

    def submit(self, spec: JobSpec) -> JobHandle:
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        base = submission_id_for(spec)
        try:
            client = self.client()
            sid, adopted = base, False
            for n in range(1, 51):
                sid = base if n == 1 else f"{base}-{n}"
                try:
                    self._call(client.submit_job, **self.job_request(spec, sid))
                    break
                except DuplicateJob:
                    info = self._call(client.get_job_info, sid)
                    if (getattr(info, "metadata", None) or {}).get("agentdeck_cwd") == str(spec.cwd):
                        adopted = True  # submitted by an agentdeck that died before recording it
                        break
            else:
                raise Refused(f"50 Ray jobs named {base}... already exist on {self.where}; delete them "
                              "(`ray job delete`) or start a new research tag")
        except RayUnreachable as exc:
            if self._client is not None:
                # The submission may have reached Ray before the answer was lost: a job nobody records
                # must not hold a GPU.
                threading.Thread(target=self._stop_quietly, args=(sid,), daemon=True).start()
            raise Refused(f"the Ray cluster at {self.where} does not answer ({exc})") from None
        except JobMissing as exc:
            raise Refused(f"Ray rejected the job: {exc}") from None
        spec.log_path.touch(exist_ok=True)
        data = {"submission_id": sid, "address": self.address, "log_path": str(spec.log_path),
                "cwd": str(spec.cwd), "upload": self.upload, "submitted_at": time.time()}
        if adopted:
            data["adopted"] = True
        handle = JobHandle(self.name, sid, data)
        self._watch(handle)
        return handle

    def _stop_quietly(self, sid: str) -> None:
        try:
            self._call(self.client().stop_job, sid)
        except (RayUnreachable, JobMissing, DuplicateJob, UsageError):
            pass

    # ------------------------------------------------------------------ the watcher
    def _watch(self, handle: JobHandle) -> None:
        with self._lock:
            if handle.job_id not in self._logs:
                self._logs[handle.job_id] = _LogSync(Path(handle.data.get("log_path", "")))
            self._handles[handle.job_id] = handle
            if self._pump is None or not self._pump.is_alive():
                self._closed.clear()
                self._pump = threading.Thread(target=self._watcher, name="ray-watch", daemon=True)
                self._pump.start()

    def _watcher(self) -> None:
        """Every round: each job's state (cached for poll) and its new log lines; pending stops."""
        interval = self.LOG_INTERVAL_S
        while not self._closed.wait(interval):
            with self._lock:
                handles = [h for sid, h in self._handles.items() if not self._logs[sid].final]
                stops = list(self._pending_stops)
            for sid in stops:
                try:
                    self._call(self.client().stop_job, sid)
                    self._pending_stops.discard(sid)
                except JobMissing:
                    self._pending_stops.discard(sid)
                except (RayUnreachable, UsageError):
                    pass
            for handle in handles:
                before = self._cached(handle.job_id, max_age=float("inf"))
                state = self._fetch_state(handle)
                if state.finished and not (before and before.finished):
                    self.wake.set()  # the loop records it now, not at its next tick
                if state.state != "pending":
                    try:
                        self._sync_log(handle.job_id)
                    except (RayUnreachable, JobMissing, UsageError):
                        pass
            with self._lock:
                if not self._handles and not self._pending_stops:
                    self._pump = None
                    return
            # Two requests per job per round: a large lab's dashboard is not hammered.
            interval = max(self.LOG_INTERVAL_S, 0.05 * len(handles))

    def _sync_log(self, sid: str, final: bool = False) -> None:
        text = self._call(self.client().get_job_logs, sid) or ""
        with self._lock:
            st = self._logs.get(sid)
            if st is None or st.final or (st.synced and len(text) < st.length):
                return  # gone, finished, or an older answer than the one already written
            if st.synced and len(text) >= st.length and text.startswith(st.head):
                new = text[st.length:]
                if new:
                    with open(st.path, "a", encoding="utf-8") as fh:
                        fh.write(new)
            else:
                st.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = st.path.with_name(st.path.name + ".tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, st.path)
                st.synced = True
            st.length = len(text)
            st.head = text[:200]
            if final:
                st.final = True

    def read_log(self, handle: JobHandle) -> str:
        try:
            last = self._cached(handle.job_id, max_age=float("inf"))
            self._sync_log(handle.job_id, final=bool(last and last.finished))
        except (RayUnreachable, JobMissing, UsageError):
            pass
        return read_log_tail(handle.data.get("log_path", ""))

    # ------------------------------------------------------------------ state
    def _node_name(self, node_id: str) -> str:
        if not node_id:
            return ""
        if node_id not in self._nodes:
            try:
                for node in self.nodes():
                    self._nodes[node["id"]] = node["name"]
            except Exception:  # a name is a nicety
                pass
            self._nodes.setdefault(node_id, node_id[:12])
        return self._nodes[node_id]

    def _cached(self, sid: str, max_age: float) -> JobState | None:
        with self._lock:
            entry = self._last.get(sid)
        if entry is None or time.monotonic() - entry[1] > max_age:
            return None
        return entry[0]

    def poll(self, handle: JobHandle) -> JobState:
        """The job's state; the watcher's answer when it is fresh (the loop polls every tick)."""
        with self._lock:
            watched = handle.job_id in self._handles and self._pump is not None
        cached = self._cached(handle.job_id, self.STATE_TTL_S) if watched else None
        return cached if cached is not None else self._fetch_state(handle)

    def _fetch_state(self, handle: JobHandle) -> JobState:
        sid = handle.job_id
        try:
            info = self._call(self.client().get_job_info, sid)
        except JobMissing:
            return self._remember(sid, JobState("lost", None, detail=f"the Ray cluster at {self.where} no longer "
                                                                     f"knows job {sid} (it restarted?)"))
        except (RayUnreachable, UsageError) as exc:
            with self._lock:
                silent = self._silence.unheard()
            if silent >= self.LOST_AFTER_S:
                return self._remember(sid, JobState("lost", None, detail=f"the Ray cluster at {self.where} has not "
                                                                         f"answered for {silent:.0f}s ({exc})"))
            last = self._cached(sid, max_age=float("inf"))
            return JobState(last.state if last and not last.finished else "pending", detail=f"no answer: {exc}")
        with self._lock:
            self._silence.heard()
        status = str(getattr(info.status, "value", info.status))
        node_id = getattr(info, "driver_node_id", "") or ""
        if node_id and not handle.node:
            handle.node = self._node_name(node_id)
            handle.data["node"] = handle.node
        code = getattr(info, "driver_exit_code", None)
        error = str(getattr(info, "error_type", "") or "")
        if status == "PENDING":
            state = JobState("pending")
        elif status == "RUNNING":
            state = JobState("running")
        elif status == "SUCCEEDED":
            state = JobState("done", int(code) if code is not None else 0)
        elif status == "STOPPED":
            state = JobState("done", int(code) if code is not None else 143, detail="stopped")
        elif status == "FAILED":
            message = (getattr(info, "message", "") or "").strip().splitlines()
            why = f"{error or 'FAILED'}: {message[0] if message else ''}".strip()
            if code is not None:
                state = JobState("done", int(code))
            elif error in LOST_ERRORS:
                state = JobState("lost", None, detail=f"Ray: {why}")
                note_in_log(handle, f"Ray lost the job ({why})")
            else:
                state = JobState("done", NOT_STARTED_CODE, detail=f"Ray: {why}")
                note_in_log(handle, f"Ray could not run the job; reported as exit code {NOT_STARTED_CODE} ({why})")
        else:
            state = JobState("pending", detail=status)
        return self._remember(sid, state)

    def _remember(self, sid: str, state: JobState) -> JobState:
        with self._lock:
            self._last[sid] = (state, time.monotonic())
        return state

    def cancel(self, handle: JobHandle) -> None:
        with self._lock:
            self._last.pop(handle.job_id, None)  # the next poll asks the cluster
        try:
            self._call(self.client().stop_job, handle.job_id)
        except JobMissing:
            pass
        except (RayUnreachable, UsageError):
            with self._lock:
                self._pending_stops.add(handle.job_id)  # retried by the log thread
            self._watch(handle)
        self.wake.set()

    def reattach(self, data: dict[str, Any]) -> JobHandle | None:
        handle = self.recorded_handle(data, "submission_id")
        if handle is None:
            return None
        try:
            self._call(self.client().get_job_info, handle.job_id)
        except JobMissing:
            return None
        except (RayUnreachable, UsageError):
            pass  # the cluster may come back; poll decides (lost after LOST_AFTER_S)
        self._watch(handle)
        return handle

    def finish(self, handle: JobHandle) -> None:
        with self._lock:
            self._logs.pop(handle.job_id, None)
            self._handles.pop(handle.job_id, None)
            self._last.pop(handle.job_id, None)

    def close(self) -> None:
        self._closed.set()
        self._closed_for_good = True


def make_executor(settings: Any = None) -> RayExecutor:
    return RayExecutor(settings)
