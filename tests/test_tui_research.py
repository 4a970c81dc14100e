"""The deck's Research tab with Pilot over a real (short) research run on the synthetic lab."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support import retry_until
from tui_support import RecordingAttacher, TickCounter, notices, open_deck, plain, run, text_screen_shown, until

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import TRAIN, make_lab, research_for, set_constants

from agentdeck.tui.app import make_app
from agentdeck.tui.widgets import research_text as rt

SIZE = (130, 44)


@pytest.fixture(autouse=True)
def _no_stray_threads():
    """The tab's feed threads stop with the app."""
    import threading

    before = {t.ident for t in threading.enumerate()}
    yield
    retry_until(lambda: not [t for t in threading.enumerate() if t.ident not in before and t.is_alive()
                             and not t.daemon], timeout=20, what="feed threads stopped")


def _state(pane) -> str | None:
    return pane.status["state"] if pane.status else None


def _trials(pane, **match) -> list[dict]:
    if not pane.status:
        return []
    return [t for t in pane.status["trials"] if all(t[k] == v for k, v in match.items())]


def test_research_tab_shows_a_live_run_and_pause_resume_stop_work(tmp_path):
    # Each job takes ~0.6 s and the run has trials to spare, so it is still going while the keys are
    # pressed (with 3, a loaded machine could finish the run during the pause: "done", never resumed).
    repo = make_lab(tmp_path / "repo", repeats=1, train=set_constants(TRAIN, {"_SLEEP": "0.6"}))
    research = research_for(repo)
    tag = research.start("tui", trials=10)
    research.run_detached(tag)
    deck = open_deck(repo)
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            pane = main.query_one("#research-pane")
            assert pane.feed.polls == 0  # hidden tab: the ledger is not read
            await pilot.press("4")
            await until(pilot, lambda: pane.status and pane.status["tag"] == "tui", what="the run shown")
            await until(pilot, lambda: _trials(pane, kind="baseline", status="keep"), timeout=15, what="baseline")
            summary = plain(pane.query_one("#research-summary"))
            assert "research tui" in summary and "baseline 18" in summary
            board = pane.query_one("#trials")
            assert [c.plain if hasattr(c, "plain") else c for c in board.get_row(str(pane.order[0]))][1] in (
                "baseline", "proposal")

            # p pauses: running jobs finish, no new one starts; the tab says so
            await until(pilot, lambda: _trials(pane, kind="proposal"), timeout=15, what="a proposal")
            await pilot.press("p")
            await until(pilot, lambda: _state(pane) == "paused", timeout=15, what="paused")
            assert "[paused]" in plain(pane.query_one("#research-summary"))
            assert research.ledger.control("tui") == "pause"
            await until(pilot, lambda: not _trials(pane, status="running"), timeout=10, what="jobs drained")
            count, polls = len(pane.status["trials"]), pane.feed.polls
            # a negative check: the tab reads the ledger twice more (about a second) and nothing new started
            await until(pilot, lambda: pane.feed.polls >= polls + 2, what="two more reads of the ledger")
            assert len(pane.status["trials"]) == count and _state(pane) == "paused"

            # p again resumes; a new trial runs
            await pilot.press("p")
            await until(pilot, lambda: _state(pane) == "running", timeout=25, what="resumed")
            await until(pilot, lambda: len(pane.status["trials"]) > count, timeout=15, what="a new trial")

            # the selected trial's log and diff; the plot and the lanes
            measured = await until(pilot, lambda: [t for t in _trials(pane, kind="proposal")
                                                   if t["status"] in ("keep", "discard")], timeout=15,
                                   what="a measured proposal")
            board.move_cursor(row=pane.order.index(measured[0]["id"]))
            await until(pilot, lambda: "score:" in pane.log_text and "train.py" in pane.diff, timeout=10,
                        what="log and diff of the selected trial")
            assert "log of #" in plain(pane.query_one("#research-log"))
            assert "best so far" in plain(pane.query_one("#research-plot"))
            assert "GPU 0" in plain(pane.query_one("#research-lanes"))

            # S asks first; confirming stops the run
            await pilot.press("S")
            await until(pilot, lambda: text_screen_shown(app), what="stop confirmation")
            assert "Stop research run tui?" in plain(app.screen.query_one("#text-body"))
            await pilot.click("#ok")
            await until(pilot, lambda: _state(pane) in ("stopped", "done"), timeout=20, what="stopped")
            assert research.ledger.run("tui").state == _state(pane)
            assert "research tui" in notices(app)
            await pilot.press("p")  # nothing to pause any more: said, not done
            await until(pilot, lambda: "nothing to pause" in notices(app), what="refusal")

            # leaving the tab stops the polling: hidden, the feed goes on waking without reading
            ticks = TickCounter(pane.feed)
            await pilot.press("1")
            await until(pilot, lambda: not pane.feed.visible.is_set(), what="the research feed hidden")
            await ticks.rounds(pilot, 2)  # a read begun before the switch has ended
            polls = pane.feed.polls
            await ticks.rounds(pilot, 3)
            assert pane.feed.polls == polls

    try:
        run(scenario, timeout=90)
    finally:
        if research.loop_alive("tui"):
            research.stop("tui")
        research.close()


def test_research_tab_without_a_run_says_how_to_start_one(fake_repo):
    deck = open_deck(fake_repo)
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=(130, 40)) as pilot:
            pane = app.main_screen.query_one("#research-pane")
            await pilot.press("4")
            await until(pilot, lambda: "no research run yet" in plain(pane.query_one("#research-summary")),
                        what="no run")
            for key in ("p", "S", "P"):
                await pilot.press(key)
            assert type(app.screen).__name__ != "TextScreen"
            assert notices(app).count("no research run to") == 3

    run(scenario, timeout=30)


def test_leaderboard_plot_and_lanes_render_a_status():
    status = {
        "tag": "t", "metric": "score", "direction": "min", "slots": ["0", "1"],
        "baseline": {"metric": 18.0, "runs": 1, "noise": 0.0}, "best": {"id": 3, "metric": 5.0, "commit": "c3"},
        "state": "running", "proposals": 3, "trials_limit": 5, "message": "", "branch": "research/t",
        "trials": [
            {"id": 1, "kind": "baseline", "status": "keep", "reason": "", "metric": 18.0, "commit": "c1",
             "description": "baseline", "gpu": "0", "seconds": 1.0},
            {"id": 2, "kind": "proposal", "status": "discard", "reason": "not better", "metric": 20.0,
             "commit": "c2", "description": "X=1", "gpu": "1", "seconds": 1.0},
            {"id": 3, "kind": "proposal", "status": "keep", "reason": "", "metric": 5.0, "commit": "c3",
             "description": "X=6", "gpu": "0", "seconds": 1.0},
            {"id": 4, "kind": "proposal", "status": "crash", "reason": "exit 3", "metric": None, "commit": "c4",
             "description": "boom", "gpu": "1", "seconds": 0.2},
            {"id": 5, "kind": "proposal", "status": "running", "reason": "", "metric": None, "commit": "c5",
             "description": "Y=2", "gpu": "0", "seconds": None},
        ],
    }
    assert [t["id"] for t in rt.leaderboard(status)] == [5, 3, 1, 2, 4]
    points, best = rt.series(status)
    assert [p[0] for p in points] == [1, 2, 3] and best == [18.0, 18.0, 5.0]
    legend, grid = rt.plot(status, 40, 6).plain.split("\n", 1)
    assert "best so far" in legend and grid.count("●") == 2 and grid.count("○") == 1
    rows = grid.splitlines()
    assert rows[0].startswith("20 ┤") and "○" in rows[0]  # the worst value on top (max), the best at the bottom
    assert rows[-2].startswith(" 5 ┤") and rows[-2].rstrip().endswith("●") and rows[-1].strip() == "#1" + \
        rows[-1].strip()[2:] and rows[-1].rstrip().endswith("#3")
    assert "●───" in grid  # the best-so-far line runs from the baseline on
    lanes = rt.lanes(status).plain.splitlines()
    assert lanes[0].startswith("GPU 0") and "▶ #5" in lanes[0] and lanes[0].rstrip().endswith("B█▸")
    assert lanes[1].startswith("GPU 1") and "idle" in lanes[1] and lanes[1].rstrip().endswith("▄✗")
    assert rt.delta_text(5.0, 18.0, "min").plain == "-13" and rt.delta_text(5.0, 18.0, "min").style == "green"
    assert rt.delta_text(20.0, 18.0, "min").style == "red"
    assert "[running]" in rt.summary(status).plain and "best 5 (#3)" in rt.summary(status).plain


def test_promote_asks_then_merges_the_best_trial(tmp_path):
    from research_support import ScriptedProposer
    from support import git

    repo = make_lab(tmp_path / "repo", repeats=1)
    research = research_for(repo)
    tag = research.start("prom", trials=2)
    research.run(tag, proposer=ScriptedProposer([{"set": {"X": "5.0"}}, {"set": {"Y": "-9.0"}}]))
    best = research.status(tag)["best"]
    assert best["metric"] == 6.0
    deck = open_deck(repo)
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            pane = app.main_screen.query_one("#research-pane")
            await pilot.press("4")
            await until(pilot, lambda: _state(pane) == "done", what="the finished run")
            assert pane.order[0] == best["id"]  # the leaderboard puts the best first
            assert "★" in pane.query_one("#trials").get_row(str(best["id"]))[0].plain
            await pilot.press("P")
            await until(pilot, lambda: text_screen_shown(app), what="promote confirmation")
            body = plain(app.screen.query_one("#text-body"))
            assert f"Promote trial #{best['id']} of prom" in body and "score: 6" in body
            await pilot.press("escape")  # cancel: nothing merged
            await pilot.pause(0.2)
            assert git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "research/prom~1")
            await pilot.press("P")
            await until(pilot, lambda: text_screen_shown(app), what="promote confirmation")
            await pilot.click("#ok")
            await until(pilot, lambda: "promoted trial" in notices(app), timeout=15, what="promoted")
            assert git(repo, "merge-base", "--is-ancestor", best["commit"], "HEAD") == ""

    try:
        run(scenario, timeout=60)
    finally:
        research.close()
