"""`agentdeck doctor`'s checks of the configured research cluster (Ray or Slurm).

``doctor_checks(deck)`` returns the doctor's usual dicts — ``{"name", "level": "ok|warn|error",
"detail", "fix"}`` — for ``[research] executor``: nothing for ``local``; for ``ray`` and ``slurm``:
the client is there, the cluster answers, GPUs are visible (and enough for one trial), and the
trial worktrees are on a filesystem the cluster's nodes share (a probe job reads a token written in
the research folder; a remote Ray cluster without a shared filesystem gets each worktree uploaded
instead, which doctor reports).  Each check is bounded in time; a busy queue makes the probe
"unverified" (warn), never a hang.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROBE_TIMEOUT_S = 30.0


def _check(name: str, level: str, detail: str, fix: str = "") -> dict[str, Any]:
    return {"name": name, "level": level, "detail": detail, "fix": fix}


def doctor_checks(deck: Any) -> list[dict[str, Any]]:
    settings = deck.config.research
    research_dir = Path(deck.repo.research_dir)
    if settings.executor == "ray":
        return ray_checks(settings, research_dir)
    if settings.executor == "slurm":
        return slurm_checks(settings, research_dir)
    return []


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}{'' if n == 1 else 's'}"


def _probe_check(executor: Any, research_dir: Path, name: str, fix: str) -> dict[str, Any]:
    """The shared-filesystem probe as a check: ok, error (with *fix*), or warn when unverified."""
    ok, detail = executor.probe_shared(research_dir, timeout_s=PROBE_TIMEOUT_S)
    level = {True: "ok", False: "error", None: "warn"}[ok]
    return _check(name, level, detail, "" if ok else fix)


def ray_checks(settings: Any, research_dir: Path) -> list[dict[str, Any]]:
    from agentdeck.errors import UsageError
    from agentdeck.research.executors.ray import INSTALL_HINT, RayExecutor, RayUnreachable

    checks: list[dict[str, Any]] = []
    executor = RayExecutor(settings)
    try:
        try:
            executor._import()
        except UsageError as exc:
            return [_check("ray", "error", str(exc), INSTALL_HINT)]
        import ray

        checks.append(_check("ray", "ok", f"Ray {ray.__version__} installed"))
        try:
            executor.client()
            nodes = executor.nodes()
        except RayUnreachable as exc:
            checks.append(_check("ray cluster", "error", f"{executor.where} does not answer ({exc})",
                                 "start it (`ray start --head --num-gpus=N`) or set [research.ray] address = "
                                 "\"http://HEAD:8265\""))
            return checks
        checks.append(_check("ray cluster", "ok", f"{executor.where}: {_plural(len(nodes), 'node')} alive"))
        need = executor.gpus_per_job()
        total = sum(n["gpus"] for n in nodes)
        if executor.lacks_gpus(nodes):
            checks.append(_check("ray GPUs", "error",
                                 f"no node has {need:g} GPU(s) for a trial ({_plural(total, 'GPU')} in all)",
                                 "add GPU nodes, or set [research.ray] num_gpus = 0 for CPU trials"))
        elif need > 0:
            lanes = executor.lanes_on(nodes)
            checks.append(_check("ray GPUs", "ok", f"{_plural(total, 'GPU')} on {_plural(len(nodes), 'node')}; "
                                                   f"{need:g} per trial, up to {lanes} trials at once"))
        else:
            checks.append(_check("ray GPUs", "warn" if total == 0 else "ok",
                                 f"trials ask for no GPU ([research.ray] num_gpus = 0); the cluster has "
                                 f"{_plural(total, 'GPU')}", "set [research.ray] num_gpus = 1 to give each trial a GPU"
                                 if total else ""))
        if executor.upload:
            checks.append(_check("ray worktrees", "ok", "the cluster is remote: each trial's worktree is uploaded "
                                                        "as its runtime_env working_dir (the protected-file check sees "
                                                        "this machine's copy)"))
        else:
            checks.append(_probe_check(executor, research_dir, "ray worktrees",
                                       "mount the repository at the same path on every node, or set "
                                       "[research.ray] shared_fs = false to upload each worktree"))
        return checks
    finally:
        executor.close()


def slurm_checks(settings: Any, research_dir: Path) -> list[dict[str, Any]]:
    from agentdeck.research.executors.slurm import SlurmExecutor, SlurmUnreachable

    checks: list[dict[str, Any]] = []
    executor = SlurmExecutor(settings)
    missing = executor.missing_commands()
    if missing:
        return [_check("slurm", "error", f"missing on PATH: {', '.join(missing)}",
                       "run agentdeck on a login node of the cluster (Slurm's client commands installed)")]
    checks.append(_check("slurm", "ok", "sbatch, squeue, scontrol, scancel found"))
    try:
        answer = executor.ping()
    except SlurmUnreachable as exc:
        checks.append(_check("slurm controller", "error", str(exc), "check that slurmctld runs and is reachable"))
        return checks
    checks.append(_check("slurm controller", "ok", answer))
    where = f"partition {settings.slurm.partition}" if settings.slurm.partition else "default partitions"
    try:
        nodes = executor.nodes()
    except SlurmUnreachable as exc:
        checks.append(_check("slurm GPUs", "error", f"`sinfo` failed: {exc}", "check [research.slurm] partition"))
        return checks
    need = executor.gpus_per_job()
    total = sum(n["gpus"] for n in nodes)
    if not nodes:
        checks.append(_check("slurm GPUs", "error", f"no node in {where}", "fix [research.slurm] partition (`sinfo`)"))
    elif executor.lacks_gpus(nodes):
        checks.append(_check("slurm GPUs", "error",
                             f"no node in {where} offers {need} GPU(s) (GRES {settings.slurm.gres!r})",
                             "pick a partition with GPUs, or set [research.slurm] gres = \"\" for CPU trials"))
    else:
        checks.append(_check("slurm GPUs", "ok", f"{_plural(total, 'GPU')} on {_plural(len(nodes), 'node')} in "
                                                 f"{where}; GRES per trial: {settings.slurm.gres or 'none'}"))
    checks.append(_probe_check(executor, research_dir, "slurm shared filesystem",
                               "put the repository on a filesystem every compute node mounts at the same path "
                               "(NFS, Lustre, BeeGFS...)"))
    return checks
