"""Running trials' jobs: submission to the executor, polling, cancelling, the end of a job and
its protected evaluation; a job's verdict is :func:`policy.run_verdict` / :func:`policy.metric_verdict`.

A part of :class:`agentdeck.research.loop.ResearchLoop` (a mixin: the state it uses is the loop's,
set up in ``ResearchLoop.__init__`` and declared, with its types, in :class:`.loop_state.LoopState`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from agentdeck.research import evaluate, gitops, isolation, policy
from agentdeck.research.executors.base import JobSpec, JobState
from agentdeck.research.gpus import slot_env
from agentdeck.research.loop_state import ActiveJob, LoopState
from agentdeck.research.metric import read_metric
from agentdeck.research.model import JobOutcome, Trial

log = logging.getLogger("agentdeck.research")

CANCEL_RETRY_S = 5.0  # a cancel the executor refused is tried again after this long


class JobRunner(LoopState):
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

    def _submit(self, trial: Trial, slot: str) -> None:
        wt = Path(trial.worktree)
        log_path = self.logs_dir / f"{trial.id}.log"
        artifact_dir = self.artifacts_dir / str(trial.id)
        fixed = self.fixed_env(trial.id, slot, artifact_dir)
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
                trial_id=trial.id, tag=self.tag, command=self.settings.command, cwd=self.workdir_in(wt), env=env,
                log_path=log_path, slot=slot, budget_s=self.budget_s, timeout_s=self.timeout_s,
                name=self.job_name(trial.id), clean_env=self.executor.runs_here, sandbox=profile,
                artifact_dir=artifact_dir,
            )
        except Exception as exc:  # a profile that cannot be built is the trial's crash
            self.pool.release(slot)
            self._finalize(trial.id, "crash", f"could not start the job: {exc}"[:300])
            self.cleanup.put(wt)
            self.cleanup.put(artifact_dir)
            return
        try:
            handle = self.executor.submit(spec)
        except Exception as exc:
            self.pool.release(slot)
            self._finalize(trial.id, "crash", f"could not start the job: {exc}"[:300])
            self.cleanup.put(wt)
            self.cleanup.put(artifact_dir)
            return
        now = time.time()
        self.ledger.update_trial(self.tag, trial.id, state="running", status="running", gpu=handle.node or slot,
                                 started_at=handle.data.get("running_at") or now,
                                 job=dict(handle.data) | {"_slot": slot}, log_path=str(log_path))
        running_at = handle.data.get("running_at")
        self.jobs[trial.id] = ActiveJob(trial.id, handle, slot, wt, now,
                                           running_since=float(running_at) if running_at else None)
        self.event("start", {"id": trial.id, "kind": trial.kind, "gpu": slot,
                             "description": trial.description})

    def _poll_jobs(self, refill: bool = True) -> None:
        self._retry_held()
        finished: list[tuple[ActiveJob, JobState, float]] = []
        for job in list(self.jobs.values()):
            try:
                state = self.executor.poll(job.handle)
            except Exception as exc:  # an executor hiccup is not a verdict
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
        except Exception as exc:
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
        except Exception as exc:  # a broken nvidia-smi must not hold the lane forever
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
        log_path = Path(trial.log_path or self.logs_dir / f"{job.trial_id}.log")
        if not log_path.exists() and text:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(text, encoding="utf-8")
        reading = read_metric(text, self.settings.metric)
        started = job.running_since or trial.started_at or job.submitted
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
        except Exception:
            log.debug("executor.finish failed", exc_info=True)

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
            except Exception as exc:  # recorded as the trial's crash
                log.error("evaluation of trial %s failed:\n%s", job.trial_id, traceback.format_exc())
                why = f"the evaluation could not run: {type(exc).__name__}: {exc}"
                result = evaluate.EvalResult(None, "", 0.0, why)
            self.call_soon(lambda: self._eval_done(job, result))

        threading.Thread(target=work, name=f"eval-{job.trial_id}", daemon=True).start()

    def _eval_done(self, job: ActiveJob, result: evaluate.EvalResult) -> None:
        self.evals.pop(job.trial_id, None)
        trial = self.ledger.trial(self.tag, job.trial_id)
        try:
            if trial is None or trial.state == "final":  # recorded meanwhile (the run stopped)
                return
            metric = self.settings.metric
            meta = dict(trial.meta) | {"eval_seconds": round(result.seconds, 3)}
            verdict = evaluate.verdict_of(result, metric)
            if verdict is not None:
                self.ledger.update_trial(self.tag, job.trial_id, meta=meta)
                self._finalize(job.trial_id, *verdict)
                return
            value = evaluate.value_of(result, metric)
            note = evaluate.disagreement(trial.claimed, value, metric)
            if note:
                meta["disagreement"] = note
                log.warning("trial %s: %s", job.trial_id, note)
                self.event("disagreement", {"id": job.trial_id, "claimed": trial.claimed, "metric": value,
                                            "reason": note})
            self.ledger.update_trial(self.tag, job.trial_id, metric=value, state="judging", meta=meta)
        finally:
            self._release_slot(job)
            self.cleanup.put(job.worktree)
            self.cleanup.put(self.artifacts_dir / str(job.trial_id))

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
