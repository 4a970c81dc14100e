"""Status from events, not ticks (issue 16): the watcher is told of pane output, dead panes,
killed sessions and state commits; a pane that does not move costs nothing; every status that
lasts a moment reaches the events.  Real tmux, real git, real SQLite, the fake agent and bash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import FAKE_CONFIG
from support import make_repo, retry_until

from agentdeck import status
from agentdeck.deck import Deck
from agentdeck.status.rules import DRAWING_HOLD_S

# bash as an agent: its prompt is "$ " (PS1 from the environment), a question ends in "[y/n]".
SH_CONFIG = FAKE_CONFIG + """
[agents.sh]
kind = "generic"
command = "bash --norc --noprofile"
waiting_pattern = '\\[y/n\\] *$'
idle_pattern = '^\\$ *$'
quiet_s = 1.0
env = { PS1 = "$ " }
"""


@pytest.fixture
def sh_repo(tmp_path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# test\n", ".agentdeck.toml": SH_CONFIG})


def _statuses(deck: Deck, name: str, since: float = 0.0) -> list[tuple[str, str, dict]]:
    return [(e["status"], e["source"], e["detail"]) for e in deck.events(name)
            if e["type"] == "status" and e["ts"] >= since]


def _wait_status(deck: Deck, name: str, want: str, timeout: float = 20.0) -> None:
    retry_until(lambda: deck.get(name).status == want, timeout=timeout, interval=0.02,
                what=f"{name} {want} (is {deck.get(name).status})")


def _watcher_pid(deck: Deck) -> int:
    return retry_until(lambda: status.watcher_pid(deck), timeout=10, what="a watcher")


def _proc(pid: int) -> dict[str, int]:
    """CPU clock ticks and voluntary context switches (one per sleep the process woke from)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    out = {"cpu": int(fields[11]) + int(fields[12])}
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("voluntary_ctxt_switches:"):
            out["wakes"] = int(line.split()[1])
    return out


def _tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], *args], capture_output=True,
                          text=True)


def test_a_question_shown_for_a_moment_is_recorded(sh_repo):
    """A prompt that appears and goes within 200 ms (one tick of a 250 ms poll missed it) is in the
    events, and what follows it too."""
    deck = Deck.open(sh_repo)
    deck.new("flash", definition="sh")
    _wait_status(deck, "flash", "idle")
    since = time.time()
    # \133 \135: the echoed command line itself never shows the pattern
    deck.send("flash", "printf 'Allow? \\133y/n\\135 '; sleep 0.2; printf '\\r\\033[K'; sleep 0.5; echo done")
    retry_until(lambda: "done" in deck.peek("flash"), what="the command finished")
    _wait_status(deck, "flash", "idle")
    seen = [s for s, _, _ in _statuses(deck, "flash", since)]
    assert "waiting" in seen, seen
    after = seen[seen.index("waiting") + 1:]
    assert after and after[0] == "working" and after[-1] == "idle", seen


def test_an_agent_at_its_prompt_after_start_is_idle_never_working(fake_repo):
    """The prompt after start: `idle` straight from `starting`, never `working` with an idle verdict."""
    deck = Deck.open(fake_repo)
    deck.new("calm")
    _wait_status(deck, "calm", "idle")
    events = _statuses(deck, "calm")
    assert [s for s, _, _ in events] == ["starting", "idle"], events
    assert ("working", "screen", {"verdict": "idle"}) not in events


def test_idle_agents_cost_the_watcher_and_tmux_nothing(fake_repo):
    """Three agents at their prompts: over 3 s the watcher wakes at most for its services (every
    2 s), takes no capture and runs no tmux command; agentdeck's tmux server does no work."""
    deck = Deck.open(fake_repo)
    for name in ("i1", "i2", "i3"):
        deck.new(name)
    for name in ("i1", "i2", "i3"):
        _wait_status(deck, name, "idle")
    pid = _watcher_pid(deck)
    server = int(_tmux("display-message", "-p", "#{pid}").stdout.strip())
    time.sleep(1.2)  # the quiet looks (quiet_s after the last change) are over
    w0, s0 = _proc(pid), _proc(server)
    time.sleep(3.0)
    w1, s1 = _proc(pid), _proc(server)
    assert w1["wakes"] - w0["wakes"] <= 6, (w0, w1)  # a polling watcher wakes 12+ times (4 Hz) and forks tmux
    assert w1["cpu"] - w0["cpu"] <= 5, (w0, w1)
    assert s1["cpu"] - s0["cpu"] <= 1, (s0, s1)
    # one control client per agent session (what pushes their output)
    clients = _tmux("list-clients", "-F", "#{client_control_mode} #{session_name}").stdout.split("\n")
    assert sum(1 for c in clients if c.startswith("1 ")) == 3, clients


def test_liveness_is_pushed_dead_pane_killed_session_dead_server(fake_repo):
    """tmux tells the watcher: the pane-died hook, the session's control client ending, the server
    going.  Each is recorded long before the 30 s safety pass."""
    assert status.SAFETY_S >= 30
    deck = Deck.open(fake_repo)
    for name in ("dies", "killed", "other"):
        deck.new(name)
    for name in ("dies", "killed", "other"):
        _wait_status(deck, name, "idle")
    _watcher_pid(deck)
    pane_pid = deck.tmux.panes()[deck.get("dies").session].pid
    os.kill(pane_pid, signal.SIGKILL)
    _wait_status(deck, "dies", "exited", timeout=10)
    assert "exit_status" in _statuses(deck, "dies")[-1][2]  # the pane's death, not a missing session
    _tmux("kill-session", "-t", f"={deck.get('killed').session}")
    _wait_status(deck, "killed", "exited", timeout=10)
    assert _statuses(deck, "killed")[-1][2] == {"reason": "tmux session gone"}
    assert deck.get("other").status == "idle"
    _tmux("kill-server")
    _wait_status(deck, "other", "exited", timeout=10)
    assert _statuses(deck, "other")[-1][2] == {"reason": "tmux server gone"}


def test_new_agents_and_restarts_are_followed(fake_repo):
    """A running watcher hears of a new agent (a state commit) and of a restart (the same
    session, a respawned pane) and classifies both; a crash in between is recorded."""
    deck = Deck.open(fake_repo)
    deck.new("first")
    _wait_status(deck, "first", "idle")
    pid = _watcher_pid(deck)
    deck.new("second")
    _wait_status(deck, "second", "idle")
    deck.send("first", "crash")
    _wait_status(deck, "first", "exited")
    deck.restart("first")
    _wait_status(deck, "first", "idle")
    assert status.watcher_pid(deck) == pid  # the same watcher all along
    assert [s for s, _, _ in _statuses(deck, "first")][-3:] == ["exited", "starting", "idle"], _statuses(deck, "first")


def test_working_then_quiet_is_told_apart_without_polling(fake_repo):
    """A spinner is `working` (its pattern); once it stops and the prompt comes back the agent is
    `idle` - after quiet_s, from the look the watcher scheduled for that moment."""
    deck = Deck.open(fake_repo)
    deck.new("busy")
    _wait_status(deck, "busy", "idle")
    since = time.time()
    deck.send("busy", "work 1")
    _wait_status(deck, "busy", "working", timeout=5)
    _wait_status(deck, "busy", "idle", timeout=10)
    idle_at = deck.events("busy")[-1]["ts"]
    seen = _statuses(deck, "busy", since)
    assert [s for s, _, _ in seen][-2:] == ["working", "idle"], seen
    assert idle_at - since < 1.0 + 1.0 + 3.0  # the work, quiet_s, slack for a loaded machine


# ---------------------------------------------------------------------- the rules, unit by unit


def _rec(status: str, source: str = "screen", at: float = 0.0, prompt: str = ""):
    return SimpleNamespace(status=status, status_source=source, status_at=at, prompt=prompt, extra={})


def _adapter(events: bool = False):
    return SimpleNamespace(has_events=events, quiet_s=1.0)


@pytest.mark.parametrize("status_, verdict, quiet, want", [
    ("starting", "idle", False, "idle"),  # the prompt after start: idle at once
    ("idle", "idle", False, "idle"),
    ("working", "idle", False, "working"),  # a TUI showing its prompt mid-turn: until quiet
    ("working", "idle", True, "idle"),
    ("waiting", "idle", False, "working"),  # answered: it works until it falls quiet
    ("idle", "waiting", False, "waiting"),
    ("idle", "working", False, "working"),
    ("idle", "", False, "working"),
    ("working", "", True, "idle"),
    ("starting", "", False, None),  # drawing itself: starting until its prompt shows
    ("starting", "", True, "idle"),
])
def test_decide_screen_rules(status_, verdict, quiet, want):
    now = 100.0
    changed = now - (2.0 if quiet else 0.1)
    assert status.decide(_rec(status_), _adapter(), verdict, changed, now) == want


def test_decide_an_agent_started_with_a_prompt_works_while_it_draws():
    assert status.decide(_rec("starting", prompt="fix it"), _adapter(), "", 99.9, 100.0) == "working"


def test_decide_a_cli_with_a_known_prompt_is_starting_until_it_draws_a_pattern():
    """A blank or half-drawn screen while the CLI loads is not ``idle`` (a ``send`` then is lost);
    bounded by DRAWING_HOLD_S for a CLI whose look changed."""
    cli = SimpleNamespace(has_events=True, quiet_s=1.0, knows_prompt=True)
    now = 100.0
    starting = _rec("starting", "restart", at=now - 5)
    assert status.decide(starting, cli, "", now - 4.0, now) is None  # quiet and blank: still starting
    assert status.decide(starting, cli, "", now - 0.1, now) is None
    assert status.decide(starting, cli, "idle", now - 0.1, now) == "idle"  # its prompt: ready
    assert status.decide(starting, cli, "waiting", now - 0.1, now) == "waiting"
    late = _rec("starting", "restart", at=now - DRAWING_HOLD_S - 1)
    assert status.decide(late, cli, "", now - 4.0, now) == "idle"
    assert status.decide(_rec("working"), cli, "", now - 4.0, now) == "idle"  # only while starting


def test_decide_a_restart_not_yet_respawned_is_starting_whatever_the_old_screen_says():
    now = 100.0
    rec = _rec("starting", "restart", at=now - 1)
    rec.extra = {"relaunching": now - 1}
    for verdict in ("idle", "waiting", "working", ""):
        assert status.decide(rec, _adapter(), verdict, now - 5.0, now) is None, verdict
    rec.extra = {"relaunching": now - DRAWING_HOLD_S - 1}  # a restart killed half way holds no longer
    assert status.decide(rec, _adapter(), "idle", now - 5.0, now) == "idle"
    rec.extra = {}  # respawned: the screen is the new process's
    assert status.decide(rec, _adapter(), "idle", now - 5.0, now) == "idle"


def test_respawn_clears_the_old_screen(tmp_path):
    """The restarted pane must not show the old CLI's prompt, which would read as ready."""
    from agentdeck.tmux import Tmux

    tmux_server = Tmux(os.environ["AGENTDECK_TMUX_SOCKET"], tmp_path / "conf")
    tmux_server.new_session("old", tmp_path, ["sh", "-c", "echo OLD PROMPT; exec sleep 60"])
    pane = tmux_server.pane_id("old")
    retry_until(lambda: "OLD PROMPT" in tmux_server.capture(pane), timeout=10, what="the old screen")
    tmux_server.respawn("old", tmp_path, ["sh", "-c", "exec sleep 60"])
    pane = tmux_server.pane_id("old")
    retry_until(lambda: tmux_server.capture(pane).strip() == "", timeout=10, what="a cleared screen")
    assert "OLD PROMPT" not in tmux_server.capture(pane)


def test_decide_hook_led_agents_only_corrected_after_grace():
    now = 100.0
    hook = _rec("working", "hook", at=now - 0.5)
    assert status.decide(hook, _adapter(True), "waiting", now - 0.1, now) is None  # within the grace
    old = _rec("working", "hook", at=now - status.HOOK_GRACE_S - 0.1)
    assert status.decide(old, _adapter(True), "waiting", now - 0.1, now) == "waiting"
    assert status.decide(old, _adapter(True), "idle", now - 0.1, now) is None  # idle needs quiet
    assert status.decide(old, _adapter(True), "idle", now - 2.0, now) == "idle"
    assert status.decide(old, _adapter(True), "", now - 9.0, now) is None  # no pattern: hooks lead


def test_restart_pending_only_for_the_pane_that_died_before_it():
    now = 1000.0
    rec = SimpleNamespace(status="starting", status_source="restart", status_at=now - 1)
    dead_before = SimpleNamespace(dead=True, dead_time=int(now - 5))
    dead_after = SimpleNamespace(dead=True, dead_time=int(now))
    unreaped = SimpleNamespace(dead=True, dead_time=0)  # tmux has not collected its exit yet
    assert status.restart_pending(rec, unreaped, now)
    assert status.restart_pending(rec, dead_before, now)
    assert not status.restart_pending(rec, dead_after, now)
    assert status.restart_pending(rec, None, now)  # the session is being made again
    late = SimpleNamespace(status="starting", status_source="restart", status_at=now - status.RESTART_GRACE_S - 1)
    assert not status.restart_pending(late, dead_before, now)


def test_watcher_services_run_when_due_and_on_state_changes(fake_repo, tmp_path):
    """The loop's hook for other work (the MCP server's upkeep): called when its interval is due
    and whenever another process committed, never otherwise."""
    deck = Deck.open(fake_repo)
    lock = tmp_path / "lock"
    with open(lock, "a+") as fh:
        watcher = status.Watcher(deck, lock, fh)
        try:
            calls: list[float] = []
            watcher.services = [status.Service("probe", lambda d: calls.append(time.time()), every=60.0)]
            watcher.run_services(False)
            watcher.run_services(False)
            assert len(calls) == 1  # due once, then not for 60 s
            watcher.run_services(True)
            assert len(calls) == 2  # the state changed
            watcher.services = [status.Service("sooner", lambda d: 0.0, every=60.0)]
            watcher.run_services(False)
            assert watcher.services[0].next_at <= time.time()  # a service may ask to be called sooner
            watcher.services = [status.Service("later", lambda d: 600.0, every=2.0)]
            watcher.run_services(False)
            assert watcher.services[0].next_at >= time.time() + 500  # ...or later (nothing to look after)
        finally:
            watcher.close()


def test_state_commits_wake_the_watcher_but_its_own_writes_do_not(fake_repo, tmp_path):
    """One inotify watch on the state folder; `PRAGMA data_version` tells another process's
    commit (re-read the agents) from the watcher's own (nothing to do)."""
    deck = Deck.open(fake_repo)
    lock = tmp_path / "lock"
    with open(lock, "a+") as fh:
        watcher = status.Watcher(deck, lock, fh)
        try:
            assert watcher.dbwatch is not None and watcher.dbwatch.count == 1
            assert watcher.reconcile()  # first read
            deck.store.set_meta("probe", "own")  # the watcher's own connection
            assert not watcher.reconcile()
            other = Deck.open(fake_repo)
            other.store.set_meta("probe", "other")
            other.close()
            assert retry_until(lambda: watcher.sel.select(0.5), timeout=5, what="inotify wake")
            for key, _ in watcher.sel.select(0):
                key.data(key.fileobj)
            assert watcher.db_dirty and watcher.reconcile()
        finally:
            watcher.close()


def test_events_history_is_json_clean(fake_repo):
    """Screen statuses carry their verdict; nothing else leaks into the detail."""
    deck = Deck.open(fake_repo)
    deck.new("j")
    _wait_status(deck, "j", "idle")
    for _, source, detail in _statuses(deck, "j"):
        json.dumps(detail)
        if source == "screen":
            assert set(detail) == {"verdict"}


# ---------------------------------------------------------------------- the deck's feeds idle


def _row(name: str, status_: str, at: float):
    from agentdeck.tui.model import AgentRow

    return AgentRow(name=name, definition="fake", kind="generic", status=status_, branch=f"x/{name}",
                    base_branch="main", created_at="2026-01-01T00:00:00Z", status_at=at, kept=False,
                    worktree=f"/nowhere/{name}", session=name)


def _inotify_watches() -> int:
    """inotify watches this process holds (each shows as one `inotify wd:` line)."""
    total = 0
    for fd in os.listdir("/proc/self/fdinfo"):
        try:
            total += open(f"/proc/self/fdinfo/{fd}").read().count("inotify wd:")
        except OSError:
            pass
    return total


def test_status_feed_sleeps_until_another_process_commits(fake_repo):
    import threading

    from agentdeck.tui.live import DeckPool, StatusFeed
    from agentdeck.tui.messages import AgentsChanged

    deck = Deck.open(fake_repo)
    deck.new("s1")
    _wait_status(deck, "s1", "idle")
    time.sleep(1.5)  # the watcher's look once quiet is over
    before = _inotify_watches()
    feed = StatusFeed(DeckPool(deck))
    posted: list = []
    stop = threading.Event()
    thread = threading.Thread(target=feed.run, args=(posted.append, stop), daemon=True)
    thread.start()
    try:
        retry_until(lambda: any(isinstance(m, AgentsChanged) for m in posted), what="first paint")
        retry_until(lambda: _inotify_watches() == before + 1, what="one watch: the state folder")
        time.sleep(0.3)
        wakes, polls = feed.wakes, feed.polls
        time.sleep(1.5)
        assert (feed.wakes, feed.polls) == (wakes, polls)  # nothing changed: not one wake
        deck.send("s1", "ask it.txt")
        retry_until(lambda: any(isinstance(m, AgentsChanged) and m.rows[0].status == "waiting" for m in posted),
                    what="waiting shown")
        assert feed.wakes > wakes
    finally:
        stop.set()
        feed.poke()
        thread.join(10)
    assert not thread.is_alive()


def test_diff_feed_follows_status_moves_with_no_watch_at_all():
    from agentdeck.tui.live import DiffFeed

    pool = SimpleNamespace(get=lambda: None)
    before = _inotify_watches()
    feed = DiffFeed(pool, debounce=0.05, max_delay=0.2, working_every=0.3,  # type: ignore[arg-type]
                    size_fn=lambda deck, name: (1, 0), radar_fn=None)
    feed.track([_row("a", "idle", 1.0), _row("b", "idle", 1.0)])
    assert sorted(feed.due()) == ["a", "b"]  # a first size for each agent
    feed.compute(["a", "b"])
    assert feed.due() == [] and feed._next_due() is None  # nothing until told
    assert not feed.needs_touch_on_select("a")  # computed a moment ago
    feed.track([_row("a", "working", 2.0), _row("b", "idle", 1.0)])  # a's turn began
    retry_until(lambda: feed.due() == ["a"], timeout=3, what="a after its status moved")
    retry_until(lambda: feed.due() == ["a"], timeout=3, what="a again while it works")
    feed.track([_row("a", "idle", 3.0), _row("b", "idle", 1.0)])  # the turn ended
    retry_until(lambda: feed.due() == ["a"], timeout=3, what="a at the end of its turn")
    time.sleep(0.5)
    assert feed.due() == [] and feed._next_due() is None
    feed.track([_row("b", "idle", 1.0)])  # a was removed
    assert "a" not in feed._seen and "a" not in feed._working
    assert _inotify_watches() == before


def test_status_names_load_their_own_module_only():
    """`agentdeck.status` is a package: every old name still imports from it, and the light commands'
    names (watcher_alive, launch_abandoned) load the standard-library parts only - no adapters,
    no configuration, no watcher."""
    import subprocess
    import sys

    from support import ROOT

    code = (
        "import sys\n"
        "from agentdeck import status\n"
        "status.watcher_alive, status.launch_abandoned\n"
        "light = sorted(m for m in sys.modules if m.startswith('agentdeck'))\n"
        "for name in status.__all__: getattr(status, name)\n"
        "print(light)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # procutil: the stdlib-only process helpers at the bottom of the house
    assert out.stdout.strip() == str(["agentdeck", "agentdeck.procutil", "agentdeck.status", "agentdeck.status.launch",
                                      "agentdeck.status.watching"]), out.stdout
    with pytest.raises(AttributeError):
        status.__getattr__("no_such_name")
