"""Proposal workers: threads that ask the proposer for changes while jobs train, commit them in fresh
worktrees, skip duplicates and reject changes to protected or non-editable files before any job.

A part of :class:`agentdeck.research.loop.ResearchLoop` (a mixin: the state it uses is the loop's,
set up in ``ResearchLoop.__init__`` and declared, with its types, in :class:`.loop_state.LoopState`).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from agentdeck.research import gitops, policy
from agentdeck.research.loop_state import LoopState
from agentdeck.research.proposers.base import Proposal, ProposalFailed, ProposalRequest

log = logging.getLogger("agentdeck.research")

MAX_DUPLICATE_ATTEMPTS = 25  # per proposal request
MAX_CONSECUTIVE_FAILURES = 10  # proposer failures in a row before the run stops
BACKOFF_BASE_S = 1.0  # after n failures in a row, wait min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**(n-1))
BACKOFF_MAX_S = 30.0


class ProposalWorkers(LoopState):
    def _feed(self) -> None:
        if time.time() < self.next_proposal_at:  # backing off after proposer failures
            return
        run = self.run_row()
        limit = run.trials_limit
        with self.lock:
            while self.preparing < self.workers:
                if limit is not None and int(run.proposals) + self.preparing >= int(limit):
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
        neediest: tuple[str | None, int] = max(wanted.items(), key=lambda kv: kv[1], default=(None, 0))
        return neediest[0] if neediest[1] > 0 else None

    def _history(self) -> list[dict[str, Any]]:
        keep = ("id", "kind", "status", "reason", "metric", "description", "meta", "parent", "commit", "gpu",
                "hardware")
        # Queued and running trials too: proposers working in parallel must not repeat each other.
        return [{k: getattr(t, k) for k in keep} for t in self.ledger.trials(self.tag)]

    def _prepare(self, worker: int, cls: str | None = None) -> None:
        cls = cls or self.primary
        try:
            self._prepare_inner(worker, cls)
        except Exception as exc:
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
                                 f"row (last: {why}); fix it and continue with "
                                 f"`agentdeck research run --tag {self.tag}`")
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
                request = self._request(wt, parent, cls, state=state, worker=worker, attempt=attempt)
                proposal: Proposal = self.proposer.propose(request)
            except ProposalFailed as exc:
                self.cleanup.put(wt)
                self.call_soon(functools.partial(self._proposal_failed, str(exc)))
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
            trial_id = self.ledger.insert_trial(
                self.tag, kind="proposal", state="queued", status="queued", commit=commit, parent=parent,
                description=proposal.description, content_hash=chash, worktree=str(wt),
                proposer=self.proposer_name, meta=proposal.meta, hardware=cls,
            )
            self.trial_class[trial_id] = cls
            self.editables[trial_id] = editable_paths
            gitops.set_ref(self.root, gitops.trial_ref(self.tag, trial_id), commit)
            self.ledger.bump(self.tag, "proposals")
            rejected = "; ".join(self._change_problems(parent, commit))
            if not rejected:
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

    def _request(self, wt: Path, parent: str, cls: str, *, state: dict[str, Any] | None = None, worker: int = 0,
                 attempt: int = 0, history: bool = True) -> ProposalRequest:
        """The proposer's view of a fresh worktree *wt* at *parent*, the best of class *cls*."""
        state = state if state is not None else self.cls_state(cls)
        return ProposalRequest(
            tag=self.tag, worktree=wt, workdir=self.workdir_in(wt),
            editable=[self._rel(p) for p in self.editable_paths(gitops.tree_files(self.root, parent, self.workdir))],
            program=self._program(wt), metric=self.settings.metric, direction=self.settings.direction,
            best={"id": state["best_trial"], "metric": state["best_metric"], "commit": parent},
            baseline={"metric": state["baseline_metric"], "runs": state["baseline_runs"], "noise": state["noise"]},
            history=self._history() if history else [],
            notes=self._notes_for_proposer() if history else [],
            seed=worker, worker=worker, attempt=attempt, results_tsv=self.tsv.path, stop=self.stopping,
        )

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
