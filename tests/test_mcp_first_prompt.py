"""The first prompt's rules, as pure functions over a real state store (the deck tests drive them
through the watcher with a scripted CLI: tests/test_mcp_deck.py)."""

from __future__ import annotations

from agentdeck import paths
from agentdeck.mcp_link import first_prompt
from agentdeck.status import decide
from agentdeck.store import AgentRecord, Store, utc_iso


def state(changed_at: float, verdict: str = "", screen_hash: str = "h") -> dict:
    return {"changed_at": changed_at, "verdict": verdict, "screen_hash": screen_hash}


def test_ready_after_the_listing_once_the_screen_settles():
    since, limit, listed = 100.0, 30.0, 105.0
    ready = first_prompt._ready
    assert not ready(state(105.2), "", listed, since, limit, 105.5)  # still redrawing
    assert ready(state(105.2), "", listed, since, limit, 105.8)  # settled for 0.5 s
    assert ready(state(106.0, "idle"), "idle", listed, since, limit, 106.1)  # idle a second after listing
    assert not ready(state(105.9, "idle"), "idle", 105.9, since, limit, 106.0)
    assert ready(state(110.9), "", listed, since, limit, 111.0)  # never settles: typed 5 s after the listing
    # Not listed: only after the timeout, and then as soon as it looks ready.
    assert ready(state(101.0), "", None, since, limit, 131.0)
    assert not ready(state(130.9), "", None, since, limit, 131.0)
    assert ready(state(144.9), "", None, since, limit, 145.1)  # long after the timeout: typed anyway
    assert not ready(None, "", None, since, limit, 131.0)


def test_a_pending_prompt_keeps_the_agent_starting_unless_it_waits():
    class Adapter:
        has_events, quiet_s = False, 1.0

    rec = AgentRecord(name="a", slug="a", definition="claude", kind="claude", branch="b", base_branch="main",
                      base_commit="0" * 40, worktree="/w", session="s", created_at=utc_iso(), prompt="p",
                      extra={"pending_prompt": {"since": 1.0, "timeout": 30}})
    assert decide(rec, Adapter(), "idle", 0.0, 10.0) is None
    assert decide(rec, Adapter(), "", 0.0, 10.0) is None
    assert decide(rec, Adapter(), "waiting", 0.0, 10.0) == "waiting"
    rec.extra = {}
    assert decide(rec, Adapter(), "idle", 0.0, 10.0) == "idle"


def test_a_prompt_being_typed_keeps_the_agent_starting_until_the_cli_works():
    """While the claimed prompt is typed the CLI still shows its own prompt: not ``idle``."""
    class Adapter:
        has_events, quiet_s = False, 1.0

    rec = AgentRecord(name="a", slug="a", definition="codex", kind="codex", branch="b", base_branch="main",
                      base_commit="0" * 40, worktree="/w", session="s", created_at=utc_iso(), prompt="p",
                      extra={"prompt_typing": 100.0})
    assert decide(rec, Adapter(), "idle", 90.0, 105.0) is None
    assert decide(rec, Adapter(), "", 90.0, 105.0) is None
    assert decide(rec, Adapter(), "working", 90.0, 105.0) == "working"
    assert decide(rec, Adapter(), "waiting", 90.0, 105.0) == "waiting"
    # a watcher killed mid-typing holds it for TYPING_HOLD_S at most
    assert decide(rec, Adapter(), "idle", 90.0, 100.0 + first_prompt.TYPING_HOLD_S) == "idle"
    rec.extra = {"prompt_typing": None}  # the typing thread finished
    assert decide(rec, Adapter(), "idle", 90.0, 105.0) == "idle"


def test_claim_takes_a_pending_prompt_once(git_repo):
    repo = paths.find_repo(git_repo)
    repo.ensure_state_dir()
    store = Store(repo.db_path)
    mark = {"since": 5.0, "timeout": 30.0}
    store.insert_agent(AgentRecord(name="a", slug="a", definition="claude", kind="claude", branch="b",
                                   base_branch="main", base_commit="0" * 40, worktree="/w", session="s",
                                   created_at=utc_iso(), prompt="p", extra={"pending_prompt": mark, "keep": 1}))
    assert not first_prompt.claim(store, "a", {"since": 6.0, "timeout": 30.0})  # another launch's mark
    assert first_prompt.claim(store, "a", mark, now=7.0)
    assert not first_prompt.claim(store, "a", mark)
    assert store.get_agent("a").extra == {"keep": 1, "prompt_typing": 7.0}
    assert not first_prompt.claim(store, "gone", mark)
    store.close()


def test_still_typed_looks_at_the_last_lines_only():
    screen = "❯ fix the bug\n" + "\n".join(f"line {i}" for i in range(20)) + "\n❯ \n"
    assert not first_prompt._still_typed(screen, "fix the bug")
    assert first_prompt._still_typed("header\n─────\n❯ fix the bug\n─────\n", "fix the bug")


def test_send_checks_its_enter_only_just_after_a_launch():
    from types import SimpleNamespace

    from agentdeck.mcp_link import service

    rec = SimpleNamespace(extra={"mcp": {"issued_at": 1000.0}})
    assert service.just_launched(rec, now=1000.0 + service.JUST_LAUNCHED_S - 1)
    assert not service.just_launched(rec, now=1000.0 + service.JUST_LAUNCHED_S + 1)
    assert not service.just_launched(SimpleNamespace(extra={}), now=1000.0)  # not wired to the server
    assert first_prompt.first_words("\n  what did we do so far?\nmore") == "what did we do so far?"


def test_enter_is_pressed_again_only_while_the_text_sits_in_the_box():
    class IO:
        def __init__(self, screens):
            self.screens, self.keys = list(screens), []

        def capture(self):
            return self.screens.pop(0) if len(self.screens) > 1 else self.screens[0]

        def send_keys(self, *keys):
            self.keys.append(keys)

    class Adapter:
        def classify(self, screen):
            return SimpleNamespace(status="working" if "esc to interrupt" in screen else "idle")

    from types import SimpleNamespace

    stuck = IO(["❯ what did we do so far?"])
    assert first_prompt.enter_again_if_still_typed(stuck, Adapter(), "what did we do", check_s=0.6)
    assert stuck.keys == [("Enter",)]
    taken = IO(["> what did we do so far?\n  esc to interrupt"])
    assert not first_prompt.enter_again_if_still_typed(taken, Adapter(), "what did we do", check_s=0.6)
    assert taken.keys == []


def test_with_a_readable_box_enter_is_pressed_again_once_the_cli_is_still(monkeypatch):
    """Claude Code's box: the text still in it on a still screen gets Enter again; an empty box
    ends the check; a moving screen (a spinner) is left alone."""
    from agentdeck.agents.claude.adapter import ClaudeAdapter

    monkeypatch.setattr(first_prompt, "BOX_STILL_S", 0.3)
    monkeypatch.setattr(first_prompt, "BOX_CHECK_S", 3.0)
    rule = "─" * 40
    typed = f"{rule}\n❯ once more please\n{rule}\n"
    empty = f"> once more please\n\n{rule}\n❯\u00a0\n{rule}\n"

    class IO:
        def __init__(self):
            self.keys = []

        def capture(self):
            return empty if self.keys else typed  # the first extra Enter is taken

        def send_keys(self, *keys):
            self.keys.append(keys)

    adapter = ClaudeAdapter.__new__(ClaudeAdapter)
    assert adapter.input_box(typed) == "once more please" and adapter.input_box(empty) == ""
    io = IO()
    assert first_prompt.enter_again_if_still_typed(io, adapter, "once more please")
    assert io.keys == [("Enter",)]

    class Submitted(IO):
        def capture(self):
            return empty

    io = Submitted()
    assert not first_prompt.enter_again_if_still_typed(io, adapter, "once more please")
    assert io.keys == []

    class Spinning(IO):
        frame = 0

        def capture(self):
            self.frame += 1
            return f"✻ Working… {self.frame}\n" + typed

    io = Spinning()
    assert not first_prompt.enter_again_if_still_typed(io, adapter, "once more please")
    assert io.keys == []  # busy the whole time: never pressed


def test_one_read_of_a_redraw_does_not_count_as_the_text_taken(monkeypatch):
    """A capture taken while Claude Code redraws can show its box without the text; the check
    wants the box empty twice in a row before it believes the Enter was taken."""
    from agentdeck.agents.claude.adapter import ClaudeAdapter

    monkeypatch.setattr(first_prompt, "BOX_STILL_S", 0.3)
    monkeypatch.setattr(first_prompt, "BOX_CHECK_S", 3.0)
    rule = "─" * 40
    typed = f"{rule}\n❯ once more please\n{rule}\n"
    redraw = f"{rule}\n❯\u00a0\n{rule}\n"
    empty = f"> once more please\n\n{rule}\n❯\u00a0\n{rule}\n"

    class IO:
        def __init__(self):
            self.keys, self.reads = [], 0

        def capture(self):
            self.reads += 1
            if self.keys:
                return empty
            return redraw if self.reads == 2 else typed  # one mid-redraw frame, then the text again

        def send_keys(self, *keys):
            self.keys.append(keys)

    io = IO()
    assert first_prompt.enter_again_if_still_typed(io, ClaudeAdapter.__new__(ClaudeAdapter), "once more please")
    assert io.keys == [("Enter",)]
