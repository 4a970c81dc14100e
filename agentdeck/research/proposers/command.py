"""The ``command`` proposer: ``[research] proposer_command`` edits the files itself.

The command runs through the shell in the trial's worktree (in ``workdir``)
with ``AGENTDECK_TRIAL_WORKTREE``, ``AGENTDECK_EDITABLE`` (space-separated),
``AGENTDECK_PROGRAM``, ``AGENTDECK_RESULTS`` (the run's results.tsv),
``AGENTDECK_METRIC``, ``AGENTDECK_DIRECTION`` and ``AGENTDECK_SEED`` set; the
last non-empty line it prints on stdout is the trial's description.  A
non-zero exit is a failed proposal.
"""

from __future__ import annotations

import os
import subprocess

from agentdeck.errors import UsageError
from agentdeck.research.proposers.base import Proposal, ProposalFailed, ProposalRequest, Proposer


class CommandProposer(Proposer):
    name = "command"

    def check(self) -> None:
        if not self.ctx.research.proposer_command.strip():
            raise UsageError(
                "proposer \"command\" needs [research] proposer_command (a shell command that edits the "
                "editable files and prints a one-line description)"
            )

    def propose(self, request: ProposalRequest) -> Proposal:
        env = dict(os.environ)
        env.update({
            "AGENTDECK_TRIAL_WORKTREE": str(request.worktree),
            "AGENTDECK_EDITABLE": " ".join(request.editable),
            "AGENTDECK_PROGRAM": str(request.workdir / self.ctx.research.program),
            "AGENTDECK_RESULTS": str(request.results_tsv or ""),
            "AGENTDECK_METRIC": request.metric,
            "AGENTDECK_DIRECTION": request.direction,
            "AGENTDECK_SEED": str(request.seed),
            "AGENTDECK_RESEARCH_TAG": request.tag,
        })
        timeout = max(60.0, float(self.ctx.research.timeout_s))
        try:
            proc = subprocess.run(
                self.ctx.research.proposer_command, shell=True, cwd=str(request.workdir), env=env,
                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise ProposalFailed(f"proposer_command ran past {timeout:.0f}s") from None
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [""])[-1]
            raise ProposalFailed(f"proposer_command exited {proc.returncode}: {tail[:200]}")
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        description = lines[-1] if lines else "command proposal"
        return Proposal(description[:300], {"proposer": "command"})
