"""The proposer interface: one change to the editable files, and one line saying what it is.

A proposer gets a :class:`ProposalRequest` — a fresh worktree checked out at
the current best commit, the lab's program, the editable files, every trial
of the run so far and the shared memory's notes — edits the editable files in
``request.workdir`` and returns a :class:`Proposal`.  It never runs the job,
never commits and never judges: the loop commits what it left, checks which
files changed (a protected or non-editable file rejects the trial), skips
duplicates and runs the job.  It raises :class:`ProposalFailed` when it cannot
propose (the loop counts the failure and asks again).

Proposers run in worker threads, several at once (``[research] workers``), so
an implementation keeps per-request state on the request, not on ``self``
(or locks it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ProposalFailed(Exception):
    """The proposer could not produce a change this time (one line: why)."""


@dataclass
class ProposalRequest:
    tag: str
    worktree: Path  # fresh worktree at the parent (best) commit
    workdir: Path  # the lab folder inside it (``[research] workdir``)
    editable: list[str]  # editable files, relative to workdir
    program: str  # the lab's program.md text ("" when missing)
    metric: str
    direction: str  # "min" | "max"
    best: dict[str, Any]  # {"id", "metric", "commit"}
    baseline: dict[str, Any]  # {"metric", "runs", "noise"}
    history: list[dict[str, Any]]  # trials so far (id, kind, status, reason, metric, description, meta)
    notes: list[dict[str, Any]] = field(default_factory=list)  # shared memory hits (title, snippet)
    seed: int = 0
    worker: int = 0
    attempt: int = 0  # 0 first try; >0 after a duplicate or a failure
    results_tsv: Path | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def read(self, rel: str) -> str:
        return (self.workdir / rel).read_text(encoding="utf-8")

    def read_editable(self, suffix: str = "") -> dict[str, str]:
        """The editable files (those ending in *suffix*) that can be read as text, in order: rel path ->
        text (a missing or undecodable file is left out)."""
        out: dict[str, str] = {}
        for rel in self.editable:
            if not rel.endswith(suffix):
                continue
            try:
                out[rel] = self.read(rel)
            except (OSError, UnicodeDecodeError):
                continue
        return out


@dataclass
class Proposal:
    description: str
    meta: dict[str, Any] = field(default_factory=dict)  # proposer-specific, kept in the ledger


@dataclass
class ProposerContext:
    """What a proposer may need besides the request: settings, the ledger, and agents to run (the
    ``agent`` proposer: *runner*, one for every thread, else one per thread from *runners*; see
    :mod:`agentdeck.research.runner`)."""

    research: Any  # ResearchSettings
    llm: Any  # LlmSettings
    repo_root: Path
    state_dir: Path
    tag: str
    runner: Any = None  # an AgentRunner
    ledger: Any = None
    runners: Any = None  # a RunnerFactory


class Proposer:
    name = "base"
    #: True when the loop should search the shared memory for notes to put in each request.
    uses_notes = False

    def __init__(self, ctx: ProposerContext):
        self.ctx = ctx

    def check(self) -> None:
        """Raise UsageError (one line naming the fix) when this proposer cannot work here."""

    def propose(self, request: ProposalRequest) -> Proposal:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        """Release what the proposer holds (agent panes, HTTP clients)."""

    def redo(self, request: ProposalRequest, trial: dict[str, Any]) -> Proposal | None:
        """Make *trial*'s change again in ``request.workdir``, a worktree at a newer best (for a loop that
        moves a queued or winning proposal onto the new best).  None: cherry-pick its commit instead (the
        default); ProposalFailed: the change does not apply there."""
        return None


def history_table(history: list[dict[str, Any]], metric: str, limit: int = 60) -> str:
    """The ledger as a compact table for prompts (most recent *limit* trials)."""
    rows = [f"trial\tkind\tstatus\t{metric}\tdescription\treason"]
    for t in history[-limit:]:
        m = t.get("metric")
        shown = f"{m:.6f}" if isinstance(m, (int, float)) else "-"
        rows.append(
            f"{t['id']}\t{t['kind']}\t{t['status']}\t{shown}\t{t.get('description', '')}\t{t.get('reason', '')}"
        )
    return "\n".join(rows)
