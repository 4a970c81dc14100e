"""The hook entry point: event -> status tables, recording, robustness."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pytest
from support import run_cli

from agentdeck import hooks
from agentdeck import store as store_mod
from agentdeck.store import AgentRecord, Store, utc_iso

SID = "0b5e2c1e-1111-4222-8333-944455556666"
THREAD = "01a21663-fd10-7a63-a6ea-d1c3a9df70a2"


def make_agent(state_dir: Path, name: str = "alpha", kind: str = "claude", **fields) -> Store:
    st = Store(state_dir / "state.db")
    rec = AgentRecord(name=name, slug=name, definition=kind, kind=kind, branch=f"agentdeck/{name}",
                      base_branch="main", base_commit="0" * 40, worktree=str(state_dir), session=f"ad-{name}",
                      created_at=utc_iso(), **fields)
    st.insert_agent(rec)
    return st


@pytest.fixture
def state(tmp_path, monkeypatch):
    state_dir = tmp_path / "state"
    monkeypatch.setenv("AGENTDECK_STATE_DIR", str(state_dir))
    monkeypatch.setenv("AGENTDECK_AGENT", "alpha")
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    return state_dir


def fire(monkeypatch, kind: str, event: str, payload: dict | None = None, *args: str) -> int:
    if kind == "codex":
        return hooks.main([kind, event, *args, json.dumps(payload or {})])
    body = {"session_id": SID, "hook_event_name": event, "cwd": "/w", **(payload or {})}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(body)))
    return hooks.main([kind, event, *args])


def status(state_dir: Path, name: str = "alpha") -> tuple[str, str]:
    st = Store(state_dir / "state.db")
    try:
        rec = st.get_agent(name)
        return rec.status, rec.status_source
    finally:
        st.close()


def hook_events(state_dir: Path, name: str = "alpha") -> list[dict]:
    st = Store(state_dir / "state.db")
    try:
        return st.events(name, types=("hook",))
    finally:
        st.close()


# ---------------------------------------------------------------------- tables


@pytest.mark.parametrize("event,payload,expected", [
    ("UserPromptSubmit", {}, "working"),
    ("PreToolUse", {"tool_name": "Bash"}, "working"),
    ("PreToolUse", {"tool_name": "AskUserQuestion"}, "waiting"),
    ("PostToolUse", {"tool_name": "Bash"}, "working"),
    ("PermissionRequest", {"tool_name": "Bash"}, "waiting"),
    ("Notification", {"notification_type": "permission_prompt"}, "waiting"),
    ("Notification", {"notification_type": "elicitation_dialog"}, "waiting"),
    ("Notification", {"notification_type": "idle_prompt"}, "idle"),
    ("Notification", {"notification_type": "auth_success"}, None),
    ("Stop", {}, "idle"),
    ("StopFailure", {"error": "server_error"}, "idle"),
    ("SessionEnd", {"reason": "prompt_input_exit"}, None),
    ("SubagentStop", {}, None),
])
def test_claude_table(event, payload, expected):
    assert hooks.status_for("claude", event, payload) == expected


def test_codex_and_gemini_tables():
    assert hooks.status_for("codex", "agent-turn-complete", {}) == "idle"
    assert hooks.status_for("codex", "approval-requested", {}) is None
    assert hooks.status_for("gemini", "BeforeAgent", {}) == "working"
    assert hooks.status_for("gemini", "Notification", {"notification_type": "ToolPermission"}) == "waiting"
    assert hooks.status_for("gemini", "AfterAgent", {}) == "idle"
    assert hooks.status_for("nosuchkind", "Stop", {}) is None


def test_fast_path_writes_the_schema_the_store_defines():
    assert hooks.SCHEMA_VERSION == store_mod.SCHEMA_VERSION


# ---------------------------------------------------------------------- recording


def test_a_claude_turn_through_the_hooks(state, monkeypatch):
    make_agent(state, prompt="make the file", session_id=SID).close()
    assert fire(monkeypatch, "claude", "SessionStart", {"source": "startup"}) == 0
    assert status(state) == ("starting", "launch")  # the prompt follows at once: no idle flicker
    fire(monkeypatch, "claude", "UserPromptSubmit", {"prompt": "make the file " * 200})
    assert status(state) == ("working", "hook")
    fire(monkeypatch, "claude", "PreToolUse", {"tool_name": "Bash", "tool_input": {"command": "touch x"}})
    fire(monkeypatch, "claude", "PermissionRequest", {"tool_name": "Bash"})
    assert status(state) == ("waiting", "hook")
    fire(monkeypatch, "claude", "PostToolUse", {"tool_name": "Bash"})
    assert status(state) == ("working", "hook")
    fire(monkeypatch, "claude", "Stop", {"stop_hook_active": False})
    assert status(state) == ("idle", "hook")
    fire(monkeypatch, "claude", "SessionEnd", {"reason": "prompt_input_exit"})
    assert status(state) == ("idle", "hook")  # liveness, not the hook, says exited

    recorded = hook_events(state)
    assert [e["detail"]["event"] for e in recorded] == [
        "SessionStart", "UserPromptSubmit", "PreToolUse", "PermissionRequest", "PostToolUse", "Stop", "SessionEnd"]
    assert recorded[2]["detail"] == {"event": "PreToolUse", "tool_name": "Bash", "session_id": SID}
    # Prompts and tool inputs are never copied into the database.
    assert all("prompt" not in e["detail"] and "tool_input" not in e["detail"] for e in recorded)
    st = Store(state / "state.db")
    statuses = [(e["status"], e["source"]) for e in st.events("alpha", types=("status",))]
    st.close()
    assert statuses == [("starting", "launch"), ("working", "hook"), ("waiting", "hook"), ("working", "hook"),
                        ("idle", "hook")]


def test_session_start_means_idle_only_first(state, monkeypatch):
    make_agent(state, session_id=SID).close()  # no initial prompt
    fire(monkeypatch, "claude", "SessionStart", {"source": "startup"})
    assert status(state) == ("idle", "hook")
    fire(monkeypatch, "claude", "UserPromptSubmit")
    fire(monkeypatch, "claude", "SessionStart", {"source": "compact"})
    assert status(state) == ("working", "hook")


def test_session_start_after_restart_is_idle_and_clear_switches_conversation(state, monkeypatch):
    make_agent(state, prompt="first", launch_count=2, session_id=SID).close()
    fire(monkeypatch, "claude", "SessionStart", {"source": "resume"})
    assert status(state) == ("idle", "hook")
    new = "9b5e2c1e-1111-4222-8333-944455556666"
    fire(monkeypatch, "claude", "SessionStart", {"source": "clear", "session_id": new})
    st = Store(state / "state.db")
    assert st.get_agent("alpha").session_id == new
    st.close()


def test_an_earlier_hook_never_overwrites_a_later_one(state, monkeypatch):
    st = make_agent(state, session_id=SID)
    st.set_status("alpha", "idle", "hook", ts=time.time() + 5)  # a Stop that started "later"
    st.close()
    fire(monkeypatch, "claude", "PostToolUse", {"tool_name": "Bash"})
    assert status(state) == ("idle", "hook")
    assert hook_events(state)[-1]["detail"]["event"] == "PostToolUse"  # still recorded


def test_codex_notify_counts_only_the_agents_own_thread(state, monkeypatch, tmp_path):
    make_agent(state, kind="codex").close()
    turn = {"type": "agent-turn-complete", "turn-id": "t1", "cwd": "/w", "input-messages": ["hi"],
            "last-assistant-message": "hello"}
    # The title side thread has no session file: ignored.
    fire(monkeypatch, "codex", "notify", {**turn, "thread-id": "01a21663-0000-7000-8000-00000000beef"})
    assert status(state) == ("starting", "launch")
    assert hook_events(state)[-1]["detail"]["ignored"].startswith("no session file")
    day = tmp_path / "codex" / "sessions" / "2026" / "11" / "26"
    day.mkdir(parents=True)
    (day / f"rollout-2026-11-26T05-46-21-{THREAD}.jsonl").write_text("{}\n")
    fire(monkeypatch, "codex", "notify", {**turn, "thread-id": THREAD})
    assert status(state) == ("idle", "hook")
    st = Store(state / "state.db")
    assert st.get_agent("alpha").session_id == THREAD  # learned: restart resumes it
    st.update_agent("alpha", status="working", status_source="screen")
    st.close()
    fire(monkeypatch, "codex", "notify", {**turn, "thread-id": "01a21663-0000-7000-8000-00000000cafe"})
    assert status(state) == ("working", "screen")
    fire(monkeypatch, "codex", "notify", {**turn, "thread-id": THREAD})
    assert status(state) == ("idle", "hook")


def test_store_fallback_gives_the_same_result(state, monkeypatch, tmp_path):
    make_agent(state, session_id=SID).close()
    other = tmp_path / "other"
    make_agent(other, session_id=SID).close()
    for event, payload in [("UserPromptSubmit", {}), ("PermissionRequest", {"tool_name": "Bash"}), ("Stop", {})]:
        fire(monkeypatch, "claude", event, payload)
    monkeypatch.setenv("AGENTDECK_STATE_DIR", str(other))
    monkeypatch.setattr(hooks, "SCHEMA_VERSION", -1)  # as if the schema moved on: the Store path
    for event, payload in [("UserPromptSubmit", {}), ("PermissionRequest", {"tool_name": "Bash"}), ("Stop", {})]:
        fire(monkeypatch, "claude", event, payload)

    def shape(state_dir):
        st = Store(state_dir / "state.db")
        try:
            return [(e["type"], e["status"], e["source"], e["detail"]) for e in st.events("alpha")]
        finally:
            st.close()

    assert shape(state) == shape(other)
    assert status(other) == ("idle", "hook")


# ---------------------------------------------------------------------- robustness


def test_outside_agentdeck_it_does_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("AGENTDECK_STATE_DIR", raising=False)
    monkeypatch.delenv("AGENTDECK_AGENT", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("{}"))
    assert hooks.main(["claude", "Stop"]) == 0


@pytest.mark.parametrize("problem", ["no database", "unknown agent", "bad json", "no args"])
def test_failures_exit_zero_and_go_to_the_log(state, monkeypatch, problem):
    if problem != "no database":
        make_agent(state, name="someone-else").close()
    if problem == "bad json":
        monkeypatch.setenv("AGENTDECK_AGENT", "someone-else")
        monkeypatch.setattr(sys, "stdin", io.StringIO("{not json"))
        assert hooks.main(["claude", "Stop"]) == 0
    elif problem == "no args":
        assert hooks.main([]) == 0
    else:
        assert fire(monkeypatch, "claude", "Stop") == 0
    log = (state / "logs" / "hooks.log").read_text()
    assert log.count("\n") >= 1 and "failed" in log


def test_a_terminal_on_stdin_is_not_read():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert hooks.read_payload("claude", [], Tty("{}")) == {}
    assert hooks.read_payload("codex", ['{"type": "agent-turn-complete"}']) == {"type": "agent-turn-complete"}


def test_the_cli_entry_point_is_silent_and_records(tmp_path):
    state_dir = tmp_path / "state"
    make_agent(state_dir, session_id=SID).close()
    env = {"AGENTDECK_STATE_DIR": str(state_dir), "AGENTDECK_AGENT": "alpha"}
    payload = json.dumps({"session_id": SID, "hook_event_name": "UserPromptSubmit", "prompt": "x"})
    proc = run_cli("hook", "claude", "UserPromptSubmit", input=payload, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert status(state_dir) == ("working", "hook")
    # Even a broken call is silent with exit 0 (the agent must never notice).
    proc = run_cli("hook", "claude", "Stop", input="garbage", env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_the_hook_path_imports_nothing_heavy(tmp_path):
    """`agentdeck hook` must stay standard-library only (it runs on every agent event)."""
    import subprocess

    state_dir = tmp_path / "state"
    make_agent(state_dir, session_id=SID).close()
    code = (
        "import sys, json; from agentdeck.cli import main; "
        "main(['hook', 'claude', 'Stop']); "
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    env = {**__import__("os").environ, "AGENTDECK_STATE_DIR": str(state_dir), "AGENTDECK_AGENT": "alpha",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps({"hook_event_name": "Stop"}),
                          capture_output=True, text=True, env=env, timeout=60)
    modules = set(json.loads(proc.stdout))
    agentdeck_modules = {m for m in modules if m.startswith("agentdeck")}
    # The kind's own event table, imported alone through two import-free package __init__ files.
    assert agentdeck_modules <= {"agentdeck", "agentdeck.cli", "agentdeck.hooks", "agentdeck.agents",
                                 "agentdeck.agents.claude", "agentdeck.agents.claude.events"}, agentdeck_modules
    for heavy in ("textual", "libtmux", "git", "rich", "anthropic", "openai", "dataclasses", "agentdeck.store",
                  "agentdeck.config", "agentdeck.agents.base"):
        assert heavy not in modules, heavy
    assert status(state_dir) == ("idle", "hook")


def test_every_cli_event_table_is_light_and_complete():
    """Each CLI's events.py (agents/<kind>/events.py) loads under `python -S` with nothing of agentdeck
    but its two package __init__ files, and gives the hook path what it reads."""
    import subprocess

    from agentdeck.agents import ADAPTERS

    root = Path(__file__).resolve().parent.parent
    kinds = [k for k in ADAPTERS if (root / "agentdeck" / "agents" / k / "events.py").exists()]
    assert {"claude", "codex", "gemini"} <= set(kinds)
    code = (
        "import sys, json; before = set(sys.modules); kind = sys.argv[1]; "
        "m = __import__(f'agentdeck.agents.{kind}.events', fromlist=['EVENTS']); "
        "print(json.dumps({'new': sorted(set(sys.modules) - before), 'key': m.EVENT_KEY, "
        "'argv': m.PAYLOAD_IN_ARGV, 'events': sorted(m.EVENTS)}))"
    )
    for kind in kinds:
        proc = subprocess.run([sys.executable, "-S", "-c", code, kind], capture_output=True, text=True,
                              env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        ours = {m for m in got["new"] if m.startswith("agentdeck")}
        assert ours == {"agentdeck", "agentdeck.agents", f"agentdeck.agents.{kind}",
                        f"agentdeck.agents.{kind}.events"}, (kind, ours)
        assert not {"typing", "re", "dataclasses", "importlib"} & set(got["new"]), (kind, got["new"])
        assert got["events"] and isinstance(got["key"], str) and isinstance(got["argv"], bool)
    # A kind without a table records its events and sets no status.
    assert hooks.events_module("generic") is None and hooks.events_module("../x") is None
