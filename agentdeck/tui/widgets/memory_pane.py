"""The Memory tab: the shared notes, newest first (``deck.memory``), with ``e`` to edit one."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static


class MemoryPane(Vertical):
    DEFAULT_CSS = """
    MemoryPane { height: 1fr; }
    MemoryPane > #memory-status { height: auto; padding: 0 1; color: $text-muted; }
    MemoryPane > DataTable { height: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.notes: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static(Text("loading notes…", style="italic"), id="memory-status")
        yield DataTable(cursor_type="row", id="notes")

    def on_mount(self) -> None:
        table = self.query_one("#notes", DataTable)
        for key, label in (("title", "TITLE"), ("kind", "KIND"), ("tags", "TAGS"), ("author", "BY"),
                           ("updated", "UPDATED")):
            table.add_column(label, key=key)
        table.display = False

    def show_message(self, text: str) -> None:
        self.query_one("#memory-status", Static).update(Text(text, style="italic"))
        self.query_one("#notes", DataTable).display = False

    def show_notes(self, notes: list[dict[str, Any]]) -> None:
        table = self.query_one("#notes", DataTable)
        keep = self.selected
        self.notes = notes
        table.clear()
        for note in notes:
            tags = note.get("tags") or []
            table.add_row(
                Text(str(note.get("title", "")), style="bold"), str(note.get("kind", "")),
                ", ".join(tags) if isinstance(tags, (list, tuple)) else str(tags), str(note.get("author", "")),
                str(note.get("updated", ""))[:16].replace("T", " "), key=str(note.get("id")),
            )
        ids = [str(n.get("id")) for n in notes]
        if keep in ids:
            table.move_cursor(row=ids.index(keep))
        status = (f"{len(notes)} note(s), newest first; e edits the highlighted one (tab moves here)"
                  if notes else "no notes yet: agents add them with the memory tools, you with "
                                "`agentdeck memory add`")
        self.query_one("#memory-status", Static).update(Text(status, style="italic"))
        table.display = bool(notes)

    @property
    def selected(self) -> str | None:
        table = self.query_one("#notes", DataTable)
        if not self.notes or table.cursor_row < 0 or table.cursor_row >= len(self.notes):
            return None
        return str(self.notes[table.cursor_row].get("id"))
