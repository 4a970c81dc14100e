"""Moving changes onto a newer best: a queued proposal made on an older best is moved before it runs;
a winner measured on an older best is re-applied (the proposer's ``redo``, else a cherry-pick) and,
unless its files come out as what it ran, run again.

A part of :class:`agentdeck.research.loop.ResearchLoop` (a mixin: the state it uses is the loop's,
set up in ``ResearchLoop.__init__`` and declared, with its types, in :class:`.loop_state.LoopState`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentdeck.research import gitops, policy
from agentdeck.research.loop_state import LoopState
from agentdeck.research.model import Trial
from agentdeck.research.policy import fmt
from agentdeck.research.proposers.base import Proposal, ProposalFailed

log = logging.getLogger("agentdeck.research")


class _NoLongerApplies(Exception):
    """The proposer says a change cannot be made again on the new best (one line: why)."""


class ChangeMover(LoopState):
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
                if t and t.kind == "proposal" and t.state == "queued" and t.parent != best:
                    self.ready.remove(tid)
                    self.rebasing.add(tid)
                    stale.append(t)

        def deferred_finalize(trial_id: int, status: str, reason: str) -> None:
            self.call_soon(lambda: self._finalize(trial_id, status, reason))

        def work(trial: Trial) -> None:
            result = None
            try:
                result = self._rebase_queued(trial, finalize=deferred_finalize)
            except Exception:
                log.warning("background rebase of trial %s failed", trial.id, exc_info=True)
                deferred_finalize(trial.id, "discard", "could not move the change onto the new best")

            def done() -> None:
                self.rebasing.discard(trial.id)
                if result is not None:
                    with self.lock:
                        self.ready.append(trial.id)

            self.call_soon(done)

        for t in stale:
            threading.Thread(target=work, args=(t,), name=f"rebase-{t.id}", daemon=True).start()

    def _rebase_queued(self, trial: Trial, finalize: Callable[[int, str, str], None] | None = None
                       ) -> Trial | None:
        """A queued proposal made on an older best: make its change again on the current best first
        (:meth:`_move_change`: the proposer's redo, else a cherry-pick)."""
        finalize = finalize or self._finalize
        cls = self.cls_of(trial)
        best = self.cls_best_commit(cls)
        wt = Path(trial.worktree)
        why = ""
        try:
            gitops.git.run(wt, "checkout", "-q", "--detach", best)
            new, redone = self._move_change(trial, wt, best, cls, "research {tag} #{id}: {description}")
        except _NoLongerApplies as exc:
            new, redone, why = None, None, str(exc)
        except Exception as exc:
            new, redone = None, None
            log.warning("rebase of trial %s failed: %s", trial.id, exc)
        if new is None:
            finalize(trial.id, "discard", "the best moved on and the change no longer applies to it"
                     + (f" ({why})" if why else ""))
            self.cleanup.put(wt)
            return None
        blobs = gitops.tree_files(self.root, new, self.workdir)
        self.editables[trial.id] = editable = self.editable_paths(blobs)
        chash = gitops.content_hash(blobs, editable)
        with self.lock:
            # Its own content is no duplicate: a searched point written onto a best with the same
            # code is the very file it was proposed as.
            duplicate = policy.is_duplicate(chash, self.hashes, own=trial.content_hash)
            self.hashes.add(chash)
        meta = dict(trial.meta) | (redone.meta if redone is not None else {})
        meta["rebased_from"] = trial.commit
        fields: dict[str, Any] = {"commit": new, "parent": best, "content_hash": chash, "meta": meta}
        if redone is not None:
            fields["description"] = redone.description
        self.ledger.update_trial(self.tag, trial.id, **fields)
        gitops.set_ref(self.root, gitops.trial_ref(self.tag, trial.id), new)
        if duplicate:
            self.ledger.bump(self.tag, "duplicates")
            finalize(trial.id, "discard", "duplicate: on the new best its files equal an earlier trial's")
            self.cleanup.put(wt)
            return None
        problems = self._change_problems(best, new) or self._tree_problems(new)
        if problems:  # the combined tree breaks the file rules
            finalize(trial.id, "crash", "; ".join(problems))
            self.cleanup.put(wt)
            return None
        return self.ledger.trial(self.tag, trial.id)

    def _move_change(self, trial: Trial, wt: Path, best: str, cls: str, message: str
                     ) -> tuple[str | None, Proposal | None]:
        """Make *trial*'s change again in *wt* (checked out at *best*) and commit it: the proposer's
        ``redo`` first (a search proposal is a point, written into the new best's own numbers where
        a cherry-pick of its diff would conflict), else a cherry-pick of its commit.  Returns the new
        commit (None: nothing to commit) and the redone proposal (None: cherry-picked); raises
        :class:`_NoLongerApplies` when the proposer says the change does not apply there.
        *message* is formatted with the tag, the trial's id and the description."""
        redo = getattr(self.proposer, "redo", None)
        redone: Proposal | None = None
        if redo is not None:
            try:
                redone = redo(self._request(wt, best, cls, history=False), trial.to_json())  # (proposers take dicts)
            except ProposalFailed as exc:
                raise _NoLongerApplies(str(exc)) from None
        description = redone.description if redone is not None else trial.description
        text = message.format(tag=self.tag, id=trial.id, description=description)
        if redone is None:
            return gitops.cherry_pick(wt, trial.commit, text), None
        commit = gitops.commit_all(wt, text)
        gitops.clean_worktree(wt)  # the job runs what was committed
        return commit, redone

    def _start_reapply(self, trial: Trial, value: float) -> None:
        """A finished proposal that beat its parent, an older best: make its change again on the new
        best (:meth:`_move_change`) in the background.  Files equal to what it ran: it is judged again
        as it is, now against the best it was moved onto (no second run); other new files: a new trial,
        run again; files of another trial: a duplicate."""
        meta = dict(trial.meta)
        meta["reapplying"] = True
        self.ledger.update_trial(self.tag, trial.id, meta=meta)
        cls = self.cls_of(trial)
        state = self.cls_state(cls)
        best_commit, best_id = state["best_commit"] or self.base_commit, state["best_trial"]

        def work() -> None:
            outcome: tuple[str, str] | None = None
            new_id = None
            wt = None
            moved: tuple[str, Proposal | None] | None = None  # (commit, redone) judged as measured
            try:
                wt = self.new_worktree(best_commit)
                new, redone = self._move_change(trial, wt, best_commit, cls,
                                                "research {tag}: {description} (re-applied from trial {id})")
                if new is None:
                    outcome = ("discard", f"{fmt(value)} improved on its parent, but on the new best "
                                          f"(trial {best_id}) the change no longer applies")
                else:
                    blobs = gitops.tree_files(self.root, new, self.workdir)
                    editable = self.editable_paths(blobs)
                    chash = gitops.content_hash(blobs, editable)
                    problems = self._change_problems(best_commit, new) or self._tree_problems(new)
                    with self.lock:
                        verdict = policy.moved_change(chash, trial.content_hash, self.hashes)
                        self.hashes.add(chash)
                    description = redone.description if redone is not None else trial.description
                    if problems:
                        outcome = ("discard", f"{fmt(value)} improved on its parent; re-applied on the new best "
                                              f"it breaks the file rules: {'; '.join(problems)}"[:500])
                    elif verdict == "as_measured":
                        moved = (new, redone)
                    elif verdict == "duplicate":
                        self.ledger.bump(self.tag, "duplicates")
                        outcome = ("discard", "improved on an older parent; re-applied on the new best it "
                                              "duplicates an earlier trial")
                    else:
                        dropped = ("reapplying", "suspect", "kept_value", "gain")
                        new_meta = {k: v for k, v in trial.meta.items() if k not in dropped}
                        if redone is not None:
                            new_meta |= {k: v for k, v in redone.meta.items() if k not in dropped}
                        new_id = self.ledger.insert_trial(
                            self.tag, kind="proposal", state="queued", status="queued", commit=new,
                            parent=best_commit, description=description, content_hash=chash,
                            reapply_of=trial.id, worktree=str(wt), proposer=trial.proposer, hardware=cls,
                            meta=new_meta | {"reapplied_from": trial.id},
                        )
                        self.trial_class[new_id] = cls
                        self.editables[new_id] = editable
                        gitops.set_ref(self.root, gitops.trial_ref(self.tag, new_id), new)
                        outcome = ("discard", f"{fmt(value)} improved on its parent, an older best; "
                                              f"re-applied on the new best as trial {new_id}")
            except _NoLongerApplies as exc:
                outcome = ("discard", f"{fmt(value)} improved on its parent, but on the new best "
                                      f"(trial {best_id}) the change no longer applies ({exc})"[:500])
            except Exception as exc:
                outcome = ("discard", f"re-applying on the new best failed: {exc}"[:300])

            def finish() -> None:
                current = self.ledger.trial(self.tag, trial.id)
                if current is None or current.state == "final":  # stopped meanwhile
                    if new_id is not None:
                        self._finalize(new_id, "discard", "stopped before it ran")
                    if wt is not None:
                        self.cleanup.put(wt)
                    return
                if moved is not None:
                    self._moved_as_measured(current, *moved, best_commit)
                    if wt is not None:
                        self.cleanup.put(wt)
                    return
                assert outcome is not None
                self._finalize(trial.id, *outcome)
                if new_id is not None:
                    with self.lock:
                        self.ready.append(new_id)
                elif wt is not None:
                    self.cleanup.put(wt)

            self.call_soon(finish)

        threading.Thread(target=work, name=f"reapply-{trial.id}", daemon=True).start()

    def _moved_as_measured(self, trial: Trial, commit: str, redone: Proposal | None, parent: str) -> None:
        """*trial*'s change made again on the new best *parent* gave the files it ran: its measurement
        stands for *commit*, which it now is; :meth:`_judge` decides it again against that best."""
        meta = dict(trial.meta) | (redone.meta if redone is not None else {})
        meta.pop("reapplying", None)
        meta["rebased_from"] = trial.commit
        fields: dict[str, Any] = {"commit": commit, "parent": parent, "meta": meta}
        if redone is not None:
            fields["description"] = redone.description
        self.ledger.update_trial(self.tag, trial.id, **fields)
        gitops.set_ref(self.root, gitops.trial_ref(self.tag, trial.id), commit)
        self.event("moved", {"id": trial.id, "commit": commit, "parent": parent})
