"""What the Memory and Research panes share: a list of items in a row-cursor ``DataTable``
and a view of the highlighted one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, TypeVar

from textual.containers import Vertical
from textual.widgets import DataTable

T = TypeVar("T")


class ListPane(Vertical):
    """A pane around one table (id ``TABLE``; ``COLUMNS``: (key, label) in order) whose rows follow
    a list of items in the same order; :meth:`show_highlighted` shows the highlighted row's item.

    Textual runs the ``on_mount`` of every class of a widget: this one adds the columns, a
    subclass's own does the rest (without calling this one)."""

    TABLE: ClassVar[str]
    COLUMNS: ClassVar[tuple[tuple[str, str], ...]]

    @property
    def table(self) -> DataTable:
        return self.query_one(f"#{self.TABLE}", DataTable)

    def on_mount(self) -> None:
        table = self.table
        for key, label in self.COLUMNS:
            table.add_column(label, key=key)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self.table:
            event.stop()
            self.show_highlighted()

    def show_highlighted(self) -> None:
        raise NotImplementedError

    def at_cursor(self, items: Sequence[T]) -> T | None:
        """The item of the highlighted row, or None."""
        row = self.table.cursor_row
        return items[row] if items and 0 <= row < len(items) else None

    def keep_cursor(self, keys: Sequence[T], keep: T | None) -> None:
        """After a refill: the cursor back on the row of *keep* (one of *keys*, the rows' order), if listed."""
        if keep in keys:
            self.table.move_cursor(row=keys.index(keep))
