"""The fork dialog: a new agent from another's current state (worktree with uncommitted work,
and its conversation where the agent can fork it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from textual import work
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Static

from agentdeck.tui.context import deck_app
from agentdeck.tui.screens.form import FormScreen


class ForkScreen(FormScreen[str]):
    """Dismisses with the new agent's name (a key over several repositories), or None."""

    OK_LABEL = "Fork"
    STATUS = "fork"
    BUSY_CLASSES: ClassVar[tuple[str, ...]] = ("-shown",)
    BUSY_NOTE = "still forking…"

    @dataclass
    class Done(Message):
        name: str
        error: str = ""

    def __init__(self, source: str, suggestion: str) -> None:
        super().__init__(id="fork")
        self.source = source
        self.suggestion = suggestion

    def heading(self) -> str:
        return f"Fork {self.source}"

    def fields(self) -> Iterable[Widget]:
        yield Static("a new agent from its current work (uncommitted changes included) and, where the "
                     "agent can, its conversation", classes="dialog-note")
        yield Label("New name")
        yield Input(value=self.suggestion, id="name")
        yield Label("Prompt (optional)")
        yield Input(placeholder="what the fork should do differently", id="prompt")
        yield Static("", id="fork-error", classes="field-error")

    def submit(self) -> None:
        from agentdeck.deck import validate_name
        from agentdeck.errors import AgentdeckError

        try:
            name = validate_name(self.value("#name"))
        except AgentdeckError as exc:
            self.show_error("fork", str(exc))
            return
        self.set_busy(True, f"forking {self.source} into {name}…")
        self._fork(name, self.value("#prompt"))

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
        if message.error:
            self.set_busy(False)
            self.show_error("fork", message.error)
            self.query_one("#name", Input).focus()
            return
        self.busy = False
        self.dismiss(message.name)
