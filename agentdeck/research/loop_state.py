"""The state one research run's loop shares between its parts, declared once.

:class:`agentdeck.research.loop.ResearchLoop` is built from mixins (the ``loop_*`` modules), each
one part of the loop over the same state.  They all derive from :class:`LoopState`, which declares
that state with its types (``ResearchLoop.__init__`` sets it up), holds the small helpers every
part uses, and names the methods one part calls on another (for the type checker only: at run
time each is the part's own).  :class:`ActiveJob` is a job the loop watches.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentdeck.config import ResearchSettings
from agentdeck.research import gitops
from agentdeck.research.executors.base import Executor, JobHandle
from agentdeck.research.gpus import SlotPool
from agentdeck.research.hardware import class_branch
from agentdeck.research.ledger import CLASS_FIELDS, Ledger
from agentdeck.research.model import Gate, Run, Trial
from agentdeck.research.proposers.base import ProposalRequest, Proposer
from agentdeck.research.results_tsv import ResultsTsv
from agentdeck.research.runlock import LoopLock
from agentdeck.sandbox import Resolved

log = logging.getLogger("agentdeck.research")


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


class LoopState:
    """What every part of the loop reads and writes; set up in ``ResearchLoop.__init__``."""

    # ---- the run, fixed for the loop's life
    research: Any  # the Research facade (not imported: it imports the loop)
    tag: str
    ledger: Ledger
    settings: ResearchSettings
    root: Path
    run_dir: Path
    trial_root: Path
    wt_dir: Path
    artifacts_dir: Path
    logs_dir: Path
    workdir: str
    branch: str
    base_commit: str
    protected: dict[str, str]  # repo path -> checksum
    proposer_name: str
    slots: list[str]
    primary: str  # the primary hardware class
    slot_class: dict[str, str]  # slot -> hardware class
    classes: list[str]
    budget_s: float
    timeout_s: float
    gate: Gate
    max_crashes: int
    executor: Executor
    sandbox: Resolved
    eval_command: str
    proposer: Proposer
    pool: SlotPool
    tsv: ResultsTsv
    wake: threading.Event
    on_event: Callable[[str, dict[str, Any]], None] | None
    workers: int
    started_at: float

    # ---- what changes while it runs (under ``lock`` where threads share it)
    lock: threading.RLock
    evals: dict[int, threading.Event]  # trial id -> stop flag of its running evaluation
    held: dict[str, ActiveJob]  # slot -> the ended job whose GPU processes are still listed
    jobs: dict[int, ActiveJob]
    ready: list[int]
    rebasing: set[int]
    preparing: int
    preparing_for: dict[str, int]  # class -> proposals being prepared for its lanes
    trial_class: dict[int, str]  # trial id -> hardware class (never changes)
    editables: dict[int, list[str]]  # trial id -> its editable repo paths
    hashes: set[str]
    consecutive_failures: int
    crash_streak: int
    pause_message: str
    submitted: set[int]
    guards: dict[int, tuple[Any, dict[str, str]]]  # trial id -> (git dirs, .git fingerprint)
    chain_head: tuple[int, str] | None
    tampered: str
    _verified: tuple[Any, ...] | None
    next_proposal_at: float
    seed_counter: int
    stopping: threading.Event
    calls: queue.Queue[Callable[[], None]]
    cleanup: queue.Queue[Path | None]
    _cleaner: threading.Thread | None
    failed_message: str
    stop_message: str
    _loop_lock: LoopLock
    _last_heartbeat: float
    _state: str

    # ================================================================== helpers every part uses
    def event(self, kind: str, data: dict[str, Any]) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, data)
            except Exception:  # a display must never break the loop
                log.debug("on_event failed", exc_info=True)

    def run_row(self) -> Run:
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

    def cls_of(self, trial: Trial) -> str:
        """The hardware class *trial* is judged in ("" in a run from before classes: the primary)."""
        cls: str = trial.hardware or self.primary
        self.trial_class.setdefault(trial.id, cls)
        return cls

    def cls_state(self, cls: str, run: Run | None = None) -> dict[str, Any]:
        """A class's baseline, noise and best (the primary's live in the runs row)."""
        if cls == self.primary:
            run = run or self.run_row()
            return {k: getattr(run, k) for k in CLASS_FIELDS}
        return self.ledger.class_rows(self.tag).get(cls) or dict.fromkeys(CLASS_FIELDS) | {"baseline_runs": 0}

    def cls_best_commit(self, cls: str) -> str:
        best: str = self.cls_state(cls)["best_commit"] or self.base_commit
        return best

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

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.calls.put(fn)
        self.wake.set()

    if TYPE_CHECKING:
        # ============================================================== what one part calls on another
        # loop.py
        def _dispatch(self) -> None: ...

        # loop_files.py
        def _tree_problems(self, commit: str, modes: dict[str, str] | None = None) -> list[str]: ...
        def _content_problems(self, blobs: dict[str, str], modes: dict[str, str], worktree: Path) -> list[str]: ...
        def _disk_problems(self, trial: Trial | None, worktree: Path,
                           editable: list[str] | None = None) -> list[str]: ...
        def _change_problems(self, parent: str, commit: str) -> list[str]: ...
        def _rel(self, repo_path: str) -> str: ...

        # loop_moves.py
        def _rebase_stale_async(self, cls: str) -> None: ...
        def _start_reapply(self, trial: Trial, value: float) -> None: ...

        # loop_proposals.py
        def _request(self, wt: Path, parent: str, cls: str, *, state: dict[str, Any] | None = None,
                     worker: int = 0, attempt: int = 0, history: bool = True) -> ProposalRequest: ...

        # loop_record.py
        def _ledger_ok(self) -> bool: ...
        def _tamper(self, problem: str) -> None: ...
        def _finalize(self, trial_id: int, status: str, reason: str, *, meta_extra: dict[str, Any] | None = None,
                      best: tuple[str, dict[str, Any]] | None = None) -> None: ...
