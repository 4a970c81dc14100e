"""The list of agents: one row each, repainting only the rows whose cells changed."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from agentdeck.tui.model import AgentRow, format_age, format_size, status_look

# key, label, fixed width (None: fits the content).  Cells that change in place (mark, status, +/-,
# age) have fixed widths, so a status change never re-measures or shifts the table.
COLUMNS = (("mark", " ", 1), ("name", "NAME", None), ("agent", "AGENT", None), ("status", "STATUS", 15),
           ("branch", "BRANCH", None), ("diff", "+/-", 11), ("age", "AGE", 4))


def row_cells(row: AgentRow, size: tuple[int, int] | None, marked: bool, now: float) -> tuple[Text, ...]:
    symbol, style = status_look(row.status)
    name_style = "bold yellow" if row.waiting else ("dim" if row.exited else "bold")
    added, removed = format_size(size)
    diff = Text.assemble((added, "green"), " ", (removed, "red")) if size is not None else Text(added, style="dim")
    return (
        Text("▐" if marked else " ", style="bold magenta"),
        Text(row.name, style=name_style),
        Text(row.definition, style="dim" if row.exited else ""),
        Text(f"{symbol} {row.status_word}", style=style),
        Text(row.branch, style="dim"),
        diff,
        Text(format_age(row.created_at, now), style="dim", justify="right"),
    )


class AgentList(DataTable, inherit_bindings=False):
    """A DataTable of agents (keyed by name); ``enter`` is left to the screen's ``attach`` binding."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "up", show=False),
        Binding("down", "cursor_down", "down", show=False),
        Binding("pageup", "page_up", "page up", show=False),
        Binding("pagedown", "page_down", "page down", show=False),
        Binding("home", "scroll_top", "first", show=False),
        Binding("end", "scroll_bottom", "last", show=False),
    ]

    DEFAULT_CSS = """
    AgentList { height: 1fr; }
    AgentList > .datatable--header { text-style: bold; color: $text-muted; background: $surface; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, show_cursor=True, **kwargs)
        self._shown: dict[str, tuple[Text, ...]] = {}  # name -> cells as painted
        self._order: list[str] = []
        self.repaints = 0  # cells updated (tests, benchmarks)

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @property
    def selected(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    @property
    def names(self) -> list[str]:
        return list(self._order)

    def select(self, name: str) -> bool:
        if name in self._order:
            self.move_cursor(row=self._order.index(name))
            return True
        return False

    def show_rows(self, rows: list[AgentRow], sizes: dict[str, tuple[int, int] | None], marked: set[str],
                  now: float) -> None:
        """Paint *rows* (already filtered and ordered); unchanged cells are left alone."""
        wanted = [r.name for r in rows]
        cells = {r.name: row_cells(r, sizes.get(r.name), r.name in marked, now) for r in rows}
        if wanted != self._order:
            keep = self.selected
            self.clear()
            self._order = wanted
            self._shown = {}
            for name in wanted:
                self.add_row(*cells[name], key=name)
                self._shown[name] = cells[name]
            self.repaints += len(wanted)
            if keep in wanted:
                self.move_cursor(row=wanted.index(keep), animate=False)
            elif wanted:
                self.move_cursor(row=min(self.cursor_row, len(wanted) - 1), animate=False)
            return
        for name in wanted:
            old = self._shown.get(name)
            new = cells[name]
            if old == new:
                continue
            for (key, _label, _width), before, after in zip(COLUMNS, old or (None,) * len(COLUMNS), new):
                if before != after:
                    self.update_cell(name, key, after)
                    self.repaints += 1
            self._shown[name] = new
