"""Reading a research run: the contract's ``research status --json`` object and its parts.

Only the ledger is read (and the run's settings): nothing here imports Optuna, an executor or
a proposer, so ``status`` and the deck's Research tab stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentdeck.research.hardware import class_branch
from agentdeck.research.isolation import resolve_sandbox
from agentdeck.research.model import Run, Trial

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.research.host import ResearchHost
from agentdeck.research.proposers.search_record import latest_importances


def status_json(research: ResearchHost, tag: str | None = None) -> dict[str, Any]:
    """The contract's ``research status --json`` object (plus ``state`` and counters)."""
    tag = research.resolve_tag(tag)
    run = research.ledger.run(tag)
    assert run is not None
    trials = research.ledger.trials(tag)
    primary = run.settings.get("primary_class") or "default"
    suspect = {t.id for t in trials if t.meta.get("suspect")}
    best = None
    if run.best_trial is not None:
        best = {"id": run.best_trial, "metric": run.best_metric, "commit": run.best_commit}
        if run.best_trial in suspect:
            best["suspect"] = True
    return {
        "tag": tag,
        "branch": run.branch,
        "results_tsv": str(research.run_dir(tag) / "results.tsv"),
        "baseline": {"metric": run.baseline_metric, "runs": run.baseline_runs, "noise": run.noise},
        "best": best,
        "trials": [trial_json(t) | {"hardware": t.hardware or primary} for t in trials],
        "hardware": primary,
        "slot_classes": dict(run.settings.get("slot_classes") or {}),
        "bests": class_bests(research, run, suspect),
        "state": research.state(tag),
        "metric": research.settings_from_run(run).metric,
        "direction": research.settings_from_run(run).direction,
        "slots": run.settings.get("slots", []),
        "proposals": run.proposals,
        "trials_limit": run.trials_limit,
        "duplicates": run.duplicates,
        "proposal_failures": run.proposal_failures,
        "message": run.message,
        "importances": importances(research, tag),
        **trust(research, run),
    }

def trust(research: ResearchHost, run: Run) -> dict[str, Any]:
    """Where the metric comes from and what the jobs run in (``metric_source``, ``sandbox``)."""
    settings = research.settings_from_run(run)
    resolved = resolve_sandbox(settings.sandbox, settings.executor)
    return {"metric_source": "eval" if (settings.eval_command or "").strip() else "self-reported",
            "sandbox": resolved.mode, "sandbox_detail": resolved.error or resolved.detail}

def importances(research: ResearchHost, tag: str) -> dict[str, Any] | None:
    """The search proposer's latest parameter importances (from the ledger; Optuna is not imported)."""
    return latest_importances(research.ledger, tag)

def class_bests(research: ResearchHost, run: Run, suspect: set[int]) -> dict[str, Any]:
    """The baseline and best of every hardware class other than the run's primary one."""
    out = {}
    primary = run.settings.get("primary_class") or "default"
    for cls, row in research.ledger.class_rows(run.tag).items():
        best = None
        if row["best_trial"] is not None:
            best = {"id": row["best_trial"], "metric": row["best_metric"], "commit": row["best_commit"]}
            if row["best_trial"] in suspect:
                best["suspect"] = True
        out[cls] = {"branch": class_branch(run.branch, cls, primary),
                    "baseline": {"metric": row["baseline_metric"], "runs": row["baseline_runs"],
                                 "noise": row["noise"]},
                    "best": best}
    return out

def trial_json(t: Trial) -> dict[str, Any]:
    """A trial as ``research status --json`` lists it."""
    return {
        "id": t.id,
        "kind": t.kind,
        "status": t.status,
        "reason": t.reason,
        "metric": t.metric,
        "commit": t.commit,
        "description": t.description,
        "gpu": t.gpu,
        "seconds": None if t.seconds is None else round(float(t.seconds), 3),
        "hardware": t.hardware or "",
        "suspect": bool(t.meta.get("suspect")),
        "claimed": t.claimed,
    }

