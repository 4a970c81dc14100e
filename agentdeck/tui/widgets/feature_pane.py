"""A tab whose feature arrives with a later issue (Memory, Research): says what comes with what."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class FeaturePane(Static):
    DEFAULT_CSS = """
    FeaturePane { height: 1fr; padding: 1 2; color: $text-muted; }
    """

    def __init__(self, title: str, comes_with: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.comes_with = comes_with

    def on_mount(self) -> None:
        self.update(Text.assemble((self.title, "bold"), "\n\n", (f"comes with {self.comes_with}", "italic")))
