"""The experiment loop: many proposers feeding many GPU slots, honestly.

One loop process runs one research run (a tag).  It runs the threads, the
dispatch and the polling, gathers the facts, and carries out what the rules
in :mod:`agentdeck.research.policy` decide (the verdict of a job, keep /
discard / confirm / suspect / re-apply, the file rules, the crash rule).
:class:`ResearchLoop` holds the run's state and the main loop; its parts are
:mod:`.loop_jobs` (jobs and the protected evaluation), :mod:`.loop_judging`
(baselines and decisions), :mod:`.loop_moves` (changes moved onto a newer
best), :mod:`.loop_proposals` (proposal workers), :mod:`.loop_record` (restart,
the ledger's chain, results.tsv, notes, the crash rule) and :mod:`.loop_files`
(the facts the file rules judge); :mod:`.loop_state` declares the state they share
(with its types) and holds the helpers they all use.  Its public API: ``run()`` and
``record_stopped()`` (a dead loop's run recorded stopped):

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
  queued proposal whose parent is no longer the best is moved onto it before it
  runs, and a finished one that beats the best measured on an older parent is
  re-applied on the new best and run again — the change is made again by the
  proposer's ``redo`` where it has one (a searched point is written into the new
  best's numbers), else cherry-picked; a re-applied change whose files come out
  as what it ran is judged again as measured, without a second run;
  ``research/<tag>`` fast-forwards to each kept trial;
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

import logging
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentdeck.errors import Refused
from agentdeck.research import gitops, isolation, policy
from agentdeck.research.executors.base import Executor
from agentdeck.research.gpus import SlotPool
from agentdeck.research.ledger import Ledger
from agentdeck.research.loop_files import FileFacts
from agentdeck.research.loop_jobs import JobRunner
from agentdeck.research.loop_judging import Judging
from agentdeck.research.loop_moves import ChangeMover
from agentdeck.research.loop_proposals import ProposalWorkers
from agentdeck.research.loop_record import Recording
from agentdeck.research.loop_state import ActiveJob
from agentdeck.research.model import Gate, Trial
from agentdeck.research.policy import fmt
from agentdeck.research.proposers.base import Proposer
from agentdeck.research.results_tsv import ResultsTsv
from agentdeck.research.runlock import LoopLock

log = logging.getLogger("agentdeck.research")

HEARTBEAT_S = 2.0
TICK_S = 0.25


class ResearchLoop(Recording, Judging, JobRunner, ChangeMover, ProposalWorkers, FileFacts):
    """One run's loop: the state below, the threads and the main loop; its parts (the mixins) are
    in the ``loop_*`` modules."""

    def __init__(self, research: Any, tag: str, proposer: Proposer | None = None,
                 executor: Executor | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 on_tick: Callable[[ResearchLoop], None] | None = None):
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
        self.workdir = run.workdir
        self.branch = run.branch
        self.base_commit = run.base_commit
        self.protected: dict[str, str] = run.protected
        opts = run.settings
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
        self.calls: queue.Queue[Callable[[], None]] = queue.Queue()
        self.cleanup: queue.Queue[Path | None] = queue.Queue()
        self._cleaner: threading.Thread | None = None
        self.failed_message = ""
        self.stop_message = ""
        self._loop_lock = LoopLock(self.run_dir / "loop.lock")
        self._last_heartbeat = 0.0
        self._state = ""
        self.started_at = time.time()

    # ================================================================== helpers
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
            except Exception:
                log.warning("could not remove trial worktree %s", path, exc_info=True)

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
            except Exception:
                pass
            self.executor.close()
            self._loop_lock.release()
        return {"state": result_state, "tag": self.tag}

    def record_stopped(self) -> bool:
        """For a run whose loop is gone (its jobs already cancelled): take the run's lock, pick up what
        the dead loop left (:meth:`_recover`) and record it stopped, as a stop would have.  False, and
        nothing done, when another process's loop holds the run."""
        if not self._loop_lock.acquire():
            return False
        try:
            self._recover()
            self._shutdown("stopped")
        finally:
            self.cleanup.put(None)
            self._cleanup_worker()
            self._loop_lock.release()
        return True

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
                except Exception:
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
        text = (f"best {fmt(run.best_metric)} (trial {run.best_trial}); baseline "
                f"{fmt(run.baseline_metric)} ± {fmt(run.noise)}")
        for cls in self.classes:
            if cls != self.primary:
                st = self.cls_state(cls, run)
                text += (f"; on {cls}: best {fmt(st['best_metric'])} (trial {st['best_trial']}), baseline "
                         f"{fmt(st['baseline_metric'])} ± {fmt(st['noise'])}")
        return text

    # ================================================================== jobs
    def _pop_ready(self, cls: str) -> Trial | None:
        """The next trial for a lane of class *cls*."""
        with self.lock:
            mine = [tid for tid in self.ready if self.trial_class.get(tid, self.primary) == cls]
            if not mine:
                return None
            trials: dict[int, Trial] = {}
            for tid in mine:
                row = self.ledger.trial(self.tag, tid)
                assert row is not None, f"queued trial {tid} is not in the ledger"
                trials[tid] = row
            best = self.cls_best_commit(cls)
            order = sorted(mine, key=lambda tid: policy.dispatch_key(trials[tid].kind, trials[tid].parent, best, tid))
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
                if trial.state != "queued":
                    continue
                if trial.kind == "proposal" and not self._fresh(trial):
                    trial = self._rebase_queued(trial)
                    if trial is None:
                        continue
                wt = Path(trial.worktree)
                problems = self._disk_problems(trial, wt)
                if problems:  # what the job would run is not what was committed: never started
                    self._finalize(trial.id, "crash", "; ".join(problems))
                    self.cleanup.put(wt)
                    continue
                if self.pool.lease(trial.id, slot) is None:  # pragma: no cover - free() said otherwise
                    with self.lock:
                        self.ready.insert(0, trial.id)
                    return
                dirs = gitops.git_dirs(wt)
                self.guards[trial.id] = (dirs, gitops.git_dir_fingerprint(wt, dirs))
                self.submitted.add(trial.id)
                self._submit(trial, slot)
                break

    def _fresh(self, trial: Trial) -> bool:
        return trial.parent == self.cls_best_commit(self.cls_of(trial))

    # ================================================================== ending
    def _finished(self) -> bool:
        run = self.run_row()
        limit = run.trials_limit
        if limit is None or any(self.cls_state(c, run)["baseline_metric"] is None for c in self.classes):
            return False
        if int(run.proposals) < int(limit):
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
                except Exception:
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
            self._finalize(t.id, "discard", "stopped before it ran")
            if t.worktree:
                self.cleanup.put(Path(t.worktree))
        if state != "failed":
            for cls in self.classes:
                if self.cls_state(cls)["baseline_metric"] is None:
                    self._settle_baseline(cls)  # from the baseline runs that finished, if any did
        for t in self.ledger.trials(self.tag, states=("judging",)):
            if t.kind != "baseline":
                self._finalize(t.id, "discard", "stopped before it was decided")
        with self.lock:
            self.ready.clear()
        self.set_state(state, message)
