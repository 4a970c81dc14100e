"""Research's records and the values its rules work on.

:class:`Trial` and :class:`Run` (each a :class:`Record`) are the ledger's rows as it reads them
(``Ledger.trial`` / ``Ledger.trials`` / ``Ledger.run``, through ``from_row``) and writes them
(by field name, through ``columns``); their ``to_json()`` is the plain dict that crosses the
boundaries (the ``trial`` event, a proposer's ``redo``, the search proposer's record), with
the keys the ledger's dicts always had.  The other classes are plain, frozen dataclasses
with no behaviour: :mod:`agentdeck.research.policy` computes them, the loop gathers the
facts (from the ledger, git and the disk) and carries the decisions out.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

#: A trial's ``status`` in the contract: ``suspect`` while a result too good to believe is re-run.
STATUSES = ("queued", "running", "keep", "discard", "crash", "suspect")

R = TypeVar("R", bound="Record")


@dataclass(frozen=True)
class Record:
    """A ledger row as a frozen dataclass: its fields are the table's columns, in order, but
    for those *COLUMNS* renames (field -> column); *JSON_FIELDS* are stored JSON-encoded.
    The one place where rows become records (:meth:`from_row`) and fields become columns
    (:meth:`columns`)."""

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ()
    COLUMNS: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_row(cls: type[R], row: sqlite3.Row) -> R:
        data = dict(row)
        for key in cls.JSON_FIELDS:
            data[key] = json.loads(data.get(key) or "{}")
        for name, column in cls.COLUMNS.items():
            data[name] = data.pop(column)
        return cls(**data)

    @classmethod
    def columns(cls, fields: dict[str, Any]) -> dict[str, Any]:
        """Values of *fields* (named as the record names them) as the table stores them:
        renamed, JSON-encoded where they are, a non-finite float NULL (SQLite and JSON have
        no NaN).  A name that is no field is a ValueError (nothing is written)."""
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{cls.__name__} has no field {unknown[0]!r}")
        return {cls.COLUMNS.get(k, k): json.dumps(v) if k in cls.JSON_FIELDS else _stored(v)
                for k, v in fields.items()}

    def to_json(self) -> dict[str, Any]:
        """The record as a plain dict: its fields' names and values, in order (JSON-able)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _stored(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


@dataclass(frozen=True)
class Trial(Record):
    """One trial of a run, as the ledger holds it (a row of ``trials``; ``commit`` is its
    ``commit_sha`` column, ``job``/``meta``/``extras`` are decoded).  The fields are in the
    order of the dict :meth:`to_json` gives (the dict the ledger always gave)."""

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("job", "meta", "extras")
    COLUMNS: ClassVar[dict[str, str]] = {"commit": "commit_sha"}

    tag: str
    id: int
    kind: str  # baseline | proposal | confirm
    state: str = "queued"  # queued | running | judging | final (the harness's own)
    status: str = "queued"  # the contract's: see STATUSES
    reason: str = ""
    metric: float | None = None
    parent: str = ""
    description: str = ""
    gpu: str | None = None
    seconds: float | None = None
    memory_gb: float | None = None
    exit_code: int | None = None
    content_hash: str = ""
    created_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    confirm_of: int | None = None
    reapply_of: int | None = None
    worktree: str = ""
    log_path: str = ""
    job: dict[str, Any] = field(default_factory=dict)
    proposer: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    hardware: str = ""  # its hardware class ("" in a run from before classes: the primary)
    claimed: float | None = None  # with a protected evaluation: the metric the job itself printed
    commit: str = ""


@dataclass(frozen=True)
class Run(Record):
    """One research run, as the ledger holds it (a row of ``runs``; ``settings`` and
    ``protected`` decoded).  Its judged state is the primary hardware class's; the other
    classes' rows are ``Ledger.class_rows``."""

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("settings", "protected")

    tag: str
    branch: str
    base_branch: str
    base_commit: str
    workdir: str = "."
    created_at: float = 0.0
    updated_at: float = 0.0
    state: str = "starting"
    control: str = "run"
    pid: int = 0
    heartbeat: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    protected: dict[str, str] = field(default_factory=dict)  # repo path -> blob id
    baseline_metric: float | None = None
    baseline_runs: int = 0
    noise: float | None = None
    best_trial: int | None = None
    best_metric: float | None = None
    best_commit: str | None = None
    proposals: int = 0
    trials_limit: int | None = None
    duplicates: int = 0
    proposal_failures: int = 0
    message: str = ""


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
