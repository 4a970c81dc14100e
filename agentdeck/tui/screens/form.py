"""The deck's form dialogs (new agent, fork, send): one layout and one submit / cancel handling.

A form is a titled dialog: the fields a subclass yields, then OK and Cancel.  Enter in any
input or the OK button submits (:meth:`FormScreen.submit`, ignored while busy); escape or
Cancel dismisses with None, except while a worker runs for the form (``busy``), when it
says so instead.  Each field's error line is a ``Static`` with the id ``<field>-error``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Static

T = TypeVar("T")


class FormScreen(ModalScreen[T | None]):
    """Subclasses set the class attributes below and define :meth:`heading`, :meth:`fields`
    and :meth:`submit`."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    OK_LABEL: ClassVar[str] = "OK"
    OK_ID: ClassVar[str] = "ok"
    FOCUS: ClassVar[str] = "#name"  # the field with the cursor when the dialog opens
    STATUS: ClassVar[str] = "form"  # the field whose error line shows the progress while busy
    BUSY_CLASSES: ClassVar[tuple[str, ...]] = ("busy", "-shown")  # the progress line's classes
    BUSY_NOTE: ClassVar[str] = "still working…"  # what cancel says while busy

    busy = False  # a worker runs for the form: no submit, no cancel

    def heading(self) -> str:
        raise NotImplementedError

    def fields(self) -> Iterable[Widget]:
        raise NotImplementedError

    def submit(self) -> None:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Static(self.heading(), classes="dialog-title")
            yield from self.fields()
            with Horizontal(classes="buttons"):
                yield Button(self.OK_LABEL, variant="primary", id=self.OK_ID)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(self.FOCUS).focus()

    def on_input_submitted(self) -> None:
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == self.OK_ID:
            self.action_submit()
        elif event.button.id == "cancel":
            self.action_cancel()

    def action_submit(self) -> None:
        if not self.busy:
            self.submit()

    def action_cancel(self) -> None:
        if self.busy:
            self.notify(self.BUSY_NOTE, severity="warning")
            return
        self.dismiss(None)

    # ------------------------------------------------------------------ errors and progress
    def show_error(self, field: str, text: str) -> None:
        """The error line under *field* (hidden when *text* is empty)."""
        box = self.query_one(f"#{field}-error", Static)
        box.update(text)
        box.set_class(bool(text), "-shown")

    def set_busy(self, busy: bool, note: str = "") -> None:
        """While a worker runs: every field and button disabled, *note* on the progress line."""
        self.busy = busy
        for widget in self.query("Input, Select, Button"):
            widget.disabled = busy
        self.show_error(self.STATUS, "")
        status = self.query_one(f"#{self.STATUS}-error", Static)
        if busy:
            status.update(note)
            status.add_class(*self.BUSY_CLASSES)
        else:
            status.remove_class("busy")

    def value(self, selector: str) -> str:
        """The text of the input *selector*."""
        return self.query_one(selector, Input).value
