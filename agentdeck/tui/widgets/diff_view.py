"""The Diff tab: what the selected agent changed (branch + uncommitted work vs. its base)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

MAX_LINES = 4000  # beyond this, point to `agentdeck diff`


def render_diff(name: str, result: Any) -> Any:
    """A rich renderable of an agent's diff (a review DiffResult)."""
    files = list(getattr(result, "files", []) or [])
    if not files:
        return Text(f"{name} has no changes against its base yet", style="dim italic")
    head = Text.assemble(
        (f"{len(files)} file{'s' if len(files) != 1 else ''} changed", "bold"), "  ",
        (f"+{result.added}", "green"), " ", (f"-{result.removed}", "red"),
        ("  (includes uncommitted work)" if getattr(result, "uncommitted", False) else "", "dim"),
    )
    parts: list[Any] = [head]
    for f in files:
        counts = "binary" if f.binary else f"+{f.added} -{f.removed}"
        parts.append(Text(f"  {f.status:<9} {f.display_path}  {counts}"))
    parts.append(Text(""))
    from agentdeck.review.diff import rich_renderable

    shown = 0
    for index, f in enumerate(files):
        size = sum(len(h.lines) for h in getattr(f, "hunks", []))
        if shown + size > MAX_LINES:
            parts.append(Text(f"… {len(files) - index} more file(s): see `agentdeck diff {name}`", style="dim"))
            break
        shown += size
        parts.append(rich_renderable(f, theme="ansi_dark"))
    return Group(*parts)


class DiffView(VerticalScroll):
    DEFAULT_CSS = """
    DiffView { height: 1fr; }
    DiffView > Static { width: auto; min-width: 100%; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.agent: str | None = None
        self.loaded_for: tuple[str, Any] | None = None  # (name, size) the shown diff belongs to

    def compose(self):
        yield Static(Text("select an agent to see its diff", style="dim italic"), id="diff-body")

    def show_loading(self, name: str) -> None:
        self.agent = name
        self.query_one("#diff-body", Static).update(Text(f"loading the diff of {name}…", style="dim italic"))

    def show_diff(self, name: str, result: Any) -> None:
        self.agent = name
        self.query_one("#diff-body", Static).update(render_diff(name, result))

    def show_message(self, text: str) -> None:
        self.query_one("#diff-body", Static).update(Text(text, style="dim italic"))
