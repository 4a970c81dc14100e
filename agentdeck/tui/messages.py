"""Messages from the deck's workers to its widgets (attributes down, messages up).

Each message is a dataclass (Textual's ``Message.__post_init__`` is made for that): its
fields are its constructor's arguments, in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from agentdeck.tui.model import AgentRow


@dataclass
class AgentsChanged(Message):
    """The store's agents changed (a status, a new or removed agent)."""

    rows: list[AgentRow]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AgentsChanged)  # only the newest list matters


@dataclass
class PreviewCaptured(Message):
    """A new capture of the selected agent's pane (only sent when it changed)."""

    name: str
    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PreviewCaptured)


@dataclass
class DiffSizes(Message):
    """Fresh (added, removed) line counts for some agents."""

    sizes: dict[str, tuple[int, int] | None]


@dataclass
class DiffLoaded(Message):
    """The full diff of one agent, for the Diff tab (``result`` is a review DiffResult or text)."""

    name: str
    result: Any
    error: str = ""


@dataclass
class FeedProblem(Message):
    """A background feed failed once (it keeps running); shown as a notification."""

    feed: str
    error: str


@dataclass
class ActionDone(Message):
    """An action finished in a worker: a line for the user, and whether to poll now."""

    text: str
    severity: str = "information"
    poke: bool = True


@dataclass
class AttachReady(Message):
    """The argv that attaches to an agent's session (resolved in a worker)."""

    name: str
    argv: list[str]


@dataclass
class KillPlan(Message):
    """What killing an agent would keep and lose (computed in a worker)."""

    name: str
    dirty: list[str]
    ahead: int
    branch: str
    worktree: str


@dataclass
class ShowText(Message):
    """Results to show in a text screen (compare table, merge check)."""

    title: str
    lines: list[str]
    confirm: Any = None  # a callable run (in a worker) when the user confirms; None = info only


@dataclass
class ConflictMarks(Message):
    """The conflict radar's marks: {agent: {"overlaps": [other...], "conflicts": [other...]}}."""

    marks: dict


@dataclass
class ResearchStatus(Message):
    """The latest run's status (None: no run yet), or why it could not be read."""

    status: dict[str, Any] | None
    error: str = ""


@dataclass
class TrialDetail(Message):
    """A trial's log tail and diff, for the Research tab."""

    tag: str
    trial: int
    log: str
    diff: str
