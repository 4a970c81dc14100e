"""Slurm's words, read: job states, exit codes, GRES strings and time limits (pure functions, no
commands run; :mod:`agentdeck.research.executors.slurm` runs them)."""

from __future__ import annotations

import math
import re

COMMANDS = ("sbatch", "squeue", "scontrol", "scancel")

PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESIZING"}
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "DEADLINE", "SPECIAL_EXIT"}
LOST = {"NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "REVOKED"}
#: An exit status for a job that ended without a usable one (Slurm says 0:0 for a cancelled job).
FALLBACK_CODE = {"CANCELLED": 143, "TIMEOUT": 124, "DEADLINE": 124, "OUT_OF_MEMORY": 137}
#: The batch script's exit status when it cannot enter the worktree on its node.
NO_WORKTREE_CODE = 97


class SlurmUnreachable(Exception):
    """The Slurm commands did not answer (controller down, timeout, command missing)."""


def gpus_in_gres(gres: str) -> int:
    """GPUs in a GRES string: ``gpu:2`` -> 2, ``gpu:a100:4(S:0-1),mps:100`` -> 4, ``gpu`` -> 1, ``""`` -> 0."""
    total = 0
    for part in re.split(r",(?![^(]*\))", gres or ""):
        part = part.strip()
        if not (part == "gpu" or part.startswith("gpu:")):
            continue
        fields = part.split("(")[0].split(":")
        count = fields[-1] if len(fields) > 1 else "1"
        if count.isdigit():
            total += int(count)
        else:  # "gpu:a100" (a type, no count) means one
            total += 1
    return total


def exit_code_of(state: str, code: str) -> int:
    """An exit status from Slurm's ``ExitCode=N:S`` (signal S wins, as a shell reports it)."""
    try:
        number, _, signal_ = (code or "0:0").partition(":")
        n, s = int(number or 0), int(signal_ or 0)
    except ValueError:
        n, s = 1, 0
    value = 128 + s if s else n
    if value == 0 and state != "COMPLETED":
        value = FALLBACK_CODE.get(state, 1)
    return value


def time_limit(timeout_s: float) -> str:
    """``--time`` from the trial timeout: agentdeck's own timeout (plus its kill grace) fires first."""
    minutes = max(1, math.ceil((float(timeout_s) + 60.0) / 60.0))
    return f"{minutes // 60}:{minutes % 60:02d}:00"
