"""The Preview tab: the selected agent's pane as captured, colours kept, bottom lines in view."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class PanePreview(Widget):
    DEFAULT_CSS = """
    PanePreview { height: 1fr; overflow: hidden; background: $background; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.agent: str | None = None
        self._lines: list[Text] = []
        self._placeholder = "no agent selected — press n to create one"
        self.paints = 0  # captures applied (tests, benchmarks)

    def show_capture(self, name: str, ansi: str) -> None:
        """Take a new capture (already known to differ from the last one)."""
        text = Text.from_ansi(ansi, no_wrap=True, end="")
        lines = text.split("\n", allow_blank=True)
        while lines and not lines[-1].plain.strip():
            lines.pop()
        self.agent = name
        self._lines = list(lines)
        self.paints += 1
        self.refresh()

    def show_message(self, message: str) -> None:
        self.agent = None
        self._lines = []
        self._placeholder = message
        self.refresh()

    @property
    def plain(self) -> str:
        return "\n".join(line.plain for line in self._lines)

    def render(self) -> Text:
        if not self._lines:
            return Text(self._placeholder, style="dim italic")
        height = max(1, self.size.height)
        shown = self._lines[-height:]
        out = Text("\n").join(shown)
        out.no_wrap = True
        out.overflow = "crop"
        return out
