"""The deck (Textual) driven with Pilot: real git, real tmux, the scripted fake agent."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support import git, retry_until
from tui_support import (
    RecordingAttacher,
    active_keys,
    kill_screen_shown,
    notices,
    open_deck,
    plain,
    run,
    shown_cells,
    status,
    text_screen_shown,
    until,
)

from agentdeck.tui.app import make_app

SIZE = (130, 40)


def tmux_alive(session: str) -> bool:
    return subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "has-session", "-t", f"={session}"],
                          capture_output=True).returncode == 0


def palette_choice(app) -> str:
    """The command palette's highlighted command, as text ('' while it has none)."""
    from textual.command import CommandList

    found = app.screen.query(CommandList)
    if not found or found.first().highlighted is None:
        return ""
    prompt = found.first().get_option_at_index(found.first().highlighted).prompt
    return getattr(prompt, "plain", str(prompt))


def test_list_live_status_waiting_count_bell_approve_deny(fake_repo):
    deck = open_deck(fake_repo)
    deck.new("north-star", prompt="work 1")
    deck.new("south-wind")
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: len(main.rows) == 2, what="two rows")
            cells = shown_cells(app, "north-star")
            assert cells[1] == "north-star" and cells[2] == "fake" and cells[4] == "agentdeck/north-star"
            assert cells[6].endswith("s")  # age
            await until(pilot, lambda: status(app, "north-star") == "idle" and status(app, "south-wind") == "idle",
                        timeout=15, what="both idle")
            assert "idle" in shown_cells(app, "south-wind")[3]
            await until(pilot, lambda: shown_cells(app, "south-wind")[5] == "+0 -0", what="diff size shown")
            print(main.sizes, main.diff_feed.computed, shown_cells(app, "south-wind"))
            # An agent starts waiting: the row, the header count, the bell.
            deck.send("south-wind", "ask yes.txt")
            await until(pilot, lambda: status(app, "south-wind") == "waiting", what="waiting")
            assert "◆ waiting" in shown_cells(app, "south-wind")[3]
            header = main.query_one("#header").header_text().plain
            assert "1 waiting" in header
            assert app.bells == 1 and "south-wind is waiting" in notices(app)
            # approve / deny apply only while the selected agent waits
            assert main.selected == "north-star"
            assert "approve" not in active_keys(app) and "deny" not in active_keys(app)
            await pilot.press("w")  # next waiting agent
            assert main.selected == "south-wind"
            assert {"approve", "deny"} <= active_keys(app)
            await pilot.press("a")
            wt = Path(deck.get("south-wind").worktree)
            await until(pilot, lambda: (wt / "yes.txt").exists(), what="approved file written")
            await until(pilot, lambda: status(app, "south-wind") == "idle", timeout=15, what="idle after approve")
            assert "0 waiting" not in main.query_one("#header").header_text().plain
            await until(pilot, lambda: shown_cells(app, "south-wind")[5] == "+1 -0", what="diff size after write")
            deck.send("south-wind", "ask no.txt")
            await until(pilot, lambda: status(app, "south-wind") == "waiting", what="waiting again")
            assert app.bells == 2
            await pilot.press("D")
            await until(pilot, lambda: "denied" in deck.peek("south-wind"), what="denied on screen")
            assert not (wt / "no.txt").exists()

    run(scenario)


def test_every_status_change_shows_in_its_row(fake_repo):
    """Each status the store learns reaches the row, in order (how fast is measured by
    bench/bench_peers.py, "prompt appears -> shown in the TUI", not asserted here)."""
    from agentdeck.store import AgentRecord, utc_iso

    deck = open_deck(fake_repo)
    # A row the watcher leaves alone (still "launching"), so only this test changes its status.
    deck.store.insert_agent(AgentRecord(
        name="probe", slug="probe", definition="fake", kind="generic", branch="agentdeck/probe", base_branch="main",
        base_commit=git(fake_repo, "rev-parse", "HEAD"), worktree=str(fake_repo.parent / "nowhere"),
        session="ad-none-probe", created_at=utc_iso(), status="working", extra={"launching": True}))
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: status(app, "probe") == "working", what="probe listed")
            for new in ("waiting", "idle", "working", "waiting") * 2:
                deck.store.set_status("probe", new, "test")
                await until(pilot, lambda new=new: new in shown_cells(app, "probe")[3], timeout=20, what=new)

    run(scenario)


def test_new_agent_dialog_validates_inline_and_creates(fake_repo):
    cfg = fake_repo / ".agentdeck.toml"
    cfg.write_text(cfg.read_text() + '\n[agents.ghost]\ncommand = "definitely-not-installed-xyz"\n')
    git(fake_repo, "commit", "-qam", "ghost")
    deck = open_deck(fake_repo)
    deck.new("taken")
    app = make_app(deck, attacher=RecordingAttacher())

    def errors(screen) -> dict[str, str]:
        return {f: plain(screen.query_one(f"#{f}-error")) for f in ("name", "definition", "base", "form")
                if screen.query_one(f"#{f}-error").has_class("-shown")}

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.main_screen.rows, what="rows")
            await pilot.press("n")
            dialog = app.screen
            assert type(dialog).__name__ == "NewAgentScreen"
            await pilot.press("enter")  # empty name
            assert "empty" in errors(dialog)["name"]
            await pilot.press(*"taken")
            assert "already exists" in errors(dialog)["name"]
            for _ in range(5):
                await pilot.press("backspace")
            await pilot.press(*"east-wind")
            assert "name" not in errors(dialog)
            # a base that does not exist: inline, nothing created
            dialog.query_one("#base").value = "no-such-branch"
            await pilot.press("enter")
            await until(pilot, lambda: "base" in errors(dialog), what="base error")
            assert "no-such-branch" in errors(dialog)["base"]
            assert app.screen is dialog and deck.store.get_agent("east-wind") is None
            assert not git(fake_repo, "branch", "--list", "agentdeck/east-wind")
            # a definition whose binary is missing
            dialog.query_one("#base").value = ""
            dialog.query_one("#definition").value = "ghost"
            await pilot.press("enter")
            await until(pilot, lambda: "definition" in errors(dialog), what="definition error")
            assert "not installed" in errors(dialog)["definition"]
            assert deck.store.get_agent("east-wind") is None
            # valid: created, dialog closed, the new row selected
            dialog.query_one("#definition").value = "fake"
            dialog.query_one("#prompt").value = "write hello.txt from the dialog"
            await pilot.press("ctrl+s")  # focus is on the definition (a Select): ctrl+s creates
            await until(pilot, lambda: app.screen is app.main_screen, timeout=20, what="dialog closed")
            await until(pilot, lambda: app.main_screen.selected == "east-wind", what="new row selected")
            rec = deck.get("east-wind")
            assert rec.definition == "fake" and rec.base_branch == "main"
            await until(pilot, lambda: (Path(rec.worktree) / "hello.txt").exists(), what="prompt ran")
            # escape cancels without creating anything
            await pilot.press("n")
            await pilot.press(*"never")
            await pilot.press("escape")
            assert app.screen is app.main_screen and deck.store.get_agent("never") is None

    run(scenario)


def test_send_restart_and_exited_agents(fake_repo):
    deck = open_deck(fake_repo)
    deck.new("north-star")
    app = make_app(deck, attacher=RecordingAttacher())
    wt = Path(deck.get("north-star").worktree)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: status(app, "north-star") == "idle", timeout=15, what="idle")
            await pilot.press("s")
            assert type(app.screen).__name__ == "SendScreen"
            await pilot.press("enter")  # nothing typed: stays open
            assert type(app.screen).__name__ == "SendScreen"
            await pilot.press(*"write sent.txt hi", "enter")
            await until(pilot, lambda: (wt / "sent.txt").exists(), what="sent text ran")
            await until(pilot, lambda: "sent to north-star" in notices(app), what="the sent notice")
            # the agent exits: shown exited, send no longer applies, r brings it back
            deck.send("north-star", "crash")
            await until(pilot, lambda: status(app, "north-star") == "exited", timeout=15, what="exited")
            assert "✕ exited" in shown_cells(app, "north-star")[3]
            assert "send" not in active_keys(app) and "restart" in active_keys(app)
            await until(pilot, lambda: "fatal: crashing" in app.main_screen.query_one("#pane").plain,
                        what="last screen in preview")
            await pilot.press("r")
            await until(pilot, lambda: status(app, "north-star") == "idle", timeout=20, what="idle after restart")
            assert "restarted north-star" in notices(app)

    run(scenario)


def test_kill_confirmation_says_what_is_kept_and_lost(fake_repo):
    deck = open_deck(fake_repo)
    deck.new("clean")
    deck.new("dirty")
    dirty_wt = Path(deck.get("dirty").worktree)
    (dirty_wt / "work.txt").write_text("precious\n")
    app = make_app(deck, attacher=RecordingAttacher())

    def dialog_text() -> str:
        return plain(app.screen.query_one("#kill-text"))

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: len(main.rows) == 2, what="rows")
            # clean: nothing to keep, removed
            main.select_agent("clean")
            await pilot.press("x")
            await until(pilot, lambda: kill_screen_shown(app), what="kill dialog")
            assert "Nothing to keep" in dialog_text() and "agentdeck/clean" in dialog_text()
            await pilot.press("escape")  # cancel: nothing happens
            assert deck.store.get_agent("clean") is not None
            await pilot.press("x")
            await until(pilot, lambda: kill_screen_shown(app), what="kill dialog again")
            await pilot.press("y")
            await until(pilot, lambda: "clean" not in main.by_name, what="clean removed from the list")
            assert not git(fake_repo, "branch", "--list", "agentdeck/clean")
            # dirty: kept (exited, kept), then discarded with a recovery ref
            main.select_agent("dirty")
            await pilot.press("x")
            await until(pilot, lambda: kill_screen_shown(app), what="kill dialog (dirty)")
            text = dialog_text()
            assert "Kept" in text and "work.txt" in text and "1 uncommitted" in text and "Lost" in text
            assert "recovery ref" in text
            await pilot.click("#kill-keep")
            await until(pilot, lambda: status(app, "dirty") == "exited" and main.by_name["dirty"].kept,
                        what="kept")
            assert "exited (kept)" in shown_cells(app, "dirty")[3]
            assert (dirty_wt / "work.txt").exists()
            await pilot.press("x")
            await until(pilot, lambda: kill_screen_shown(app), what="kill dialog (discard)")
            await pilot.click("#kill-discard")
            await until(pilot, lambda: "dirty" not in main.by_name, what="dirty removed")
            assert not dirty_wt.exists()
            assert any(r["ref"].startswith("refs/agentdeck/trash/dirty/") for r in deck.recovery_refs())
            assert "recovery ref" in notices(app)

    run(scenario)


def test_attach_filter_select_tabs_help_palette_and_quit_keeps_agents(fake_repo):
    deck = open_deck(fake_repo)
    deck.new("north-star")
    deck.new("south-wind")
    attacher = RecordingAttacher()
    app = make_app(deck, attacher=attacher)
    sessions = [deck.get(n).session for n in ("north-star", "south-wind")]

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: len(main.rows) == 2, what="rows")
            # attach: the injected attacher gets tmux's attach argv for the selected agent
            await pilot.press("enter")
            await until(pilot, lambda: attacher.calls, what="attach")
            argv = attacher.calls[0]
            assert argv[:3] == ["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"]]
            assert argv[-1] == f"={sessions[0]}" and "attach-session" in argv
            # filter: typing in the input never triggers a binding
            await pilot.press("slash", *"south nxq")
            assert type(app.screen).__name__ == "MainScreen" and app.is_running
            assert main.query_one("#agents").names == []  # "south nxq" matches nothing
            await pilot.press("backspace", "backspace", "backspace", "backspace")
            assert main.query_one("#agents").names == ["south-wind"] and main.selected == "south-wind"
            await pilot.press("enter")  # keeps the filter, back to the list
            assert main.filter_text == "south" and main.query_one("#agents").has_focus
            await pilot.press("escape")
            assert main.query_one("#agents").names == ["north-star", "south-wind"]
            # select marks rows
            await pilot.press("space")
            assert main.marked == {main.selected}
            assert "▐" in shown_cells(app, main.selected)[0]
            await pilot.press("space")
            assert main.marked == set()
            # tabs 1-4; Memory and Research say what they come with (unless those features work)
            tabs = main.query_one("#tabs")
            for key, tab in (("2", "diff"), ("3", "memory"), ("4", "research"), ("1", "preview")):
                await pilot.press(key)
                assert tabs.active == tab
            await pilot.press("4")
            await until(pilot, lambda: "no research run yet" in plain(main.query_one("#research-summary")),
                        what="the Research tab says how to start a run")
            assert {"research_pause", "research_stop", "research_promote"} <= active_keys(app)
            for key in ("p", "S", "P"):
                await pilot.press(key)
            assert notices(app).count("no research run to") == 3
            await pilot.press("1")
            assert "research_pause" not in active_keys(app)
            await pilot.press("f")
            await until(pilot, lambda: type(app.screen).__name__ == "ForkScreen", what="the fork dialog")
            await pilot.press("escape")
            await until(pilot, lambda: type(app.screen).__name__ != "ForkScreen", what="fork dialog closed")
            # help lists every key with its description
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "HelpScreen"
            help_text = plain(app.screen.query_one("#help-table"))
            for line in ("Attach to the agent's tmux pane", "Stop the agent", "Jump to the next agent waiting",
                         "Quit the deck (agents keep running)", "Command palette"):
                assert line in help_text
            await pilot.press("escape")
            # palette: every action for every agent
            await pilot.press("ctrl+p")
            await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", what="palette")
            await pilot.press(*"kill south-wind")
            # the search runs in the background: Enter picks what is highlighted when it arrives
            await until(pilot, lambda: palette_choice(app).startswith("kill south-wind"), what="the palette's pick")
            await pilot.press("enter")
            await until(pilot, lambda: kill_screen_shown(app), what="kill from palette")
            assert app.screen.plan.name == "south-wind"
            await pilot.press("escape")
            # errors become notifications: approve with nothing pending, from the palette
            main.run_palette_action("approve", "north-star")
            await until(pilot, lambda: "no pending question" in notices(app), what="refusal shown")
            await pilot.press("q")
        assert app.return_code == 0

    run(scenario)
    assert all(tmux_alive(s) for s in sessions)  # quitting never stops agents
    assert {a.status for a in open_deck(fake_repo).agents()} <= {"idle", "working", "starting"}


def test_palette_lists_every_action_for_every_agent():
    from agentdeck.tui.commands import per_agent_commands

    texts = [t for t, *_ in per_agent_commands(["north-star", "south-wind"])]
    for verb in ("attach", "send", "approve", "deny", "restart", "kill", "commit", "merge", "select", "fork"):
        assert f"{verb} north-star" in texts and f"{verb} south-wind" in texts


def test_one_key_table_drives_the_bindings_the_handlers_and_the_palette():
    from agentdeck.tui import actions
    from agentdeck.tui.bindings import KEYS, screen_bindings
    from agentdeck.tui.commands import GLOBAL, per_agent_commands
    from agentdeck.tui.main_screen import MainScreen

    ids = [spec.id for spec in KEYS]
    assert set(actions.HANDLERS) == set(ids)  # every key has exactly one handler, keyed by its id
    assert set(actions.WHEN) <= set(ids)
    assert [(b.id, b.action) for b in screen_bindings()] == [(i, f"key({i!r})") for i in ids]
    assert {b.id for b in MainScreen.BINDINGS if hasattr(b, "id")} >= set(ids)
    palette = [binding_id for _text, binding_id in GLOBAL] + [b for _t, b, _n, _h in per_agent_commands(["x"])]
    assert set(palette) <= set(ids)  # the palette runs the same handlers as the keys


def test_keymap_remaps_keys_and_reports_unknown_ids(fake_repo):
    cfg = fake_repo / ".agentdeck.toml"
    cfg.write_text(cfg.read_text() + '\n[keymap]\nkill = "X"\nhelp = "?,f1"\nnope = "z"\n')
    git(fake_repo, "commit", "-qam", "keymap")
    deck = open_deck(fake_repo)
    deck.new("north-star")
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.main_screen.rows, what="rows")
            assert "nope: unknown binding id" in notices(app)
            await pilot.press("x")
            await pilot.pause(0.3)
            assert type(app.screen).__name__ == "MainScreen"
            await pilot.press("X")
            await until(pilot, lambda: kill_screen_shown(app), what="kill on X")
            await pilot.press("escape")
            await pilot.press("f1")
            assert type(app.screen).__name__ == "HelpScreen"
            kill_line = next(ln for ln in plain(app.screen.query_one("#help-table")).splitlines()
                             if "Stop the agent" in ln)
            assert kill_line.strip().startswith("X")

    run(scenario)


def test_review_commit_merge_compare(fake_repo):
    deck = open_deck(fake_repo)
    deck.new("north-star")
    deck.new("south-wind")
    for name, fname in (("north-star", "n.txt"), ("south-wind", "s.txt")):
        (Path(deck.get(name).worktree) / fname).write_text(f"{name}\n")
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: len(main.rows) == 2, what="rows")
            await until(pilot, lambda: shown_cells(app, "north-star")[5] == "+1 -0", what="size")
            # Diff tab shows the change
            await pilot.press("2")
            await until(pilot, lambda: "n.txt" in _diff_text(main), what="diff tab")
            await pilot.press("c")
            await until(pilot, lambda: "committed" in notices(app), timeout=20, what="commit")
            assert git(deck.get("north-star").worktree, "status", "--porcelain") == ""
            assert git(fake_repo, "log", "-1", "--format=%s", "agentdeck/north-star") != "initial"
            await pilot.press("m")
            await until(pilot, lambda: text_screen_shown(app), timeout=20, what="merge check")
            assert "merge agentdeck/north-star into main" in plain(app.screen.query_one("#text-body"))
            await pilot.click("#ok")
            await until(pilot, lambda: "merged north-star into main" in notices(app), timeout=20, what="merged")
            assert (fake_repo / "n.txt").read_text() == "north-star\n"
            # compare the selected agents
            await pilot.press("space")
            main.select_agent("south-wind")
            await pilot.press("space")
            await pilot.press("C")
            await until(pilot, lambda: text_screen_shown(app), timeout=30, what="compare")
            body = plain(app.screen.query_one("#text-body"))
            assert "north-star" in body and "south-wind" in body

    run(scenario)


def _diff_text(main) -> str:
    return plain(main.query_one("#diff-body"))


def test_diff_sizes_recomputed_only_for_changed_worktrees(fake_repo):
    deck = open_deck(fake_repo)
    deck.new("north-star")
    deck.new("south-wind")
    for name in ("north-star", "south-wind"):
        retry_until(lambda name=name: deck.get(name).status == "idle", timeout=20, what=f"{name} idle")
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            feed = main.diff_feed
            await until(pilot, lambda: len(main.sizes) == 2, what="first sizes")
            assert sorted(feed.computed) == ["north-star", "south-wind"]  # once each at start
            await pilot.pause(1.5)  # nothing changed: no git at all
            assert sorted(feed.computed) == ["north-star", "south-wind"]
            # The agent writes a burst of files: its status moves (working, then idle), which is
            # what tells the feed its work changed; one or two recomputations (debounced).
            deck.send("south-wind", "run for i in 0 1 2 3 4; do printf 'a\\nb\\n' > f$i.txt; done")
            await until(pilot, lambda: main.sizes.get("south-wind") == (10, 0), what="new size")
            await pilot.pause(0.6)
            assert feed.computed.count("south-wind") <= 3 and feed.computed.count("north-star") == 1
            assert shown_cells(app, "south-wind")[5] == "+10 -0"

    run(scenario)


def test_preview_keeps_colours_and_skips_unchanged_captures(fake_repo):
    cfg = fake_repo / ".agentdeck.toml"
    cfg.write_text(cfg.read_text()
                   + '\n[agents.shell]\ncommand = "bash --norc --noprofile"\nidle_pattern = "\\\\$ *$"\n')
    git(fake_repo, "commit", "-qam", "shell")
    deck = open_deck(fake_repo)
    deck.new("painter", definition="shell")
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            pane = main.query_one("#pane")
            await until(pilot, lambda: main.selected == "painter", what="selected")
            deck.send("painter", "printf '\\033[31mRED-TEXT\\033[0m\\n'", force=True)
            # The typed command echoes RED-TEXT too: wait for the printed line itself.
            await until(pilot, lambda: any(ln.plain.startswith("RED-TEXT") for ln in pane._lines),
                        what="capture")
            line = next(ln for ln in pane._lines if ln.plain.startswith("RED-TEXT"))
            styles = [str(span.style) for span in line.spans]
            assert any(s in ("red", "color(1)") for s in styles), styles  # ANSI red kept
            # Captured only when the pane drew (tmux tells the feed): once the shell's screen is
            # still, no capture and no paint at all.
            feed = main.preview_feed
            for _ in range(20):
                paints, captures = pane.paints, feed.captures
                await pilot.pause(0.8)
                if feed.captures == captures and pane.paints == paints:
                    break
            else:
                raise AssertionError(f"a still pane kept being captured ({feed.captures} captures)")
            deck.send("painter", "echo SECOND-LINE", force=True)
            await until(pilot, lambda: any(ln.plain.startswith("SECOND-LINE") for ln in pane._lines),
                        what="the new output")
            # Only the Preview tab captures: hidden, the pane drawing causes no capture.
            await pilot.press("2")
            await until(pilot, lambda: feed.target() is None, what="the preview hidden")
            await pilot.pause(0.3)  # a capture begun before the switch has ended
            captures = feed.captures
            deck.send("painter", "echo THIRD-LINE", force=True)
            retry_until(lambda: "THIRD-LINE" in deck.peek("painter"), what="drawn while hidden")
            await pilot.pause(0.5)
            assert feed.captures == captures

    run(scenario)


def test_tmux_dying_shows_exited_and_r_restarts(fake_repo):
    deck = open_deck(fake_repo)
    deck.new("north-star")
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: status(app, "north-star") == "idle", timeout=15, what="idle")
            subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "kill-server"], check=True)
            await until(pilot, lambda: status(app, "north-star") == "exited", timeout=15, what="exited")
            await pilot.pause(0.5)  # preview and feeds keep going without tmux
            assert app.is_running
            await pilot.press("r")
            await until(pilot, lambda: status(app, "north-star") == "idle", timeout=20, what="back")
            assert not [n for sev, n in app.notices if sev == "error"], app.notices

    run(scenario)


def test_run_deck_outside_a_repository(tmp_path, monkeypatch):
    from support import run_cli

    from agentdeck.errors import NotARepository
    from agentdeck.tui.app import run_deck

    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.chdir(plain)
    with pytest.raises(NotARepository):
        run_deck(None)
    out = run_cli(cwd=plain)
    assert out.returncode == 2 and "not inside a git repository" in out.stderr


def test_attachers():
    from contextlib import contextmanager

    from agentdeck.tui.attach import PopupAttacher, SuspendAttacher, default_attacher

    assert isinstance(default_attacher({"TMUX": "/tmp/tmux-1/default,1,0"}), PopupAttacher)
    assert isinstance(default_attacher({}), SuspendAttacher)

    class FakeApp:
        def __init__(self):
            self.events = []

        @contextmanager
        def suspend(self):
            self.events.append("suspend")
            yield
            self.events.append("resume")

        def notify(self, text, **kw):
            self.events.append(text)

        def run_worker(self, fn, **kw):
            fn()

        def call_from_thread(self, fn, *a, **kw):
            fn(*a, **kw)

    app = FakeApp()
    ran = []
    SuspendAttacher(run=lambda argv: ran.append(argv) or 0)(app, ["tmux", "-L", "s", "attach-session", "-t", "=x"])
    assert app.events == ["suspend", "resume"] and ran[0][-1] == "=x"

    calls = []

    def fake_run(argv, **kw):
        calls.append(argv)
        rc = 1 if argv[1] == "display-popup" else 0
        return subprocess.CompletedProcess(argv, rc, "", "unknown command: display-popup" if rc else "")

    PopupAttacher(run=fake_run)(app, ["tmux", "-L", "s", "attach-session", "-t", "=x"])
    assert calls[0][:3] == ["tmux", "display-popup", "-E"]
    assert calls[0][-1] == "env -u TMUX tmux -L s attach-session -t =x"
    assert calls[1][:2] == ["tmux", "new-window"]  # older tmux: a window instead


def test_keymap_checks():
    from agentdeck.tui.bindings import KEYS, check_keymap

    assert check_keymap({}) == []
    ids = [s.id for s in KEYS]
    assert len(ids) == len(set(ids))
    assert any("both" in p for p in check_keymap({"kill": "n"}))
    assert any("unknown binding id" in p for p in check_keymap({"kil": "k"}))
    contract = {"n", "enter", "s", "a", "D", "r", "x", "c", "m", "C", "space", "b", "f", "w", "slash", "1", "2",
                "3", "4", "e", "p", "S", "P", "question_mark", "q"}
    assert {s.key for s in KEYS} == contract


@pytest.fixture(autouse=True)
def _no_stray_threads():
    import threading

    before = {t.ident for t in threading.enumerate()}
    yield
    # The deck's feeds stop with the app: no thread of ours keeps running.
    retry_until(lambda: not [t for t in threading.enumerate() if t.ident not in before and t.is_alive()
                             and not t.daemon], timeout=20, what="feed threads stopped")


def test_memory_tab_lists_notes_and_e_edits_through_the_cli(fake_repo):
    deck = open_deck(fake_repo)
    deck.memory.add("Run pytest with -x", body="stop at the first failure", tags=["testing"])
    attacher = RecordingAttacher()
    app = make_app(deck, attacher=attacher)

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await pilot.press("e")  # not on the Memory tab: the key does not apply
            assert not attacher.calls
            await pilot.press("3")
            pane = main.query_one("#memory-pane")
            await until(pilot, lambda: pane.notes, what="notes listed")
            assert pane.notes[0]["title"] == "Run pytest with -x"
            await pilot.press("e")
            await until(pilot, lambda: attacher.calls, what="editor opened")
            argv = attacher.calls[0]
            assert argv[-3:] == ["memory", "edit", pane.notes[0]["id"]] and str(fake_repo) in argv

    run(scenario)


def test_broadcast_sends_to_the_selected_agents_or_all(fake_repo):
    deck = open_deck(fake_repo)
    for name in ("north-star", "south-wind", "east-tide"):
        deck.new(name)
    wts = {n: Path(deck.get(n).worktree) for n in ("north-star", "south-wind", "east-tide")}
    app = make_app(deck, attacher=RecordingAttacher())

    async def scenario():
        async with app.run_test(size=SIZE) as pilot:
            main = app.main_screen
            await until(pilot, lambda: all(status(app, n) == "idle" for n in wts), timeout=15, what="idle")
            main.select_agent("north-star")
            await pilot.press("space")
            main.select_agent("east-tide")
            await pilot.press("space")
            await pilot.press("b")
            assert type(app.screen).__name__ == "SendScreen"
            assert sorted(app.screen.names) == ["east-tide", "north-star"]
            await pilot.press(*"write marked.txt x", "enter")
            await until(pilot, lambda: (wts["north-star"] / "marked.txt").exists()
                        and (wts["east-tide"] / "marked.txt").exists(),
                        what="sent to the marked agents", timeout=20)
            assert not (wts["south-wind"] / "marked.txt").exists()
            await pilot.press("space")  # unmark east-tide
            main.select_agent("north-star")
            await pilot.press("space")
            assert main.marked == set()
            await pilot.press("b", *"write all.txt x", "enter")  # nothing marked: every running agent
            await until(pilot, lambda: all((wt / "all.txt").exists() for wt in wts.values()), what="sent to all")

    run(scenario)
