"""The protected evaluation: the metric comes from agentdeck's run of the lab's own judge.

With ``[research] eval_command`` set, a trial's job only trains: it saves what
it made (weights, a config) in ``AGENTDECK_ARTIFACT_DIR``.  Then the harness
runs ``eval_command`` as its own process:

- on a **fresh copy of the trial's committed files** (:func:`export_tree`:
  regular files only, written from git's objects), not on the worktree the
  job ran in, so nothing the job wrote next to the code (a ``.pyc``, a module
  that shadows the judge's) is run by the evaluation;
- **sandboxed** like the job when a sandbox is used (the copy and the
  artifacts read-only, nothing writable but a private /tmp, no network), with
  the allow-listed environment plus ``AGENTDECK_EVAL_SEED``: a per-repository
  secret kept in agentdeck's state folder (:func:`eval_seed`), which the job's
  sandbox hides — the evaluation derives its held-out data from it, so the
  job cannot rebuild that data;
- under the reaper, with the job's timeout; its output goes to
  ``logs/<trial>.eval.log``.

Only its metric counts (the same ``<metric>: <value>`` line, read the same
way); the job's own printed metric is kept as ``claimed`` and a large
disagreement is reported (:func:`disagreement`).  An evaluation that exits
non-zero (the lab's judge refused the model, e.g. its causality probe) makes
the trial a crash, with the evaluation's last line as the reason.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from agentdeck import sandbox
from agentdeck.research.executors.base import read_log_tail
from agentdeck.research.model import Trial

#: |claimed - measured| above this fraction of the larger magnitude is a disagreement worth a report.
DISAGREE_FRACTION = 0.10
#: After a timeout the evaluation's reaper gets this long to end its tree before SIGKILL.
KILL_GRACE_S = 5.0
#: The ``problem`` of an evaluation ended because the run stopped.
STOPPED = "stopped"


class EvalSetupError(Exception):
    """The evaluation could not be prepared (the trial's tree is not plain files...)."""


@dataclass
class EvalResult:
    exit_code: int | None  # None: it never ran (setup failed) or was killed at its timeout
    text: str  # its output (stdout and stderr)
    seconds: float
    problem: str = ""  # why it failed in words ("" when it ran to exit 0)


def eval_seed(research_dir: Path) -> str:
    """The repository's evaluation secret (created once, mode 0600, in agentdeck's state folder)."""
    path = Path(research_dir) / "eval.seed"
    try:
        text = path.read_text().strip()
        if text:
            return text
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(16)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def export_tree(root: Path, commit: str, workdir: str, dest: Path) -> Path:
    """Write the regular files of *workdir* at *commit* under *dest* (their repository paths kept);
    returns the folder the evaluation starts in.  A symlink or a submodule in the tree is an
    :class:`EvalSetupError`: the evaluation never follows a path the proposal chose."""
    from git.objects import Blob, Submodule, Tree

    from agentdeck import git

    repo = git.repo(root)
    try:
        tree = repo.commit(commit).tree
        if workdir not in ("", "."):
            tree = tree / workdir
        # Without ``as_edge`` traverse yields objects only (its annotation also allows edge tuples).
        items = [i for i in tree.traverse() if isinstance(i, (Blob, Tree, Submodule))]
    except (KeyError, ValueError) as exc:
        raise EvalSetupError(f"cannot read {workdir!r} at {commit[:10]}: {exc}") from None
    dest.mkdir(parents=True, exist_ok=True)
    for item in items:
        rel = PurePosixPath(item.path)
        if rel.is_absolute() or ".." in rel.parts:  # pragma: no cover - git never stores these
            raise EvalSetupError(f"unsafe path in the trial's tree: {item.path}")
        target = dest.joinpath(*rel.parts)
        if isinstance(item, Tree):
            target.mkdir(parents=True, exist_ok=True)
            continue
        if not isinstance(item, Blob) or item.mode not in (0o100644, 0o100755):
            kind = "a symbolic link" if item.mode == 0o120000 else "not a regular file"
            raise EvalSetupError(f"{item.path} is {kind} in the trial's commit; the evaluation runs regular files only")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o755 if item.mode == 0o100755 else 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(item.data_stream.read())
    start = dest.joinpath(*PurePosixPath(workdir).parts) if workdir not in ("", ".") else dest
    start.mkdir(parents=True, exist_ok=True)
    return start


def run_command(command: str, *, cwd: Path, env: dict[str, str], log_path: Path, timeout_s: float,
                profile: sandbox.Profile | None, stop: threading.Event | None = None) -> EvalResult:
    """Run *command* (a shell line) under the reaper, in *profile*'s sandbox when given; its output
    goes to *log_path*.  Blocks until it ends, *timeout_s* passes or *stop* is set (then its whole
    tree is killed)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = sandbox.command(["/bin/sh", "-c", command], profile)
    started = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
        except OSError as exc:
            return EvalResult(None, "", 0.0, f"the evaluation could not start: {exc}")
        deadline = started + timeout_s
        code: int | None = None
        problem = ""
        while True:
            try:
                code = proc.wait(timeout=min(0.2, max(0.0, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                if stop is not None and stop.is_set():
                    _end(proc)
                    code, problem = None, STOPPED
                    break
                if time.monotonic() >= deadline:
                    _end(proc)
                    code, problem = None, f"the evaluation timed out after {timeout_s:g}s"
                    break
    text = read_log_tail(log_path)
    if code not in (0, None):
        problem = f"the evaluation failed (exit {code}): {last_line(text) or 'no output'}"
    return EvalResult(code, text, time.monotonic() - started, problem)


def _end(proc: subprocess.Popen) -> None:
    try:
        proc.send_signal(signal.SIGTERM)  # the reaper ends its whole tree
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
    except ProcessLookupError:  # pragma: no cover - already gone
        pass


def last_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def disagreement(claimed: float | None, measured: float | None, metric: str) -> str:
    """A one-line report when the job's claim and the evaluation differ by more than
    DISAGREE_FRACTION of the larger magnitude ("" when they agree, or when there is no claim)."""
    if claimed is None or measured is None:
        return ""
    if not (math.isfinite(claimed) and math.isfinite(measured)):
        return f"the job claimed {metric} {claimed:.6g}, the evaluation measured {measured:.6g}"
    scale = max(abs(claimed), abs(measured), 1e-12)
    if abs(claimed - measured) <= DISAGREE_FRACTION * scale:
        return ""
    return (f"the job claimed {metric} {claimed:.6g}, the evaluation measured {measured:.6g} "
            f"({abs(claimed - measured) / scale:.0%} apart); only the evaluation counts")


def verdict_of(result: EvalResult, metric: str) -> tuple[str, str] | None:
    """The trial's verdict from its evaluation alone (None: its metric is to be judged).  The
    metric rules are the job's (:func:`agentdeck.research.policy.metric_verdict`): printed, once
    (or always the same value: something else in the evaluation's process may print too), finite."""
    from agentdeck.research import policy

    if result.problem == STOPPED:
        return ("discard", "stopped")
    if result.problem:
        return ("crash", result.problem)
    verdict = policy.metric_verdict(tuple(metric_values(result.text, metric)))
    if verdict is None:
        return None
    reason = f"the evaluation: {verdict.reason}"
    if verdict.reason == "no metric":
        reason += f" ({last_line(result.text) or 'no output'})"
    return (verdict.status, reason)


def value_of(result: EvalResult, metric: str) -> float:
    return metric_values(result.text, metric)[-1]


def metric_values(text: str, metric: str) -> list[float]:
    from agentdeck.research.metric import metric_pattern

    return [float(v) for v in metric_pattern(metric).findall(text)]


def evaluate_trial(research: Any, settings: Any, *, trial: Trial, workdir: str, artifact_dir: Path,
                   eval_root: Path, log_path: Path, fixed_env: dict[str, str], sandboxed: bool,
                   timeout_s: float, stop: threading.Event | None = None) -> EvalResult:
    """Export the trial's commit, run ``eval_command`` on it with the job's artifacts, and remove
    the copy.  Never raises for the trial's own faults: they come back as ``problem``."""
    from agentdeck.research import isolation

    started = time.monotonic()
    tree = eval_root / str(trial.id)
    try:
        isolation.reset_dir(tree)
        try:
            cwd = export_tree(research.repo.root, trial.commit, workdir, tree)
        except EvalSetupError as exc:
            return EvalResult(None, "", time.monotonic() - started, str(exc))
        env = isolation.job_env(settings, fixed_env | {isolation.SEED_ENV: eval_seed(research.research_dir)},
                                sandboxed=sandboxed)
        profile = None
        if sandboxed:
            profile = isolation.eval_profile(research, cwd=cwd, tree=tree, artifact_dir=artifact_dir, env=env,
                                             gpus=bool(fixed_env.get("CUDA_VISIBLE_DEVICES")))
        return run_command(settings.eval_command, cwd=cwd, env=env, log_path=log_path, timeout_s=timeout_s,
                           profile=profile, stop=stop)
    finally:
        isolation.remove_dir(tree)
