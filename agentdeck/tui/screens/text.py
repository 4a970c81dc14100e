"""Lines to read (compare table, merge check), optionally with a confirmation."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class TextScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "close", "close")]

    def __init__(self, title: str, lines: list[str], confirm: bool = False) -> None:
        super().__init__(id="text")
        self.title_text = title
        self.lines = lines
        self.confirm = confirm

    def compose(self) -> ComposeResult:
        from rich.text import Text

        with Vertical(id="dialog", classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            with VerticalScroll():
                yield Static(Text("\n".join(self.lines)), id="text-body")
            with Horizontal(classes="buttons"):
                if self.confirm:
                    yield Button("Confirm", variant="primary", id="ok")
                yield Button("Close" if not self.confirm else "Cancel", id="close")

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(False)
