"""The new-agent dialog: name, definition, base branch, initial prompt.

Invalid values are shown under their field; nothing is created until every
value is valid (``Deck.new`` itself is all-or-nothing).  The checks that need
git or the agent's binary, and the creation, run in a thread worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from textual import on, work
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static

from agentdeck.tui.context import deck_app
from agentdeck.tui.screens.form import FormScreen

FIELDS = ("name", "definition", "base", "prompt", "form")


class NewAgentScreen(FormScreen[str]):
    """Dismisses with the new agent's name, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "submit", "create")]  # and escape: cancel
    OK_LABEL = "Create"
    OK_ID = "create"
    BUSY_NOTE = "still creating the agent…"

    @dataclass
    class Failed(Message):
        field: str
        text: str

    @dataclass
    class Created(Message):
        name: str

    def __init__(self, known: set[str]) -> None:
        super().__init__(id="new-agent")
        self.known = known

    def heading(self) -> str:
        return "New agent"

    def fields(self) -> Iterable[Widget]:
        config = deck_app(self).deck.config
        definitions = config.definitions()
        default = config.deck.default_agent if config.deck.default_agent in definitions else definitions[0]
        yield Label("Name")
        yield Input(placeholder="north-star", id="name")
        yield Static("", id="name-error", classes="field-error")
        yield Label("Definition")
        yield Select([(d, d) for d in definitions], value=default, allow_blank=False, id="definition")
        yield Static("", id="definition-error", classes="field-error")
        yield Label("Base branch")
        yield Input(placeholder="empty = the current branch", id="base")
        yield Static("", id="base-error", classes="field-error")
        yield Label("Initial prompt")
        yield Input(placeholder="what should it do? (optional)", id="prompt")
        yield Static("", id="prompt-error", classes="field-error")
        yield Static("", id="form-error", classes="field-error")

    # ------------------------------------------------------------------ validation
    def clear_errors(self) -> None:
        for field in FIELDS:
            self.show_error(field, "")

    def quick_check(self) -> bool:
        """Checks without I/O; True when nothing is wrong so far."""
        from agentdeck.deck import validate_name
        from agentdeck.errors import AgentdeckError

        ok = True
        name = self.value("#name")
        try:
            clean = validate_name(name)
            if clean in self.known:
                raise ValueError(f"an agent named {clean!r} already exists; choose another name")
            self.show_error("name", "")
        except (AgentdeckError, ValueError) as exc:
            self.show_error("name", str(exc))
            ok = False
        definition = self.query_one("#definition", Select).value
        if not isinstance(definition, str) or not definition:
            self.show_error("definition", "choose an agent definition")
            ok = False
        return ok

    @on(Input.Changed, "#name")
    def _name_changed(self) -> None:
        if self.value("#name"):
            self.quick_check()
        else:
            self.show_error("name", "")

    def submit(self) -> None:
        self.clear_errors()
        if not self.quick_check():
            return
        name = self.value("#name").strip()
        definition = str(self.query_one("#definition", Select).value)
        base = self.value("#base").strip() or None
        prompt = self.value("#prompt")
        self.set_busy(True, "creating the branch, worktree and pane…")
        self._create(name, definition, base, prompt)

    @work(thread=True, exclusive=True, exit_on_error=False, group="new-agent")
    def _create(self, name: str, definition: str, base: str | None, prompt: str) -> None:
        from agentdeck.agents import get_adapter
        from agentdeck.errors import AgentdeckError

        deck = deck_app(self).pool.get()
        try:
            get_adapter(definition, deck.config).check_installed()
        except AgentdeckError as exc:
            self.post_message(self.Failed("definition", str(exc)))
            return
        try:
            deck.resolve_base(base)
        except AgentdeckError as exc:
            self.post_message(self.Failed("base", str(exc)))
            return
        try:
            rec = deck.new(name, definition=definition, prompt=prompt, base=base)
        except AgentdeckError as exc:
            field = "name" if "name" in str(exc) and "already exists" in str(exc) else "form"
            self.post_message(self.Failed(field, str(exc)))
            return
        except Exception as exc:
            self.post_message(self.Failed("form", f"could not create {name}: {type(exc).__name__}: {exc}"))
            return
        self.post_message(self.Created(rec.name))

    def on_new_agent_screen_failed(self, message: Failed) -> None:
        self.set_busy(False)
        self.show_error(message.field, message.text)
        target = {"name": "#name", "base": "#base", "definition": "#definition"}.get(message.field)
        if target:
            self.query_one(target).focus()

    def on_new_agent_screen_created(self, message: Created) -> None:
        self.busy = False
        self.dismiss(message.name)
