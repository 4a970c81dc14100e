"""The new-agent dialog: name, definition, base branch, initial prompt.

Invalid values are shown under their field; nothing is created until every
value is valid (``Deck.new`` itself is all-or-nothing).  The checks that need
git or the agent's binary, and the creation, run in a thread worker.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from agentdeck.tui.context import deck_app

FIELDS = ("name", "definition", "base", "prompt", "form")


class NewAgentScreen(ModalScreen[str | None]):
    """Dismisses with the new agent's name, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel"),
        Binding("ctrl+s", "create", "create"),
    ]

    class Failed(Message):
        def __init__(self, field: str, text: str) -> None:
            super().__init__()
            self.field = field
            self.text = text

    class Created(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, known: set[str]) -> None:
        super().__init__(id="new-agent")
        self.known = known
        self.busy = False

    def compose(self) -> ComposeResult:
        config = deck_app(self).deck.config
        definitions = config.definitions()
        default = config.deck.default_agent if config.deck.default_agent in definitions else definitions[0]
        with Vertical(id="dialog", classes="dialog"):
            yield Static("New agent", classes="dialog-title")
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
            with Horizontal(classes="buttons"):
                yield Button("Create", variant="primary", id="create")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    # ------------------------------------------------------------------ validation
    def show_error(self, field: str, text: str) -> None:
        box = self.query_one(f"#{field}-error", Static)
        box.update(text)
        box.set_class(bool(text), "-shown")

    def clear_errors(self) -> None:
        for field in FIELDS:
            self.show_error(field, "")

    def quick_check(self) -> bool:
        """Checks without I/O; True when nothing is wrong so far."""
        from agentdeck.deck import validate_name
        from agentdeck.errors import AgentdeckError

        ok = True
        name = self.query_one("#name", Input).value
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
        if self.query_one("#name", Input).value:
            self.quick_check()
        else:
            self.show_error("name", "")

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_create()

    @on(Button.Pressed, "#create")
    def _create_pressed(self) -> None:
        self.action_create()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        if self.busy:
            self.notify("still creating the agent…", severity="warning")
            return
        self.dismiss(None)

    def action_create(self) -> None:
        if self.busy:
            return
        self.clear_errors()
        if not self.quick_check():
            return
        name = self.query_one("#name", Input).value.strip()
        definition = str(self.query_one("#definition", Select).value)
        base = self.query_one("#base", Input).value.strip() or None
        prompt = self.query_one("#prompt", Input).value
        self.set_busy(True)
        self._create(name, definition, base, prompt)

    def set_busy(self, busy: bool) -> None:
        self.busy = busy
        for widget in self.query("Input, Select, Button"):
            widget.disabled = busy
        self.show_error("form", "")
        status = self.query_one("#form-error", Static)
        if busy:
            status.update("creating the branch, worktree and pane…")
            status.add_class("busy", "-shown")
        else:
            status.remove_class("busy")

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
