"""Kill confirmation: what will be kept, and what would be lost."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from agentdeck.tui.messages import KillPlan


def _files(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def describe(plan: KillPlan) -> Text:
    """The confirmation's text (kept / lost), also used by tests."""
    has_work = bool(plan.dirty or plan.ahead)
    t = Text()
    t.append("Stops the agent's tmux pane: the running process and what is on its screen.\n\n")
    if not has_work:
        t.append("Nothing to keep: ", style="bold")
        t.append(f"no uncommitted changes and no commits beyond the base, so the worktree\n{plan.worktree}\n"
                 f"and the branch {plan.branch} are removed.\n")
        return t
    work = []
    if plan.dirty:
        work.append(f"{len(plan.dirty)} uncommitted file(s): {_files(plan.dirty)}")
    if plan.ahead:
        work.append(f"{plan.ahead} commit(s) beyond its base")
    t.append("Kept (Kill): ", style="bold green")
    t.append(f"the worktree {plan.worktree} and the branch {plan.branch} with\n")
    for line in work:
        t.append(f"  • {line}\n")
    t.append(f"{plan.name} stays listed as exited (kept); r restarts it.\n\n")
    t.append("Lost (Kill and discard): ", style="bold red")
    t.append("the worktree and the branch with the work above; a recovery ref\n"
             "(refs/agentdeck/trash/…) is saved first: `agentdeck recover` brings it back.\n")
    return t


class KillScreen(ModalScreen[str | None]):
    """Dismisses with "keep", "discard" or None (cancel)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "cancel", "cancel"),
        Binding("y,k", "kill", "kill"),
    ]

    def __init__(self, plan: KillPlan) -> None:
        super().__init__(id="kill")
        self.plan = plan

    def compose(self) -> ComposeResult:
        has_work = bool(self.plan.dirty or self.plan.ahead)
        with Vertical(id="dialog", classes="dialog"):
            yield Static(f"Kill {self.plan.name}?", classes="dialog-title")
            yield Static(describe(self.plan), id="kill-text")
            with Horizontal(classes="buttons"):
                yield Button("Kill (keep work)" if has_work else "Kill", variant="error", id="kill-keep")
                if has_work:
                    yield Button("Kill and discard", variant="warning", id="kill-discard")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    @on(Button.Pressed, "#kill-keep")
    def action_kill(self) -> None:
        self.dismiss("keep")

    @on(Button.Pressed, "#kill-discard")
    def _discard(self) -> None:
        self.dismiss("discard")

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
