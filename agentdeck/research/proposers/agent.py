"""The ``agent`` proposer: a coding agent in its own deck pane proposes each change.

Each worker gets one deck agent (``research-<tag>-<n>``, the ``[research]
agent`` definition), visible and attachable like any other agent, and keeps it
for the whole run so it remembers what it tried.  For each proposal:

1. the agent's worktree is reset to the current best commit;
2. a request is opened in the ledger and the agent is told (its initial prompt
   the first time, ``send`` afterwards) to make one change to the editable
   files and then call the MCP tool ``research_submit(description)`` (served
   by ``agentdeck mcp``, which calls :func:`agentdeck.research.submit_from_agent`);
3. when the request is marked submitted, every file the agent changed is
   copied into the trial's worktree (so the loop's guards see a change to a
   protected or non-editable file and reject it) and the description returned.

The agents run through an :class:`~agentdeck.research.runner.AgentRunner` (the deck).
The agent never runs the job or judges it: agentdeck does.  When the run ends
its agents are killed with ``--discard`` semantics (a recovery ref keeps their
last work).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

from agentdeck import git
from agentdeck.errors import AgentdeckError, UsageError
from agentdeck.research.proposers.base import (
    Proposal,
    ProposalFailed,
    ProposalRequest,
    Proposer,
    history_table,
)

POLL_S = 0.5


def instruction(request: ProposalRequest, program_path: str, first: bool) -> str:
    """What the agent is told.  *program_path* is relative to the agent's working directory (the
    lab's workdir in its own worktree): never a path in the trial's worktree, which is agentdeck's,
    outside the agent's workspace and removed once the trial is recorded."""
    best = request.best or {}
    if best.get("id") is not None:
        at = f"the current best, trial {best.get('id')}, {request.metric} = {best.get('metric')}"
    else:
        at = "the base commit (the baseline is still being measured)"
    lines = []
    if first:
        lines.append(f"You are one proposer of agentdeck's auto-research run `{request.tag}`. "
                     f"Read the lab's program first: {program_path} (in your working directory).")
    lines += [
        f"Next experiment: make ONE focused change to the editable file(s) {', '.join(request.editable)} "
        f"(in your working directory; your worktree was just reset to {at}; "
        f"{'lower' if request.direction == 'min' else 'higher'} is better).",
        "Do not run the training job and do not edit any other file: agentdeck runs the job, measures it and keeps "
        "the change only if it beats the best by more than the noise.",
        "When your change is saved, call the MCP tool research_submit with a one-line description of it.",
    ]
    if request.history:
        lines.append("Results so far (do not repeat them):\n" + history_table(request.history, request.metric, 25))
    return "\n".join(lines)


class AgentProposer(Proposer):
    name = "agent"
    uses_notes = True

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self._lock = threading.Lock()
        self._free: list[str] = []
        self._all: list[str] = []
        self._count = 0
        self._local = threading.local()

    def _deck(self):
        """The agent runner (a deck) for this thread: the context's own, else one opened per thread."""
        if self.ctx.runner is not None:
            return self.ctx.runner
        deck = getattr(self._local, "deck", None)
        if deck is None:
            if self.ctx.runners is None:
                raise UsageError("the agent proposer needs the deck's agent panes, and this research was opened "
                                 "without them; run it with `agentdeck research run`")
            deck = self.ctx.runners()
            self._local.deck = deck
        return deck

    def check(self) -> None:
        try:
            deck = self._deck()
        except ImportError as exc:
            raise UsageError(f"the agent proposer needs the deck, which cannot load here ({exc}); "
                             "use --proposer mutate or llm") from None
        deck.config.agent_def(self.ctx.research.agent)  # UsageError for an unknown definition

    # ------------------------------------------------------------------ agents
    def _acquire(self) -> tuple[str, bool]:
        with self._lock:
            if self._free:
                return self._free.pop(), False
            self._count += 1
            name = f"research-{self.ctx.tag}-{self._count}"
            self._all.append(name)
            return name, True

    def _release(self, name: str, usable: bool) -> None:
        """Give *name* back for the next proposal, or forget it when its agent is gone (a ``new``
        that failed and was undone, an agent killed from outside): the next proposal then starts
        a new agent instead of failing on the missing one again and again."""
        with self._lock:
            if usable:
                self._free.append(name)
            elif name in self._all:
                self._all.remove(name)

    @staticmethod
    def _exists(deck: Any, name: str) -> bool:
        try:
            deck.get(name)
        except AgentdeckError:
            return False
        return True

    def propose(self, request: ProposalRequest) -> Proposal:
        deck = self._deck()
        ledger = self.ctx.ledger
        parent = request.best.get("commit") or git.head_commit(request.worktree)
        if not parent:
            raise ProposalFailed(f"cannot read the commit checked out in {request.worktree}")
        name, new = self._acquire()
        program_path = self.ctx.research.program  # the agent starts in the workdir of its own worktree
        request_id = None
        failed = True
        try:
            if new:
                request_id = ledger.open_agent_request(request.tag, name)
                workdir = self.ctx.research.workdir.strip()
                deck.new(name, self.ctx.research.agent, instruction(request, program_path, True), parent,
                         "" if workdir in ("", ".") else workdir)
            else:
                worktree = Path(deck.get(name).worktree)
                git.run(worktree, "reset", "--hard", "-q", parent)
                git.run(worktree, "clean", "-fdq")
                request_id = ledger.open_agent_request(request.tag, name)
                try:
                    deck.wait(name, {"idle", "waiting"}, timeout=60)
                except AgentdeckError:
                    pass
                deck.send(name, instruction(request, program_path, False))
            description = self._wait_submitted(request_id, name, request)
            self._copy_changes(Path(deck.get(name).worktree), request.worktree, parent)
            failed = False
            return Proposal(description, {"proposer": "agent", "agent": name})
        except AgentdeckError as exc:
            raise ProposalFailed(f"agent {name}: {exc}") from None
        finally:
            if request_id is not None:
                ledger.close_agent_request(request_id, "closed")
            self._release(name, not failed or self._exists(deck, name))  # look only after a failure

    def _wait_submitted(self, request_id: int, name: str, request: ProposalRequest) -> str:
        limit = max(600.0, float(self.ctx.research.timeout_s))
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            row = self.ctx.ledger.agent_request(request_id)
            if row and row["state"] == "submitted":
                return row["description"] or f"change by {name}"
            if request.stop.wait(POLL_S):
                raise ProposalFailed("stopped")
        raise ProposalFailed(f"agent {name} did not call research_submit within {limit:.0f}s")

    @staticmethod
    def _copy_changes(source: Path, target: Path, parent: str) -> None:
        """Mirror every change of the agent's worktree (committed or not) into the trial's worktree."""
        changed = set(git.status_porcelain(source))
        out = git.run(source, "diff", "--name-only", "--no-renames", "-z", parent, "HEAD")
        changed |= {p for p in out.split("\0") if p}
        for rel in sorted(changed):
            src, dst = source / rel, target / rel
            if src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
            elif dst.exists() and not src.exists():
                dst.unlink()

    def close(self) -> None:
        if not self._all:
            return
        try:
            deck = self._deck()
        except Exception:
            return
        for name in self._all:
            try:
                deck.kill(name, discard=True)
            except Exception:  # best effort at the end of a run
                pass
