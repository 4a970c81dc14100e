"""Promoting a trial: its commit merged into the run's base branch, only when every rule allows it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentdeck import git
from agentdeck.errors import Refused
from agentdeck.research import gitops

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.research.host import ResearchHost


def promote(research: ResearchHost, trial_id: int | str | None = None, tag: str | None = None,
            accept_suspect: bool = False) -> dict[str, Any]:
    """Merge a trial (default: the run's best) into the run's base branch (a plain ``git merge``).

    Refused for a suspect trial (a jump too large to believe) unless *accept_suspect*, and
    for a tree whose editable files are not all regular files (a symlink or submodule would
    reach outside the repository once merged)."""
    tag = research.resolve_tag(tag)
    run = research.ledger.run(tag)
    assert run is not None
    if trial_id is None:
        if run.best_trial is None or run.best_commit == run.base_commit:
            raise Refused(f"nothing to promote: no trial of {tag!r} beat the baseline yet")
        trial_id = run.best_trial
    t = research.trial(trial_id, tag)
    if t.kind == "baseline" or t.commit == run.base_commit:
        raise Refused(f"trial {t.id} is the baseline: nothing to promote")
    if t.status in ("queued", "running"):
        raise Refused(f"trial {t.id} is still {t.status}; wait for its result")
    if t.status == "crash":
        raise Refused(f"trial {t.id} crashed ({t.reason}); promote a kept trial instead")
    if t.status == "suspect":
        raise Refused(f"trial {t.id} is suspect and still being re-run; wait for its re-runs")
    if t.meta.get("suspect") and not accept_suspect:
        raise Refused(f"trial {t.id} is suspect ({t.meta['suspect']}); check its log and diff, then "
                      f"`agentdeck research promote {t.id} --accept-suspect` if it is real")
    settings = research.settings_from_run(run)
    modes = gitops.tree_modes(research.repo.root, t.commit, run.workdir)
    base_modes = gitops.tree_modes(research.repo.root, run.base_commit, run.workdir)
    editable = set(gitops.match(run.workdir, settings.editable, modes.keys()))
    irregular = sorted(p for p, mode in modes.items() if mode not in ("100644", "100755")
                       and (p in editable or base_modes.get(p) != mode))
    if irregular:
        raise Refused(f"trial {t.id} breaks the regular-file rule: {irregular[0]} has mode "
                      f"{modes[irregular[0]]} (a symbolic link or submodule); nothing merged")
    base = run.base_branch
    current = git.current_branch(research.repo.root)
    if current != base:
        raise Refused(f"the main checkout is on {current or 'a detached HEAD'}, not {base}; "
                      f"`git switch {base}` there, then promote")
    if git.run_ok(research.repo.root, "merge-base", "--is-ancestor", t.commit, "HEAD"):
        raise Refused(f"trial {t.id} is already in {base}")
    message = f"research {tag}: promote trial {t.id} ({research.settings_from_run(run).metric} " \
              f"{t.metric}): {t.description}"
    try:
        merged = gitops.merge(research.repo.root, t.commit, message)
    except gitops.GitError as exc:
        raise Refused(f"promoting trial {t.id} into {base} would conflict or failed ({exc.stderr[:200]}); "
                      f"nothing changed — merge {gitops.trial_ref(tag, t.id)} by hand") from None
    return {"tag": tag, "trial": t.id, "commit": t.commit, "into": base, "merge_commit": merged}


