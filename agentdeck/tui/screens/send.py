"""The send dialog: type a message for one agent (or several, for broadcast)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Static


class SendScreen(ModalScreen[tuple[str, bool] | None]):
    """Dismisses with (text, force) or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, names: list[str], waiting: bool = False) -> None:
        super().__init__(id="send")
        self.names = names
        self.waiting = waiting

    def compose(self) -> ComposeResult:
        title = f"Send to {self.names[0]}" if len(self.names) == 1 else f"Broadcast to {len(self.names)} agents"
        with Vertical(id="dialog", classes="dialog"):
            yield Static(title, classes="dialog-title")
            if len(self.names) > 1:
                yield Static(", ".join(self.names), classes="dialog-note")
            yield Input(placeholder="message (enter sends)", id="text")
            if self.waiting:
                yield Static("waiting for an answer: typed text could answer its prompt",
                         classes="field-error -shown")
                yield Checkbox("send anyway (--force)", id="force")
            yield Static("", id="text-error", classes="field-error")
            with Horizontal(classes="buttons"):
                yield Button("Send", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#text", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _send(self) -> None:
        text = self.query_one("#text", Input).value
        if not text.strip():
            box = self.query_one("#text-error", Static)
            box.update("type something to send")
            box.add_class("-shown")
            return
        force = self.query_one("#force", Checkbox).value if self.waiting else False
        self.dismiss((text, force))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
