"""Research's rules, as pure functions: the autoresearch page as code.

The loop (:mod:`agentdeck.research.loop`) runs jobs and gathers facts; every
judgement it makes is one of the functions below, read top to bottom in the
order a trial meets them.  Nothing here starts a process, reads a file or
touches the ledger, so each rule is unit-tested on its own
(``tests/test_research_policy.py``).  The proposer and the job are untrusted:
the rules assume either may lie.

1. **Before the job** — the proposal's commit: every editable path is a regular
   file (mode 100644/100755; a symlink or a submodule is rejected:
   :func:`tree_problems`); the files on disk are regular, unlinked files
   (:func:`disk_problems`); only editable files changed (:func:`change_problems`);
   files equal to an earlier trial's are a duplicate, never run (:func:`is_duplicate`);
   queued trials wait in :func:`dispatch_key` order.
2. **After the job** — its verdict (:func:`job_verdict`): cancelled, lost,
   reached outside its files (links, ``.git``), changed a protected file,
   exited non-zero, printed no metric, printed it several times with different
   values, or printed nan/inf: a crash, its reason named.  Otherwise it is
   judged.
3. **Judging** (:func:`decide`) against the best *of the trial's own hardware
   class*: not better than the best by more than the noise: discard; measured
   on an older best: re-apply on the new one (:func:`moved_change`: its own files again are
   judged as measured, no second run); too good to believe
   (:func:`suspicion`): suspect, re-run twice, kept only if every run agrees
   within the noise (:func:`agree`); with ``confirm``: one re-run and the mean
   decides; else keep.
4. **The run** — ``max_crashes`` crashes in a row pause it
   (:func:`crash_streak`, :func:`crash_pause`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from agentdeck.research.metric import beats, improvement, mean, metric_pattern, noise_of
from agentdeck.research.model import Decision, Gate, JobOutcome, Judgement, PathFacts, Verdict

#: How many more times a suspect result runs before it can be kept.
SUSPECT_RERUNS = 2
#: Automatic max_jump: this many times the largest improvement kept so far ...
AUTO_JUMP_FACTOR = 3.0
#: ... or, before any was kept, this fraction of the baseline's value.
AUTO_JUMP_FRACTION = 0.10
#: Git tree modes of a regular file.
REGULAR_MODES = ("100644", "100755")
#: Reasons of trials that ended because the run stopped: not a job's outcome.
STOP_REASONS = ("stopped", "stopped before it ran", "stopped before it was decided")


def fmt(value: Any) -> str:
    """A metric or a number as the reasons show it (6 significant digits)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.6g}"
    return str(value)


# ====================================================================== 1. before the job


_MODE_NAMES = {"120000": "a symbolic link", "160000": "a submodule", "040000": "a folder"}


def tree_problems(modes: Mapping[str, str]) -> list[str]:
    """Problems of the editable paths in a committed tree (*modes*: display path -> git mode)."""
    problems = []
    for path in sorted(modes):
        mode = modes[path]
        if mode not in REGULAR_MODES:
            what = _MODE_NAMES.get(mode, f"not a regular file (mode {mode})")
            problems.append(f"{path} is {what} in the commit (mode {mode}); editable files must be regular files")
    return problems


_KIND_NAMES = {"symlink": "a symbolic link", "dir": "a folder", "missing": "missing", "other": "not a regular file"}


def disk_problems(editable: Mapping[str, PathFacts], protected: Mapping[str, PathFacts]) -> list[str]:
    """Problems of the files on disk: every editable and protected path must be a regular file
    with one link, and no editable file may share a protected file's inode.

    A hard link is how a file in the worktree writes somewhere else (a protected file, the
    ledger, a file outside the repository) while git sees an ordinary file.
    """
    problems = []
    inodes = {(f.dev, f.ino): path for path, f in protected.items() if f.kind == "file"}
    for label, facts in (("", editable), ("protected ", protected)):
        for path in sorted(facts):
            f = facts[path]
            if f.kind != "file":
                problems.append(f"{label}{path} is {_KIND_NAMES.get(f.kind, f.kind)} on disk")
            elif not label and (f.dev, f.ino) in inodes:
                problems.append(f"{path} is a hard link to the protected {inodes[(f.dev, f.ino)]}")
            elif f.nlink > 1:
                problems.append(f"{label}{path} has {f.nlink} hard links (one expected)")
    return problems


def git_dir_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What changed in the git directory's fingerprint (path -> digest), as short phrases."""
    changes = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            changes.append(f"{path} (added)")
        elif path not in after:
            changes.append(f"{path} (removed)")
        elif before[path] != after[path]:
            changes.append(f"{path} (modified)")
    return changes


def reach_problems(disk: Iterable[str], git_changes: Iterable[str]) -> tuple[str, ...]:
    """The reasons a job (or a proposal) reached outside its own files, in the order shown."""
    out = list(disk)
    changes = list(git_changes)
    if changes:
        shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
        out.append(f"changed under .git: {shown}")
    return tuple(out)


def change_problems(changed: Iterable[str], editable: Iterable[str], protected: Iterable[str]) -> list[str]:
    """A proposal may change editable files only: a protected file changed, or any file outside the
    editable ones, rejects it (display paths; protected files named first)."""
    changed, editable, protected = list(changed), set(editable), set(protected)
    hit = sorted(p for p in changed if p in protected)
    if hit:
        return ["protected file changed: " + ", ".join(hit)]
    outside = sorted(p for p in changed if p not in editable and p not in protected)
    if outside:
        return ["file outside editable changed: " + ", ".join(outside)]
    return []


def is_duplicate(content_hash: str, known: set[str] | frozenset[str], own: str | None = None) -> bool:
    """True when a proposal's editable files (*content_hash*) were proposed or measured before
    (*known*).  A change made again on a newer best whose files come out as its own (*own*: a
    searched point written onto a best with the same code) is not a duplicate of itself."""
    return content_hash in known and content_hash != own


#: The order trials wait for a lane in: baselines, then confirmations, then proposals.
DISPATCH_PRIORITY = {"baseline": 0, "confirm": 1, "proposal": 2}


def dispatch_key(kind: str, parent: str, best: str, trial_id: int) -> tuple[int, bool, int]:
    """Sort key of a queued trial: baselines, then confirmations, then proposals made on the
    current *best*, then those made on an older one (moved first), oldest first."""
    return DISPATCH_PRIORITY.get(kind, 3), parent != best, trial_id


def moved_change(content_hash: str, own: str, known: set[str] | frozenset[str]) -> str:
    """A measured winner's change made again on a newer best came out as *content_hash*:
    ``"as_measured"`` (its own files: its measurement stands, it is judged again against that
    best), ``"duplicate"`` (another trial's files) or ``"rerun"`` (new files: run them)."""
    if content_hash == own:
        return "as_measured"
    return "duplicate" if is_duplicate(content_hash, known, own) else "rerun"


# ====================================================================== 2. the job's verdict


def metric_values(text: str, name: str) -> tuple[float, ...]:
    """Every value of ``<name>: <value>`` the output printed, in order."""
    return tuple(float(v) for v in metric_pattern(name).findall(text))


def job_verdict(outcome: JobOutcome) -> Verdict | None:
    """The verdict of a finished job, or None when its metric is to be judged."""
    return run_verdict(outcome) or metric_verdict(outcome.metric_values)


def run_verdict(outcome: JobOutcome) -> Verdict | None:
    """How the job ran: cancelled, lost, reached outside its files, changed a protected file or
    exited non-zero (None: it ran cleanly; its metric is read next — from its own output, or
    from the protected evaluation when there is one)."""
    if outcome.cancel_reason == "stopped":
        return Verdict("discard", "stopped")
    if outcome.cancel_reason:
        return Verdict("crash", outcome.cancel_reason)
    if outcome.lost:
        return Verdict("crash", "lost")
    if outcome.reach:
        return Verdict("crash", "; ".join(outcome.reach))
    if outcome.protected_changed:
        return Verdict("crash", "protected file changed: " + ", ".join(outcome.protected_changed))
    if outcome.exit_code != 0:
        return Verdict("crash", f"exit code {outcome.exit_code}")
    return None


def metric_verdict(values: tuple[float, ...]) -> Verdict | None:
    """What the printed metric says: none, several different values, or nan/inf is a crash."""
    if not values:
        return Verdict("crash", "no metric")
    distinct = list(dict.fromkeys(repr(v) for v in values))
    if len(distinct) > 1:
        shown = ", ".join(fmt(float(v)) for v in distinct[:4]) + (", ..." if len(distinct) > 4 else "")
        return Verdict("crash", f"metric printed {len(values)} times with different values ({shown}); "
                                "a job prints its result once")
    if not math.isfinite(values[-1]):
        return Verdict("crash", f"metric is {values[-1]}")
    return None


def metric_of(outcome: JobOutcome) -> float | None:
    """The measured value (finite or not), None when none was printed."""
    return outcome.metric_values[-1] if outcome.metric_values else None


# ====================================================================== 3. judging


def baseline_of(values: list[float]) -> tuple[float, float]:
    """(mean, noise) of a class's baseline runs; the noise is their sample standard deviation."""
    return mean(values), noise_of(values)


def passes_floor(value: float, floor: float, direction: str) -> bool:
    """True when *value* lies beyond the declared floor (below it for min, above it for max)."""
    return value < floor if direction == "min" else value > floor


def jump_limit(gate: Gate, largest_gain: float | None, baseline: float) -> tuple[float, str]:
    """The largest believable improvement in one step, and how it was set (for the reason)."""
    if gate.max_jump is not None:
        return float(gate.max_jump), f"max_jump {fmt(gate.max_jump)}"
    if largest_gain is not None and largest_gain > 0:
        return AUTO_JUMP_FACTOR * largest_gain, (f"{AUTO_JUMP_FACTOR:g}x the largest improvement kept so far "
                                                 f"({fmt(largest_gain)})")
    return AUTO_JUMP_FRACTION * abs(baseline), f"{AUTO_JUMP_FRACTION:.0%} of the baseline {fmt(baseline)}"


def suspicion(value: float, best: float, direction: str, baseline: float, largest_gain: float | None,
              gate: Gate) -> str:
    """Why *value* is too good to believe ("" when it is plausible)."""
    if gate.metric_floor is not None and passes_floor(value, gate.metric_floor, direction):
        return f"{fmt(value)} passes the declared metric_floor {fmt(gate.metric_floor)}"
    jump = improvement(value, best, direction)
    limit, basis = jump_limit(gate, largest_gain, baseline)
    if jump > limit:
        return f"improves on the best by {fmt(jump)}, more than {basis}"
    return ""


def agree(values: list[float], noise: float) -> bool:
    """True when every run lies within the noise of the others' middle (spread <= 2 x noise)."""
    return max(values) - min(values) <= 2.0 * max(noise, 0.0)


def decide(j: Judgement) -> Decision:
    """Keep, discard, confirm, suspect or re-apply a finished proposal (see the module docstring)."""
    if any(r.state in ("queued", "running") for r in j.reruns):
        return Decision("wait")
    what_rerun = "re-run" if j.suspect else "confirmation run"
    crashed = [r for r in j.reruns if r.state == "final" and r.status == "crash"]
    if crashed:
        r = crashed[-1]
        return Decision("discard", None, f"its {what_rerun} (trial {r.id}) crashed: {r.reason}")
    values = [j.first] + [r.metric for r in j.reruns if r.metric is not None]
    value = mean(values)
    shown = fmt(value) + (f" (mean of {len(values)} runs)" if len(values) > 1 else "")
    if j.suspect and not agree(values, j.noise):
        runs = ", ".join(fmt(v) for v in values)
        return Decision("discard", value, f"suspect ({j.suspect}); its {len(values)} runs disagree by more than "
                                          f"the noise {fmt(j.noise)}: {runs}",
                        rerun_status="discard", rerun_reason=f"disagrees with suspect trial {j.trial_id}")
    what = "its parent" if j.stale else "the best"
    if not beats(value, j.reference, j.direction, j.noise):
        if not j.reruns:
            reason = (f"{shown} is not better than {what} {fmt(j.reference)} by more than the noise "
                      f"{fmt(j.noise)}")
        else:
            reason = f"not confirmed: {shown} vs {what} {fmt(j.reference)} (noise {fmt(j.noise)})"
        return Decision("discard", value, reason, rerun_status="discard",
                        rerun_reason=f"did not confirm trial {j.trial_id}")
    if j.stale:
        return Decision("reapply", value, rerun_status="discard", rerun_reason="the best moved on during confirmation")
    if not j.suspect and not j.reruns:
        why = suspicion(value, j.best, j.direction, j.baseline, j.largest_gain, j.gate)
        if why:
            return Decision("suspect", value, why, reruns=SUSPECT_RERUNS)
    if j.confirm and not j.reruns:
        return Decision("confirm", value, reruns=1)
    gain = improvement(value, j.best, j.direction)
    reason = f"{shown} beats the best {fmt(j.best)} by {fmt(gain)} (noise {fmt(j.noise)})"
    if j.suspect:
        reason += (f"; suspect ({j.suspect}), its {len(values)} runs agree — promote needs --accept-suspect")
    return Decision("keep", value, reason, gain=gain, rerun_status="keep",
                    rerun_reason=f"confirms trial {j.trial_id}")


# ====================================================================== 4. the run


def crash_streak(streak: int, status: str, reason: str) -> int:
    """Crashes in a row after a trial ended with *status*: a crash adds one, a result resets it;
    trials ended by a stop do not count either way."""
    if status == "crash":
        return streak + 1
    if reason in STOP_REASONS:
        return streak
    return 0


def crash_pause(streak: int, max_crashes: int) -> bool:
    """True when the run pauses: ``max_crashes`` crashes in a row."""
    return streak >= max(1, int(max_crashes))


__all__ = [
    "DISPATCH_PRIORITY",
    "SUSPECT_RERUNS",
    "agree",
    "baseline_of",
    "change_problems",
    "crash_pause",
    "crash_streak",
    "decide",
    "disk_problems",
    "dispatch_key",
    "fmt",
    "git_dir_changes",
    "is_duplicate",
    "job_verdict",
    "jump_limit",
    "metric_of",
    "metric_values",
    "metric_verdict",
    "moved_change",
    "passes_floor",
    "reach_problems",
    "run_verdict",
    "suspicion",
    "tree_problems",
]
