"""The deck over several repositories, fork (`f`), `w` across repositories, and token usage in the deck.

Real git repositories, a real tmux server, the scripted fake agent (tests/fake_agent.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAKE_CONFIG
from support import make_repo
from tui_support import RecordingAttacher, notices, open_deck, run, shown_cells, status, until

from agentdeck.tui.app import make_app, open_decks
from agentdeck.tui.multideck import MultiDeck, split_key
from agentdeck.tui.usage_feed import UsageSummary

SIZE = (140, 40)


def second_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "other", {"README.md": "# other\n", ".agentdeck.toml": FAKE_CONFIG})


def table_keys(app) -> list[str]:
    return list(app.main_screen.query_one("#agents")._order)


def test_open_decks_one_two_and_the_same_repository_twice(fake_repo, tmp_path):
    other = second_repo(tmp_path)
    one = open_decks([str(fake_repo)])
    assert not isinstance(one, MultiDeck)
    one.close()
    same = open_decks([str(fake_repo), str(fake_repo / "src")])  # one repository, given twice
    assert not isinstance(same, MultiDeck)
    same.close()
    multi = open_decks([str(fake_repo), str(other)])
    try:
        assert isinstance(multi, MultiDeck) and multi.labels == ["repo", "other"]
        assert split_key("other/feat/x") == ("other", "feat/x")
        with pytest.raises(Exception, match="no repository 'nope'"):
            multi.get("nope/alpha")
    finally:
        multi.close()


def test_two_repositories_grouped_and_every_action_on_the_agents_own_repo(fake_repo, tmp_path):
    other = second_repo(tmp_path)
    deck_a, deck_b = open_deck(fake_repo), open_deck(other)
    deck_a.new("alpha")
    deck_b.new("alpha")  # the same name in the other repository: keys keep them apart
    deck_b.new("beta")
    multi = open_decks([str(fake_repo), str(other)])
    app = make_app(multi, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: len(main.rows) == 3, what="three rows")
            # grouped: a header row per repository, then its agents (short names shown)
            assert table_keys(app) == ["\x00group:repo", "repo/alpha", "\x00group:other", "other/alpha",
                                       "other/beta"]
            table = main.query_one("#agents")
            header = [c.plain for c in table.get_row("\x00group:other")]
            assert header[1] == "▾ other" and header[2] == "2 agents"
            assert shown_cells(app, "other/alpha")[1] == "alpha"
            assert "repo + other" in main.query_one("#header").header_text().plain
            assert main.selected == "repo/alpha"  # the cursor starts on an agent, not on a header
            await pilot.press("down")  # skips the "other" header row
            assert main.selected == "other/alpha"
            await pilot.press("up")
            assert main.selected == "repo/alpha"
            await until(pilot, lambda: all(status(app, k) == "idle" for k in main.by_name), timeout=20,
                        what="all idle")
            # send goes to the selected agent's own repository
            await pilot.press("down")
            assert main.selected == "other/alpha"
            await pilot.press("s")
            await pilot.press(*"write sent.txt hello")
            await pilot.press("enter")
            wt_b = Path(deck_b.get("alpha").worktree)
            wt_a = Path(deck_a.get("alpha").worktree)
            await until(pilot, lambda: (wt_b / "sent.txt").exists(), what="file written in other/alpha")
            assert not (wt_a / "sent.txt").exists()
            await until(pilot, lambda: shown_cells(app, "other/alpha")[5] == "+0 -0"
                        or shown_cells(app, "other/alpha")[5].startswith("+"), what="diff size")
            # w jumps to the waiting agent of the other repository; a answers it there
            await pilot.press("up")
            assert main.selected == "repo/alpha"
            deck_b.send("beta", "ask yes.txt")
            await until(pilot, lambda: status(app, "other/beta") == "waiting", what="other/beta waiting")
            assert "other/beta is waiting" in notices(app)
            await pilot.press("w")
            assert main.selected == "other/beta"
            await pilot.press("a")
            wt_beta = Path(deck_b.get("beta").worktree)
            await until(pilot, lambda: (wt_beta / "yes.txt").exists(), what="approved in other/beta")
            # new agents go to the selected agent's repository
            assert multi.focus.label == "other"
            # kill: the plan and the kill act on other/beta only
            await pilot.press("x")
            await until(pilot, lambda: type(app.screen).__name__ == "KillScreen", what="kill dialog")
            assert "other/beta" in str(app.screen.plan.name)
            await pilot.press("escape")
            # attach resolves the other repository's tmux session
            await pilot.press("enter")
            await until(pilot, lambda: app.attacher.calls, what="attach argv")
            assert deck_b.get("beta").session in " ".join(app.attacher.calls[-1])

    try:
        run(scenario)
    finally:
        multi.close()


def test_fork_dialog_forks_the_selected_agent_with_its_uncommitted_work(fake_repo, tmp_path):
    other = second_repo(tmp_path)
    deck_b = open_deck(other)
    deck_b.new("alpha")
    open_deck(fake_repo).new("alpha")
    multi = open_decks([str(fake_repo), str(other)])
    app = make_app(multi, attacher=RecordingAttacher())
    wt = Path(deck_b.get("alpha").worktree)
    (wt / "draft.txt").write_text("uncommitted work\n")

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: len(main.rows) == 2, what="rows")
            assert main.select_agent("other/alpha")
            await pilot.press("f")
            dialog = app.screen
            assert type(dialog).__name__ == "ForkScreen"
            assert dialog.query_one("#name").value == "alpha-fork"
            dialog.query_one("#name").value = "alpha"  # taken in that repository: refused inline
            await pilot.press("enter")
            await until(pilot, lambda: "already exists" in str(dialog.query_one("#fork-error").render()),
                        what="inline error")
            assert app.screen is dialog
            dialog.query_one("#name").value = "alpha-2"
            dialog.query_one("#prompt").value = "write forked.txt yes"
            await pilot.press("enter")
            await until(pilot, lambda: app.screen is main, timeout=30, what="dialog closed")
            await until(pilot, lambda: main.selected == "other/alpha-2", what="fork selected")
            rec = deck_b.get("alpha-2")
            assert (Path(rec.worktree) / "draft.txt").read_text() == "uncommitted work\n"
            await until(pilot, lambda: (Path(rec.worktree) / "forked.txt").exists(), timeout=15,
                        what="fork ran its prompt")
            assert open_deck(fake_repo).store.get_agent("alpha-2") is None  # not in the other repository
            # escape cancels
            await pilot.press("f")
            await pilot.press("escape")
            assert app.screen is main

    try:
        run(scenario)
    finally:
        multi.close()


def test_fork_in_a_single_repository_deck(fake_repo):
    deck = open_deck(fake_repo)
    deck.new("north")
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: main.rows, what="rows")
            await pilot.press("f")
            await pilot.press("enter")  # the suggested name
            await until(pilot, lambda: main.selected == "north-fork", timeout=30, what="fork listed")
            assert deck.get("north-fork").extra.get("forked_from") == "north"
            assert "forked north into north-fork" in notices(app)

    run(scenario)


def test_usage_in_header_and_list(fake_repo, tmp_path):
    """The usage feed's numbers reach the header and a TOKENS column (the column appears with data)."""
    other = second_repo(tmp_path)
    open_deck(fake_repo).new("alpha")
    open_deck(other).new("beta")
    multi = open_decks([str(fake_repo), str(other)])
    calls = []

    def reader(deck):
        calls.append(deck)
        return UsageSummary({"repo/alpha": 12_345, "other/beta": None}, 1500.0, 0.42)

    app = make_app(multi, attacher=RecordingAttacher(), usage_interval=0.2)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: len(main.rows) == 2, what="rows")
            assert "tok/min" not in main.query_one("#header").header_text().plain
            assert main.usage_feed is not None  # agentdeck.usage is there
            main.usage_feed.reader = reader
            main.usage_feed.poke()
            await until(pilot, lambda: "tok/min" in main.query_one("#header").header_text().plain,
                        what="usage in header")
            text = main.query_one("#header").header_text().plain
            assert "1,500 tok/min" in text and "$0.42" in text
            await until(pilot, lambda: len(shown_cells(app, "repo/alpha")) == 8, what="TOKENS column")
            assert shown_cells(app, "repo/alpha")[7] == "12.3k"
            assert shown_cells(app, "other/beta")[7] == "-"
            assert isinstance(calls[0], MultiDeck)

    try:
        run(scenario)
    finally:
        multi.close()


def test_read_usage_over_real_decks_has_every_agent(fake_repo, tmp_path):
    pytest.importorskip("agentdeck.usage")
    from agentdeck.tui.usage_feed import read_usage

    other = second_repo(tmp_path)
    open_deck(fake_repo).new("alpha")
    open_deck(other).new("beta")
    multi = open_decks([str(fake_repo), str(other)])
    try:
        summary = read_usage(multi)
        assert set(summary.tokens) == {"repo/alpha", "other/beta"}  # fake agents: no records, None
    finally:
        multi.close()


def test_bare_agentdeck_with_several_repo_options_opens_one_deck_over_them(monkeypatch, fake_repo, tmp_path):
    import agentdeck.tui.app as tui_app
    from agentdeck import cli

    other = second_repo(tmp_path)
    seen = []
    monkeypatch.setattr(tui_app, "run_deck", lambda repos: seen.append(repos) or 0)
    assert cli.main(["--repo", str(fake_repo), f"--repo={other}"]) == 0
    assert seen == [[str(fake_repo), str(other)]]  # in the order given: the deck's group order
    assert cli._only_repo_options(["--repo", "a", "--repo", "b"])
    assert not cli._only_repo_options(["--repo", "a", "ls"]) and not cli._only_repo_options(["--repo"])


def test_user_config_repos_open_one_deck_over_several(tmp_path, isolated_home, monkeypatch):
    from support import make_repo

    from agentdeck.tui.app import open_decks
    from agentdeck.tui.multideck import MultiDeck

    here = make_repo(tmp_path / "here")
    other = make_repo(tmp_path / "other")
    (isolated_home / "config.toml").write_text(f'[deck]\nrepos = ["{other}"]\n')
    monkeypatch.chdir(here)
    deck = open_decks(None)
    try:
        assert isinstance(deck, MultiDeck)
        roots = sorted(str(d.repo.root) for d in deck.decks.values())
        assert roots == sorted([str(here.resolve()), str(other.resolve())])
    finally:
        deck.close()
    (isolated_home / "config.toml").write_text("")
    single = open_decks(None)
    try:
        assert not isinstance(single, MultiDeck) and single.repo.root == here.resolve()
    finally:
        single.close()
