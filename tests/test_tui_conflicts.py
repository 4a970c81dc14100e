"""The conflict radar's marks in the deck's list (after a worktree changed, in the diff-size worker)."""

from __future__ import annotations

from pathlib import Path

from tui_support import RecordingAttacher, open_deck, run, shown_cells, until

from agentdeck.tui.app import make_app
from agentdeck.tui.widgets.agent_list import radar_cell

SIZE = (150, 30)


def _radar(app, name: str) -> str:
    cells = shown_cells(app, name)
    return cells[-1] if app.main_screen.query_one("#agents").radar is not None else ""


def test_conflicting_agents_are_marked_and_others_are_not(fake_repo):
    deck = open_deck(fake_repo)
    for name in ("alpha", "bravo", "charlie"):
        deck.new(name)
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: len(main.rows) == 3, what="three rows")
            await until(pilot, lambda: main.diff_feed.radar_runs >= 1, timeout=15, what="first radar run")
            assert main.query_one("#agents").radar is None  # nothing overlaps yet: no column
            (Path(deck.get("alpha").worktree) / "README.md").write_text("# alpha was here\n")
            (Path(deck.get("bravo").worktree) / "README.md").write_text("# bravo was here\n")
            (Path(deck.get("charlie").worktree) / "notes.txt").write_text("charlie's own file\n")
            # Nothing watches worktree folders (DiffFeed): a change is looked at when the agent's status
            # moves, while it works, on selection or after a deck action. These edits came from outside
            # any agent, so mark them the way selection and actions do.
            for name in ("alpha", "bravo", "charlie"):
                main.diff_feed.touch(name)
            await until(pilot, lambda: "⚠ conflicts with bravo" in _radar(app, "alpha")
                        and "⚠ conflicts with alpha" in _radar(app, "bravo"), timeout=20, what="conflict marks")
            await until(pilot, lambda: main.sizes.get("charlie") == (1, 0), timeout=10, what="charlie's size")
            assert _radar(app, "charlie") == ""
            assert shown_cells(app, "alpha")[5] == "+1 -1"  # the +/- cell is left as it was
            # bravo takes back its change: no overlap any more, the marks go away
            (Path(deck.get("bravo").worktree) / "README.md").write_text("# test\n")
            main.diff_feed.touch("bravo")
            await until(pilot, lambda: main.query_one("#agents").radar is None, timeout=20, what="marks cleared")

    run(scenario)


def test_radar_cell_words_and_colours():
    conflict = radar_cell({"overlaps": ["<base>", "b"], "conflicts": ["<base>", "b"]})
    assert conflict.plain == "⚠ conflicts with b +1" and "red" in str(conflict.style)
    overlap = radar_cell({"overlaps": ["b"], "conflicts": []})
    assert overlap.plain == "≈ overlaps b" and "yellow" in str(overlap.style)
    assert radar_cell({"overlaps": ["repo/<base>"], "conflicts": []}, grouped=True).plain == "≈ overlaps base"
    assert radar_cell({"overlaps": ["other/b"], "conflicts": []}, grouped=True).plain == "≈ overlaps b"
    assert radar_cell(None).plain == ""
