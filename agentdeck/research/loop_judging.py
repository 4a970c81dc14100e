"""Judging: the baseline runs of each hardware class queued and settled, and each finished proposal
decided by :func:`policy.decide` and carried out (keep, discard, confirm, suspect, re-apply).

A part of :class:`agentdeck.research.loop.ResearchLoop` (a mixin: the state it uses is the loop's,
set up in ``ResearchLoop.__init__`` and declared, with its types, in :class:`.loop_state.LoopState`).
"""

from __future__ import annotations

import logging
from typing import cast

from agentdeck.research import gitops, policy
from agentdeck.research.loop_state import LoopState
from agentdeck.research.model import Judgement, Rerun, Trial
from agentdeck.research.policy import fmt

log = logging.getLogger("agentdeck.research")


class Judging(LoopState):
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
                    if t.kind == "baseline" and t.status != "discard" and self.cls_of(t) == cls]
            missing = max(1, int(self.settings.repeats_baseline)) - len(live)
            for _ in range(missing):
                wt = self.new_worktree(self.base_commit)
                trial_id = self.ledger.insert_trial(
                    self.tag, kind="baseline", state="queued", status="queued", commit=self.base_commit,
                    parent=self.base_commit, description="baseline", content_hash=chash, worktree=str(wt),
                    proposer="", hardware=cls,
                )
                self.trial_class[trial_id] = cls
                self.editables[trial_id] = editable
                self.ready.append(trial_id)

    def _judge(self) -> None:
        if self.tampered:
            return
        judging = self.ledger.trials(self.tag, states=("judging",))
        foreign = [t for t in judging if t.id not in self.submitted]
        if foreign:
            self._tamper(f"trial {foreign[0].id} appeared as measured though the harness never ran it")
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
            if trial.kind == "baseline":  # a baseline run left judging by a loop killed mid-settle
                self._finalize(trial.id, "keep", "baseline")
            elif trial.kind == "proposal" and not trial.meta.get("reapplying"):
                self._decide(trial)

    def _settle_baseline(self, cls: str) -> bool:
        """Once every baseline run of class *cls* finished: its mean is the class's baseline and
        first best, their spread its noise."""
        baselines = [t for t in self.ledger.trials(self.tag) if t.kind == "baseline" and self.cls_of(t) == cls]
        live = [t for t in baselines if t.status != "discard"]
        if not live or any(t.state in ("queued", "running") for t in live):
            return False
        good = [t for t in live if t.state == "judging"]
        if not good:
            last = live[-1]
            where = f" on {cls}" if len(self.classes) > 1 else ""
            self.failed_message = (
                f"every baseline run{where} crashed (trial {last.id}: {last.reason}); fix the lab and see "
                f"`agentdeck research log {last.id} --tag {self.tag}`"
            )
            return False
        values = [t.metric for t in good if t.metric is not None]  # (a measured run has one)
        base_mean, noise = policy.baseline_of(values)
        state = {"baseline_metric": base_mean, "baseline_runs": len(values), "noise": noise,
                 "best_trial": good[0].id, "best_metric": base_mean, "best_commit": self.base_commit}
        self._finalize(good[0].id, "keep", "baseline", best=(cls, state))
        for t in good[1:]:
            self._finalize(t.id, "keep", "baseline")
        branch = self.cls_branch(cls)
        if cls != self.primary and not gitops.git.branch_exists(self.root, branch):
            gitops.set_ref(self.root, f"refs/heads/{branch}", self.base_commit)
        self.event("baseline", {"metric": base_mean, "runs": len(values), "noise": noise,
                                "hardware": cls if len(self.classes) > 1 else ""})
        return True

    def _decide(self, trial: Trial) -> None:
        """Judge a finished proposal against the best of its class (the rules: policy.decide)."""
        cls = self.cls_of(trial)
        state = self.cls_state(cls)
        best_commit = state["best_commit"] or self.base_commit
        best = state["best_metric"]
        reruns = [t for t in self.ledger.trials(self.tag) if t.confirm_of == trial.id]
        stale = trial.parent != best_commit
        judgement = Judgement(
            trial_id=trial.id, first=cast(float, trial.metric), best=best,  # (a measured proposal has one)
            reference=self._parent_value(cls, trial.parent, best) if stale else best, stale=stale,
            noise=float(state["noise"] or 0.0), direction=self.settings.direction,
            baseline=state["baseline_metric"], confirm=bool(self.settings.confirm),
            suspect=trial.meta.get("suspect", ""), largest_gain=self._largest_gain(cls), gate=self.gate,
            reruns=tuple(Rerun(r.id, r.state, r.status, r.reason, r.metric) for r in reruns),
        )
        decision = policy.decide(judgement)
        judging_reruns = [r for r in reruns if r.state == "judging"]
        if decision.action == "wait":
            return
        if decision.action == "discard":
            self._finalize(trial.id, "discard", decision.reason)
            for r in judging_reruns:
                self._finalize(r.id, decision.rerun_status or "discard",
                               decision.rerun_reason or f"trial {trial.id} was discarded")
            return
        if decision.action == "reapply":
            for r in judging_reruns:
                self._finalize(r.id, "discard", decision.rerun_reason)
            assert decision.value is not None  # policy.decide: a re-apply rests on the measured value
            self._start_reapply(trial, decision.value)
            return
        if decision.action in ("confirm", "suspect"):
            suspect = decision.action == "suspect"
            ids = [self._queue_rerun(trial, n, suspect) for n in range(decision.reruns)]
            if suspect:
                self.ledger.update_trial(
                    self.tag, trial.id, status="suspect", meta=dict(trial.meta) | {"suspect": decision.reason},
                    reason=f"suspect: {decision.reason}; re-running it as trials {', '.join(map(str, ids))}")
                self.event("suspect", {"id": trial.id, "reason": decision.reason, "reruns": ids})
            else:
                self.ledger.update_trial(self.tag, trial.id,
                                         reason=f"promising ({fmt(trial.metric)}); confirming with trial {ids[0]}")
            return
        branch = self.cls_branch(cls)
        try:
            gitops.advance_branch(self.root, branch, trial.commit, best_commit)
        except gitops.GitError as exc:
            log.warning("research branch %s moved outside agentdeck (%s); setting it to the kept trial", branch, exc)
            gitops.git.run(self.root, "update-ref", f"refs/heads/{branch}", trial.commit)
        self._finalize(trial.id, "keep", decision.reason,
                       meta_extra={"kept_value": decision.value, "gain": decision.gain},
                       best=(cls, {"best_trial": trial.id, "best_metric": decision.value,
                                   "best_commit": trial.commit}))
        self._rebase_stale_async(cls)
        for r in judging_reruns:
            self._finalize(r.id, decision.rerun_status or "keep", decision.rerun_reason)

    def _queue_rerun(self, trial: Trial, n: int, suspect: bool) -> int:
        """Queue one more run of *trial*'s commit (a confirmation, or a suspect's re-check)."""
        cls = self.cls_of(trial)
        wt = self.new_worktree(trial.commit)
        description = (f"re-run {n + 1} of suspect {trial.id}: {trial.description}" if suspect
                       else f"confirm {trial.id}: {trial.description}")
        rerun_id = self.ledger.insert_trial(
            self.tag, kind="confirm", state="queued", status="queued", commit=trial.commit,
            parent=trial.parent, description=description, content_hash=trial.content_hash,
            confirm_of=trial.id, worktree=str(wt), proposer=trial.proposer, hardware=cls,
            meta={"rerun": "suspect"} if suspect else {},
        )
        self.trial_class[rerun_id] = cls
        with self.lock:
            self.ready.append(rerun_id)
        return rerun_id

    def _largest_gain(self, cls: str) -> float | None:
        """The largest improvement kept so far in class *cls* (None before the first keep)."""
        gains = [t.meta["gain"] for t in self.ledger.trials(self.tag, states=("final",))
                 if t.status == "keep" and t.kind == "proposal" and self.cls_of(t) == cls
                 and isinstance(t.meta.get("gain"), (int, float))]
        return max(gains) if gains else None

    def _parent_value(self, cls: str, parent: str, fallback: float) -> float:
        """The value that made *parent* the best of *cls*: the baseline's mean, or the kept trial's."""
        if parent == self.base_commit:
            return self.cls_state(cls)["baseline_metric"]
        for t in self.ledger.trials(self.tag):
            if (t.commit == parent and t.status == "keep" and t.kind == "proposal"
                    and self.cls_of(t) == cls):
                return cast(float, t.meta.get("kept_value", t.metric))  # a kept proposal has both
        return fallback
