"""The deck's one-line header: repository, agent counts, waiting agents standing out."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from agentdeck.tui.model import Counts


class HeaderBar(Static):
    DEFAULT_CSS = """
    HeaderBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    def __init__(self, repo_name: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.repo_name = repo_name
        self.counts = Counts()
        self.note = ""
        self.usage: tuple[float | None, float | None] | None = None  # (tokens/min, cost USD); None: unknown

    def set_usage(self, tokens_per_minute: float | None, cost_usd: float | None) -> None:
        usage = None if tokens_per_minute is None and cost_usd is None else (tokens_per_minute, cost_usd)
        if usage != self.usage:
            self.usage = usage
            self.update(self.header_text())

    def on_mount(self) -> None:
        self.update(self.header_text())

    def set_counts(self, counts: Counts, note: str = "") -> None:
        if counts == self.counts and note == self.note:
            return
        self.counts, self.note = counts, note
        self.update(self.header_text())

    def header_text(self) -> Text:
        c = self.counts
        line = Text.assemble(("agentdeck", "bold"), "  ", (self.repo_name, "bold cyan"), "  ")
        line.append(f"{c.total} agent{'s' if c.total != 1 else ''}")
        if c.waiting:
            line.append("  ")
            line.append(f" {c.waiting} waiting ", style="bold black on yellow")
        if c.working:
            line.append(f"  {c.working} working", style="green")
        if c.idle:
            line.append(f"  {c.idle} idle")
        if c.exited:
            line.append(f"  {c.exited} exited", style="red")
        if self.usage is not None:
            tpm, cost = self.usage
            line.append(f"   {tpm or 0:,.0f} tok/min", style="cyan")
            if cost is not None:
                line.append(f"  ${cost:,.2f}", style="cyan")
        if self.note:
            line.append(f"   {self.note}", style="italic dim")
        return line
