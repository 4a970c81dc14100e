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


TOKENS_COLUMN = ("tokens", "TOKENS", 7)  # shown once some agent's usage is known (agentdeck.usage)
RADAR_COLUMN = ("radar", "RADAR", 20)  # shown while the conflict radar marks some agent (review engine)
GROUP_PREFIX = "\x00group:"  # row keys of the repository header rows (several repositories)


def format_tokens(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:.1f}{unit}" if n < size * 100 else f"{n // size}{unit}"
    return str(n)


def row_cells(row: AgentRow, size: tuple[int, int] | None, marked: bool, now: float,
              shown_name: str | None = None) -> tuple[Text, ...]:
    symbol, style = status_look(row.status)
    name_style = "bold yellow" if row.waiting else ("dim" if row.exited else "bold")
    added, removed = format_size(size)
    diff = Text.assemble((added, "green"), " ", (removed, "red")) if size is not None else Text(added, style="dim")
    return (
        Text("▐" if marked else " ", style="bold magenta"),
        Text(shown_name if shown_name is not None else row.name, style=name_style),
        Text.assemble(row.definition, (f" [{row.sandbox}]" if row.sandbox != "none" else "", "green"),
                      style="dim" if row.exited else ""),
        Text(f"{symbol} {row.status_word}", style=style),
        Text(row.branch, style="dim"),
        diff,
        Text(format_age(row.created_at, now), style="dim", justify="right"),
    )


def radar_cell(mark: dict | None, grouped: bool = False) -> Text:
    """"⚠ conflicts with B" (red), "≈ overlaps B" (yellow), or nothing."""
    if not mark:
        return Text("")

    def short(names: list[str]) -> str:
        names = sorted(names, key=lambda n: n.endswith("<base>"))  # another agent first: the one to talk to
        first = names[0].partition("/")[2] or names[0] if grouped else names[0]
        first = "base" if first.endswith("<base>") else first
        return first + (f" +{len(names) - 1}" if len(names) > 1 else "")

    conflicts = list(mark.get("conflicts") or [])
    overlaps = list(mark.get("overlaps") or [])
    if conflicts:
        return Text(f"⚠ conflicts with {short(conflicts)}", style="bold red", no_wrap=True, overflow="ellipsis")
    if overlaps:
        return Text(f"≈ overlaps {short(overlaps)}", style="yellow", no_wrap=True, overflow="ellipsis")
    return Text("")


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
        self.grouped = False  # several repositories: keys are "repo/name", a header row per repository
        self.tokens: dict[str, int | None] | None = None  # per-agent tokens; None: no TOKENS column
        self.radar: dict[str, dict] | None = None  # conflict radar marks; None: no RADAR column
        self._columns: tuple = COLUMNS
        self._pending_select: str | None = None  # the selection across a column change

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    @property
    def selected(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        key = self._order[self.cursor_row]
        return None if key.startswith(GROUP_PREFIX) else key

    @property
    def names(self) -> list[str]:
        return [k for k in self._order if not k.startswith(GROUP_PREFIX)]

    # -- several repositories: header rows are skipped by the cursor ------------------------
    def _agent_row_near(self, row: int, step: int) -> int:
        """The first agent row from *row* in the direction *step*, else the other way (row itself if none)."""
        n = len(self._order)
        for direction in (step, -step):
            r = row
            while 0 <= r < n and self._order[r].startswith(GROUP_PREFIX):
                r += direction
            if 0 <= r < n:
                return r
        return row

    def action_cursor_down(self) -> None:
        super().action_cursor_down()
        if self.grouped and self._order:
            self.move_cursor(row=self._agent_row_near(self.cursor_row, 1), animate=False)

    def action_cursor_up(self) -> None:
        super().action_cursor_up()
        if self.grouped and self._order:
            self.move_cursor(row=self._agent_row_near(self.cursor_row, -1), animate=False)

    def _header_cells(self, label: str, count: int) -> tuple[Text, ...]:
        cells = [Text("")] * len(self._columns)
        cells[1] = Text(f"▾ {label}", style="bold cyan")
        cells[2] = Text(f"{count} agent{'s' if count != 1 else ''}", style="dim")
        return tuple(cells)

    def set_tokens(self, tokens: dict[str, int | None] | None) -> None:
        """Per-agent tokens; the TOKENS column appears with the first known number."""
        show = tokens is not None and any(v is not None for v in tokens.values())
        self.tokens = tokens if show else None
        self._set_columns()

    def set_radar(self, marks: dict[str, dict] | None) -> None:
        """Conflict radar marks; the RADAR column shows while some agent has a mark."""
        marks = marks or {}
        show = any(m.get("overlaps") or m.get("conflicts") for m in marks.values())
        self.radar = marks if show else None
        self._set_columns()

    def _set_columns(self) -> None:
        columns = COLUMNS + ((TOKENS_COLUMN,) if self.tokens is not None else ()) \
            + ((RADAR_COLUMN,) if self.radar is not None else ())
        if columns != self._columns:
            self._pending_select = self.selected
            self._columns = columns
            self.clear(columns=True)
            for key, label, width in columns:
                self.add_column(label, key=key, width=width)
            self._order, self._shown = [], {}

    def select(self, name: str) -> bool:
        if name in self._order:
            self.move_cursor(row=self._order.index(name))
            return True
        return False

    def show_rows(self, rows: list[AgentRow], sizes: dict[str, tuple[int, int] | None], marked: set[str],
                  now: float) -> None:
        """Paint *rows* (already filtered and ordered); unchanged cells are left alone."""
        wanted = [r.name for r in rows]
        cells = {r.name: row_cells(r, sizes.get(r.name), r.name in marked, now,
                                   r.name.partition("/")[2] if self.grouped else None) for r in rows}
        if self.tokens is not None:
            cells = {k: v + (Text(format_tokens(self.tokens.get(k)), style="cyan", justify="right"),)
                     for k, v in cells.items()}
        if self.radar is not None:
            cells = {k: v + (radar_cell(self.radar.get(k), self.grouped),) for k, v in cells.items()}
        if self.grouped:
            order: list[str] = []
            labels = [r.name.partition("/")[0] for r in rows]
            for label, name in zip(labels, wanted):
                header = GROUP_PREFIX + label
                if header not in cells:
                    order.append(header)
                    cells[header] = self._header_cells(label, labels.count(label))
                order.append(name)
            wanted = order
        if wanted != self._order:
            keep = self.selected or self._pending_select
            self._pending_select = None
            self.clear()
            self._order = wanted
            self._shown = {}
            for name in wanted:
                self.add_row(*cells[name], key=name)
                self._shown[name] = cells[name]
            if keep in wanted:
                self.move_cursor(row=wanted.index(keep), animate=False)
            elif wanted:
                row = min(self.cursor_row, len(wanted) - 1)
                self.move_cursor(row=self._agent_row_near(row, 1) if self.grouped else row, animate=False)
            return
        for name in wanted:
            old = self._shown.get(name)
            new = cells[name]
            if old == new:
                continue
            for (key, _label, _width), before, after in zip(self._columns, old or (None,) * len(new), new):
                if before != after:
                    self.update_cell(name, key, after)
            self._shown[name] = new
