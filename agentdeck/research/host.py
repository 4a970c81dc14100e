"""What the facade's helper modules use of it: :class:`ResearchHost`.

:mod:`.starting`, :mod:`.reading` and :mod:`.promote` each take the facade
(:class:`agentdeck.research.facade.Research`) as their first argument; they type it with this
protocol, so none of them imports the facade that imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.config import ResearchSettings
    from agentdeck.paths import RepoPaths
    from agentdeck.research.executors.base import Executor
    from agentdeck.research.ledger import Ledger
    from agentdeck.research.model import Run, Trial
    from agentdeck.research.proposers.base import Proposer


class ResearchHost(Protocol):
    """One repository's research, as :class:`agentdeck.research.facade.Research` offers it."""

    #: Warnings of the last ``start`` (the CLI prints them).
    last_warnings: list[str]
    repo: RepoPaths

    @property
    def ledger(self) -> Ledger: ...
    @property
    def research_dir(self) -> Path: ...

    def run_dir(self, tag: str) -> Path: ...
    def resolve_tag(self, tag: str | None) -> str: ...
    def new_tag(self) -> str: ...
    def state(self, tag: str) -> str: ...
    def loop_alive(self, tag: str) -> bool: ...
    def trial(self, trial_id: int | str, tag: str | None = None) -> Trial: ...
    def settings_from_run(self, run: Run) -> ResearchSettings: ...
    def effective_settings(self, proposer: str | None = None, budget_s: float | None = None) -> ResearchSettings: ...
    def make_executor(self, settings: Any) -> Executor: ...
    def make_proposer(self, name: str, tag: str, settings: Any) -> Proposer: ...
