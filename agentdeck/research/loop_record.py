"""The record: picking up what an earlier loop left (restart), the ledger's decision chain, results.tsv,
the memory notes, and the crash rule (:func:`policy.crash_streak`, :func:`policy.crash_pause`).

A part of :class:`agentdeck.research.loop.ResearchLoop` (a mixin: the state it uses is the loop's,
set up in ``ResearchLoop.__init__`` and declared, with its types, in :class:`.loop_state.LoopState`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from agentdeck.research import gitops, isolation, policy
from agentdeck.research.loop_state import ActiveJob, LoopState
from agentdeck.research.model import Trial
from agentdeck.research.policy import fmt
from agentdeck.research.results_tsv import tsv_row

log = logging.getLogger("agentdeck.research")


class Recording(LoopState):
    def _recover(self) -> None:
        """Pick up what a previous loop of this run left: running jobs, queued trials, orphans."""
        problem = self._open_chain()
        if problem:
            self._tamper(problem)
        trials = self.ledger.trials(self.tag)
        self.hashes = {t.content_hash for t in trials if t.content_hash and t.kind != "confirm"}
        keep_dirs: set[Path] = set()
        for t in trials:
            self.cls_of(t)
            if t.state in ("running", "judging"):
                self.submitted.add(t.id)
            if t.state == "running":
                handle = self.executor.reattach(t.job) if t.job else None
                if handle is None or t.gpu is None:
                    self._finalize(t.id, "crash", "lost")
                    if t.worktree:
                        self.cleanup.put(Path(t.worktree))
                    continue
                wanted = t.job.get("_slot", t.gpu)
                slot = self.pool.lease(t.id, wanted) or wanted
                self.jobs[t.id] = ActiveJob(t.id, handle, slot, Path(t.worktree), time.time(),
                                               running_since=t.started_at)
                keep_dirs.add(Path(t.worktree))
            elif t.state == "judging" and t.meta.get("reapplying"):
                meta = dict(t.meta)
                meta.pop("reapplying")
                self.ledger.update_trial(self.tag, t.id, meta=meta)  # decided again below
            elif t.state == "queued" and self.cls_of(t) not in self.classes:
                self._finalize(t.id, "discard", f"no lane of its hardware class ({self.cls_of(t)}) any more")
                if t.worktree:
                    self.cleanup.put(Path(t.worktree))
            elif t.state == "queued":
                wt = Path(t.worktree) if t.worktree else None
                if wt is None or not wt.is_dir() or gitops.git.head_commit(wt) != t.commit:
                    wt = self.new_worktree(t.commit)
                    self.ledger.update_trial(self.tag, t.id, worktree=str(wt))
                keep_dirs.add(wt)
                self.ready.append(t.id)
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
        keep_artifacts = {self.artifacts_dir / str(t.id) for t in trials if t.state == "running"}
        if self.artifacts_dir.is_dir():
            for child in self.artifacts_dir.iterdir():
                if child not in keep_artifacts:
                    isolation.remove_dir(child)
        gitops.git.prune_worktrees(self.root)
        run = self.run_row()
        self.seed_counter = int(run.proposals) + int(run.duplicates) + int(run.proposal_failures)

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

    def _tsv_trials(self) -> list[Trial]:
        """The trials results.tsv shows (every decided trial that ran, and rejected proposals), in
        the order they were decided."""
        order = {row["trial"]: row["seq"] for row in self.ledger.chain(self.tag) if row["trial"] is not None}
        trials = [t for t in self.ledger.trials(self.tag, states=("final",))
                  if t.started_at is not None or (t.kind == "proposal" and t.status == "crash")]
        trials.sort(key=lambda t: (order.get(t.id, 0), t.id))
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

    def _record_tsv(self, trial: Trial) -> None:
        if self.tsv.append(trial, ledger_rows=self._tsv_trials):
            why = "results.tsv was changed outside the harness; rewritten from the ledger"
            log.warning("research %s: %s", self.tag, why)
            self.event("tamper", {"reason": why})

    def _count_crash(self, trial: Trial) -> None:
        """The crash rule: ``max_crashes`` crashes in a row pause the run, the last reason on screen."""
        self.crash_streak = policy.crash_streak(self.crash_streak, trial.status, trial.reason)
        if (trial.status != "crash" or not policy.crash_pause(self.crash_streak, self.max_crashes)
                or self.stopping.is_set() or self.failed_message or self.ledger.control(self.tag) != "run"):
            return
        message = (f"paused after {self.crash_streak} crashes in a row (last: trial {trial.id}: "
                   f"{trial.reason[:300]}); fix the lab or the proposer, then "
                   f"`agentdeck research resume --tag {self.tag}`")
        self.ledger.set_control(self.tag, "pause")
        self.pause_message = message
        self.crash_streak = 0
        self.set_state("paused", message)
        log.warning("research %s: %s", self.tag, message)

    def _finalize(self, trial_id: int, status: str, reason: str, *, meta_extra: dict[str, Any] | None = None,
                  best: tuple[str, dict[str, Any]] | None = None) -> None:
        """Record a trial's outcome everywhere (ledger, results.tsv, memory) — before any reset.

        The ledger row (with *best*: the class's new judged state) and the decision chain's link
        are one transaction; the chain is verified first (a mismatch fails the run, and this
        trial is still recorded as the harness saw it)."""
        self._ledger_ok()
        trial = self.ledger.trial(self.tag, trial_id)
        assert trial is not None
        meta = dict(trial.meta)
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
        ran = trial.started_at is not None
        if ran or (trial.kind == "proposal" and status == "crash"):
            self._record_tsv(trial)
        if ran or status == "crash":
            self._note(trial)
        self.event("trial", trial.to_json())
        self._count_crash(trial)

    def _note(self, trial: Trial) -> None:
        """The trial's memory note, marked with its kind (baseline, proposal, confirm, suspect re-run)."""
        run = self.run_row()
        metric = self.settings.metric
        cls = self.cls_of(trial)
        state = self.cls_state(cls, run)
        kind = "suspect re-run" if trial.meta.get("rerun") == "suspect" else trial.kind
        label = "" if kind == "proposal" else f"{kind} "
        title = f"research {self.tag} #{trial.id} {label}{trial.status}: {trial.description}"
        lines = [
            f"Auto-research run `{self.tag}` (branch `{self.cls_branch(cls)}`), trial {trial.id} ({kind}), "
            f"hardware {cls}.",
            "",
            f"- outcome: **{trial.status}** — {trial.reason}",
            f"- {metric}: {fmt(trial.metric)} (baseline {fmt(state['baseline_metric'])}, noise "
            f"{fmt(state['noise'])}, best so far {fmt(state['best_metric'])}; {self.settings.direction} is better)",
            f"- commit: `{trial.commit[:12]}` (ref `{gitops.trial_ref(self.tag, trial.id)}`), "
            f"gpu {trial.gpu}, {fmt(trial.seconds)} s",
        ]
        if trial.meta.get("suspect"):
            lines.append(f"- suspect: {trial.meta['suspect']}")
        try:
            changed = trial.parent != trial.commit
            diff = gitops.diff(self.root, trial.parent, trial.commit) if changed else ""
        except Exception:
            diff = ""
        if diff:
            lines += ["", "```diff", diff[:3000] + ("\n..." if len(diff) > 3000 else ""), "```"]
        tags = ["research", self.tag, trial.status, kind.replace(" ", "-")]
        self.research.notes.add(title, "\n".join(lines), tags)
