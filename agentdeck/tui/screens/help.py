"""Help: every deck key (as remapped by ``[keymap]``) with what it does."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from agentdeck.tui.bindings import KEYS, PALETTE, current_keys

GROUPS = (
    ("Agents", ("new_agent", "attach", "send", "approve", "deny", "restart", "kill", "select", "next_waiting",
                "filter")),
    ("Review", ("commit", "merge", "compare")),
    ("Many agents", ("broadcast", "fork")),
    ("Tabs", ("tab_preview", "tab_diff", "tab_memory", "tab_research", "edit_note", "research_pause",
              "research_stop", "research_promote")),
    ("Deck", ("help", "command_palette", "quit")),
)


def help_table(app) -> Table:
    specs = {s.id: s for s in (*KEYS, PALETTE)}
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=False)
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_column(style="dim", no_wrap=True)  # the id to remap in [keymap]
    for title, ids in GROUPS:
        id_header = Text("[keymap] id", style="dim") if title == GROUPS[0][0] else ""
        table.add_row(Text(title, style="bold underline"), "", id_header)
        for binding_id in ids:
            spec = specs[binding_id]
            keys = " ".join(app.get_key_display(Binding(k, "")) for k in current_keys(app._keymap, spec))
            table.add_row(keys, spec.help, spec.id)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog help"):
            yield Static("agentdeck keys", classes="dialog-title")
            with VerticalScroll():
                yield Static(help_table(self.app), id="help-table")
            yield Static(Text("Keys never fire while you type in a field. Remap them by id in .agentdeck.toml "
                              '[keymap], e.g. kill = "X".'), classes="dialog-note")

    def action_close(self) -> None:
        self.dismiss(None)
