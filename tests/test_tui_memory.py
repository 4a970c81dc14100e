"""The deck's Memory tab with Pilot: search as you type, live updates from another process, Markdown."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import retry_until, run_cli
from tui_support import RecordingAttacher, open_deck, plain, run, until

from agentdeck.tui.app import make_app

SIZE = (130, 40)


@pytest.fixture(autouse=True)
def _no_stray_threads():
    """The tab's feed threads stop with the app."""
    import threading

    before = {t.ident for t in threading.enumerate()}
    yield
    retry_until(lambda: not [t for t in threading.enumerate() if t.ident not in before and t.is_alive()
                             and not t.daemon], timeout=20, what="feed threads stopped")


def test_search_as_you_type_finds_a_note_another_process_writes_and_renders_it(fake_repo):
    deck = open_deck(fake_repo)
    deck.memory.add("Run pytest with -x", body="stop at the first failure", tags=["testing"])
    attacher = RecordingAttacher()
    app = make_app(deck, attacher=attacher)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await pilot.press("3")
            pane = main.query_one("#memory-pane")
            await until(pilot, lambda: pane.notes, what="newest notes listed")
            assert pane.notes[0]["title"] == "Run pytest with -x"
            await until(pilot, lambda: "stop at the first failure" in pane.shown_markdown, what="note rendered")
            view = pane.query_one("#memory-note")
            assert "stop at the first failure" in view.source
            await until(pilot, lambda: view.query("MarkdownH1"), what="a Markdown heading")
            assert "user" in plain(pane.query_one("#memory-activity"))

            # / puts the keys in the search box: typing never fires a deck key (q quits, n opens a dialog…)
            await pilot.press("slash")
            assert pane.query_one("#memory-search").has_focus
            await pilot.press(*"quokka n")
            assert app.is_running and app.screen is main and not attacher.calls
            assert pane.query_one("#memory-search").value == "quokka n"
            await pilot.press("backspace", "backspace")
            await until(pilot, lambda: pane.query_text == "quokka" and not pane.notes
                        and "nothing matches" in plain(pane.query_one("#memory-status")), what="no match yet")
            before = pane.refreshes

            # Another process (an agent through the CLI) writes a matching note: it shows up on its own.
            t0 = time.monotonic()
            done = run_cli("memory", "add", "Quokka habitat", "--body", "Quokkas live on **Rottnest** island.",
                           "--tag", "fauna", cwd=fake_repo, env={"AGENTDECK_AGENT": "north-star"})
            assert done.returncode == 0, done.stderr
            await until(pilot, lambda: [n for n in pane.notes if n["title"] == "Quokka habitat"], timeout=10,
                        what="the new note found by the live search")
            lag = time.monotonic() - t0
            assert pane.refreshes > before and pane.query_one("#memory-search").value == "quokka"
            await until(pilot, lambda: "Rottnest" in pane.shown_markdown, what="the new note rendered")
            assert "# Quokka habitat" in view.source and "fauna" in view.source
            await until(pilot, lambda: any(a[0] == "north-star" for a in pane.activity), what="activity")
            assert "north-star" in plain(pane.query_one("#memory-activity"))
            print(f"from starting the writer process to the note listed: {lag:.2f}s")

            # esc hands the keys back: e edits the highlighted note in $EDITOR (through the attacher)
            await pilot.press("escape")
            assert pane.query_one("#notes").has_focus
            await pilot.press("e")
            await until(pilot, lambda: attacher.calls, what="editor opened")
            assert attacher.calls[0][-3:] == ["memory", "edit", pane.notes[0]["id"]]

            # an edit by another process re-renders the note shown
            note_id = pane.notes[0]["id"]
            code = ("import sys; from agentdeck.memory.store import MemoryStore; "
                    "MemoryStore.open(cwd=sys.argv[1]).update(sys.argv[2], body='Quokkas also live near Albany.')")
            done = subprocess.run([sys.executable, "-c", code, str(fake_repo), note_id], capture_output=True,
                                  text=True, env={**os.environ, "AGENTDECK_AGENT": "south-wind",
                                                  "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
            assert done.returncode == 0, done.stderr
            await until(pilot, lambda: "Albany" in pane.shown_markdown, timeout=10, what="the edit rendered")

    run(scenario, timeout=60)


def test_live_updates_wait_while_the_tab_is_hidden(fake_repo):
    deck = open_deck(fake_repo)
    app = make_app(deck, attacher=RecordingAttacher(), live=False)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await pilot.press("3")
            pane = main.query_one("#memory-pane")
            await until(pilot, lambda: pane.refreshes, what="first load")
            assert not pane.notes and "no notes yet" in plain(pane.query_one("#memory-status"))
            await until(pilot, lambda: pane._watcher is not None, what="watcher started")
            await pilot.press("1")
            count = pane.refreshes
            deck.memory.add("Hidden while written", body="x")
            await pilot.pause(0.6)
            assert pane.refreshes == count  # not visible: no work, just marked dirty
            await until(pilot, lambda: pane._dirty, what="marked dirty")
            await pilot.press("3")
            await until(pilot, lambda: [n for n in pane.notes if n["title"] == "Hidden while written"],
                        what="shown when the tab shows again")

    run(scenario, timeout=60)
