"""The send dialog: type a message for one agent (or several, for broadcast)."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widget import Widget
from textual.widgets import Checkbox, Input, Static

from agentdeck.tui.screens.form import FormScreen


class SendScreen(FormScreen[tuple[str, bool]]):
    """Dismisses with (text, force) or None."""

    OK_LABEL = "Send"
    FOCUS = "#text"

    def __init__(self, names: list[str], waiting: bool = False) -> None:
        super().__init__(id="send")
        self.names = names
        self.waiting = waiting

    def heading(self) -> str:
        return f"Send to {self.names[0]}" if len(self.names) == 1 else f"Broadcast to {len(self.names)} agents"

    def fields(self) -> Iterable[Widget]:
        if len(self.names) > 1:
            yield Static(", ".join(self.names), classes="dialog-note")
        yield Input(placeholder="message (enter sends)", id="text")
        if self.waiting:
            yield Static("waiting for an answer: typed text could answer its prompt",
                         classes="field-error -shown")
            yield Checkbox("send anyway (--force)", id="force")
        yield Static("", id="text-error", classes="field-error")

    def submit(self) -> None:
        text = self.value("#text")
        if not text.strip():
            self.show_error("text", "type something to send")
            return
        force = self.query_one("#force", Checkbox).value if self.waiting else False
        self.dismiss((text, force))
