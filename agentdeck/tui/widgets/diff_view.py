"""The Diff tab: what the selected agent changed (branch + uncommitted work vs. its base)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual import work
from textual.containers import VerticalScroll
from textual.widgets import Static

from agentdeck.tui.context import deck_app
from agentdeck.tui.live import load_diff
from agentdeck.tui.messages import DiffLoaded

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
        self.wanted: str | None = None  # the agent whose diff the screen asked for last

    def compose(self):
        yield Static(Text("select an agent to see its diff", style="dim italic"), id="diff-body")

    def load(self, name: str | None, size: Any) -> None:
        """Show *name*'s diff, read in a thread worker; nothing to do when the shown one is for
        the same agent and diff size."""
        self.wanted = name
        if name is None:
            self.show_message("select an agent to see its diff")
            return
        key = (name, size)
        if self.loaded_for == key:
            return
        self.loaded_for = key
        self.show_loading(name)
        self._read(name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="diff")
    def _read(self, name: str) -> None:
        try:
            self.post_message(DiffLoaded(name, load_diff(deck_app(self).pool.get(), name)))
        except Exception as exc:
            self.post_message(DiffLoaded(name, None, error=f"cannot show the diff of {name}: {exc}"))

    def on_diff_loaded(self, message: DiffLoaded) -> None:
        message.stop()
        if message.name != self.wanted:
            return
        if message.error:
            self.show_message(message.error)
        else:
            self.show_diff(message.name, message.result)

    def show_loading(self, name: str) -> None:
        self.agent = name
        self.query_one("#diff-body", Static).update(Text(f"loading the diff of {name}…", style="dim italic"))

    def show_diff(self, name: str, result: Any) -> None:
        self.agent = name
        self.query_one("#diff-body", Static).update(render_diff(name, result))

    def show_message(self, text: str) -> None:
        self.query_one("#diff-body", Static).update(Text(text, style="dim italic"))
