"""Starting a research run: the lab validated, the run created — or an existing one readied to go on.

Everything is checked before anything is written (the lab's files and settings, the executor,
the sandbox, the proposer); a run that cannot start leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentdeck import git
from agentdeck.config import RaySettings, ResearchSettings, SlurmSettings
from agentdeck.errors import Refused, UsageError
from agentdeck.research import gitops
from agentdeck.research.hardware import slot_classes
from agentdeck.research.isolation import resolve_sandbox
from agentdeck.research.model import Run
from agentdeck.research.proposers import check_name as check_proposer_name

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.research.host import ResearchHost

TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,47}$")
METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def settings_from_dict(data: dict[str, Any]) -> ResearchSettings:
    """A run's settings, as the ledger stores them, back as ``ResearchSettings`` (unknown keys dropped)."""
    names = {f.name for f in dataclasses.fields(ResearchSettings)}
    kwargs = {k: v for k, v in data.items() if k in names and k not in ("ray", "slurm")}
    settings = ResearchSettings(**kwargs)
    ray_names = {f.name for f in dataclasses.fields(RaySettings)}
    slurm_names = {f.name for f in dataclasses.fields(SlurmSettings)}
    settings.ray = RaySettings(**{k: v for k, v in (data.get("ray") or {}).items() if k in ray_names})
    settings.slurm = SlurmSettings(**{k: v for k, v in (data.get("slurm") or {}).items() if k in slurm_names})
    return settings


def validate_lab(repo_root: Path, settings: Any, base_commit: str) -> tuple[dict[str, str], list[str], list[str]]:
    """(protected blobs, editable repo paths, warnings); UsageError on a broken lab."""
    warnings: list[str] = []
    check_proposer_name(settings.proposer)
    if not settings.command.strip():
        raise UsageError("[research] command is empty; set the training command, e.g. \"python train.py\"")
    if not METRIC_RE.match(settings.metric):
        raise UsageError(f"[research] metric {settings.metric!r} is not a name like val_bpb")
    if settings.budget_s <= 0:
        raise UsageError("the time budget must be positive (--budget or [research] budget_s)")
    if settings.timeout_s <= settings.budget_s:
        raise UsageError(
            f"[research] timeout_s ({settings.timeout_s:g}) must exceed the budget ({settings.budget_s:g}); "
            "raise timeout_s or lower the budget"
        )
    if settings.repeats_baseline < 1:
        raise UsageError("[research] repeats_baseline must be at least 1")
    workdir = posixpath.normpath(settings.workdir.strip() or ".")
    if workdir.startswith("/") or ".." in Path(workdir).parts:
        raise UsageError(f"[research] workdir {workdir!r} must be a folder inside the repository")
    files = gitops.tree_files(repo_root, base_commit, workdir)
    if not files:
        raise UsageError(
            f"[research] workdir {workdir!r} has no committed files at {base_commit[:10]}; "
            "commit the lab first (git add, git commit)"
        )
    editable = gitops.match(workdir, settings.editable, files.keys())
    if not editable:
        raise UsageError(
            f"none of [research] editable ({', '.join(settings.editable) or 'empty'}) is a committed file in "
            f"{workdir!r}; commit it or fix the list"
        )
    modes = gitops.tree_modes(repo_root, base_commit, workdir)
    irregular = [p for p in gitops.match(workdir, settings.editable, modes.keys()) if modes[p] not in
                 ("100644", "100755")]
    if irregular:
        raise UsageError(f"editable {irregular[0]} is not a regular file in the commit (mode {modes[irregular[0]]}); "
                         "replace the link or submodule with the file itself and commit")
    protected_paths = gitops.match(workdir, settings.protected, files.keys())
    for pattern in settings.protected:
        if not gitops.match(workdir, [pattern], files.keys()):
            warnings.append(f"protected file {pattern!r} is not committed in {workdir!r}; nothing guards it")
    overlap = set(protected_paths) & set(editable)
    if overlap:
        raise UsageError(f"{', '.join(sorted(overlap))} is both editable and protected in [research]; pick one")
    program = gitops.join(workdir, settings.program)
    if program not in files:
        warnings.append(f"the lab's program {settings.program!r} is not committed in {workdir!r}; proposers get "
                        "no instructions (a template ships in agentdeck's prompts/program.md)")
    dirty = git.status_porcelain(repo_root)
    touched = [p for p in dirty if p in editable or p in protected_paths or p == program]
    if touched:
        warnings.append("uncommitted changes to " + ", ".join(touched) + " are not part of the run "
                        "(trials start from the last commit)")
    protected = {p: files[p] for p in protected_paths}
    return protected, editable, warnings


def check_sandbox(settings: Any, executor: Any) -> None:
    """A UsageError when ``[research] sandbox = "bwrap"`` cannot be honoured here (before a run starts)."""
    resolved = resolve_sandbox(settings.sandbox, executor.name)
    if resolved.error:
        raise UsageError(f"[research] {resolved.error}")



def start_run(research: ResearchHost, tag: str | None = None, trials: int | None = None, proposer: str | None = None,
              gpus: Any = None, budget_s: float | None = None) -> str:
    """Create the run *tag* (default: from the date), or ready an existing one to continue."""
    if trials is not None and trials < 0:
        raise UsageError("--trials must be 0 or more")
    if tag is not None and not TAG_RE.match(tag):
        raise UsageError(f"bad tag {tag!r}: use lower-case letters, digits, '.', '_' or '-' (e.g. nov26)")
    existing = research.ledger.run(tag) if tag else None
    if existing is not None:
        return continue_run(research, existing, trials, proposer, gpus, budget_s)
    settings = research.effective_settings(proposer, budget_s)
    base_commit = git.head_commit(research.repo.root)
    if base_commit is None:
        raise UsageError("this repository has no commits yet; commit the lab first")
    base_branch = git.current_branch(research.repo.root) or base_commit
    protected, _editable, warnings = validate_lab(research.repo.root, settings, base_commit)
    executor = research.make_executor(settings)
    executor.check(research.research_dir)
    check_sandbox(settings, executor)
    slots = executor.slots(gpus if gpus is not None else settings.gpus)
    prop = research.make_proposer(settings.proposer, tag or "check", settings)
    prop.check()
    tag = tag or research.new_tag()
    branch = f"research/{tag}"
    if git.branch_exists(research.repo.root, branch):
        raise UsageError(f"branch {branch} already exists and is not a run of this repository's ledger; "
                         "choose another --tag")
    if not git.is_valid_branch_name(research.repo.root, branch):
        raise UsageError(f"{branch!r} is not a valid branch name; choose another --tag")
    data = settings_dict(settings)
    data["slots"] = slots
    data["slot_classes"], data["primary_class"] = slot_classes(
        slots, executor.pins_devices, settings.executor, getattr(settings, "hardware", "") or "")
    data["workdir"] = posixpath.normpath(settings.workdir.strip() or ".")
    research.ledger.create_run(
        tag, branch=branch, base_branch=base_branch, base_commit=base_commit, workdir=data["workdir"],
        settings=data, protected=protected, trials_limit=trials, state="starting", control="run",
    )
    try:
        git.run(research.repo.root, "branch", branch, base_commit)
        research.run_dir(tag).mkdir(parents=True, exist_ok=True)
    except BaseException:
        research.ledger.conn.execute("DELETE FROM runs WHERE tag = ?", (tag,))  # nothing half done
        raise
    research.last_warnings = warnings
    return tag


def continue_run(research: ResearchHost, run: Run, trials: int | None, proposer: str | None, gpus: Any,
                 budget_s: float | None) -> str:
    tag = run.tag
    if research.loop_alive(tag):
        raise Refused(f"research run {tag!r} is already running; see `agentdeck research status --tag {tag}`")
    if run.state == "failed":
        raise Refused(f"research run {tag!r} failed ({run.message[:160]}); fix and commit the lab, then start "
                      "a new run (without --tag, or with a new tag)")
    problem = research.ledger.chain_problem(tag)
    if problem:
        raise Refused(f"research run {tag!r}: ledger changed outside the harness ({problem}); its record cannot "
                      "be trusted — start a new run (without --tag, or with a new tag)")
    data = dict(run.settings)
    if proposer:
        data["proposer"] = proposer
    if budget_s is not None:
        data["budget_s"] = float(budget_s)
    settings = settings_from_dict(data)
    if settings.timeout_s <= settings.budget_s:
        raise UsageError(f"timeout_s ({settings.timeout_s:g}) must exceed the budget ({settings.budget_s:g})")
    executor = research.make_executor(settings)
    executor.check(research.research_dir)
    check_sandbox(settings, executor)
    if gpus is not None:
        data["slots"] = executor.slots(gpus)
        classes, primary = slot_classes(data["slots"], executor.pins_devices, settings.executor,
                                        getattr(settings, "hardware", "") or "")
        data["slot_classes"] = classes
        data["primary_class"] = data.get("primary_class") or primary  # the primary class never changes
    research.make_proposer(settings.proposer, tag, settings).check()
    if trials is not None:
        limit = int(run.proposals) + trials
    elif run.state == "done":
        limit = None  # a finished run continued without --trials runs until stopped
    else:
        limit = run.trials_limit  # an interrupted, stopped or paused run goes on to its own end
    if research.ledger.chain_head(tag)[0]:
        research.ledger.update_run(tag, trials_limit=limit, control="run", state="starting", message="")
        # The decision chain covers the settings: they change with their link, in one transaction.
        research.ledger.record_decision(tag, None, run_fields={"settings": data})
    else:
        research.ledger.update_run(tag, settings=data, trials_limit=limit, control="run", state="starting", message="")
    research.last_warnings = []
    return tag



def settings_dict(settings: Any) -> dict[str, Any]:
    """*settings* as the ledger stores them."""
    return dataclasses.asdict(settings)
