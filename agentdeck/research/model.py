"""The values research's rules work on: what the harness saw, and what the rules decided.

These are plain, frozen dataclasses with no behaviour: :mod:`agentdeck.research.policy`
computes them, the loop gathers the facts (from the ledger, git and the disk) and
carries the decisions out.  Trials and runs themselves are still the ledger's
dicts (``Ledger.trial`` / ``Ledger.run``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: A trial's ``status`` in the contract: ``suspect`` while a result too good to believe is re-run.
STATUSES = ("queued", "running", "keep", "discard", "crash", "suspect")


@dataclass(frozen=True)
class Verdict:
    """A trial's final outcome: ``keep``, ``discard`` or ``crash``, and why (one line)."""

    status: str
    reason: str


@dataclass(frozen=True)
class PathFacts:
    """What ``lstat`` says about one path of a trial's worktree."""

    kind: str  # "file" | "symlink" | "dir" | "missing" | "other"
    nlink: int = 1
    dev: int = 0
    ino: int = 0


@dataclass(frozen=True)
class JobOutcome:
    """Everything the harness observed about a finished job, before any rule is applied."""

    cancel_reason: str = ""  # "stopped", "timeout after 30s", ...: the harness cancelled it
    lost: bool = False  # it vanished without an exit status
    exit_code: int | None = 0
    metric_values: tuple[float, ...] = ()  # every value of the metric the output printed, in order
    protected_changed: tuple[str, ...] = ()  # protected files whose content changed during the job
    reach: tuple[str, ...] = ()  # the job reached outside its files: links, .git (see policy.reach_problems)


@dataclass(frozen=True)
class Rerun:
    """A re-run of a trial's commit (a confirmation, or one of a suspect's two re-checks)."""

    id: int
    state: str  # queued | running | judging | final
    status: str
    reason: str
    metric: float | None


@dataclass(frozen=True)
class Gate:
    """The sanity gate's settings: ``[research] max_jump`` and ``metric_floor`` (None: not set)."""

    max_jump: float | None = None
    metric_floor: float | None = None


@dataclass(frozen=True)
class Judgement:
    """The facts a finished proposal is judged on, gathered by the loop for :func:`policy.decide`."""

    trial_id: int
    first: float  # the trial's own measurement
    best: float  # the best of the trial's hardware class
    reference: float  # what it must beat: the best, or its parent's value when the best moved on
    stale: bool  # its parent is no longer the best
    noise: float
    direction: str  # "min" | "max"
    baseline: float  # the class's baseline mean
    confirm: bool = False  # [research] confirm
    suspect: str = ""  # why it was flagged suspect earlier ("" = it was not)
    largest_gain: float | None = None  # the largest improvement kept so far in this class
    gate: Gate = field(default_factory=Gate)
    reruns: tuple[Rerun, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What to do with a judged proposal.

    ``action``: ``wait`` (re-runs still running), ``discard``, ``keep``, ``confirm`` (queue one
    re-run), ``suspect`` (queue ``reruns`` re-runs and mark it suspect), ``reapply`` (the best
    moved on: apply the change to the new best and measure again).
    """

    action: str
    value: float | None = None  # the value the decision rests on (the mean of every run)
    reason: str = ""
    reruns: int = 0
    gain: float | None = None  # for keep: the improvement over the best
    rerun_status: str = ""  # for keep/discard: the status given to its finished re-runs
    rerun_reason: str = ""
