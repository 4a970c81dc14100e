"""Snapshots (pytest-textual-snapshot) of the deck's main screen, new-agent dialog, kill confirmation and help.

Deterministic by construction: fixed agents in a real store, a frozen clock,
fixed pane content and diff sizes, no tmux and no status watcher
(``FrozenDeck``).  Update after an intended change with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import make_repo
from tui_support import RecordingAttacher, until

from agentdeck.deck import Deck
from agentdeck.store import AgentRecord, utc_iso
from agentdeck.tui.app import make_app

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SIZE = (120, 34)
AGENTS = [  # name, definition, status, age (s), kept, (added, removed)
    ("north-star", "claude", "working", 3 * 3600 + 60, False, (120, 14)),
    ("south-wind", "codex", "waiting", 47 * 60, False, (33, 2)),
    ("east-tide", "claude", "idle", 5 * 60, False, (0, 0)),
    ("west-gate", "aider", "exited", 2 * 86400, True, (8, 8)),
    ("fresh-start", "gemini", "starting", 4, False, (0, 0)),
]
SIZES = {name: size for name, *_rest, size in AGENTS}
PANE = ("\x1b[1mClaude Code\x1b[0m  \x1b[2m~/shop\x1b[0m\n\n"
        "\x1b[32m●\x1b[0m Reading src/cart.py\n"
        "\x1b[32m●\x1b[0m Editing src/cart.py (+12 -3)\n"
        "\x1b[33m✻ Thinking… (esc to interrupt)\x1b[0m\n")


class FrozenDeck(Deck):
    """A real Deck (store, config) whose outside world stands still: no tmux, no watcher."""

    def refresh(self, settle: bool = True) -> None:
        return None

    def peek(self, name: str, colors: bool = False) -> str:
        self.get(name)
        return PANE

    def agent_changes(self, rec):
        if rec.name == "south-wind":
            return ["src/cart.py", "src/pricing.py", "tests/test_cart.py"], 2
        return [], 0


@pytest.fixture
def frozen_app(tmp_path):
    repo = make_repo(tmp_path / "shop")
    deck = FrozenDeck.open(repo)
    base = deck.repo.root
    for name, definition, status, age, kept, _size in AGENTS:
        deck.store.insert_agent(AgentRecord(
            name=name, slug=name, definition=definition, kind=definition, branch=f"agentdeck/{name}",
            base_branch="main", base_commit="0" * 40,
            worktree=f"/home/dev/.local/share/agentdeck/worktrees/shop/{name}", session=f"ad-000000-{name}",
            created_at=utc_iso(NOW - age), status=status, status_at=NOW - 1, kept=kept))
    assert base.name == "shop"
    return make_app(deck, attacher=RecordingAttacher(), clock=lambda: NOW,
                    size_fn=lambda d, name: SIZES[name], watch_worktrees=False)


async def _loaded(pilot) -> None:
    app = pilot.app
    main = app.main_screen
    await until(pilot, lambda: len(main.rows) == len(AGENTS) and len(main.sizes) == len(AGENTS),
                what="rows and sizes")
    await until(pilot, lambda: "Thinking" in main.query_one("#pane").plain, what="preview")


def test_main_screen(snap_compare, frozen_app):
    async def run_before(pilot) -> None:
        await _loaded(pilot)
        pilot.app.main_screen.select_agent("south-wind")  # a waiting agent: approve/deny apply
        await pilot.pause(0.3)

    assert snap_compare(frozen_app, terminal_size=SIZE, run_before=run_before)


def test_new_agent_dialog(snap_compare, frozen_app):
    async def run_before(pilot) -> None:
        await _loaded(pilot)
        await pilot.press("n", *"south-wind")  # a name in use: shown inline
        for box in pilot.app.screen.query("Input"):
            box.cursor_blink = False  # a blinking cursor would make the picture random
        await pilot.pause(0.2)

    assert snap_compare(frozen_app, terminal_size=SIZE, run_before=run_before)


def test_kill_confirmation(snap_compare, frozen_app):
    async def run_before(pilot) -> None:
        await _loaded(pilot)
        pilot.app.main_screen.select_agent("south-wind")
        await pilot.press("x")
        await until(pilot, lambda: type(pilot.app.screen).__name__ == "KillScreen", what="kill dialog")
        await pilot.pause(0.2)

    assert snap_compare(frozen_app, terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare, frozen_app):
    async def run_before(pilot) -> None:
        await _loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(frozen_app, terminal_size=(120, 44), run_before=run_before)


def test_snapshot_fixture_is_what_the_deck_lists(frozen_app):
    """The frozen deck lists the fixed agents (guards the snapshots' premise)."""
    deck = frozen_app.deck
    assert [r.name for r in deck.records()] == [a[0] for a in sorted(AGENTS, key=lambda a: -a[3])]
    assert Path(deck.repo.root).name == "shop"
