"""Where a trial runs and what it can reach: folders, environment, sandbox profile.

The record of a run (the ledger, ``results.tsv``, logs, the memory) stays in
agentdeck's state folder under ``.git``; everything a job touches lives
elsewhere, under the user's cache (:func:`trials_root`)::

    <cache>/research/<repo>-<id>/<tag>/wt/<name>        trial worktrees
    <cache>/research/<repo>-<id>/<tag>/artifacts/<id>   what trial <id>'s job saved (AGENTDECK_ARTIFACT_DIR)
    <cache>/research/<repo>-<id>/<tag>/eval/<id>        the committed files its evaluation runs on

A sandboxed job (:func:`job_profile`) sees its own worktree read-only and its
artifact folder writable; the repository, its ``.git``, agentdeck's state,
the other trials' folders, the user's config and home are hidden.  Every job
and evaluation, sandboxed or not, gets an allow-listed environment
(:func:`job_env`) with only the ``AGENTDECK_*`` it needs — never
``AGENTDECK_STATE_DIR``, never agentdeck's API keys.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentdeck import sandbox
from agentdeck.sandbox import profiles

#: The variable naming a trial's artifact folder, set for its job and its evaluation.
ARTIFACT_ENV = "AGENTDECK_ARTIFACT_DIR"
#: Marks every process of one job (found again by it on the GPU: ``nvidia-smi`` lists pids).
JOB_ENV = "AGENTDECK_JOB"
#: The evaluation's secret (the seed of held-out data); never in a job's environment.
SEED_ENV = "AGENTDECK_EVAL_SEED"


def cache_dir() -> Path:
    """agentdeck's per-user cache: ``$AGENTDECK_HOME/cache``, else ``$XDG_CACHE_HOME/agentdeck``,
    else ``~/.cache/agentdeck``."""
    from agentdeck import paths

    override = os.environ.get(paths.ENV_HOME)
    if override:
        return Path(override).expanduser() / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "agentdeck"


def trials_root(repo: Any) -> Path:
    """Every trial folder of one repository (*repo*: :class:`agentdeck.paths.RepoPaths`)."""
    return cache_dir() / "research" / f"{repo.root.name}-{repo.repo_id}"


def reset_dir(path: Path) -> Path:
    """An empty folder at *path* (whatever was there is removed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=False)
    return path


def remove_dir(path: Path | None) -> None:
    if path is not None and (path.exists() or path.is_symlink()):
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)


def resolve_sandbox(setting: str, executor_name: str) -> sandbox.Resolved:
    """What ``[research] sandbox`` means for a run on this machine with this executor."""
    return sandbox.resolve(setting, supported=executor_name == "local",
                           why_unsupported=f"the {executor_name} executor runs jobs on cluster nodes, "
                                           "where agentdeck's sandbox does not reach")


def hidden_paths(research: Any) -> list[str]:
    """What no job or evaluation may see: the repository and its ``.git`` (agentdeck's state,
    the ledger, ``results.tsv``, logs, the memory are inside), every trial folder of the
    repository, agentdeck's user folders, the deck's worktrees and a memory folder set elsewhere."""
    from agentdeck import paths

    repo = research.repo
    hidden = [str(repo.root), str(repo.common_dir), str(repo.state_dir), str(trials_root(repo)),
              str(paths.agentdeck_home()), str(paths.user_data_dir()), str(cache_dir())]
    config = getattr(research, "config", None)
    memory_dir = getattr(getattr(config, "memory", None), "dir", "") if config is not None else ""
    if memory_dir:
        path = Path(memory_dir).expanduser()
        hidden.append(str(path if path.is_absolute() else repo.root / path))
    worktree_dir = getattr(getattr(config, "deck", None), "worktree_dir", "") if config is not None else ""
    if worktree_dir:
        path = Path(worktree_dir).expanduser()
        hidden.append(str(path if path.is_absolute() else repo.root / path))
    return hidden


def job_env(settings: Any, fixed: Mapping[str, str], *, sandboxed: bool,
            source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a job or an evaluation: the allow-list, ``[research] env``, then
    *fixed* (``AGENTDECK_*``, ``CUDA_VISIBLE_DEVICES``).  Sandboxed, ``HOME`` is a private
    empty folder; unsandboxed it is the user's."""
    source = os.environ if source is None else source
    base: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    if sandboxed:
        base["HOME"] = profiles.PRIVATE_HOME
        base["TMPDIR"] = "/tmp"
    else:
        base["HOME"] = source.get("HOME", str(Path.home()))
        if source.get("TMPDIR"):
            base["TMPDIR"] = source["TMPDIR"]
    env = sandbox.allowed_env(source, extra=dict(getattr(settings, "env", {}) or {}), fixed=base)
    env.update(fixed)
    return env


def job_profile(research: Any, *, cwd: Path, worktree: Path, artifact_dir: Path, env: Mapping[str, str],
                network: bool, gpus: bool) -> sandbox.Profile:
    return profiles.research_job(cwd=cwd, worktree=worktree, artifact_dir=artifact_dir,
                                 hidden=hidden_paths(research), env=env, network=network, gpus=gpus)


def eval_profile(research: Any, *, cwd: Path, tree: Path, artifact_dir: Path, env: Mapping[str, str],
                 gpus: bool) -> sandbox.Profile:
    return profiles.research_eval(cwd=cwd, tree=tree, artifact_dir=artifact_dir, hidden=hidden_paths(research),
                                  env=env, gpus=gpus)


def doctor_checks(config: Any = None) -> list[dict[str, Any]]:
    """`agentdeck doctor`'s finding on research jobs (doctor's ``{"name", "level", "detail", "fix"}``):
    does ``[research] sandbox`` put them in bubblewrap here, and where their metric comes from."""
    research = getattr(config, "research", None)
    if research is None:
        return []
    resolved = resolve_sandbox(research.sandbox, research.executor)
    if resolved.error:
        return [{"name": "research sandbox", "level": "error", "detail": resolved.error,
                 "fix": "make bubblewrap work here, or set [research] sandbox = \"auto\""}]
    level = "ok" if resolved.sandboxed or research.sandbox == "none" else "warn"
    what = "jobs and evaluations run in bubblewrap" if resolved.sandboxed else resolved.detail
    source = ("metric from the protected evaluation" if (research.eval_command or "").strip()
              else "metric self-reported by the job (no [research] eval_command)")
    return [{"name": "research sandbox", "level": level, "detail": f"{what}; {source}",
             "fix": "" if level == "ok" else "install bubblewrap to sandbox research jobs"}]
