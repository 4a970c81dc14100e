"""A one-line footer of the keys that apply now.

Like Textual's Footer (it reads ``screen.active_bindings``, so ``check_action``
and ``[keymap]`` decide what shows) but painted as one line of text: a
refresh costs one render instead of rebuilding a widget per key, which keeps
key-to-screen latency low while statuses change.
"""

from __future__ import annotations

from rich.text import Text
from textual.screen import Screen
from textual.widgets import Static


class KeyBar(Static):
    DEFAULT_CSS = """
    KeyBar { dock: bottom; height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._shown: str | None = None

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.call_after_refresh(self.refresh_keys)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen:
            self.refresh_keys()

    # When the line is too long for the terminal, these go first (help and quit always stay): binding ids.
    DROP_FIRST = ("merge", "commit", "filter", "restart", "next_waiting", "send", "new_agent", "kill", "attach")

    def items(self) -> tuple[list[tuple[str, str, str]], str | None]:
        """([(binding id, key, description)], palette key) for the keys that apply now."""
        app = self.app
        items: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        palette = None
        for _key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or binding.system:
                continue
            if binding.action in ("command_palette", "app.command_palette"):
                palette = app.get_key_display(binding)
                continue
            ident = binding.id or binding.action
            if not binding.show or ident in seen:  # one item per binding id, however many keys it has
                continue
            seen.add(ident)
            items.append((ident, app.get_key_display(binding), binding.description))
        return items, palette

    def keys_text(self, width: int | None = None) -> Text:
        items, palette = self.items()
        width = width if width is not None else max(20, self.size.width - 2)

        def length(chosen: list[tuple[str, str, str]]) -> int:
            tail = len(f"   {palette} palette") if palette else 0
            return sum(len(k) + 1 + len(d) for _a, k, d in chosen) + 2 * max(0, len(chosen) - 1) + tail

        for ident in self.DROP_FIRST:
            if length(items) <= width:
                break
            items = [item for item in items if item[0] != ident]
        line = Text(no_wrap=True, overflow="ellipsis")
        for _action, key, description in items:
            if line:
                line.append("  ")
            line.append(key, style="bold")
            line.append(f" {description}")
        if palette:
            line.append(f"   {palette} palette", style="dim")
        return line

    def on_resize(self) -> None:
        self.refresh_keys()

    def refresh_keys(self) -> None:
        text = self.keys_text()
        if text.plain != self._shown:
            self._shown = text.plain
            self.update(text)
