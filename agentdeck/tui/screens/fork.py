"""The fork dialog: a new agent from another's current state (worktree with uncommitted work,
and its conversation where the agent can fork it)."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from agentdeck.tui.context import deck_app


class ForkScreen(ModalScreen[str | None]):
    """Dismisses with the new agent's name (a key over several repositories), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    class Done(Message):
        def __init__(self, name: str, error: str = "") -> None:
            super().__init__()
            self.name = name
            self.error = error

    def __init__(self, source: str, suggestion: str) -> None:
        super().__init__(id="fork")
        self.source = source
        self.suggestion = suggestion
        self.busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(f"Fork {self.source}", classes="dialog-title")
            yield Static("a new agent from its current work (uncommitted changes included) and, where the "
                         "agent can, its conversation", classes="dialog-note")
            yield Label("New name")
            yield Input(value=self.suggestion, id="name")
            yield Label("Prompt (optional)")
            yield Input(placeholder="what the fork should do differently", id="prompt")
            yield Static("", id="fork-error", classes="field-error")
            with Horizontal(classes="buttons"):
                yield Button("Fork", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def show_error(self, text: str) -> None:
        box = self.query_one("#fork-error", Static)
        box.update(text)
        box.set_class(bool(text), "-shown")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def action_fork(self) -> None:
        if self.busy:
            return
        from agentdeck.deck import validate_name
        from agentdeck.errors import AgentdeckError

        try:
            name = validate_name(self.query_one("#name", Input).value)
        except AgentdeckError as exc:
            self.show_error(str(exc))
            return
        self.busy = True
        for widget in self.query("Input, Button"):
            widget.disabled = True
        self.show_error("")
        status = self.query_one("#fork-error", Static)
        status.update(f"forking {self.source} into {name}…")
        status.add_class("-shown")
        self._fork(name, self.query_one("#prompt", Input).value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="fork")
    def _fork(self, name: str, prompt: str) -> None:
        from agentdeck.errors import AgentdeckError

        try:
            rec = deck_app(self).pool.get().fork(self.source, name, prompt)
        except AgentdeckError as exc:
            self.post_message(self.Done(name, str(exc)))
            return
        except Exception as exc:
            self.post_message(self.Done(name, f"could not fork {self.source}: {type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Done(rec.name))

    def on_fork_screen_done(self, message: Done) -> None:
        self.busy = False
        if message.error:
            for widget in self.query("Input, Button"):
                widget.disabled = False
            self.show_error(message.error)
            self.query_one("#name", Input).focus()
            return
        self.dismiss(message.name)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if self.busy:
            self.notify("still forking…", severity="warning")
            return
        self.dismiss(None)
