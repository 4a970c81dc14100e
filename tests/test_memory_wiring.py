"""Every adapter gives its agent the shared memory on launch and on restart (argv, env, settings),
without touching a tracked file or the user's own agent configuration."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from memory_support import _no_memory_env  # noqa: F401
from support import git, retry_until, run_cli

from agentdeck.agents import adapter_class
from agentdeck.agents.base import LaunchContext
from agentdeck.config import AgentDef, Config
from agentdeck.memory import inject
from agentdeck.paths import find_repo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HOOK = ["env", "PYTHONPATH=/opt/ad", "/usr/bin/python3", "-m", "agentdeck", "hook"]
MCP = ["env", "PYTHONPATH=/opt/ad", "/usr/bin/python3", "-m", "agentdeck", "mcp"]


def adapter(kind: str, **agent_def):
    config = Config()
    definition = AgentDef(kind=kind, **agent_def) if agent_def else config.agent_def(kind)
    return adapter_class(kind)(kind, definition, config)


def context(repo: Path, **kw) -> LaunchContext:
    paths = find_repo(repo)
    worktree = repo.parent / "wt"
    worktree.mkdir(exist_ok=True)
    values: dict[str, Any] = {"name": "north star", "worktree": worktree, "start_dir": worktree,
                              "state_dir": paths.state_dir, "repo_root": paths.root, "prompt": "fix the bug",
                              "hook_command": list(HOOK), "mcp_command": list(MCP)}
    values.update(kw)
    return LaunchContext(**values)


def memory_dir(repo: Path) -> Path:
    return repo / ".git" / "agentdeck" / "memory"


def brief_path(repo: Path, slug: str = "north-star") -> Path:
    return repo / ".git" / "agentdeck" / "briefs" / f"{slug}.md"


def expect_memory_env(env: dict[str, str], repo: Path) -> None:
    assert env["AGENTDECK_MEMORY_DIR"] == str(memory_dir(repo))
    assert env["AGENTDECK_MEMORY_BRIEF"] == str(brief_path(repo))
    assert "`north star`" in Path(env["AGENTDECK_MEMORY_BRIEF"]).read_text()


def parse_overrides(args: list[str]) -> dict:
    """``-c key=value`` pairs as Codex reads them (TOML values, dotted keys)."""
    merged: dict = {}
    for flag, override in zip(args[0::2], args[1::2]):
        assert flag == "-c"
        key, value = override.split("=", 1)
        node = merged
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = tomllib.loads(f"v = {value}")["v"]
    return merged


# ---------------------------------------------------------------------- Claude Code


def test_claude_launch_has_the_server_the_allowed_tools_and_the_brief_before_the_prompt(git_repo):
    a = adapter("claude")
    ctx = context(git_repo, prompt="--looks like a flag")
    a.prepare(ctx)
    argv = a.launch_argv(ctx)
    assert argv[-2:] == ["--", "--looks like a flag"]
    options = argv[: argv.index("--")]
    config = json.loads(Path(options[options.index("--mcp-config") + 1]).read_text())
    server = config["mcpServers"]["agentdeck"]
    assert server["command"] == "/usr/bin/python3" and server["args"] == ["-m", "agentdeck", "mcp"]
    assert server["env"]["AGENTDECK_AGENT"] == "north star"
    assert server["env"]["PYTHONPATH"] == "/opt/ad"  # the deck's own argv, its `env` prefix turned into env
    assert server["env"]["AGENTDECK_MEMORY_DIR"] == str(memory_dir(git_repo))
    # Connected before the first request (the prompt), its tools never deferred behind tool search.
    assert server["alwaysLoad"] is True
    # --allowedTools takes several values: another option follows it, never the prompt.
    allowed = options.index("--allowedTools")
    assert options[allowed + 1] == "mcp__agentdeck__*" and options[allowed + 2].startswith("--")
    brief = options[options.index("--append-system-prompt") + 1]
    assert brief == inject.brief_text(ctx, "north star") and "memory_write" in brief
    assert options.index("--settings") < options.index("--mcp-config") < options.index("--session-id")
    # Nothing went into the worktree (tracked or not) or a home directory.
    assert not any(ctx.worktree.iterdir())


def test_claude_resume_gets_the_memory_too(git_repo, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    a = adapter("claude")
    ctx = context(git_repo, session_id="0b5e2c1e-1111-4222-8333-944455556666", resume=True)
    a.prepare(ctx)
    transcript = home / ".claude" / "projects" / "-x" / f"{ctx.session_id}.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text("{}\n")
    argv = a.launch_argv(ctx)
    assert argv[-2:] == ["--resume", ctx.session_id]
    assert "--mcp-config" in argv and "--append-system-prompt" in argv
    assert argv[argv.index("--allowedTools") + 1] == "mcp__agentdeck__*"
    assert argv.index("--allowedTools") < argv.index("--resume") - 2


def test_claude_env_turns_its_own_memory_off_and_the_definition_env_wins(git_repo):
    env = adapter("claude").launch_env(context(git_repo))
    assert env["CLAUDE_CODE_DISABLE_AUTO_MEMORY"] == "1"
    expect_memory_env(env, git_repo)
    env = adapter("claude", env={"CLAUDE_CODE_DISABLE_AUTO_MEMORY": "0", "X": "1"}).launch_env(context(git_repo))
    assert env["CLAUDE_CODE_DISABLE_AUTO_MEMORY"] == "0" and env["X"] == "1"


def test_claude_settings_give_the_brief_again_after_compaction(git_repo):
    a = adapter("claude")
    ctx = context(git_repo)
    a.prepare(ctx)
    settings = json.loads(Path(ctx.extra["claude_settings"]).read_text())
    groups = settings["hooks"]["SessionStart"]
    assert shlex.split(groups[0]["hooks"][0]["command"]) == [*HOOK, "claude", "SessionStart"]
    (compact,) = [g for g in groups if g.get("matcher") == "compact"]
    out = subprocess.run(compact["hooks"][0]["command"], shell=True, capture_output=True, text=True, check=True)
    assert out.stdout == inject.brief_text(ctx, "north star")


def test_no_repository_no_memory_wiring(tmp_path):
    """A context for no repository (a dry run) gets nothing, and nothing is written for it."""
    state = tmp_path / "state"
    ctx = LaunchContext(name="n", worktree=tmp_path, start_dir=tmp_path, state_dir=state,
                        repo_root=tmp_path / "missing", prompt="p", hook_command=list(HOOK))
    for kind in ("claude", "codex", "gemini", "aider", "opencode", "generic"):
        a = adapter(kind, command="prog") if kind == "generic" else adapter(kind)
        a.prepare(ctx)
        argv, env = a.launch_argv(ctx), a.launch_env(ctx)
        assert not any("agentdeck" in arg and "mcp" in arg for arg in argv), kind
        assert "--read" not in argv and "--mcp-config" not in argv
        assert "AGENTDECK_MEMORY_DIR" not in env and "CLAUDE_CODE_DISABLE_AUTO_MEMORY" not in env
    assert not (state / "briefs").exists() and not (state / "mcp").exists()


# ---------------------------------------------------------------------- Codex


def test_codex_launch_and_resume_get_the_server_approved_and_the_brief(git_repo, tmp_path, monkeypatch):
    codex_home = tmp_path / "codex"
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    a = adapter("codex")
    ctx = context(git_repo)
    a.prepare(ctx)
    argv = a.launch_argv(ctx)
    assert argv[-2:] == ["--", "fix the bug"] and argv[1] == "--no-daemon"
    overrides = parse_overrides(argv[2:-2])
    server = overrides["mcp_servers"]["agentdeck"]
    assert server["command"] == "/usr/bin/python3" and server["args"] == ["-m", "agentdeck", "mcp"]
    assert server["env"]["AGENTDECK_AGENT"] == "north star"
    assert server["env"]["AGENTDECK_STATE_DIR"] == str(git_repo / ".git" / "agentdeck")
    assert server["default_tools_approval_mode"] == "approve"
    assert overrides["developer_instructions"] == inject.brief_text(ctx, "north star")
    assert json.loads(argv[argv.index("-c") + 1][len("notify="):])[-2:] == ["codex", "notify"]

    # `codex resume` gets the same overrides (they are not kept with the conversation).
    sid = "01a21663-0000-7000-8000-00000000000a"
    day = codex_home / "sessions" / "2026" / "11" / "26"
    day.mkdir(parents=True)
    meta = {"type": "session_meta", "payload": {"id": sid, "cwd": str(ctx.start_dir)}}
    (day / f"rollout-2026-11-26T05-45-54-{sid}.jsonl").write_text(json.dumps(meta) + "\n")
    ctx = context(git_repo, resume=True)
    a.prepare(ctx)
    argv = a.launch_argv(ctx)
    assert argv[:3] == ["codex", "resume", "--no-daemon"] and argv[-1] == sid
    assert parse_overrides(argv[3:-1]) == overrides
    expect_memory_env(a.launch_env(ctx), git_repo)


# ---------------------------------------------------------------------- Gemini CLI


def test_gemini_settings_carry_the_trusted_server(git_repo, monkeypatch):
    monkeypatch.delenv("GEMINI_CLI_SYSTEM_SETTINGS_PATH", raising=False)
    a = adapter("gemini")
    monkeypatch.setattr(a, "can_install_hooks", lambda path: True)  # tmp dirs sit under a world-writable /tmp
    ctx = context(git_repo)
    a.prepare(ctx)
    env = a.launch_env(ctx)
    settings = json.loads(Path(env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"]).read_text())
    server = settings["mcpServers"]["agentdeck"]
    assert server["trust"] is True and server["args"] == ["-m", "agentdeck", "mcp"]
    assert server["env"]["AGENTDECK_AGENT"] == "north star"
    assert "AfterAgent" in settings["hooks"]
    assert Path(env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"]).is_relative_to(git_repo / ".git" / "agentdeck")
    expect_memory_env(env, git_repo)
    # Where the settings file cannot be used, the env still says where the memory is.
    monkeypatch.setattr(a, "can_install_hooks", lambda path: False)
    ctx = context(git_repo)
    a.prepare(ctx)
    env = a.launch_env(ctx)
    assert "GEMINI_CLI_SYSTEM_SETTINGS_PATH" not in env
    expect_memory_env(env, git_repo)


# ---------------------------------------------------------------------- Aider, OpenCode, generic


def test_aider_reads_the_brief(git_repo):
    a = adapter("aider")
    ctx = context(git_repo)
    argv = a.launch_argv(ctx)
    assert argv[argv.index("--read") + 1] == str(brief_path(git_repo))
    assert "agentdeck memory" in brief_path(git_repo).read_text()
    ctx.resume = True
    argv = a.launch_argv(ctx)
    assert "--read" in argv and argv[-1] == "--restore-chat-history"
    expect_memory_env(a.launch_env(ctx), git_repo)


@pytest.mark.parametrize("kind", ["opencode", "generic"])
def test_others_get_the_memory_dir_and_the_brief_in_the_env(git_repo, kind):
    a = adapter(kind, command="prog") if kind == "generic" else adapter(kind)
    ctx = context(git_repo)
    expect_memory_env(a.launch_env(ctx), git_repo)
    assert a.launch_argv(ctx) == ([kind, "--prompt", "fix the bug"] if kind == "opencode" else ["prog"])


# ---------------------------------------------------------------------- through the deck


def test_a_deck_agent_finds_the_memory_from_its_pane(fake_repo):
    """`agentdeck new` (fake agent): the pane's env names the store and the brief, nothing is tracked."""
    proc = run_cli("new", "scout", "--json", cwd=fake_repo)
    assert proc.returncode == 0, proc.stderr
    assert run_cli("send", "scout", "run printenv AGENTDECK_MEMORY_BRIEF", cwd=fake_repo).returncode == 0
    expected = str(brief_path(fake_repo, "scout"))
    retry_until(lambda: expected in run_cli("peek", "scout", cwd=fake_repo).stdout, timeout=15,
                what="the brief's path on the agent's screen")
    assert "`scout`" in Path(expected).read_text()
    worktree = Path(json.loads(proc.stdout)["worktree"])
    assert git(worktree, "status", "--porcelain") == ""


@pytest.mark.slow
@pytest.mark.realcli
@pytest.mark.timeout(180)
def test_real_aider_sends_the_brief_to_its_model(git_repo, isolated_home, tmp_path):
    """Aider (optional install, see tests/test_adapters_real_aider.py) reads the brief: it reaches the model."""
    import shutil

    from realcli_support import ROOT
    from stubs.openai_stub import OpenAIStub, Reply

    local = ROOT / ".ci" / ".cache" / "aider-venv" / "bin" / "aider"
    aider = str(local) if local.exists() else shutil.which("aider")
    if aider is None:
        pytest.skip("aider is not installed (optional: see tests/test_adapters_real_aider.py)")
    home = tmp_path / "aider-home"
    home.mkdir()
    with OpenAIStub() as stub:
        stub.when("hello there", Reply.text("Hello from the stub model!"))
        args = ["--model", "openai/stub-model", "--openai-api-base", f"{stub.url}/v1", "--openai-api-key", "sk-stub",
                "--no-show-model-warnings"]
        env = {"HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        (isolated_home / "config.toml").write_text(
            "[agents.aider]\n" f"command = {json.dumps(aider)}\n" f"args = {json.dumps(args)}\n"
            "[agents.aider.env]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in env.items()))
        proc = run_cli("new", "delta", "--agent", "aider", "--prompt", "hello there", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        retry_until(lambda: "Hello from the stub model!" in run_cli("peek", "delta", cwd=git_repo).stdout,
                    timeout=90, what="aider's answer")
        sent = json.dumps(stub.main_requests()[-1].body.get("messages"))
    assert "You are agent `delta`" in sent and "memory_search(query)" in sent


# ---------------------------------------------------------------------- wired to the repository's HTTP server

URL = "http://127.0.0.1:45678/mcp"
TOKEN = "tok-" + "x" * 40


def http_context(repo: Path, **kw) -> LaunchContext:
    return context(repo, mcp_url=URL, mcp_token=TOKEN, **kw)


def test_claude_over_http_names_the_token_variable_never_the_token_and_waits_to_type(git_repo):
    a = adapter("claude")
    ctx = http_context(git_repo)
    a.prepare(ctx)
    argv = a.launch_argv(ctx)
    assert "fix the bug" not in argv and "--" not in argv  # typed once the tools are listed
    assert a.prompt_waits_for_tools(ctx) and not a.prompt_typed_after_start(ctx)
    config_file = Path(argv[argv.index("--mcp-config") + 1])
    server = json.loads(config_file.read_text())["mcpServers"]["agentdeck"]
    assert server == {"type": "http", "url": URL, "headers": {"Authorization": "Bearer ${AGENTDECK_MCP_TOKEN}"},
                      "alwaysLoad": True}
    assert TOKEN not in config_file.read_text() and not any(TOKEN in arg for arg in argv)
    env = a.launch_env(ctx)
    assert env["AGENTDECK_MCP_TOKEN"] == TOKEN
    # Without a URL (no repository server, or AGENTDECK_MCP_HTTP=0): stdio and the prompt as an argument.
    ctx = context(git_repo)
    a.prepare(ctx)
    assert a.launch_argv(ctx)[-2:] == ["--", "fix the bug"] and not a.prompt_waits_for_tools(ctx)
    assert "AGENTDECK_MCP_TOKEN" not in a.launch_env(ctx)


def test_claude_resume_over_http_has_nothing_to_type(git_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    a = adapter("claude")
    ctx = http_context(git_repo, session_id="0b5e2c1e-1111-4222-8333-944455556666", resume=True)
    transcript = tmp_path / "home" / ".claude" / "projects" / "-x" / f"{ctx.session_id}.jsonl"
    transcript.parent.mkdir(parents=True)
    transcript.write_text("{}\n")
    a.prepare(ctx)
    assert a.launch_argv(ctx)[-2:] == ["--resume", ctx.session_id] and not a.prompt_waits_for_tools(ctx)


def test_codex_over_http_reads_the_token_from_its_environment(git_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEX_HOME", str(tmp_path / "codex"))
    a = adapter("codex")
    ctx = http_context(git_repo)
    a.prepare(ctx)
    argv = a.launch_argv(ctx)
    assert "fix the bug" not in argv and a.prompt_waits_for_tools(ctx)
    server = parse_overrides(argv[2:])["mcp_servers"]["agentdeck"]
    assert server == {"url": URL, "bearer_token_env_var": "AGENTDECK_MCP_TOKEN",
                      "default_tools_approval_mode": "approve"}
    assert not any(TOKEN in arg for arg in argv)
    assert a.launch_env(ctx)["AGENTDECK_MCP_TOKEN"] == TOKEN


def test_gemini_over_http_uses_http_url_and_a_header_variable(git_repo, monkeypatch):
    monkeypatch.delenv("GEMINI_CLI_SYSTEM_SETTINGS_PATH", raising=False)
    a = adapter("gemini")
    monkeypatch.setattr(a, "can_install_hooks", lambda path: True)
    ctx = http_context(git_repo)
    a.prepare(ctx)
    env = a.launch_env(ctx)
    text = Path(env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"]).read_text()
    server = json.loads(text)["mcpServers"]["agentdeck"]
    assert server == {"httpUrl": URL, "headers": {"Authorization": "Bearer ${AGENTDECK_MCP_TOKEN}"}, "trust": True}
    assert TOKEN not in text and env["AGENTDECK_MCP_TOKEN"] == TOKEN
    argv = a.launch_argv(ctx)
    assert "--prompt-interactive" not in argv and a.prompt_waits_for_tools(ctx)


@pytest.mark.parametrize("kind", ["aider", "opencode", "generic"])
def test_agents_without_http_keep_their_way_and_get_no_token(git_repo, kind):
    a = adapter(kind, command="prog") if kind == "generic" else adapter(kind)
    assert not a.mcp_http
    ctx = http_context(git_repo)
    assert not a.prompt_waits_for_tools(ctx)
