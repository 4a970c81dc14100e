"""The experiment loop: many proposers feeding many GPU slots, honestly.

One loop process runs one research run (a tag).  It runs the threads, the
dispatch and the polling, gathers the facts, and carries out what the rules
in :mod:`agentdeck.research.policy` decide (the verdict of a job, keep /
discard / confirm / suspect / re-apply, the file rules, the crash rule):

* **hardware classes** — each lane has a class (its GPU model, or ``cpu``; see
  :mod:`agentdeck.research.hardware`); every trial runs on a lane of its class
  and is judged against that class's baseline and best; the primary class owns
  the run's ``best`` and ``research/<tag>``, the others ``research/<tag>@<class>``;
* **baseline first** — ``repeats_baseline`` runs of the base commit per class
  measure the metric and its noise (their spread); proposals may run on the
  other slots meanwhile, but none is judged before its class's baseline is known;
* **proposals** are prepared by worker threads while jobs train: a fresh
  detached worktree at the current best commit (under agentdeck's cache,
  outside the state folder: :mod:`agentdeck.research.isolation`; never a deck
  agent), the proposer's edit, a commit, a ref
  ``refs/agentdeck/research/<tag>/<trial>``; identical editable content is
  never run twice (a content hash; skipped duplicates are counted); a change
  to a protected or non-editable file, an editable path that is not a regular
  file (a symlink, a submodule, a hard link), content on disk that is not the
  commit's, or a change under ``.git`` is a crash before any GPU time is spent;
* **jobs** run through an executor, one per slot, with
  ``CUDA_VISIBLE_DEVICES``, ``AGENTDECK_BUDGET_S`` and a fresh
  ``AGENTDECK_ARTIFACT_DIR``, in an allow-listed environment, under a reaper
  (nothing they start outlives them) and, with ``sandbox``, in bubblewrap
  (:mod:`agentdeck.sandbox`); a slot is leased again only once nvidia-smi lists
  none of the job's processes; the loop enforces ``timeout_s``, reads the
  metric — with ``eval_command``, the protected evaluation's
  (:mod:`agentdeck.research.evaluate`, run on the same slot after the job; the
  job's own is kept as ``claimed``) — re-checks the protected files' checksums,
  the files' regularity and the git directory's fingerprint after the job (the
  job runs the edited code, which could rewrite them);
* **judging**: keep only when better than the best by more than the noise;
  a result too good to believe (``max_jump``, ``metric_floor``) is ``suspect``:
  re-run twice, kept only if the runs agree, never promoted unchecked;
  with ``confirm`` a promising result is re-run first and the mean decides; a
  queued proposal whose parent is no longer the best is rebased before it
  runs, and a finished one that beats the best measured on an older parent is
  re-applied on the new best and run again; ``research/<tag>`` fast-forwards
  to each kept trial;
* **recording before any reset**: ledger row, results.tsv row and the memory
  note (every trial's, marked with its kind) are written before a trial's
  worktree is removed; each decision extends the ledger's checksum chain, which
  is verified before the next (a ledger changed behind the loop's back fails
  the run), and results.tsv is rewritten from the ledger after a foreign write;
* **control**: ``pause`` (no new job starts; running jobs finish), ``resume``,
  ``stop`` (running jobs are cancelled and recorded), read from the ledger so
  any process can steer; ``max_crashes`` crashes in a row pause the run with
  the last reason as its message; a loop killed mid-run leaves its jobs
  running, and the next ``run --tag`` reattaches them (or records them ``lost``).
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import math
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
from agentdeck.research import evaluate, gitops, isolation, policy
from agentdeck.research.executors.base import Executor, JobHandle, JobSpec, JobState
from agentdeck.research.gpus import SlotPool, slot_env
from agentdeck.research.hardware import class_branch
from agentdeck.research.ledger import CLASS_FIELDS, Ledger, ResultsTsv, tsv_row
from agentdeck.research.metric import read_metric
from agentdeck.research.model import Gate, JobOutcome, Judgement, Rerun
from agentdeck.research.policy import fmt
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
        # Trials run outside agentdeck's state folder (the ledger, results.tsv and logs stay there).
        self.trial_root: Path = isolation.trials_root(research.repo) / tag
        self.wt_dir = self.trial_root / "wt"
        self.artifacts_dir = self.trial_root / "artifacts"
        self.logs_dir = self.run_dir / "logs"
        self.workdir = run["workdir"]
        self.branch = run["branch"]
        self.base_commit = run["base_commit"]
        self.protected: dict[str, str] = run["protected"]
        opts = run["settings"]
        self.proposer_name = opts.get("proposer", self.settings.proposer)
        self.slots: list[str] = list(opts.get("slots") or ["cpu"])
        # Hardware classes (see hardware.py): a run from before classes existed has one, "default".
        self.primary: str = opts.get("primary_class") or "default"
        self.slot_class: dict[str, str] = {s: (opts.get("slot_classes") or {}).get(s, self.primary)
                                           for s in self.slots}
        self.classes: list[str] = list(dict.fromkeys([self.slot_class[s] for s in self.slots]))
        self.budget_s = float(self.settings.budget_s)
        self.timeout_s = float(self.settings.timeout_s)
        self.gate = Gate(getattr(self.settings, "max_jump", None), getattr(self.settings, "metric_floor", None))
        self.max_crashes = int(getattr(self.settings, "max_crashes", 5) or 5)
        self.executor = executor or research.make_executor(self.settings)
        self.sandbox = isolation.resolve_sandbox(self.settings.sandbox, self.executor.name)
        self.eval_command = (self.settings.eval_command or "").strip()
        self.evals: dict[int, threading.Event] = {}  # trial id -> stop flag of its running evaluation
        self.held: dict[str, ActiveJob] = {}  # slot -> the ended job whose GPU processes are still listed
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
        self.preparing_for: dict[str, int] = {}  # class -> proposals being prepared for its lanes
        self.trial_class: dict[int, str] = {}  # trial id -> hardware class (never changes)
        self.editables: dict[int, list[str]] = {}  # trial id -> its editable repo paths
        self.hashes: set[str] = set()
        self.consecutive_failures = 0
        self.crash_streak = 0  # trials ended as crashes in a row (max_crashes pauses the run)
        self.pause_message = ""  # set while the run is paused by the crash rule
        self.submitted: set[int] = set()  # trials whose job this loop started or adopted
        self.guards: dict[int, tuple[Any, dict[str, str]]] = {}  # trial id -> (git dirs, .git fingerprint)
        self.chain_head: tuple[int, str] | None = None  # the decision chain's head, as this loop left it
        self.tampered = ""  # why the ledger cannot be trusted any more ("" = it can)
        self._verified: tuple[Any, ...] | None = None  # the database's version when last verified
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

    def cls_of(self, trial: dict[str, Any]) -> str:
        """The hardware class *trial* is judged in ("" in a run from before classes: the primary)."""
        cls = trial.get("hardware") or self.primary
        self.trial_class.setdefault(trial["id"], cls)
        return cls

    def cls_state(self, cls: str, run: dict[str, Any] | None = None) -> dict[str, Any]:
        """A class's baseline, noise and best (the primary's live in the runs row)."""
        if cls == self.primary:
            run = run or self.run_row()
            return {k: run[k] for k in CLASS_FIELDS}
        return self.ledger.class_rows(self.tag).get(cls) or dict.fromkeys(CLASS_FIELDS) | {"baseline_runs": 0}

    def cls_best_commit(self, cls: str) -> str:
        return self.cls_state(cls)["best_commit"] or self.base_commit

    def cls_branch(self, cls: str) -> str:
        return class_branch(self.branch, cls, self.primary)

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
                if path.parent == self.artifacts_dir:
                    isolation.remove_dir(path)
                else:
                    gitops.remove_worktree(self.root, path)
            except Exception:  # noqa: BLE001
                log.warning("could not remove trial worktree %s", path, exc_info=True)

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.calls.put(fn)
        self.wake.set()

    # ================================================================== main
    def run(self) -> dict[str, Any]:
        if self.sandbox.error:  # sandbox = "bwrap" where bubblewrap no longer works: run nothing
            raise Refused(f"research run {self.tag!r}: [research] {self.sandbox.error}")
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
            if not self.failed_message:  # (a ledger changed while no loop ran fails the run at once)
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
            if self.failed_message:
                self._shutdown(self.failed_message, state="failed")
                return "failed"
            self._drain_calls()
            control = self.ledger.control(self.tag)
            if control == "stop" or self.stopping.is_set():
                self._shutdown(self.stop_message or "stopped")
                return "stopped"
            paused = control == "pause"
            if not paused and self.pause_message:  # resumed after the crash rule paused it
                self.pause_message = ""
                self.set_state("running", "")
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
        text = (f"best {fmt(run['best_metric'])} (trial {run['best_trial']}); baseline "
                f"{fmt(run['baseline_metric'])} ± {fmt(run['noise'])}")
        for cls in self.classes:
            if cls != self.primary:
                st = self.cls_state(cls, run)
                text += (f"; on {cls}: best {fmt(st['best_metric'])} (trial {st['best_trial']}), baseline "
                         f"{fmt(st['baseline_metric'])} ± {fmt(st['noise'])}")
        return text

    # ================================================================== restart
    def _recover(self) -> None:
        """Pick up what a previous loop of this run left: running jobs, queued trials, orphans."""
        problem = self._open_chain()
        if problem:
            self._tamper(problem)
        trials = self.ledger.trials(self.tag)
        self.hashes = {t["content_hash"] for t in trials if t["content_hash"] and t["kind"] != "confirm"}
        keep_dirs: set[Path] = set()
        for t in trials:
            self.cls_of(t)
            if t["state"] in ("running", "judging"):
                self.submitted.add(t["id"])
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
            elif t["state"] == "queued" and self.cls_of(t) not in self.classes:
                self._finalize(t["id"], "discard", f"no lane of its hardware class ({self.cls_of(t)}) any more")
                if t["worktree"]:
                    self.cleanup.put(Path(t["worktree"]))
            elif t["state"] == "queued":
                wt = Path(t["worktree"]) if t["worktree"] else None
                if wt is None or not wt.is_dir() or gitops.git.head_commit(wt) != t["commit"]:
                    wt = self.new_worktree(t["commit"])
                    self.ledger.update_trial(self.tag, t["id"], worktree=str(wt))
                keep_dirs.add(wt)
                self.ready.append(t["id"])
        # A loop killed between a trial's ledger row and its results.tsv row: write the missing rows
        # (and a file someone else wrote rows into is rewritten from the ledger).
        self._sync_tsv()
        # Worktrees of proposals that were being prepared when the last loop died (and those an
        # older agentdeck kept under the state folder).
        for wt_dir in (self.wt_dir, self.run_dir / "wt"):
            if wt_dir.is_dir():
                for child in wt_dir.iterdir():
                    if child not in keep_dirs:
                        gitops.remove_worktree(self.root, child)
        keep_artifacts = {self.artifacts_dir / str(t["id"]) for t in trials if t["state"] == "running"}
        if self.artifacts_dir.is_dir():
            for child in self.artifacts_dir.iterdir():
                if child not in keep_artifacts:
                    isolation.remove_dir(child)
        gitops.git.prune_worktrees(self.root)
        run = self.run_row()
        self.seed_counter = int(run["proposals"]) + int(run["duplicates"]) + int(run["proposal_failures"])

    def _ensure_baseline(self) -> None:
        """Queue the baseline runs of every class that has lanes and no baseline yet (a lane of a
        new class, added when a run is continued with other GPUs, measures its own first)."""
        blobs = gitops.tree_files(self.root, self.base_commit, self.workdir)
        editable = self.editable_paths(blobs)
        chash = gitops.content_hash(blobs, editable)
        self.hashes.add(chash)
        for cls in self.classes:
            if self.cls_state(cls)["baseline_metric"] is not None:
                continue
            live = [t for t in self.ledger.trials(self.tag)
                    if t["kind"] == "baseline" and t["status"] != "discard" and self.cls_of(t) == cls]
            missing = max(1, int(self.settings.repeats_baseline)) - len(live)
            for _ in range(missing):
                wt = self.new_worktree(self.base_commit)
                trial_id = self.ledger.insert_trial(
                    self.tag, kind="baseline", state="queued", status="queued", commit_sha=self.base_commit,
                    parent=self.base_commit, description="baseline", content_hash=chash, worktree=str(wt),
                    proposer="", hardware=cls,
                )
                self.trial_class[trial_id] = cls
                self.editables[trial_id] = editable
                self.ready.append(trial_id)

    # ================================================================== jobs
    def _pop_ready(self, cls: str) -> dict[str, Any] | None:
        """The next trial for a lane of class *cls*."""
        with self.lock:
            mine = [tid for tid in self.ready if self.trial_class.get(tid, self.primary) == cls]
            if not mine:
                return None
            trials = {tid: self.ledger.trial(self.tag, tid) for tid in mine}
            best = self.cls_best_commit(cls)
            # Baselines, then confirmations, then proposals made on the current best, oldest first.
            order = sorted(mine, key=lambda tid: (PRIORITY.get(trials[tid]["kind"], 3),
                                                  trials[tid]["parent"] != best, tid))
            tid = order[0]
            self.ready.remove(tid)
            return trials[tid]

    def _dispatch(self) -> None:
        for slot in self.pool.free():
            cls = self.slot_class.get(slot, self.primary)
            while True:
                trial = self._pop_ready(cls)
                if trial is None:
                    break
                if trial["state"] != "queued":
                    continue
                if trial["kind"] == "proposal" and not self._fresh(trial):
                    trial = self._rebase_queued(trial)
                    if trial is None:
                        continue
                wt = Path(trial["worktree"])
                problems = self._disk_problems(trial, wt)
                if problems:  # what the job would run is not what was committed: never started
                    self._finalize(trial["id"], "crash", "; ".join(problems))
                    self.cleanup.put(wt)
                    continue
                if self.pool.lease(trial["id"], slot) is None:  # pragma: no cover - free() said otherwise
                    with self.lock:
                        self.ready.insert(0, trial["id"])
                    return
                dirs = gitops.git_dirs(wt)
                self.guards[trial["id"]] = (dirs, gitops.git_dir_fingerprint(wt, dirs))
                self.submitted.add(trial["id"])
                self._submit(trial, slot)
                break

    def _fresh(self, trial: dict[str, Any]) -> bool:
        return trial["parent"] == self.cls_best_commit(self.cls_of(trial))

    def _rebase_stale_async(self, cls: str) -> None:
        """After a keep: move the queued proposals of class *cls* made on its old best onto the new
        one, in the background (git work stays off the path from a freed slot to its next job)."""
        best = self.cls_best_commit(cls)
        with self.lock:
            stale = []
            for tid in list(self.ready):
                if self.trial_class.get(tid, self.primary) != cls:
                    continue
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
        best = self.cls_best_commit(self.cls_of(trial))
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
        self.editables[trial["id"]] = editable = self.editable_paths(blobs)
        chash = gitops.content_hash(blobs, editable)
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
        problems = self._tree_problems(new)
        if problems:  # the combined tree breaks the file rules
            finalize(trial["id"], "crash", "; ".join(problems))
            self.cleanup.put(wt)
            return None
        return self.ledger.trial(self.tag, trial["id"])

    def job_name(self, trial_id: int) -> str:
        return f"agentdeck-{self.research.repo.repo_id}-{self.tag}-{trial_id}"

    def fixed_env(self, trial_id: int, slot: str, artifact_dir: Path) -> dict[str, str]:
        """The AGENTDECK_* (and device) variables a trial's job and evaluation get."""
        env = {
            "AGENTDECK_BUDGET_S": f"{self.budget_s:g}",
            "AGENTDECK_TRIAL": str(trial_id),
            "AGENTDECK_RESEARCH_TAG": self.tag,
            "AGENTDECK_SLOT": slot,
            isolation.ARTIFACT_ENV: str(artifact_dir),
            isolation.JOB_ENV: self.job_name(trial_id),
        }
        if self.executor.pins_devices:
            env.update(slot_env(slot))
        return env

    def _submit(self, trial: dict[str, Any], slot: str) -> None:
        wt = Path(trial["worktree"])
        log_path = self.logs_dir / f"{trial['id']}.log"
        artifact_dir = self.artifacts_dir / str(trial["id"])
        fixed = self.fixed_env(trial["id"], slot, artifact_dir)
        profile = None
        try:
            isolation.reset_dir(artifact_dir)  # a fresh folder per trial, outside the worktree
            if self.executor.runs_here:
                # The whole environment is an allow-list: agentdeck's own keys never reach a job.
                env = isolation.job_env(self.settings, fixed, sandboxed=self.sandbox.sandboxed)
                if self.sandbox.sandboxed:
                    profile = isolation.job_profile(self.research, cwd=self.workdir_in(wt), worktree=wt,
                                                    artifact_dir=artifact_dir, env=env,
                                                    network=bool(self.settings.network), gpus=slot != "cpu")
            else:
                env = fixed  # added to the cluster job's own environment by its executor
            spec = JobSpec(
                trial_id=trial["id"], tag=self.tag, command=self.settings.command, cwd=self.workdir_in(wt), env=env,
                log_path=log_path, slot=slot, budget_s=self.budget_s, timeout_s=self.timeout_s,
                name=self.job_name(trial["id"]), clean_env=self.executor.runs_here, sandbox=profile,
                artifact_dir=artifact_dir,
            )
        except Exception as exc:  # noqa: BLE001 - a profile that cannot be built is the trial's crash
            self.pool.release(slot)
            self._finalize(trial["id"], "crash", f"could not start the job: {exc}"[:300])
            self.cleanup.put(wt)
            self.cleanup.put(artifact_dir)
            return
        try:
            handle = self.executor.submit(spec)
        except Exception as exc:  # noqa: BLE001
            self.pool.release(slot)
            self._finalize(trial["id"], "crash", f"could not start the job: {exc}"[:300])
            self.cleanup.put(wt)
            self.cleanup.put(artifact_dir)
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
        self._retry_held()
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
            if not self._will_evaluate(job, state):
                self._release_slot(job)  # an evaluation keeps the slot: it runs on the same device
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

    def _will_evaluate(self, job: ActiveJob, state: JobState) -> bool:
        """True when the job ended well enough for the protected evaluation to run."""
        return bool(self.eval_command) and not job.cancel_reason and state.state == "done" and state.exit_code == 0

    def _release_slot(self, job: ActiveJob) -> None:
        """Lease the slot again, once nothing of the job holds its device (see Executor.settle)."""
        try:
            why = self.executor.settle(job.handle)
        except Exception as exc:  # noqa: BLE001 - a broken nvidia-smi must not hold the lane forever
            log.warning("settle of trial %s failed: %s", job.trial_id, exc)
            why = ""
        if why:
            if job.slot not in self.held:
                log.warning("slot %s stays held after trial %s: %s", job.slot, job.trial_id, why)
                self.event("slot_held", {"id": job.trial_id, "gpu": job.slot, "reason": why})
            self.held[job.slot] = job
            return
        self.held.pop(job.slot, None)
        self.pool.release(job.slot)

    def _retry_held(self) -> None:
        for job in list(self.held.values()):
            self._release_slot(job)

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
        outcome = JobOutcome(
            cancel_reason=job.cancel_reason, lost=state.state == "lost", exit_code=state.exit_code,
            metric_values=policy.metric_values(text, self.settings.metric),
            protected_changed=tuple(self._rel(p) for p in changed), reach=self._job_reach(job),
        )
        verdict = policy.run_verdict(outcome)  # the rules: policy.job_verdict
        if verdict is None and self.eval_command:
            # Only the protected evaluation's metric counts; what the job printed is its claim.
            fields["claimed"] = reading.value if reading.value is not None and reading.finite else None
            self.ledger.update_trial(self.tag, job.trial_id, **fields)
            self._finish_job(job)
            self._start_eval(job)
            return
        if verdict is None:
            verdict = policy.metric_verdict(outcome.metric_values)
        value = policy.metric_of(outcome)
        if verdict is None:
            fields.update(metric=value, state="judging")
            self.ledger.update_trial(self.tag, job.trial_id, **fields)
        else:
            if value is not None and math.isfinite(value):
                fields["metric"] = value
            self.ledger.update_trial(self.tag, job.trial_id, **fields)
            self._finalize(job.trial_id, verdict.status, verdict.reason)
        self._finish_job(job)
        if self.pool.holder(job.slot) == job.trial_id and job.slot not in self.held:
            self._release_slot(job)  # kept for an evaluation that a verdict made needless
        self.cleanup.put(job.worktree)
        self.cleanup.put(self.artifacts_dir / str(job.trial_id))

    def _finish_job(self, job: ActiveJob) -> None:
        try:
            self.executor.finish(job.handle)
        except Exception:  # noqa: BLE001
            log.debug("executor.finish failed", exc_info=True)

    # ================================================================== protected evaluation
    def _start_eval(self, job: ActiveJob) -> None:
        """Run ``eval_command`` on the trial's committed files and its artifacts, in a thread (the
        slot stays leased: the evaluation uses its device); :meth:`_eval_done` records it."""
        trial = self.ledger.trial(self.tag, job.trial_id)
        assert trial is not None
        stop = threading.Event()
        self.evals[job.trial_id] = stop
        artifact_dir = self.artifacts_dir / str(job.trial_id)
        fixed = self.fixed_env(job.trial_id, job.slot, artifact_dir)
        fixed[isolation.JOB_ENV] = self.job_name(job.trial_id) + "-eval"
        sandboxed = isolation.resolve_sandbox(self.settings.sandbox, "local").sandboxed
        self.event("evaluate", {"id": job.trial_id, "gpu": job.slot})

        def work() -> None:
            try:
                result = evaluate.evaluate_trial(
                    self.research, self.settings, trial=trial, workdir=self.workdir, artifact_dir=artifact_dir,
                    eval_root=self.trial_root / "eval", log_path=self.logs_dir / f"{job.trial_id}.eval.log",
                    fixed_env=fixed, sandboxed=sandboxed, timeout_s=self.timeout_s, stop=stop)
            except Exception as exc:  # noqa: BLE001 - recorded as the trial's crash
                log.error("evaluation of trial %s failed:\n%s", job.trial_id, traceback.format_exc())
                result = evaluate.EvalResult(None, "", 0.0, f"the evaluation could not run: {type(exc).__name__}: {exc}")
            self.call_soon(lambda: self._eval_done(job, result))

        threading.Thread(target=work, name=f"eval-{job.trial_id}", daemon=True).start()

    def _eval_done(self, job: ActiveJob, result: "evaluate.EvalResult") -> None:
        self.evals.pop(job.trial_id, None)
        trial = self.ledger.trial(self.tag, job.trial_id)
        try:
            if trial is None or trial["state"] == "final":  # recorded meanwhile (the run stopped)
                return
            metric = self.settings.metric
            meta = dict(trial["meta"]) | {"eval_seconds": round(result.seconds, 3)}
            verdict = evaluate.verdict_of(result, metric)
            if verdict is not None:
                self.ledger.update_trial(self.tag, job.trial_id, meta=meta)
                self._finalize(job.trial_id, *verdict)
                return
            value = evaluate.value_of(result, metric)
            note = evaluate.disagreement(trial["claimed"], value, metric)
            if note:
                meta["disagreement"] = note
                log.warning("trial %s: %s", job.trial_id, note)
                self.event("disagreement", {"id": job.trial_id, "claimed": trial["claimed"], "metric": value,
                                            "reason": note})
            self.ledger.update_trial(self.tag, job.trial_id, metric=value, state="judging", meta=meta)
        finally:
            self._release_slot(job)
            self.cleanup.put(job.worktree)
            self.cleanup.put(self.artifacts_dir / str(job.trial_id))

    # ================================================================== the record and the file rules
    def _open_chain(self) -> str:
        """Verify the decision chain a previous loop left ("" when sound) and take its head; a run
        recorded before the chain existed has its decided trials adopted as they are."""
        problem = self.ledger.chain_problem(self.tag)
        if problem:
            return problem
        self.chain_head = self.ledger.start_chain(self.tag)
        return ""

    def _ledger_ok(self) -> bool:
        """Verify the ledger against the decision chain this loop left; a mismatch fails the run.

        Skipped when nothing wrote to the database since the last check: SQLite's
        ``data_version`` moves with every commit of another connection (another process, or
        another thread of this one), ``total_changes`` with this connection's own."""
        if self.tampered:
            return False
        conn = self.ledger.conn
        key = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes, self.chain_head)
        if key == self._verified:
            return True
        problem = self.ledger.chain_problem(self.tag, self.chain_head)
        if problem:
            self._tamper(problem)
            return False
        self._verified = key
        return True

    def _tamper(self, problem: str) -> None:
        if self.tampered:
            return
        self.tampered = problem
        self.failed_message = (f"ledger changed outside the harness: {problem}; the run is stopped because its "
                               "record cannot be trusted — start a new run (sandboxed jobs cannot reach the ledger)")
        log.error("research %s: %s", self.tag, self.failed_message)
        self.event("tamper", {"reason": problem})

    def _tsv_trials(self) -> list[dict[str, Any]]:
        """The trials results.tsv shows (every decided trial that ran, and rejected proposals), in
        the order they were decided."""
        order = {row["trial"]: row["seq"] for row in self.ledger.chain(self.tag) if row["trial"] is not None}
        trials = [t for t in self.ledger.trials(self.tag, states=("final",))
                  if t["started_at"] is not None or t["kind"] == "proposal" and t["status"] == "crash"]
        trials.sort(key=lambda t: (order.get(t["id"], 0), t["id"]))
        return trials

    def _sync_tsv(self) -> None:
        """At start: results.tsv holds exactly the ledger's rows; rows a loop killed before writing
        them are appended, and a file with rows the ledger never had is rewritten from the ledger."""
        recorded = self._tsv_trials()
        expected = ["\t".join(tsv_row(t)) for t in recorded]
        lines = self.tsv.path.read_text(encoding="utf-8").splitlines() if self.tsv.path.exists() else []
        present = [line for line in lines[1:] if line]
        if lines and (lines[0] != self.tsv.header().rstrip("\n") or any(line not in expected for line in present)):
            log.warning("results.tsv of %s holds rows the ledger does not; rewritten from the ledger", self.tag)
            self.tsv.rewrite(recorded)
        else:
            for t, row in zip(recorded, expected):
                if row not in present:
                    self.tsv.append(t)
        self.tsv.adopt()

    def _record_tsv(self, trial: dict[str, Any]) -> None:
        if self.tsv.append(trial, ledger_rows=self._tsv_trials):
            why = "results.tsv was changed outside the harness; rewritten from the ledger"
            log.warning("research %s: %s", self.tag, why)
            self.event("tamper", {"reason": why})

    def _count_crash(self, trial: dict[str, Any]) -> None:
        """The crash rule: ``max_crashes`` crashes in a row pause the run, the last reason on screen."""
        self.crash_streak = policy.crash_streak(self.crash_streak, trial["status"], trial["reason"])
        if (trial["status"] != "crash" or not policy.crash_pause(self.crash_streak, self.max_crashes)
                or self.stopping.is_set() or self.failed_message or self.ledger.control(self.tag) != "run"):
            return
        message = (f"paused after {self.crash_streak} crashes in a row (last: trial {trial['id']}: "
                   f"{trial['reason'][:300]}); fix the lab or the proposer, then "
                   f"`agentdeck research resume --tag {self.tag}`")
        self.ledger.set_control(self.tag, "pause")
        self.pause_message = message
        self.crash_streak = 0
        self.set_state("paused", message)
        log.warning("research %s: %s", self.tag, message)

    def _tree_problems(self, commit: str, modes: dict[str, str] | None = None) -> list[str]:
        """The committed tree's editable paths that are not regular files (policy.tree_problems)."""
        modes = modes if modes is not None else gitops.tree_modes(self.root, commit, self.workdir)
        editable = gitops.match(self.workdir, self.settings.editable, modes.keys())
        return policy.tree_problems({self._rel(p): modes[p] for p in editable})

    def _content_problems(self, blobs: dict[str, str], modes: dict[str, str], worktree: Path) -> list[str]:
        """Files of the workdir whose content on disk is not the commit's (an index flag such as
        skip-worktree keeps a change out of the commit while the job would still run it)."""
        regular = [p for p in blobs if modes.get(p) in policy.REGULAR_MODES]
        disk = gitops.disk_blob_ids(worktree, regular)
        return [f"{self._rel(p)} on disk differs from the commit" for p in regular if disk[p] != blobs[p]][:3]

    def _disk_problems(self, trial: dict[str, Any] | None, worktree: Path,
                       editable: list[str] | None = None) -> list[str]:
        """The editable and protected files on disk that are not plain, unlinked regular files."""
        if editable is None:
            assert trial is not None
            editable = self.editables.get(trial["id"])
            if editable is None:
                editable = self.editable_paths(gitops.tree_files(self.root, trial["commit"], self.workdir))
                self.editables[trial["id"]] = editable
        facts = gitops.disk_facts(worktree, sorted(set(editable) | set(self.protected)))
        return policy.disk_problems({self._rel(p): facts[p] for p in editable if p not in self.protected},
                                    {self._rel(p): facts[p] for p in self.protected})

    def _job_reach(self, job: ActiveJob) -> tuple[str, ...]:
        """How a finished job reached outside its own files: links on disk, changes under .git."""
        guard = self.guards.pop(job.trial_id, None)
        if not job.worktree.is_dir():
            return ()
        trial = self.ledger.trial(self.tag, job.trial_id)
        disk = self._disk_problems(trial, job.worktree) if trial is not None else []
        changes: list[str] = []
        if guard is not None:  # (a job adopted from an earlier loop has no fingerprint to compare)
            changes = policy.git_dir_changes(guard[1], gitops.git_dir_fingerprint(job.worktree, guard[0]))
        return policy.reach_problems(disk, changes)

    def _rel(self, repo_path: str) -> str:
        if self.workdir in ("", "."):
            return repo_path
        prefix = self.workdir.strip("/") + "/"
        return repo_path[len(prefix):] if repo_path.startswith(prefix) else repo_path

    # ================================================================== judging
    def _judge(self) -> None:
        if self.tampered:
            return
        judging = self.ledger.trials(self.tag, states=("judging",))
        foreign = [t for t in judging if t["id"] not in self.submitted]
        if foreign:
            self._tamper(f"trial {foreign[0]['id']} appeared as measured though the harness never ran it")
            return
        in_play = list(dict.fromkeys(self.classes + [self.cls_of(t) for t in judging]))
        unsettled = [c for c in in_play if self.cls_state(c)["baseline_metric"] is None]
        if judging and not self._ledger_ok():  # (a settling baseline is verified by _finalize)
            return
        for cls in unsettled:
            self._settle_baseline(cls)
        settled = {c for c in in_play if self.cls_state(c)["baseline_metric"] is not None}
        for trial in self.ledger.trials(self.tag, states=("judging",)):
            if self.tampered:
                return
            if self.cls_of(trial) not in settled:
                continue
            if trial["kind"] == "baseline":  # a baseline run left judging by a loop killed mid-settle
                self._finalize(trial["id"], "keep", "baseline")
            elif trial["kind"] == "proposal" and not trial["meta"].get("reapplying"):
                self._decide(trial)

    def _settle_baseline(self, cls: str) -> bool:
        """Once every baseline run of class *cls* finished: its mean is the class's baseline and
        first best, their spread its noise."""
        baselines = [t for t in self.ledger.trials(self.tag) if t["kind"] == "baseline" and self.cls_of(t) == cls]
        live = [t for t in baselines if t["status"] != "discard"]
        if not live or any(t["state"] in ("queued", "running") for t in live):
            return False
        good = [t for t in live if t["state"] == "judging"]
        if not good:
            last = live[-1]
            where = f" on {cls}" if len(self.classes) > 1 else ""
            self.failed_message = (
                f"every baseline run{where} crashed (trial {last['id']}: {last['reason']}); fix the lab and see "
                f"`agentdeck research log {last['id']} --tag {self.tag}`"
            )
            return False
        values = [t["metric"] for t in good]
        base_mean, noise = policy.baseline_of(values)
        state = {"baseline_metric": base_mean, "baseline_runs": len(values), "noise": noise,
                 "best_trial": good[0]["id"], "best_metric": base_mean, "best_commit": self.base_commit}
        self._finalize(good[0]["id"], "keep", "baseline", best=(cls, state))
        for t in good[1:]:
            self._finalize(t["id"], "keep", "baseline")
        branch = self.cls_branch(cls)
        if cls != self.primary and not gitops.git.branch_exists(self.root, branch):
            gitops.set_ref(self.root, f"refs/heads/{branch}", self.base_commit)
        self.event("baseline", {"metric": base_mean, "runs": len(values), "noise": noise,
                                "hardware": cls if len(self.classes) > 1 else ""})
        return True

    def _decide(self, trial: dict[str, Any]) -> None:
        """Judge a finished proposal against the best of its class (the rules: policy.decide)."""
        cls = self.cls_of(trial)
        state = self.cls_state(cls)
        best_commit = state["best_commit"] or self.base_commit
        best = state["best_metric"]
        reruns = [t for t in self.ledger.trials(self.tag) if t["confirm_of"] == trial["id"]]
        stale = trial["parent"] != best_commit
        judgement = Judgement(
            trial_id=trial["id"], first=trial["metric"], best=best,
            reference=self._parent_value(cls, trial["parent"], best) if stale else best, stale=stale,
            noise=float(state["noise"] or 0.0), direction=self.settings.direction,
            baseline=state["baseline_metric"], confirm=bool(self.settings.confirm),
            suspect=trial["meta"].get("suspect", ""), largest_gain=self._largest_gain(cls), gate=self.gate,
            reruns=tuple(Rerun(r["id"], r["state"], r["status"], r["reason"], r["metric"]) for r in reruns),
        )
        decision = policy.decide(judgement)
        judging_reruns = [r for r in reruns if r["state"] == "judging"]
        if decision.action == "wait":
            return
        if decision.action == "discard":
            self._finalize(trial["id"], "discard", decision.reason)
            for r in judging_reruns:
                self._finalize(r["id"], decision.rerun_status or "discard",
                               decision.rerun_reason or f"trial {trial['id']} was discarded")
            return
        if decision.action == "reapply":
            for r in judging_reruns:
                self._finalize(r["id"], "discard", decision.rerun_reason)
            self._start_reapply(trial, decision.value)
            return
        if decision.action in ("confirm", "suspect"):
            suspect = decision.action == "suspect"
            ids = [self._queue_rerun(trial, n, suspect) for n in range(decision.reruns)]
            if suspect:
                self.ledger.update_trial(
                    self.tag, trial["id"], status="suspect", meta=dict(trial["meta"]) | {"suspect": decision.reason},
                    reason=f"suspect: {decision.reason}; re-running it as trials {', '.join(map(str, ids))}")
                self.event("suspect", {"id": trial["id"], "reason": decision.reason, "reruns": ids})
            else:
                self.ledger.update_trial(self.tag, trial["id"],
                                         reason=f"promising ({fmt(trial['metric'])}); confirming with trial {ids[0]}")
            return
        branch = self.cls_branch(cls)
        try:
            gitops.advance_branch(self.root, branch, trial["commit"], best_commit)
        except gitops.GitError as exc:
            log.warning("research branch %s moved outside agentdeck (%s); setting it to the kept trial", branch, exc)
            gitops.git.run(self.root, "update-ref", f"refs/heads/{branch}", trial["commit"])
        self._finalize(trial["id"], "keep", decision.reason,
                       meta_extra={"kept_value": decision.value, "gain": decision.gain},
                       best=(cls, {"best_trial": trial["id"], "best_metric": decision.value,
                                   "best_commit": trial["commit"]}))
        self._rebase_stale_async(cls)
        for r in judging_reruns:
            self._finalize(r["id"], decision.rerun_status or "keep", decision.rerun_reason)

    def _queue_rerun(self, trial: dict[str, Any], n: int, suspect: bool) -> int:
        """Queue one more run of *trial*'s commit (a confirmation, or a suspect's re-check)."""
        cls = self.cls_of(trial)
        wt = self.new_worktree(trial["commit"])
        description = (f"re-run {n + 1} of suspect {trial['id']}: {trial['description']}" if suspect
                       else f"confirm {trial['id']}: {trial['description']}")
        rerun_id = self.ledger.insert_trial(
            self.tag, kind="confirm", state="queued", status="queued", commit_sha=trial["commit"],
            parent=trial["parent"], description=description, content_hash=trial["content_hash"],
            confirm_of=trial["id"], worktree=str(wt), proposer=trial["proposer"], hardware=cls,
            meta={"rerun": "suspect"} if suspect else {},
        )
        self.trial_class[rerun_id] = cls
        with self.lock:
            self.ready.append(rerun_id)
        return rerun_id

    def _largest_gain(self, cls: str) -> float | None:
        """The largest improvement kept so far in class *cls* (None before the first keep)."""
        gains = [t["meta"]["gain"] for t in self.ledger.trials(self.tag, states=("final",))
                 if t["status"] == "keep" and t["kind"] == "proposal" and self.cls_of(t) == cls
                 and isinstance(t["meta"].get("gain"), (int, float))]
        return max(gains) if gains else None

    def _parent_value(self, cls: str, parent: str, fallback: float) -> float:
        """The value that made *parent* the best of *cls*: the baseline's mean, or the kept trial's."""
        if parent == self.base_commit:
            return self.cls_state(cls)["baseline_metric"]
        for t in self.ledger.trials(self.tag):
            if (t["commit"] == parent and t["status"] == "keep" and t["kind"] == "proposal"
                    and self.cls_of(t) == cls):
                return t["meta"].get("kept_value", t["metric"])
        return fallback

    def _start_reapply(self, trial: dict[str, Any], value: float) -> None:
        meta = dict(trial["meta"])
        meta["reapplying"] = True
        self.ledger.update_trial(self.tag, trial["id"], meta=meta)
        cls = self.cls_of(trial)
        state = self.cls_state(cls)
        best_commit, best_id = state["best_commit"] or self.base_commit, state["best_trial"]

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
                    editable = self.editable_paths(blobs)
                    chash = gitops.content_hash(blobs, editable)
                    with self.lock:
                        duplicate = chash in self.hashes
                        self.hashes.add(chash)
                    if duplicate:
                        self.ledger.bump(self.tag, "duplicates")
                        outcome = ("discard", "improved on an older parent; re-applied on the new best it "
                                              "duplicates an earlier trial")
                    else:
                        dropped = ("reapplying", "suspect", "kept_value", "gain")
                        new_id = self.ledger.insert_trial(
                            self.tag, kind="proposal", state="queued", status="queued", commit_sha=new,
                            parent=best_commit, description=description, content_hash=chash,
                            reapply_of=trial["id"], worktree=str(wt), proposer=trial["proposer"], hardware=cls,
                            meta={k: v for k, v in trial["meta"].items() if k not in dropped} | {
                                "reapplied_from": trial["id"]},
                        )
                        self.trial_class[new_id] = cls
                        self.editables[new_id] = editable
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
    def _finalize(self, trial_id: int, status: str, reason: str, *, meta_extra: dict[str, Any] | None = None,
                  best: tuple[str, dict[str, Any]] | None = None) -> None:
        """Record a trial's outcome everywhere (ledger, results.tsv, memory) — before any reset.

        The ledger row (with *best*: the class's new judged state) and the decision chain's link
        are one transaction; the chain is verified first (a mismatch fails the run, and this
        trial is still recorded as the harness saw it)."""
        self._ledger_ok()
        trial = self.ledger.trial(self.tag, trial_id)
        assert trial is not None
        meta = dict(trial["meta"])
        meta.pop("reapplying", None)
        meta.update(meta_extra or {})
        run_fields = class_fields = None
        if best is not None:
            cls, values = best
            if cls == self.primary:
                run_fields = values
            else:
                class_fields = (cls, values)
        self.chain_head = self.ledger.record_decision(
            self.tag, trial_id, {"state": "final", "status": status, "reason": reason, "meta": meta},
            run_fields=run_fields, class_fields=class_fields)
        trial = self.ledger.trial(self.tag, trial_id)
        assert trial is not None
        ran = trial["started_at"] is not None
        if ran or trial["kind"] == "proposal" and status == "crash":
            self._record_tsv(trial)
        if ran or status == "crash":
            self._note(trial)
        self.event("trial", trial)
        self._count_crash(trial)

    def _note(self, trial: dict[str, Any]) -> None:
        """The trial's memory note, marked with its kind (baseline, proposal, confirm, suspect re-run)."""
        run = self.run_row()
        metric = self.settings.metric
        cls = self.cls_of(trial)
        state = self.cls_state(cls, run)
        kind = "suspect re-run" if trial["meta"].get("rerun") == "suspect" else trial["kind"]
        label = "" if kind == "proposal" else f"{kind} "
        title = f"research {self.tag} #{trial['id']} {label}{trial['status']}: {trial['description']}"
        lines = [
            f"Auto-research run `{self.tag}` (branch `{self.cls_branch(cls)}`), trial {trial['id']} ({kind}), "
            f"hardware {cls}.",
            "",
            f"- outcome: **{trial['status']}** — {trial['reason']}",
            f"- {metric}: {fmt(trial['metric'])} (baseline {fmt(state['baseline_metric'])}, noise "
            f"{fmt(state['noise'])}, best so far {fmt(state['best_metric'])}; {self.settings.direction} is better)",
            f"- commit: `{trial['commit'][:12]}` (ref `{gitops.trial_ref(self.tag, trial['id'])}`), "
            f"gpu {trial['gpu']}, {fmt(trial['seconds'])} s",
        ]
        if trial["meta"].get("suspect"):
            lines.append(f"- suspect: {trial['meta']['suspect']}")
        try:
            diff = gitops.diff(self.root, trial["parent"], trial["commit"]) if trial["parent"] != trial["commit"] else ""
        except Exception:  # noqa: BLE001
            diff = ""
        if diff:
            lines += ["", "```diff", diff[:3000] + ("\n..." if len(diff) > 3000 else ""), "```"]
        tags = ["research", self.tag, trial["status"], kind.replace(" ", "-")]
        self.research.notes.add(title, "\n".join(lines), tags)

    # ================================================================== proposals
    def _feed(self) -> None:
        if time.time() < self.next_proposal_at:  # backing off after proposer failures
            return
        run = self.run_row()
        limit = run["trials_limit"]
        with self.lock:
            while self.preparing < self.workers:
                if limit is not None and int(run["proposals"]) + self.preparing >= int(limit):
                    return
                cls = self._class_wanting_proposal()
                if cls is None:
                    return
                self.preparing += 1
                self.preparing_for[cls] = self.preparing_for.get(cls, 0) + 1
                self.seed_counter += 1
                worker = self.seed_counter
                threading.Thread(target=self._prepare, args=(worker, cls), name=f"propose-{worker}",
                                 daemon=True).start()

    def _class_wanting_proposal(self) -> str | None:
        """The class whose lanes lack queued work the most (None: every lane has its next trial)."""
        wanted: dict[str, int] = {}
        for slot in self.slots:
            cls = self.slot_class[slot]
            wanted[cls] = wanted.get(cls, 0) + 1
        for tid in self.ready:
            cls = self.trial_class.get(tid, self.primary)
            if cls in wanted:
                wanted[cls] -= 1
        for cls, n in self.preparing_for.items():
            if cls in wanted:
                wanted[cls] -= n
        cls, deficit = max(wanted.items(), key=lambda kv: kv[1], default=(None, 0))
        return cls if deficit > 0 else None

    def _history(self) -> list[dict[str, Any]]:
        keep = ("id", "kind", "status", "reason", "metric", "description", "meta", "parent", "commit", "gpu",
                "hardware")
        # Queued and running trials too: proposers working in parallel must not repeat each other.
        return [{k: t.get(k) for k in keep} for t in self.ledger.trials(self.tag)]

    def _prepare(self, worker: int, cls: str | None = None) -> None:
        cls = cls or self.primary
        try:
            self._prepare_inner(worker, cls)
        except Exception as exc:  # noqa: BLE001
            log.error("proposal worker failed:\n%s", traceback.format_exc())
            why = f"{type(exc).__name__}: {exc}"
            self.call_soon(lambda: self._proposal_failed(why))
        finally:
            with self.lock:
                self.preparing -= 1
                self.preparing_for[cls] = max(0, self.preparing_for.get(cls, 0) - 1)
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

    def _prepare_inner(self, worker: int, cls: str | None = None) -> None:
        cls = cls or self.primary
        for attempt in range(MAX_DUPLICATE_ATTEMPTS):
            if self.stopping.is_set():
                return
            run = self.run_row()
            state = self.cls_state(cls, run)
            parent = state["best_commit"] or self.base_commit
            wt = self.new_worktree(parent)
            dirs = gitops.git_dirs(wt)
            git_before = gitops.git_dir_fingerprint(wt, dirs)
            try:
                request = ProposalRequest(
                    tag=self.tag, worktree=wt, workdir=self.workdir_in(wt),
                    editable=[self._rel(p) for p in self.editable_paths(
                        gitops.tree_files(self.root, parent, self.workdir))],
                    program=self._program(wt), metric=self.settings.metric, direction=self.settings.direction,
                    best={"id": state["best_trial"], "metric": state["best_metric"], "commit": parent},
                    baseline={"metric": state["baseline_metric"], "runs": state["baseline_runs"],
                              "noise": state["noise"]},
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
            git_changes = policy.git_dir_changes(git_before, gitops.git_dir_fingerprint(wt, dirs))
            commit = gitops.commit_all(wt, f"research {self.tag}: {proposal.description}")
            if commit is None:
                self.cleanup.put(wt)
                self.call_soon(lambda: self._proposal_failed("the proposal changed no file"))
                return
            gitops.clean_worktree(wt)  # the job runs what was committed, nothing the proposer left beside it
            blobs = gitops.tree_files(self.root, commit, self.workdir)
            editable_paths = self.editable_paths(blobs)
            chash = gitops.content_hash(blobs, editable_paths)
            with self.lock:
                duplicate = chash in self.hashes
                if not duplicate:
                    self.hashes.add(chash)
            if duplicate and not git_changes:
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
                proposer=self.proposer_name, meta=proposal.meta, hardware=cls,
            )
            self.trial_class[trial_id] = cls
            self.editables[trial_id] = editable_paths
            gitops.set_ref(self.root, gitops.trial_ref(self.tag, trial_id), commit)
            self.ledger.bump(self.tag, "proposals")
            rejected = ""
            if protected:
                rejected = "protected file changed: " + ", ".join(self._rel(p) for p in protected)
            elif outside:
                rejected = "file outside editable changed: " + ", ".join(self._rel(p) for p in outside)
            else:
                modes = gitops.tree_modes(self.root, commit, self.workdir)
                problems = (self._tree_problems(commit, modes) or self._disk_problems(None, wt, editable_paths)
                            or self._content_problems(blobs, modes, wt)
                            or list(policy.reach_problems([], git_changes)))
                rejected = "; ".join(problems)

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
        if limit is None or any(self.cls_state(c, run)["baseline_metric"] is None for c in self.classes):
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
        if state != "failed":
            for cls in self.classes:
                if self.cls_state(cls)["baseline_metric"] is None:
                    self._settle_baseline(cls)  # from the baseline runs that finished, if any did
        for t in self.ledger.trials(self.tag, states=("judging",)):
            if t["kind"] != "baseline":
                self._finalize(t["id"], "discard", "stopped before it was decided")
        with self.lock:
            self.ready.clear()
        self.set_state(state, message)

def settings_dict(settings: Any) -> dict[str, Any]:
    return dataclasses.asdict(settings)
