"""Messages from the deck's workers to its widgets (attributes down, messages up)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from agentdeck.tui.model import AgentRow


class AgentsChanged(Message):
    """The store's agents changed (a status, a new or removed agent)."""

    def __init__(self, rows: list[AgentRow]) -> None:
        super().__init__()
        self.rows = rows

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AgentsChanged)  # only the newest list matters


class PreviewCaptured(Message):
    """A new capture of the selected agent's pane (only sent when it changed)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__()
        self.name = name
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PreviewCaptured)


class DiffSizes(Message):
    """Fresh (added, removed) line counts for some agents."""

    def __init__(self, sizes: dict[str, tuple[int, int] | None]) -> None:
        super().__init__()
        self.sizes = sizes


class DiffLoaded(Message):
    """The full diff of one agent, for the Diff tab (``result`` is a review DiffResult or text)."""

    def __init__(self, name: str, result: Any, error: str = "") -> None:
        super().__init__()
        self.name = name
        self.result = result
        self.error = error


class FeedProblem(Message):
    """A background feed failed once (it keeps running); shown as a notification."""

    def __init__(self, feed: str, error: str) -> None:
        super().__init__()
        self.feed = feed
        self.error = error


class ActionDone(Message):
    """An action finished in a worker: a line for the user, and whether to poll now."""

    def __init__(self, text: str, severity: str = "information", poke: bool = True) -> None:
        super().__init__()
        self.text = text
        self.severity = severity
        self.poke = poke


class AttachReady(Message):
    """The argv that attaches to an agent's session (resolved in a worker)."""

    def __init__(self, name: str, argv: list[str]) -> None:
        super().__init__()
        self.name = name
        self.argv = argv


class KillPlan(Message):
    """What killing an agent would keep and lose (computed in a worker)."""

    def __init__(self, name: str, dirty: list[str], ahead: int, branch: str, worktree: str) -> None:
        super().__init__()
        self.name = name
        self.dirty = dirty
        self.ahead = ahead
        self.branch = branch
        self.worktree = worktree


class ShowText(Message):
    """Results to show in a text screen (compare table, merge check)."""

    def __init__(self, title: str, lines: list[str], confirm: Any = None) -> None:
        super().__init__()
        self.title = title
        self.lines = lines
        self.confirm = confirm  # a callable run (in a worker) when the user confirms; None = info only


class ConflictMarks(Message):
    """The conflict radar's marks: {agent: {"overlaps": [other...], "conflicts": [other...]}}."""

    def __init__(self, marks: dict) -> None:
        super().__init__()
        self.marks = marks


class ResearchStatus(Message):
    """The latest run's status (None: no run yet), or why it could not be read."""

    def __init__(self, status: dict[str, Any] | None, error: str = "") -> None:
        super().__init__()
        self.status = status
        self.error = error


class TrialDetail(Message):
    """A trial's log tail and diff, for the Research tab."""

    def __init__(self, tag: str, trial: int, log: str, diff: str) -> None:
        super().__init__()
        self.tag = tag
        self.trial = trial
        self.log = log
        self.diff = diff
