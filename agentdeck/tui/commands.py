"""The command palette (ctrl+p): every deck action, and every per-agent action for every agent."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from agentdeck.tui.bindings import BY_ID, KEYS

# Global actions (text shown in the palette, binding id of the same key).
GLOBAL = (
    ("new agent", "new_agent"),
    ("next waiting agent", "next_waiting"),
    ("filter agents", "filter"),
    ("compare selected agents", "compare"),
    ("broadcast to agents", "broadcast"),
    ("preview tab", "tab_preview"),
    ("diff tab", "tab_diff"),
    ("memory tab", "tab_memory"),
    ("research tab", "tab_research"),
    ("help: every key", "help"),
    ("quit the deck (agents keep running)", "quit"),
)


def per_agent_commands(names: list[str]) -> Iterator[tuple[str, str, str, str]]:
    """(text, binding id, agent, help) for every per-agent action of every agent."""
    for name in names:
        for spec in KEYS:
            if spec.per_agent:
                yield f"{spec.description} {name}", spec.id, name, spec.help


class DeckCommands(Provider):
    """Commands for the deck; each runs the same action as its key."""

    def _main(self) -> Any:
        return getattr(self.app, "main_screen", None)

    def _commands(self, names: list[str] | None = None) -> Iterator[tuple[str, Any, str]]:
        main = self._main()
        if main is None:
            return
        for text, binding_id in GLOBAL:
            yield text, partial(main.run_palette_action, binding_id, None), BY_ID[binding_id].help
        agents = [r.name for r in main.rows] if names is None else names
        for text, binding_id, name, help_text in per_agent_commands(agents):
            yield text, partial(main.run_palette_action, binding_id, name), help_text

    async def discover(self) -> Hits:
        """Before typing: the deck's commands and the selected agent's."""
        main = self._main()
        selected = [main.selected] if main is not None and main.selected else []
        for text, callback, help_text in self._commands(selected):
            yield DiscoveryHit(text, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self._commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback, help=help_text)
