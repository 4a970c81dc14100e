"""Unit tests of the agent adapters: launch argv, settings, screen classification, keys."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from agentdeck.agents import adapter_class, get_adapter
from agentdeck.agents.base import LaunchContext
from agentdeck.agents.claude import adapter as claude_mod
from agentdeck.config import AgentDef, Config

SCREENS = Path(__file__).resolve().parent / "fixtures" / "screens"
HOOK = ["env", "PYTHONPATH=/opt/ad", "/usr/bin/python3", "-m", "agentdeck", "hook"]


def adapter(kind: str, **agent_def):
    config = Config()
    definition = AgentDef(kind=kind, **agent_def) if agent_def else config.agent_def(kind)
    return adapter_class(kind)(kind, definition, config)


def context(tmp_path: Path, **kw) -> LaunchContext:
    worktree = tmp_path / "wt"
    worktree.mkdir(exist_ok=True)
    defaults = {"name": "north star", "worktree": worktree, "start_dir": worktree, "state_dir": tmp_path / "state",
                "repo_root": tmp_path / "repo", "prompt": "fix the bug", "hook_command": list(HOOK)}
    defaults.update(kw)
    return LaunchContext(**defaults)


class FakePane:
    def __init__(self, screen: str = ""):
        self.sent: list[tuple] = []
        self.screen = screen

    def send_text(self, text: str, enter: bool = True) -> None:
        self.sent.append(("text", text, enter, time.monotonic()))

    def send_keys(self, *keys: str) -> None:
        self.sent.append(("keys", keys, time.monotonic()))

    def capture(self) -> str:
        return self.screen


def screen(name: str) -> str:
    return (SCREENS / name).read_text()


# ---------------------------------------------------------------------- registry


@pytest.mark.parametrize("kind", ["claude", "codex", "gemini", "aider", "opencode"])
def test_every_builtin_kind_has_an_adapter(kind):
    a = get_adapter(kind, Config())
    assert a.kind == kind
    assert a.command_argv()[0] == a.binary


def test_each_cli_is_one_folder_and_one_registry_line():
    from agentdeck.agents import ADAPTERS, usage_source

    for kind, target in ADAPTERS.items():
        assert target.startswith(f"agentdeck.agents.{kind}.adapter:"), target
        cls = adapter_class(kind)
        assert cls.kind == kind and cls.__module__ == f"agentdeck.agents.{kind}.adapter"
        # A screen table of its own, or (generic) the definition's patterns.
        assert cls.SCREEN_RULES or kind == "generic"
    assert {k for k in ADAPTERS if usage_source(k) is not None} == {"claude", "codex"}
    assert usage_source("nosuchkind") is None


def test_the_generic_table_comes_from_the_definition_patterns():
    a = adapter("generic", waiting_pattern=r"\(y/n\)", working_pattern="busy", idle_pattern=r"^\$ ?$")
    assert [(r.status, r.lines) for r in a.screen_rules] == [("waiting", 0), ("working", 0), ("idle", 5)]
    assert a.classify("x\nbusy\ncontinue? (y/n)").status == "waiting"  # the first row wins
    assert a.classify("busy\n$ ").status == "working"
    assert a.classify("$ \n" + "out\n" * 5).status is None  # idle only in the last 5 lines
    assert a.classify("out\n$ \n\n\n").status == "idle"
    assert adapter("generic").classify("anything").status is None  # no patterns: no verdict


# ---------------------------------------------------------------------- Claude Code


def test_claude_first_launch_argv_has_settings_session_and_prompt(tmp_path):
    a = adapter("claude")
    ctx = context(tmp_path, prompt="--looks like a flag")
    a.prepare(ctx)
    argv = a.launch_argv(ctx)
    assert argv[0] == "claude"
    assert argv.count("--settings") == 1
    settings_file = Path(argv[argv.index("--settings") + 1])
    assert settings_file == tmp_path / "state" / "agents" / "north-star" / "claude-settings.json"
    assert argv[argv.index("--session-id") + 1] == ctx.session_id
    # The prompt comes after "--" so a prompt starting with "-" is never read as a flag.
    assert argv[-2:] == ["--", "--looks like a flag"]
    assert "--resume" not in argv
    assert not a.prompt_typed_after_start(ctx)


def test_claude_session_id_is_a_uuid_chosen_once(tmp_path):
    import uuid

    a = adapter("claude")
    ctx = context(tmp_path)
    a.prepare(ctx)
    first = ctx.session_id
    assert str(uuid.UUID(first)) == first
    a.prepare(ctx)
    assert ctx.session_id == first  # a given id is kept


def test_claude_settings_carry_one_hook_per_event_calling_agentdeck(tmp_path):
    a = adapter("claude")
    ctx = context(tmp_path)
    a.prepare(ctx)
    on_disk = json.loads(Path(ctx.extra["claude_settings"]).read_text())
    assert on_disk == a.settings_dict(ctx)
    hooks = on_disk["hooks"]
    for event in ("SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop", "Notification",
                  "SessionEnd", "PermissionRequest"):
        (group,) = hooks[event]
        (entry,) = group["hooks"]
        assert entry["type"] == "command"
        assert shlex.split(entry["command"]) == [*HOOK, "claude", event]
        assert entry["timeout"] > 0
    assert set(hooks) == set(claude_mod.HOOK_EVENTS)


def test_claude_settings_extensions_add_to_the_same_dict(tmp_path):
    a = adapter("claude")
    ctx = context(tmp_path)

    def memory(ctx, settings):
        settings["hooks"].setdefault("SessionStart", []).append(
            {"matcher": "compact", "hooks": [{"type": "command", "command": "brief"}]})

    claude_mod.register_settings_extension(memory)
    try:
        settings = a.settings_dict(ctx)
    finally:
        claude_mod._EXTENSIONS.remove(memory)
    assert len(settings["hooks"]["SessionStart"]) == 2
    assert settings["hooks"]["SessionStart"][1]["matcher"] == "compact"
    assert "Stop" in settings["hooks"]


def test_claude_restart_resumes_when_the_conversation_exists(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    a = adapter("claude")
    ctx = context(tmp_path, session_id="0b5e2c1e-1111-4222-8333-944455556666", resume=True)
    a.prepare(ctx)
    # Never got a first message: Claude would say "No conversation found", so start it afresh.
    argv = a.launch_argv(ctx)
    assert "--resume" not in argv
    assert argv[argv.index("--session-id") + 1] == ctx.session_id
    assert argv[-1] == "fix the bug"
    transcript = home / ".claude" / "projects" / "-tmp-wt" / f"{ctx.session_id}.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text("{}\n")
    argv = a.launch_argv(ctx)
    assert argv[-2:] == ["--resume", ctx.session_id]
    assert "--session-id" not in argv and "fix the bug" not in argv


def test_claude_config_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert adapter("claude").config_dir() == tmp_path / "cfg"


def test_claude_definition_command_and_args_come_first(tmp_path):
    a = adapter("claude", command="/opt/bin/claude --model sonnet", args=["--verbose"])
    ctx = context(tmp_path)
    a.prepare(ctx)
    assert a.launch_argv(ctx)[:4] == ["/opt/bin/claude", "--model", "sonnet", "--verbose"]


CLAUDE_SCREENS = {
    "claude_idle_welcome.txt": "idle",
    "claude_idle_after_turn.txt": "idle",
    "claude_idle_after_deny.txt": "idle",
    "claude_idle_api_error.txt": "idle",
    "claude_idle_interrupted.txt": "idle",
    "claude_idle_resumed.txt": "idle",
    "claude_working.txt": "working",
    "claude_working_api_retry.txt": "working",
    "claude_waiting_bash.txt": "waiting",
    "claude_waiting_question.txt": "waiting",
    "claude_api_key_dialog.txt": "waiting",
    "claude_trust_dialog.txt": None,  # answered by dialog_action: still starting
    "claude_trust_dialog_worktree.txt": None,
}


@pytest.mark.parametrize("name,expected", sorted(CLAUDE_SCREENS.items()))
def test_claude_classifies_real_screens(name, expected):
    assert adapter("claude").classify(screen(name)).status == expected


def test_claude_fixtures_are_all_classified():
    names = {p.name for p in SCREENS.glob("claude_*.txt")}
    assert names == set(CLAUDE_SCREENS)


def test_claude_waiting_is_read_from_the_bottom_only():
    # Words of a permission prompt in the transcript above an idle prompt box are not a prompt.
    text = "● Do you want to proceed?\n  ❯ 1. Yes\n  Esc to cancel\n" + "\n" * 40 + screen("claude_idle_after_turn.txt")
    assert adapter("claude").classify(text).status == "idle"


def test_claude_dialog_action_accepts_folder_trust_only():
    a = adapter("claude")
    assert a.dialog_action(screen("claude_trust_dialog.txt")) == ["Enter"]
    assert a.dialog_action(screen("claude_trust_dialog_worktree.txt")) == ["Enter"]
    # The user's own decisions are never taken for them.
    for name in ("claude_api_key_dialog.txt", "claude_waiting_bash.txt", "claude_idle_welcome.txt"):
        assert a.dialog_action(screen(name)) is None
    moved = screen("claude_trust_dialog.txt").replace("❯ 1. Yes", "  1. Yes").replace("  2. No", "❯ 2. No")
    assert a.dialog_action(moved) is None


def test_claude_keys():
    a = adapter("claude")
    pane = FakePane()
    a.approve(pane)
    a.deny(pane)
    a.submit(pane, "hello")
    assert [s[:2] for s in pane.sent] == [("keys", ("1",)), ("keys", ("Escape",)), ("text", "hello")]
    assert pane.sent[2][2] is True


def test_claude_hook_status_table():
    a = adapter("claude")
    assert a.hook_status("UserPromptSubmit", {}) == "working"
    assert a.hook_status("PermissionRequest", {"tool_name": "Bash"}) == "waiting"
    assert a.hook_status("Notification", {"notification_type": "permission_prompt"}) == "waiting"
    assert a.hook_status("Notification", {"notification_type": "elicitation_dialog"}) == "waiting"
    assert a.hook_status("Notification", {"notification_type": "auth_success"}) is None
    assert a.hook_status("Stop", {}) == "idle"
    assert a.hook_status("SessionEnd", {}) is None
    assert a.hook_status("SessionStart", {"source": "startup"}) is None  # decided by the hook (first event)


# ---------------------------------------------------------------------- Codex


def test_codex_first_launch_argv(tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    a = adapter("codex")
    ctx = context(tmp_path)
    a.prepare(ctx)
    argv = a.launch_argv(ctx)
    assert argv[:2] == ["codex", "--no-daemon"]
    notify = argv[argv.index("-c") + 1]
    assert notify.startswith("notify=")
    assert json.loads(notify[len("notify="):]) == [*HOOK, "codex", "notify"]
    assert argv[-2:] == ["--", "fix the bug"]
    assert "resume" not in argv
    assert not a.prompt_typed_after_start(ctx)


def _rollout(codex_home: Path, sid: str, cwd: Path, stamp: str = "2026-11-26T05-45-54") -> Path:
    day = codex_home / "sessions" / "2026" / "11" / "26"
    day.mkdir(parents=True, exist_ok=True)
    path = day / f"rollout-{stamp}-{sid}.jsonl"
    payload = {"id": sid, "cwd": str(cwd), "originator": "codex-tui"}
    meta = {"timestamp": "x", "type": "session_meta", "payload": payload}
    path.write_text(json.dumps(meta) + "\n" + json.dumps({"type": "event_msg"}) + "\n")
    return path


def test_codex_finds_its_own_session_by_worktree(tmp_path, monkeypatch):
    codex_home = tmp_path / "codex"
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    a = adapter("codex")
    mine, other = tmp_path / "wt", tmp_path / "other-wt"
    mine.mkdir()
    other.mkdir()
    _rollout(codex_home, "01a21663-0000-7000-8000-000000000001", mine, "2026-11-26T05-00-00")
    _rollout(codex_home, "01a21663-0000-7000-8000-000000000002", mine, "2026-11-26T06-00-00")
    # Another agent's newer conversation must never be taken.
    _rollout(codex_home, "01a21663-0000-7000-8000-000000000003", other, "2026-11-26T07-00-00")
    assert a.find_session_id(mine) == "01a21663-0000-7000-8000-000000000002"
    assert a.find_session_id(other) == "01a21663-0000-7000-8000-000000000003"
    assert a.find_session_id(tmp_path / "nobody") is None


def test_codex_restart_resumes_found_or_known_session(tmp_path, monkeypatch):
    codex_home = tmp_path / "codex"
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    a = adapter("codex")
    ctx = context(tmp_path, resume=True)
    a.prepare(ctx)
    # No conversation recorded: a fresh start with the prompt.
    assert ctx.session_id == ""
    assert a.launch_argv(ctx)[-2:] == ["--", "fix the bug"]
    sid = "01a21663-0000-7000-8000-00000000000a"
    _rollout(codex_home, sid, ctx.start_dir)
    ctx = context(tmp_path, resume=True)
    a.prepare(ctx)
    assert ctx.session_id == sid
    argv = a.launch_argv(ctx)
    assert argv[:3] == ["codex", "resume", "--no-daemon"]
    assert argv[-1] == sid
    assert "fix the bug" not in argv
    # A known id whose file vanished is not resumed blindly.
    ctx = context(tmp_path, resume=True, session_id="01a21663-dead-7000-8000-000000000000")
    a.prepare(ctx)
    assert ctx.session_id == sid


CODEX_SCREENS = {
    "codex_idle.txt": "idle",
    "codex_idle_after_approve.txt": "idle",
    "codex_idle_after_deny.txt": "idle",
    "codex_idle_resumed.txt": "idle",
    "codex_working.txt": "working",
    "codex_waiting_exec.txt": "waiting",
    "codex_trust_dialog.txt": None,
    "codex_trust_dialog_worktree.txt": None,
}


@pytest.mark.parametrize("name,expected", sorted(CODEX_SCREENS.items()))
def test_codex_classifies_real_screens(name, expected):
    assert adapter("codex").classify(screen(name)).status == expected


def test_codex_fixtures_are_all_classified():
    assert {p.name for p in SCREENS.glob("codex_*.txt")} == set(CODEX_SCREENS)


def test_codex_dialog_action_accepts_folder_trust_only():
    a = adapter("codex")
    assert a.dialog_action(screen("codex_trust_dialog.txt")) == ["Enter"]
    assert a.dialog_action(screen("codex_trust_dialog_worktree.txt")) == ["Enter"]
    for name in ("codex_waiting_exec.txt", "codex_idle.txt", "codex_working.txt"):
        assert a.dialog_action(screen(name)) is None


def test_codex_submit_waits_before_enter():
    a = adapter("codex")
    pane = FakePane()
    a.submit(pane, "hello there")
    (kind, text, enter, t_text), (kind2, keys, t_enter) = pane.sent
    assert (kind, text, enter) == ("text", "hello there", False)
    assert (kind2, keys) == ("keys", ("Enter",))
    assert t_enter - t_text >= a.submit_settle_s("hello there") * 0.9
    assert a.submit_settle_s("x" * 500) > a.submit_settle_s("x")


def test_codex_keys():
    a = adapter("codex")
    pane = FakePane()
    a.approve(pane)
    a.deny(pane)
    assert [s[1] for s in pane.sent] == [("y",), ("Escape",)]


# ---------------------------------------------------------------------- Gemini CLI, Aider, OpenCode

OTHER_SCREENS = {
    "gemini_idle.txt": "idle",
    "gemini_idle_after_approve.txt": "idle",
    "gemini_idle_after_deny.txt": "idle",
    "gemini_working.txt": "working",
    "gemini_waiting_shell.txt": "waiting",
    "gemini_auth_dialog.txt": "waiting",
    "gemini_trust_dialog.txt": None,
    "aider_idle.txt": "idle",
    "aider_idle_after_create.txt": "idle",
    "aider_working.txt": "working",
    "aider_waiting_create.txt": "waiting",
    "aider_waiting_gitignore.txt": "waiting",
    "aider_waiting_release_notes.txt": "waiting",
    "opencode_idle.txt": "idle",
    "opencode_idle_after_answer.txt": "idle",
    "opencode_idle_after_deny.txt": "idle",
    "opencode_working.txt": "working",
    "opencode_waiting_bash.txt": "waiting",
}


@pytest.mark.parametrize("name,expected", sorted(OTHER_SCREENS.items()))
def test_other_agents_classify_real_screens(name, expected):
    kind = name.split("_")[0]
    assert adapter(kind).classify(screen(name)).status == expected


def test_every_fixture_is_classified_by_a_test():
    listed = set(CLAUDE_SCREENS) | set(CODEX_SCREENS) | set(OTHER_SCREENS)
    assert {p.name for p in SCREENS.glob("*.txt")} == listed


def test_gemini_launch_resume_and_hooks(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GEMINI_CLI_SYSTEM_SETTINGS_PATH", raising=False)
    a = adapter("gemini")
    ctx = context(tmp_path)
    a.prepare(ctx)
    argv = a.launch_argv(ctx)
    assert argv[:2] == ["gemini", "--skip-trust"]
    assert argv[argv.index("--session-id") + 1] == ctx.session_id
    assert argv[-2:] == ["--prompt-interactive", "fix the bug"]
    # Hooks go in agentdeck's own system-settings file, only where Gemini accepts it.
    if ctx.extra["gemini_settings"]:
        env = a.launch_env(ctx)
        settings = json.loads(Path(env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"]).read_text())
        command = settings["hooks"]["AfterAgent"][0]["hooks"][0]["command"]
        assert shlex.split(command) == [*HOOK, "gemini", "AfterAgent"]
    else:
        assert "GEMINI_CLI_SYSTEM_SETTINGS_PATH" not in a.launch_env(ctx)
    chats = home / ".gemini" / "tmp" / "wt" / "chats"
    chats.mkdir(parents=True)
    (chats / f"session-2026-11-26T06-05-{ctx.session_id[:8]}.jsonl").write_text("{}\n")
    ctx.resume = True
    assert a.launch_argv(ctx)[-2:] == ["--resume", ctx.session_id]


def test_gemini_never_hides_a_users_system_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_CLI_SYSTEM_SETTINGS_PATH", "/etc/somewhere.json")
    a = adapter("gemini")
    ctx = context(tmp_path)
    a.prepare(ctx)
    assert ctx.extra["gemini_settings"] == ""
    assert "GEMINI_CLI_SYSTEM_SETTINGS_PATH" not in a.launch_env(ctx)


def test_gemini_refuses_a_world_writable_parent(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    assert not adapter("gemini").can_install_hooks(loose / "state" / "x.json")


def test_gemini_dialogs_and_keys():
    a = adapter("gemini")
    assert a.dialog_action(screen("gemini_trust_dialog.txt")) == ["Enter"]
    assert a.dialog_action(screen("gemini_waiting_shell.txt")) is None
    pane = FakePane()
    a.approve(pane)
    a.deny(pane)
    assert [s[1] for s in pane.sent] == [("1",), ("Escape",)]


def test_aider_argv_prompt_and_keys(tmp_path):
    a = adapter("aider")
    ctx = context(tmp_path)
    argv = a.launch_argv(ctx)
    assert argv[0] == "aider"
    for flag in ("--no-gitignore", "--no-show-release-notes", "--no-check-update"):
        assert flag in argv
    assert "fix the bug" not in argv and a.prompt_typed_after_start(ctx)
    ctx.resume = True
    assert "--restore-chat-history" in a.launch_argv(ctx)
    assert not a.prompt_typed_after_start(ctx)
    pane = FakePane()
    a.approve(pane)
    a.deny(pane)
    assert [s[1] for s in pane.sent] == [("y", "Enter"), ("n", "Enter")]


def test_opencode_argv_and_keys(tmp_path):
    a = adapter("opencode")
    ctx = context(tmp_path)
    assert a.launch_argv(ctx) == ["opencode", "--prompt", "fix the bug"]
    ctx.resume = True
    assert a.launch_argv(ctx) == ["opencode", "--prompt", "fix the bug"]  # unknown session: fresh, never --continue
    ctx.session_id = "ses_123"
    assert a.launch_argv(ctx) == ["opencode", "--session", "ses_123"]
    pane = FakePane()
    a.approve(pane)
    a.deny(pane)
    assert [s[1] for s in pane.sent] == [("Enter",), ("Escape",)]
