"""The experiment loop: many proposers feeding many GPU slots, honestly.

One loop process runs one research run (a tag).  It owns the trial semantics:

* **baseline first** — ``repeats_baseline`` runs of the base commit measure the
  metric and its noise (their spread); proposals may run on the other slots
  meanwhile, but none is judged before the baseline is known;
* **proposals** are prepared by worker threads while jobs train: a fresh
  detached worktree at the current best commit (under the research dir, never
  a deck agent), the proposer's edit, a commit, a ref
  ``refs/agentdeck/research/<tag>/<trial>``; identical editable content is
  never run twice (a content hash; skipped duplicates are counted); a change
  to a protected or non-editable file is a crash before any GPU time is spent;
* **jobs** run through an executor, one per slot, with
  ``CUDA_VISIBLE_DEVICES`` and ``AGENTDECK_BUDGET_S``; the loop enforces
  ``timeout_s``, reads the metric, re-checks the protected files' checksums
  after the job (the job runs the edited code, which could rewrite them);
* **judging**: keep only when better than the best by more than the noise;
  with ``confirm`` a promising result is re-run first and the mean decides; a
  queued proposal whose parent is no longer the best is rebased before it
  runs, and a finished one that beats the best measured on an older parent is
  re-applied on the new best and run again; ``research/<tag>`` fast-forwards
  to each kept trial;
* **recording before any reset**: ledger row, results.tsv row and the memory
  note are written before a trial's worktree is removed;
* **control**: ``pause`` (no new job starts; running jobs finish), ``resume``,
  ``stop`` (running jobs are cancelled and recorded), read from the ledger so
  any process can steer; a loop killed mid-run leaves its jobs running, and
  the next ``run --tag`` reattaches them (or records them ``lost``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import queue
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agentdeck.errors import Refused
from agentdeck.research import gitops
from agentdeck.research.executors.base import Executor, JobHandle, JobSpec, JobState
from agentdeck.research.gpus import SlotPool, slot_env
from agentdeck.research.ledger import Ledger, ResultsTsv
from agentdeck.research.metric import beats, improvement, mean, noise_of, read_metric
from agentdeck.research.proposers.base import Proposal, ProposalFailed, ProposalRequest, Proposer

log = logging.getLogger("agentdeck.research")

MAX_DUPLICATE_ATTEMPTS = 25  # per proposal request
MAX_CONSECUTIVE_FAILURES = 10  # proposer failures in a row before the run stops
BACKOFF_BASE_S = 1.0  # after n failures in a row, wait min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**(n-1))
BACKOFF_MAX_S = 30.0
HEARTBEAT_S = 2.0
TICK_S = 0.25
CANCEL_RETRY_S = 5.0  # a cancel the executor refused is tried again after this long
PRIORITY = {"baseline": 0, "confirm": 1, "proposal": 2}


@dataclass
class ActiveJob:
    trial_id: int
    handle: JobHandle
    slot: str
    worktree: Path
    submitted: float
    running_since: float | None = None
    cancel_reason: str = ""
    cancel_retry_at: float = 0.0  # when a cancel that failed is tried again (0: none pending)


def fmt(value: Any) -> str:
    if isinstance(value, (int, float)):
        return f"{value:.6g}"
    return str(value)


class LoopLock:
    """An flock on ``<run_dir>/loop.lock``: held while a loop runs, released by the kernel on death."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    @staticmethod
    def held(path: Path) -> bool:
        """True when some process (this one included) holds the lock."""
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


class ResearchLoop:
    def __init__(self, research: Any, tag: str, proposer: Proposer | None = None,
                 executor: Executor | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 on_tick: Callable[["ResearchLoop"], None] | None = None):
        self.research = research
        self.tag = tag
        self.ledger: Ledger = research.ledger
        run = self.ledger.run(tag)
        if run is None:
            raise Refused(f"no research run {tag!r}; start one with `agentdeck research run`")
        self.settings = research.settings_from_run(run)
        self.root: Path = research.repo.root
        self.run_dir: Path = research.run_dir(tag)
        self.wt_dir = self.run_dir / "wt"
        self.logs_dir = self.run_dir / "logs"
        self.workdir = run["workdir"]
        self.branch = run["branch"]
        self.base_commit = run["base_commit"]
        self.protected: dict[str, str] = run["protected"]
        opts = run["settings"]
        self.proposer_name = opts.get("proposer", self.settings.proposer)
        self.slots: list[str] = list(opts.get("slots") or ["cpu"])
        self.budget_s = float(self.settings.budget_s)
        self.timeout_s = float(self.settings.timeout_s)
        self.executor = executor or research.make_executor(self.settings)
        self.proposer = proposer or research.make_proposer(self.proposer_name, tag, self.settings)
        self.pool = SlotPool(self.slots)
        self.tsv = ResultsTsv(self.run_dir / "results.tsv", self.settings.metric)
        self.wake = self.executor.wake
        self.on_event = on_event
        self.on_tick = on_tick
        workers = int(self.settings.workers or 0)
        self.workers = workers if workers > 0 else len(self.slots) + 1

        self.lock = threading.RLock()
        self.jobs: dict[int, ActiveJob] = {}
        self.ready: list[int] = []
        self.rebasing: set[int] = set()
        self.preparing = 0
        self.hashes: set[str] = set()
        self.consecutive_failures = 0
        self.next_proposal_at = 0.0
        self.seed_counter = 0
        self.stopping = threading.Event()
        self.calls: "queue.Queue[Callable[[], None]]" = queue.Queue()
        self.cleanup: "queue.Queue[Path | None]" = queue.Queue()
        self._cleaner: threading.Thread | None = None
        self.failed_message = ""
        self.stop_message = ""
        self._loop_lock = LoopLock(self.run_dir / "loop.lock")
        self._last_heartbeat = 0.0
        self._state = ""
        self.started_at = time.time()

    # ================================================================== helpers
    def event(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:  # noqa: BLE001 - a display must never break the loop
                log.debug("on_event failed", exc_info=True)

    def run_row(self) -> dict[str, Any]:
        row = self.ledger.run(self.tag)
        assert row is not None
        return row

    def set_state(self, state: str, message: str | None = None) -> None:
        if state != self._state or message is not None:
            fields: dict[str, Any] = {"state": state}
            if message is not None:
                fields["message"] = message
            self.ledger.update_run(self.tag, **fields)
            self._state = state
            self.event("state", {"state": state, "message": message or ""})

    def editable_paths(self, blobs: dict[str, str]) -> list[str]:
        return gitops.match(self.workdir, self.settings.editable, blobs.keys())

    def workdir_in(self, worktree: Path) -> Path:
        return worktree / self.workdir if self.workdir not in ("", ".") else worktree

    def new_worktree(self, commit: str, name: str | None = None) -> Path:
        path = self.wt_dir / (name or f"p-{uuid.uuid4().hex[:10]}")
        if path.exists():
            gitops.remove_worktree(self.root, path)
        gitops.add_worktree(self.root, path, commit)
        return path

    def _cleanup_worker(self) -> None:
        while True:
            path = self.cleanup.get()
            if path is None:
                return
            try:
                gitops.remove_worktree(self.root, path)
            except Exception:  # noqa: BLE001
                log.warning("could not remove trial worktree %s", path, exc_info=True)

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.calls.put(fn)
        self.wake.set()

    # ================================================================== main
    def run(self) -> dict[str, Any]:
        if not self._loop_lock.acquire():
            raise Refused(
                f"research run {self.tag!r} is already running in another process; "
                f"see `agentdeck research status --tag {self.tag}` or stop it with `agentdeck research stop`"
            )
        self._cleaner = threading.Thread(target=self._cleanup_worker, name="research-cleanup", daemon=True)
        self._cleaner.start()
        result_state = "stopped"
        try:
            control = self.ledger.control(self.tag)
            if control == "stop":
                self.ledger.set_control(self.tag, "run")
            self.ledger.update_run(self.tag, pid=os.getpid(), heartbeat=time.time())
            self.set_state("running", "")
            self._recover()
            self._ensure_baseline()
            result_state = self._main_loop()
        except KeyboardInterrupt:
            self._shutdown("stopped by Ctrl-C")
            result_state = "stopped"
            raise
        except BaseException as exc:
            # Record what happened; running jobs are left to a restart (they keep their slots' GPUs).
            self.ledger.update_run(self.tag, state="interrupted",
                                   message=f"loop failed: {type(exc).__name__}: {exc}"[:500])
            log.error("research loop failed:\n%s", traceback.format_exc())
            raise
        finally:
            self.stopping.set()
            self.cleanup.put(None)
            if self._cleaner is not None:
                self._cleaner.join(timeout=60)
            try:
                self.proposer.close()
            except Exception:  # noqa: BLE001
                pass
            self.executor.close()
            self._loop_lock.release()
        return {"state": result_state, "tag": self.tag}

    def _main_loop(self) -> str:
        while True:
            self._drain_calls()
            control = self.ledger.control(self.tag)
            if control == "stop" or self.stopping.is_set():
                self._shutdown(self.stop_message or "stopped")
                return "stopped"
            paused = control == "pause"
            self._poll_jobs(refill=not paused)
            self._drain_calls()
            self._judge()
            if self.failed_message:
                self._shutdown(self.failed_message, state="failed")
                return "failed"
            self.set_state("paused" if paused else "running")
            if not paused:
                self._dispatch()
                self._feed()
            if self._finished():
                self.set_state("done", self._summary_message())
                return "done"
            now = time.time()
            if now - self._last_heartbeat >= HEARTBEAT_S:
                self.ledger.heartbeat(self.tag, os.getpid())
                self._last_heartbeat = now
            if self.on_tick is not None:
                try:
                    self.on_tick(self)
                except Exception:  # noqa: BLE001
                    log.debug("on_tick failed", exc_info=True)
            self.wake.wait(TICK_S)
            self.wake.clear()

    def _drain_calls(self) -> None:
        while True:
            try:
                fn = self.calls.get_nowait()
            except queue.Empty:
                return
            fn()

    def _summary_message(self) -> str:
        run = self.run_row()
        return (f"best {fmt(run['best_metric'])} (trial {run['best_trial']}); baseline "
                f"{fmt(run['baseline_metric'])} ± {fmt(run['noise'])}")

    # ================================================================== restart
    def _recover(self) -> None:
        """Pick up what a previous loop of this run left: running jobs, queued trials, orphans."""
        trials = self.ledger.trials(self.tag)
        self.hashes = {t["content_hash"] for t in trials if t["content_hash"] and t["kind"] != "confirm"}
        keep_dirs: set[Path] = set()
        for t in trials:
            if t["state"] == "running":
                handle = self.executor.reattach(t["job"]) if t["job"] else None
                if handle is None or t["gpu"] is None:
                    self._finalize(t["id"], "crash", "lost")
                    if t["worktree"]:
                        self.cleanup.put(Path(t["worktree"]))
                    continue
                wanted = t["job"].get("_slot", t["gpu"])
                slot = self.pool.lease(t["id"], wanted) or wanted
                self.jobs[t["id"]] = ActiveJob(t["id"], handle, slot, Path(t["worktree"]), time.time(),
                                               running_since=t["started_at"])
                keep_dirs.add(Path(t["worktree"]))
            elif t["state"] == "judging" and t["meta"].get("reapplying"):
                meta = dict(t["meta"])
                meta.pop("reapplying")
                self.ledger.update_trial(self.tag, t["id"], meta=meta)  # decided again below
            elif t["state"] == "queued":
                wt = Path(t["worktree"]) if t["worktree"] else None
                if wt is None or not wt.is_dir() or gitops.git.head_commit(wt) != t["commit"]:
                    wt = self.new_worktree(t["commit"])
                    self.ledger.update_trial(self.tag, t["id"], worktree=str(wt))
                keep_dirs.add(wt)
                self.ready.append(t["id"])
        # A loop killed between a trial's ledger row and its results.tsv row: write the missing rows.
        written = {row.get("trial") for row in self.tsv.rows()}
        for t in trials:
            if (t["state"] == "final" and str(t["id"]) not in written
                    and (t["started_at"] is not None or t["kind"] == "proposal" and t["status"] == "crash")):
                self.tsv.append(t)
        # Worktrees of proposals that were being prepared when the last loop died.
        if self.wt_dir.is_dir():
            for child in self.wt_dir.iterdir():
                if child not in keep_dirs:
                    gitops.remove_worktree(self.root, child)
        gitops.git.prune_worktrees(self.root)
        run = self.run_row()
        self.seed_counter = int(run["proposals"]) + int(run["duplicates"]) + int(run["proposal_failures"])

    def _ensure_baseline(self) -> None:
        run = self.run_row()
        if run["baseline_metric"] is not None:
            return
        live = [t for t in self.ledger.trials(self.tag)
                if t["kind"] == "baseline" and not (t["status"] == "discard")]
        missing = max(1, int(self.settings.repeats_baseline)) - len(live)
        blobs = gitops.tree_files(self.root, self.base_commit, self.workdir)
        chash = gitops.content_hash(blobs, self.editable_paths(blobs))
        self.hashes.add(chash)
        for _ in range(missing):
            wt = self.new_worktree(self.base_commit)
            trial_id = self.ledger.insert_trial(
                self.tag, kind="baseline", state="queued", status="queued", commit_sha=self.base_commit,
                parent=self.base_commit, description="baseline", content_hash=chash, worktree=str(wt),
                proposer="",
            )
            self.ready.append(trial_id)

    # ================================================================== jobs
    def _pop_ready(self) -> dict[str, Any] | None:
        with self.lock:
            if not self.ready:
                return None
            trials = {tid: self.ledger.trial(self.tag, tid) for tid in self.ready}
            best = self.run_row()["best_commit"] or self.base_commit
            # Baselines, then confirmations, then proposals made on the current best, oldest first.
            order = sorted(self.ready, key=lambda tid: (PRIORITY.get(trials[tid]["kind"], 3),
                                                        trials[tid]["parent"] != best, tid))
            tid = order[0]
            self.ready.remove(tid)
            return trials[tid]

    def _dispatch(self) -> None:
        while self.pool.free():
            trial = self._pop_ready()
            if trial is None:
                return
            if trial["state"] != "queued":
                continue
            if trial["kind"] == "proposal" and not self._fresh(trial):
                trial = self._rebase_queued(trial)
                if trial is None:
                    continue
            slot = self.pool.lease(trial["id"])
            if slot is None:  # pragma: no cover - free() said otherwise
                with self.lock:
                    self.ready.insert(0, trial["id"])
                return
            self._submit(trial, slot)

    def _fresh(self, trial: dict[str, Any]) -> bool:
        run = self.run_row()
        best = run["best_commit"] or self.base_commit
        return trial["parent"] == best

    def _rebase_stale_async(self) -> None:
        """After a keep: move the queued proposals made on the old best onto the new one, in the
        background (git work stays off the path from a freed slot to its next job)."""
        best = self.run_row()["best_commit"]
        with self.lock:
            stale = []
            for tid in list(self.ready):
                t = self.ledger.trial(self.tag, tid)
                if t and t["kind"] == "proposal" and t["state"] == "queued" and t["parent"] != best:
                    self.ready.remove(tid)
                    self.rebasing.add(tid)
                    stale.append(t)

        def deferred_finalize(trial_id: int, status: str, reason: str) -> None:
            self.call_soon(lambda: self._finalize(trial_id, status, reason))

        def work(trial: dict[str, Any]) -> None:
            result = None
            try:
                result = self._rebase_queued(trial, finalize=deferred_finalize)
            except Exception:  # noqa: BLE001
                log.warning("background rebase of trial %s failed", trial["id"], exc_info=True)
                deferred_finalize(trial["id"], "discard", "could not move the change onto the new best")

            def done() -> None:
                self.rebasing.discard(trial["id"])
                if result is not None:
                    with self.lock:
                        self.ready.append(trial["id"])

            self.call_soon(done)

        for t in stale:
            threading.Thread(target=work, args=(t,), name=f"rebase-{t['id']}", daemon=True).start()

    def _rebase_queued(self, trial: dict[str, Any], finalize: Callable[[int, str, str], None] | None = None
                       ) -> dict[str, Any] | None:
        """A queued proposal made on an older best: move its change onto the current best first."""
        finalize = finalize or self._finalize
        run = self.run_row()
        best = run["best_commit"] or self.base_commit
        wt = Path(trial["worktree"])
        try:
            gitops.git.run(wt, "checkout", "-q", "--detach", best)
            new = gitops.cherry_pick(wt, trial["commit"], f"research {self.tag} #{trial['id']}: {trial['description']}")
        except Exception as exc:  # noqa: BLE001
            new = None
            log.warning("rebase of trial %s failed: %s", trial["id"], exc)
        if new is None:
            finalize(trial["id"], "discard", "the best moved on and the change no longer applies to it")
            self.cleanup.put(wt)
            return None
        blobs = gitops.tree_files(self.root, new, self.workdir)
        chash = gitops.content_hash(blobs, self.editable_paths(blobs))
        with self.lock:
            duplicate = chash in self.hashes
            self.hashes.add(chash)
        meta = dict(trial["meta"])
        meta["rebased_from"] = trial["commit"]
        self.ledger.update_trial(self.tag, trial["id"], commit_sha=new, parent=best, content_hash=chash, meta=meta)
        gitops.set_ref(self.root, gitops.trial_ref(self.tag, trial["id"]), new)
        if duplicate:
            self.ledger.bump(self.tag, "duplicates")
            finalize(trial["id"], "discard", "duplicate: on the new best its files equal an earlier trial's")
            self.cleanup.put(wt)
            return None
        return self.ledger.trial(self.tag, trial["id"])

    def _submit(self, trial: dict[str, Any], slot: str) -> None:
        wt = Path(trial["worktree"])
        log_path = self.logs_dir / f"{trial['id']}.log"
        env = {
            "AGENTDECK_BUDGET_S": f"{self.budget_s:g}",
            "AGENTDECK_TRIAL": str(trial["id"]),
            "AGENTDECK_RESEARCH_TAG": self.tag,
            "AGENTDECK_SLOT": slot,
        }
        if self.executor.pins_devices:
            env.update(slot_env(slot))
        spec = JobSpec(
            trial_id=trial["id"], tag=self.tag, command=self.settings.command, cwd=self.workdir_in(wt), env=env,
            log_path=log_path, slot=slot, budget_s=self.budget_s, timeout_s=self.timeout_s,
            name=f"agentdeck-{self.research.repo.repo_id}-{self.tag}-{trial['id']}",
        )
        try:
            handle = self.executor.submit(spec)
        except Exception as exc:  # noqa: BLE001
            self.pool.release(slot)
            self._finalize(trial["id"], "crash", f"could not start the job: {exc}"[:300])
            self.cleanup.put(wt)
            return
        now = time.time()
        self.ledger.update_trial(self.tag, trial["id"], state="running", status="running", gpu=handle.node or slot,
                                 started_at=handle.data.get("running_at") or now,
                                 job=dict(handle.data) | {"_slot": slot}, log_path=str(log_path))
        running_at = handle.data.get("running_at")
        self.jobs[trial["id"]] = ActiveJob(trial["id"], handle, slot, wt, now,
                                           running_since=float(running_at) if running_at else None)
        self.event("start", {"id": trial["id"], "kind": trial["kind"], "gpu": slot,
                             "description": trial["description"]})

    def _poll_jobs(self, refill: bool = True) -> None:
        finished: list[tuple[ActiveJob, JobState]] = []
        for job in list(self.jobs.values()):
            try:
                state = self.executor.poll(job.handle)
            except Exception as exc:  # noqa: BLE001 - an executor hiccup is not a verdict
                log.warning("poll of trial %s failed: %s", job.trial_id, exc)
                continue
            now = time.time()
            if state.state == "running" and job.running_since is None:
                job.running_since = now
                # The executor may only now know where the job runs (job["node"]); the slot stays the gpu.
                self.ledger.update_trial(self.tag, job.trial_id, started_at=now,
                                         job=dict(job.handle.data) | {"_slot": job.slot})
            if not state.finished:
                if (job.running_since is not None and not job.cancel_reason
                        and now - job.running_since > self.timeout_s):
                    job.cancel_reason = f"timeout after {self.timeout_s:g}s"
                    self._cancel(job)
                elif job.cancel_retry_at and now >= job.cancel_retry_at:
                    self._cancel(job)
                continue
            del self.jobs[job.trial_id]
            self.pool.release(job.slot)
            finished.append((job, state, now))
        if finished:
            if refill:
                self._dispatch()  # refill the freed slots before the bookkeeping
            for job, state, ended in finished:
                self._complete(job, state, ended)

    def _cancel(self, job: ActiveJob) -> None:
        """Ask the executor to cancel *job*.  A failure (a cluster that does not answer) is logged,
        not raised: the job stays polled and the cancel is tried again every CANCEL_RETRY_S."""
        try:
            self.executor.cancel(job.handle)
        except Exception as exc:  # noqa: BLE001
            log.warning("cancel of trial %s failed (retried in %gs): %s", job.trial_id, CANCEL_RETRY_S, exc)
            job.cancel_retry_at = time.time() + CANCEL_RETRY_S
        else:
            job.cancel_retry_at = 0.0

    def _complete(self, job: ActiveJob, state: JobState, ended: float | None = None) -> None:
        ended = ended or time.time()
        trial = self.ledger.trial(self.tag, job.trial_id)
        assert trial is not None
        text = self.executor.read_log(job.handle)
        log_path = Path(trial["log_path"] or self.logs_dir / f"{job.trial_id}.log")
        if not log_path.exists() and text:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(text, encoding="utf-8")
        reading = read_metric(text, self.settings.metric)
        started = job.running_since or trial["started_at"] or job.submitted
        seconds = max(0.0, ended - started)
        changed = []
        if job.worktree.is_dir() and self.protected:
            disk = gitops.disk_blob_ids(job.worktree, list(self.protected))
            changed = sorted(p for p, blob in disk.items() if blob != self.protected[p])
        fields: dict[str, Any] = {
            "ended_at": ended, "seconds": round(seconds, 3), "exit_code": state.exit_code,
            "memory_gb": reading.memory_gb, "extras": reading.extras,
        }
        verdict: tuple[str, str] | None = None
        if job.cancel_reason == "stopped":
            verdict = ("discard", "stopped")
        elif job.cancel_reason:
            verdict = ("crash", job.cancel_reason)
        elif state.state == "lost":
            verdict = ("crash", "lost")
        elif changed:
            verdict = ("crash", "protected file changed: " + ", ".join(self._rel(p) for p in changed))
        elif state.exit_code != 0:
            verdict = ("crash", f"exit code {state.exit_code}")
        elif reading.value is None:
            verdict = ("crash", "no metric")
        elif not reading.finite:
            verdict = ("crash", f"metric is {reading.value}")
        if verdict is None:
            fields.update(metric=reading.value, state="judging")
            self.ledger.update_trial(self.tag, job.trial_id, **fields)
        else:
            if reading.value is not None and reading.finite:
                fields["metric"] = reading.value
            self.ledger.update_trial(self.tag, job.trial_id, **fields)
            self._finalize(job.trial_id, *verdict)
        try:
            self.executor.finish(job.handle)
        except Exception:  # noqa: BLE001
            log.debug("executor.finish failed", exc_info=True)
        self.cleanup.put(job.worktree)

    def _rel(self, repo_path: str) -> str:
        if self.workdir in ("", "."):
            return repo_path
        prefix = self.workdir.strip("/") + "/"
        return repo_path[len(prefix):] if repo_path.startswith(prefix) else repo_path

    # ================================================================== judging
    def _judge(self) -> None:
        run = self.run_row()
        if run["baseline_metric"] is None:
            if not self._settle_baseline(run):
                return
            run = self.run_row()
        for trial in self.ledger.trials(self.tag, states=("judging",)):
            if trial["kind"] == "proposal" and not trial["meta"].get("reapplying"):
                self._decide(trial)

    def _settle_baseline(self, run: dict[str, Any]) -> bool:
        baselines = [t for t in self.ledger.trials(self.tag) if t["kind"] == "baseline"]
        live = [t for t in baselines if t["status"] != "discard"]
        if not live or any(t["state"] in ("queued", "running") for t in live):
            return False
        good = [t for t in live if t["state"] == "judging"]
        if not good:
            last = live[-1]
            self.failed_message = (
                f"every baseline run crashed (trial {last['id']}: {last['reason']}); fix the lab and see "
                f"`agentdeck research log {last['id']} --tag {self.tag}`"
            )
            return False
        values = [t["metric"] for t in good]
        base_mean, noise = mean(values), noise_of(values)
        self.ledger.update_run(self.tag, baseline_metric=base_mean, baseline_runs=len(values), noise=noise,
                               best_trial=good[0]["id"], best_metric=base_mean, best_commit=self.base_commit)
        for t in good:
            self._finalize(t["id"], "keep", "baseline")
        self.event("baseline", {"metric": base_mean, "runs": len(values), "noise": noise})
        return True

    def _decide(self, trial: dict[str, Any]) -> None:
        run = self.run_row()
        direction = self.settings.direction
        best, best_commit = run["best_metric"], run["best_commit"]
        noise = float(run["noise"] or 0.0)
        confirms = [t for t in self.ledger.trials(self.tag) if t["confirm_of"] == trial["id"]]
        confirm = confirms[-1] if confirms else None
        if confirm is not None and confirm["state"] in ("queued", "running"):
            return
        values = [trial["metric"]]
        if confirm is not None:
            if confirm["state"] == "final" and confirm["status"] == "crash":
                self._finalize(trial["id"], "discard",
                               f"its confirmation run (trial {confirm['id']}) crashed: {confirm['reason']}")
                return
            if confirm["metric"] is not None:
                values.append(confirm["metric"])
        value = mean(values)
        shown = fmt(value) + (f" (mean of {len(values)} runs)" if len(values) > 1 else "")
        stale = trial["parent"] != best_commit
        # A result measured on an older best is compared with what its own parent scored; if it
        # improved on that, the change is re-applied on the new best and measured again.
        reference = self._parent_value(trial["parent"], best) if stale else best
        what = "its parent" if stale else "the best"
        if not beats(value, reference, direction, noise):
            reason = (f"{shown} is not better than {what} {fmt(reference)} by more than the noise {fmt(noise)}"
                      if confirm is None else
                      f"not confirmed: {shown} vs {what} {fmt(reference)} (noise {fmt(noise)})")
            self._finalize(trial["id"], "discard", reason)
            if confirm is not None and confirm["state"] == "judging":
                self._finalize(confirm["id"], "discard", f"did not confirm trial {trial['id']}")
            return
        if stale:
            if confirm is not None and confirm["state"] == "judging":
                self._finalize(confirm["id"], "discard", "the best moved on during confirmation")
            self._start_reapply(trial, value)
            return
        if self.settings.confirm and confirm is None:
            wt = self.new_worktree(trial["commit"])
            confirm_id = self.ledger.insert_trial(
                self.tag, kind="confirm", state="queued", status="queued", commit_sha=trial["commit"],
                parent=trial["parent"], description=f"confirm {trial['id']}: {trial['description']}",
                content_hash=trial["content_hash"], confirm_of=trial["id"], worktree=str(wt),
                proposer=trial["proposer"],
            )
            self.ledger.update_trial(self.tag, trial["id"],
                                     reason=f"promising ({fmt(trial['metric'])}); confirming with trial {confirm_id}")
            with self.lock:
                self.ready.append(confirm_id)
            return
        gain = improvement(value, best, direction)
        reason = f"{shown} beats the best {fmt(best)} by {fmt(gain)} (noise {fmt(noise)})"
        try:
            gitops.advance_branch(self.root, self.branch, trial["commit"], best_commit)
        except gitops.GitError as exc:
            log.warning("research branch %s moved outside agentdeck (%s); setting it to the kept trial",
                        self.branch, exc)
            gitops.git.run(self.root, "update-ref", f"refs/heads/{self.branch}", trial["commit"])
        self.ledger.update_run(self.tag, best_trial=trial["id"], best_metric=value, best_commit=trial["commit"])
        self.ledger.update_trial(self.tag, trial["id"], meta=dict(trial["meta"]) | {"kept_value": value})
        self._finalize(trial["id"], "keep", reason)
        self._rebase_stale_async()
        if confirm is not None and confirm["state"] == "judging":
            self._finalize(confirm["id"], "keep", f"confirms trial {trial['id']}")

    def _parent_value(self, parent: str, fallback: float) -> float:
        """The value that made *parent* the best: the baseline's mean, or the kept trial's."""
        run = self.run_row()
        if parent == self.base_commit:
            return run["baseline_metric"]
        for t in self.ledger.trials(self.tag):
            if t["commit"] == parent and t["status"] == "keep" and t["kind"] == "proposal":
                return t["meta"].get("kept_value", t["metric"])
        return fallback

    def _start_reapply(self, trial: dict[str, Any], value: float) -> None:
        meta = dict(trial["meta"])
        meta["reapplying"] = True
        self.ledger.update_trial(self.tag, trial["id"], meta=meta)
        run = self.run_row()
        best_commit, best_id = run["best_commit"], run["best_trial"]

        def work() -> None:
            outcome: tuple[str, str]
            new_id = None
            wt = None
            try:
                wt = self.new_worktree(best_commit)
                description = trial["description"]
                new = gitops.cherry_pick(wt, trial["commit"],
                                         f"research {self.tag}: {description} (re-applied from trial {trial['id']})")
                if new is None:
                    outcome = ("discard", f"{fmt(value)} improved on its parent, but on the new best "
                                          f"(trial {best_id}) the change no longer applies")
                else:
                    blobs = gitops.tree_files(self.root, new, self.workdir)
                    chash = gitops.content_hash(blobs, self.editable_paths(blobs))
                    with self.lock:
                        duplicate = chash in self.hashes
                        self.hashes.add(chash)
                    if duplicate:
                        self.ledger.bump(self.tag, "duplicates")
                        outcome = ("discard", "improved on an older parent; re-applied on the new best it "
                                              "duplicates an earlier trial")
                    else:
                        new_id = self.ledger.insert_trial(
                            self.tag, kind="proposal", state="queued", status="queued", commit_sha=new,
                            parent=best_commit, description=description, content_hash=chash,
                            reapply_of=trial["id"], worktree=str(wt), proposer=trial["proposer"],
                            meta={k: v for k, v in trial["meta"].items() if k != "reapplying"} | {
                                "reapplied_from": trial["id"]},
                        )
                        gitops.set_ref(self.root, gitops.trial_ref(self.tag, new_id), new)
                        outcome = ("discard", f"{fmt(value)} improved on its parent, an older best; "
                                              f"re-applied on the new best as trial {new_id}")
            except Exception as exc:  # noqa: BLE001
                outcome = ("discard", f"re-applying on the new best failed: {exc}"[:300])

            def finish() -> None:
                current = self.ledger.trial(self.tag, trial["id"])
                if current is None or current["state"] == "final":  # stopped meanwhile
                    if new_id is not None:
                        self._finalize(new_id, "discard", "stopped before it ran")
                    if wt is not None:
                        self.cleanup.put(wt)
                    return
                self._finalize(trial["id"], *outcome)
                if new_id is not None:
                    with self.lock:
                        self.ready.append(new_id)
                elif wt is not None:
                    self.cleanup.put(wt)

            self.call_soon(finish)

        threading.Thread(target=work, name=f"reapply-{trial['id']}", daemon=True).start()

    # ================================================================== recording
    def _finalize(self, trial_id: int, status: str, reason: str) -> None:
        """Record a trial's outcome everywhere (ledger, results.tsv, memory) — before any reset."""
        trial = self.ledger.trial(self.tag, trial_id)
        assert trial is not None
        meta = dict(trial["meta"])
        meta.pop("reapplying", None)
        self.ledger.update_trial(self.tag, trial_id, state="final", status=status, reason=reason, meta=meta)
        trial = self.ledger.trial(self.tag, trial_id)
        assert trial is not None
        ran = trial["started_at"] is not None
        if ran or trial["kind"] == "proposal" and status == "crash":
            self.tsv.append(trial)
        if trial["kind"] == "proposal" and (ran or status == "crash"):
            self._note(trial)
        self.event("trial", trial)

    def _note(self, trial: dict[str, Any]) -> None:
        run = self.run_row()
        metric = self.settings.metric
        title = f"research {self.tag} #{trial['id']} {trial['status']}: {trial['description']}"
        base = run["baseline_metric"]
        lines = [
            f"Auto-research run `{self.tag}` (branch `{self.branch}`), trial {trial['id']} ({trial['kind']}).",
            "",
            f"- outcome: **{trial['status']}** — {trial['reason']}",
            f"- {metric}: {fmt(trial['metric'])} (baseline {fmt(base)}, noise {fmt(run['noise'])}, "
            f"best so far {fmt(run['best_metric'])}; {self.settings.direction} is better)",
            f"- commit: `{trial['commit'][:12]}` (ref `{gitops.trial_ref(self.tag, trial['id'])}`), "
            f"gpu {trial['gpu']}, {fmt(trial['seconds'])} s",
        ]
        try:
            diff = gitops.diff(self.root, trial["parent"], trial["commit"])
        except Exception:  # noqa: BLE001
            diff = ""
        if diff:
            lines += ["", "```diff", diff[:3000] + ("\n..." if len(diff) > 3000 else ""), "```"]
        self.research.notes.add(title, "\n".join(lines), ["research", self.tag, trial["status"]])

    # ================================================================== proposals
    def _feed(self) -> None:
        if time.time() < self.next_proposal_at:  # backing off after proposer failures
            return
        run = self.run_row()
        limit = run["trials_limit"]
        with self.lock:
            queued = sum(1 for tid in self.ready)
            while self.preparing < self.workers and queued + self.preparing < len(self.slots):
                if limit is not None and int(run["proposals"]) + self.preparing >= int(limit):
                    return
                self.preparing += 1
                self.seed_counter += 1
                worker = self.seed_counter
                threading.Thread(target=self._prepare, args=(worker,), name=f"propose-{worker}",
                                 daemon=True).start()

    def _history(self) -> list[dict[str, Any]]:
        keep = ("id", "kind", "status", "reason", "metric", "description", "meta", "parent", "commit", "gpu")
        # Queued and running trials too: proposers working in parallel must not repeat each other.
        return [{k: t[k] for k in keep} for t in self.ledger.trials(self.tag)]

    def _prepare(self, worker: int) -> None:
        try:
            self._prepare_inner(worker)
        except Exception as exc:  # noqa: BLE001
            log.error("proposal worker failed:\n%s", traceback.format_exc())
            why = f"{type(exc).__name__}: {exc}"
            self.call_soon(lambda: self._proposal_failed(why))
        finally:
            with self.lock:
                self.preparing -= 1
            self.wake.set()

    def _proposal_failed(self, why: str) -> None:
        self.ledger.bump(self.tag, "proposal_failures")
        self.consecutive_failures += 1
        self.ledger.update_run(self.tag, message=f"proposer failed: {why}"[:500])
        self.event("proposal_failed", {"reason": why})
        self.next_proposal_at = time.time() + min(
            BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (self.consecutive_failures - 1))
        if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
            self.stop_message = (f"the {self.proposer_name} proposer failed {self.consecutive_failures} times in a "
                                 f"row (last: {why}); fix it and continue with `agentdeck research run --tag {self.tag}`")
            self.stopping.set()

    def _prepare_inner(self, worker: int) -> None:
        run = self.run_row()
        for attempt in range(MAX_DUPLICATE_ATTEMPTS):
            if self.stopping.is_set():
                return
            run = self.run_row()
            parent = run["best_commit"] or self.base_commit
            wt = self.new_worktree(parent)
            try:
                request = ProposalRequest(
                    tag=self.tag, worktree=wt, workdir=self.workdir_in(wt),
                    editable=[self._rel(p) for p in self.editable_paths(
                        gitops.tree_files(self.root, parent, self.workdir))],
                    program=self._program(wt), metric=self.settings.metric, direction=self.settings.direction,
                    best={"id": run["best_trial"], "metric": run["best_metric"], "commit": parent},
                    baseline={"metric": run["baseline_metric"], "runs": run["baseline_runs"], "noise": run["noise"]},
                    history=self._history(),
                    notes=self._notes_for_proposer(),
                    seed=worker, worker=worker, attempt=attempt, results_tsv=self.tsv.path, stop=self.stopping,
                )
                proposal: Proposal = self.proposer.propose(request)
            except ProposalFailed as exc:
                self.cleanup.put(wt)
                self.call_soon(lambda why=str(exc): self._proposal_failed(why))
                return
            except BaseException:
                self.cleanup.put(wt)
                raise
            if self.stopping.is_set():
                self.cleanup.put(wt)
                return
            commit = gitops.commit_all(wt, f"research {self.tag}: {proposal.description}")
            if commit is None:
                self.cleanup.put(wt)
                self.call_soon(lambda: self._proposal_failed("the proposal changed no file"))
                return
            blobs = gitops.tree_files(self.root, commit, self.workdir)
            chash = gitops.content_hash(blobs, self.editable_paths(blobs))
            with self.lock:
                duplicate = chash in self.hashes
                if not duplicate:
                    self.hashes.add(chash)
            if duplicate:
                self.ledger.bump(self.tag, "duplicates")
                self.event("duplicate", {"description": proposal.description})
                self.cleanup.put(wt)
                continue
            changed = gitops.changed_files(self.root, parent, commit)
            protected = sorted(p for p in changed if p in self.protected)
            editable = set(self.editable_paths({p: "" for p in changed}))
            outside = sorted(p for p in changed if p not in editable and p not in self.protected)
            trial_id = self.ledger.insert_trial(
                self.tag, kind="proposal", state="queued", status="queued", commit_sha=commit, parent=parent,
                description=proposal.description, content_hash=chash, worktree=str(wt),
                proposer=self.proposer_name, meta=proposal.meta,
            )
            gitops.set_ref(self.root, gitops.trial_ref(self.tag, trial_id), commit)
            self.ledger.bump(self.tag, "proposals")
            rejected = ""
            if protected:
                rejected = "protected file changed: " + ", ".join(self._rel(p) for p in protected)
            elif outside:
                rejected = "file outside editable changed: " + ", ".join(self._rel(p) for p in outside)

            def accept(trial_id: int = trial_id, rejected: str = rejected, wt: Path = wt) -> None:
                self.consecutive_failures = 0
                self.next_proposal_at = 0.0
                if rejected:
                    self._finalize(trial_id, "crash", rejected)
                    self.cleanup.put(wt)
                else:
                    with self.lock:
                        self.ready.append(trial_id)

            self.call_soon(accept)
            return
        self.call_soon(lambda: self._proposal_failed(
            f"{MAX_DUPLICATE_ATTEMPTS} proposals in a row duplicated earlier trials"))

    def _program(self, worktree: Path) -> str:
        path = self.workdir_in(worktree) / self.settings.program
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return ""

    def _notes_for_proposer(self) -> list[dict[str, Any]]:
        if not getattr(self.proposer, "uses_notes", False):
            return []
        hits = self.research.notes.search(f"{self.settings.metric} experiment research", limit=8)
        return [{"title": h.get("title", ""), "snippet": h.get("snippet", "")} for h in hits]

    # ================================================================== ending
    def _finished(self) -> bool:
        run = self.run_row()
        limit = run["trials_limit"]
        if limit is None or run["baseline_metric"] is None:
            return False
        if int(run["proposals"]) < int(limit):
            return False
        with self.lock:
            if self.jobs or self.ready or self.preparing or self.rebasing:
                return False
        if not self.calls.empty():
            return False
        return not self.ledger.trials(self.tag, states=("queued", "running", "judging"))

    def _shutdown(self, message: str, state: str = "stopped") -> None:
        """Cancel running jobs and record them; queued trials are recorded as never run."""
        self.stopping.set()
        for job in list(self.jobs.values()):
            if not job.cancel_reason:
                job.cancel_reason = "stopped"
            self._cancel(job)
        deadline = time.time() + 30
        while self.jobs and time.time() < deadline:
            for job in list(self.jobs.values()):
                if job.cancel_retry_at and time.time() >= job.cancel_retry_at:
                    self._cancel(job)
                try:
                    state_ = self.executor.poll(job.handle)
                except Exception:  # noqa: BLE001
                    continue
                if state_.finished:
                    del self.jobs[job.trial_id]
                    self.pool.release(job.slot)
                    self._complete(job, state_)
            if self.jobs:
                self.wake.wait(0.05)
                self.wake.clear()
        self._drain_calls()
        for t in self.ledger.trials(self.tag, states=("queued",)):
            self._finalize(t["id"], "discard", "stopped before it ran")
            if t["worktree"]:
                self.cleanup.put(Path(t["worktree"]))
        run = self.run_row()
        if run["baseline_metric"] is None and state != "failed":
            self._settle_baseline(run)  # from the baseline runs that finished, if any did
        for t in self.ledger.trials(self.tag, states=("judging",)):
            if t["kind"] != "baseline":
                self._finalize(t["id"], "discard", "stopped before it was decided")
        with self.lock:
            self.ready.clear()
        self.set_state(state, message)


def settings_dict(settings: Any) -> dict[str, Any]:
    return dataclasses.asdict(settings)
