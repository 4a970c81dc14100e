"""What the adapters give each agent: the brief, the MCP server spec (agentdeck.memory.inject), and each
CLI's flags made from the one MemoryWiring (agents/<kind>/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
from memory_support import ROOT, _no_memory_env, mcp_session, result_data  # noqa: F401

from agentdeck.agents import adapter_class
from agentdeck.agents.base import LaunchContext, wire_memory
from agentdeck.agents.claude import memory as claude_memory
from agentdeck.agents.codex import memory as codex_memory
from agentdeck.config import AgentDef, Config
from agentdeck.memory import inject
from agentdeck.paths import find_repo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _ctx(git_repo: Path, name: str = "north-star") -> LaunchContext:
    repo = find_repo(git_repo)
    return LaunchContext(name=name, worktree=git_repo, start_dir=git_repo, state_dir=repo.state_dir,
                         repo_root=repo.root)


def _write_core(git_repo: Path, text: str) -> None:
    core = git_repo / ".git" / "agentdeck" / "memory" / "CORE.md"
    core.parent.mkdir(parents=True, exist_ok=True)
    core.write_text(text)


def test_brief_has_the_tools_and_the_core_summary(git_repo):
    _write_core(git_repo, "# Core\n\n<!-- user guidance, hidden -->\nWe deploy with Nix. Never touch vendor/.\n")
    brief = inject.brief_text(_ctx(git_repo), "north-star")
    assert "`north-star`" in brief and "journal/north-star" in brief
    for tool in ("memory_search", "memory_write", "memory_read", "memory_update", "memory_append_journal",
                 "memory_recent"):
        assert tool in brief
    assert "We deploy with Nix. Never touch vendor/." in brief
    assert "user guidance" not in brief and "$core" not in brief and "$agent" not in brief
    assert str(git_repo / ".git" / "agentdeck" / "memory") in brief
    # The same brief from every kind of "where".
    repo = find_repo(git_repo)
    assert inject.brief_text(repo, "north-star") == brief
    from agentdeck.memory.store import MemoryStore

    assert inject.brief_text(MemoryStore.open(cwd=git_repo), "north-star") == brief


def test_brief_cuts_a_long_core_and_says_where_the_rest_is(git_repo):
    _write_core(git_repo, "\n".join(f"line {i} " + "x" * 60 for i in range(200)))
    brief = inject.brief_text(_ctx(git_repo), "a")
    assert "line 0 " in brief and "line 199" not in brief
    assert 'memory_read("CORE")' in brief
    assert len(brief) < inject.MAX_CORE_CHARS + 3000
    _write_core(git_repo, "# Core\n<!-- only the template -->\n")
    assert "has not written a core summary" in inject.brief_text(_ctx(git_repo), "a")


def test_prompt_template_comes_from_the_package_or_the_checkout():
    assert inject.load_prompt("memory_brief.md") == (ROOT / "prompts" / "memory_brief.md").read_text()


def test_brief_file_lives_in_the_state_dir(git_repo):
    path = inject.brief_file(_ctx(git_repo), "north-star")
    assert path == git_repo / ".git" / "agentdeck" / "briefs" / "north-star.md"
    assert "north-star" in path.read_text()
    env = inject.memory_env(_ctx(git_repo), "north-star")
    assert env == {"AGENTDECK_MEMORY_DIR": str(git_repo / ".git" / "agentdeck" / "memory"),
                   "AGENTDECK_MEMORY_BRIEF": str(path)}


def test_mcp_server_spec(git_repo):
    spec = inject.mcp_server_spec(_ctx(git_repo), "north-star")
    assert spec["command"] == sys.executable and spec["args"] == ["-m", "agentdeck", "mcp"]
    env = spec["env"]
    assert env["AGENTDECK_AGENT"] == "north-star"
    assert env["AGENTDECK_STATE_DIR"] == str(git_repo / ".git" / "agentdeck")
    assert env["AGENTDECK_REPO"] == str(git_repo)
    assert env["AGENTDECK_MEMORY_DIR"] == str(git_repo / ".git" / "agentdeck" / "memory")
    assert env["PYTHONPATH"].split(":")[0] == str(ROOT)  # a source checkout
    # The deck's own argv (LaunchContext.mcp_command) is honoured, its `env X=Y` prefix turned into env.
    spec = inject.mcp_server_spec(_ctx(git_repo), "n", mcp_command=["env", "PYTHONPATH=/src", "/py", "-m",
                                                                    "agentdeck", "mcp"])
    assert (spec["command"], spec["args"], spec["env"]["PYTHONPATH"]) == ("/py", ["-m", "agentdeck", "mcp"], "/src")


def test_the_spec_starts_a_working_server_from_anywhere(git_repo, tmp_path):
    """What an agent would run, from its own cwd with a bare environment: the note lands in the store."""
    from mcp.client.stdio import StdioServerParameters

    spec = inject.mcp_server_spec(_ctx(git_repo), "west-wind")
    params = StdioServerParameters(command=spec["command"], args=spec["args"], env=spec["env"], cwd=str(tmp_path))

    async def main():
        async with mcp_session(params) as s:
            return result_data(await s.call_tool("memory_write", {"title": "Spec works", "body": "yes"}))

    written = anyio.run(main)
    text = Path(written["path"]).read_text()
    assert "author: west-wind" in text
    assert Path(written["path"]).parent == git_repo / ".git" / "agentdeck" / "memory" / "notes"


def test_claude_pieces(git_repo):
    ctx = _ctx(git_repo)
    wiring = wire_memory(ctx)
    args = claude_memory.args(wiring)
    assert args[0] == "--mcp-config" and args[2:4] == ["--allowedTools", "mcp__agentdeck__*"]
    assert args[4] == "--append-system-prompt" and "memory_search" in args[5] and len(args) == 6
    config = json.loads(Path(args[1]).read_text())
    server = config["mcpServers"]["agentdeck"]
    assert server["type"] == "stdio" and server["command"] == sys.executable
    assert server["env"]["AGENTDECK_AGENT"] == "north-star"
    assert Path(args[1]).parent == git_repo / ".git" / "agentdeck" / "mcp"
    assert claude_memory.mcp_config(wiring) == config

    env = claude_memory.env(wiring)
    assert env["CLAUDE_CODE_DISABLE_AUTO_MEMORY"] == "1" and Path(env["AGENTDECK_MEMORY_BRIEF"]).is_file()

    hooks = claude_memory.session_start_hooks(wiring)
    assert hooks[0]["matcher"] == "compact"
    command = hooks[0]["hooks"][0]["command"]
    out = subprocess.run(command, shell=True, capture_output=True, text=True, check=True).stdout
    assert out == inject.brief_text(ctx, ctx.name)


def test_codex_args_are_valid_toml_overrides(git_repo):
    ctx = _ctx(git_repo)
    wiring = wire_memory(ctx)
    args = codex_memory.config_args(wiring)
    assert args[0::2] == ["-c"] * (len(args) // 2)
    merged: dict = {}
    for override in args[1::2]:
        key, value = override.split("=", 1)
        parsed = tomllib.loads(f"{key} = {value}")
        merged = _deep_merge(merged, parsed)
    spec = inject.mcp_server_spec(ctx, ctx.name)
    assert merged["mcp_servers"]["agentdeck"] == spec
    assert merged["developer_instructions"] == inject.brief_text(ctx, ctx.name)
    assert not any(a.startswith("developer_instructions") for a in codex_memory.config_args(wiring, with_brief=False))


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_each_adapter_turns_the_one_wiring_into_its_flags(git_repo):
    ctx = _ctx(git_repo)
    ctx.mcp_command = ["env", "PYTHONPATH=/src", "/py", "-m", "agentdeck", "mcp"]
    brief = str(git_repo / ".git" / "agentdeck" / "briefs" / "north-star.md")
    wiring = wire_memory(ctx)
    assert wiring.brief_file == Path(brief) and wiring.env["AGENTDECK_MEMORY_BRIEF"] == brief
    assert wiring.stdio_server["command"] == "/py" and not wiring.mcp_url

    claude = adapter_class("claude")("claude", AgentDef(kind="claude"), Config())
    options, env = claude.memory_args(ctx), claude.memory_env(ctx)
    assert options[:1] == ["--mcp-config"] and env["CLAUDE_CODE_DISABLE_AUTO_MEMORY"] == "1"
    assert json.loads(Path(options[1]).read_text())["mcpServers"]["agentdeck"]["command"] == "/py"
    settings = {"hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "status hook"}]}]}}
    claude_memory.settings_extension(ctx, settings)
    assert [e.get("matcher") for e in settings["hooks"]["SessionStart"]] == [None, "compact"]

    codex = adapter_class("codex")("codex", AgentDef(kind="codex"), Config())
    options, env = codex.memory_options(ctx), codex.memory_env(ctx)
    assert "mcp_servers.agentdeck.command=\"/py\"" in options and "AGENTDECK_MEMORY_BRIEF" in env
    assert 'mcp_servers.agentdeck.default_tools_approval_mode="approve"' in options

    aider = adapter_class("aider")("aider", AgentDef(kind="aider"), Config())
    argv = aider.launch_argv(ctx)
    assert argv[argv.index("--read"):argv.index("--read") + 2] == ["--read", brief]

    gemini = adapter_class("gemini")("gemini", AgentDef(kind="gemini"), Config())
    server = gemini.settings_dict(ctx)["mcpServers"]["agentdeck"]
    assert server["env"]["AGENTDECK_AGENT"] == "north-star" and server["trust"] is True

    generic = adapter_class("generic")("generic", AgentDef(kind="generic"), Config())
    assert generic.memory_env(ctx) == wiring.env


def test_prompt_found_in_an_installed_layout(tmp_path):
    """Installed, prompts/ is mapped into the package as agentdeck/prompts (no checkout beside it)."""
    import shutil

    from memory_support import child_env

    site = tmp_path / "site"
    shutil.copytree(ROOT / "agentdeck", site / "agentdeck", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "agentdeck" / "prompts").mkdir()
    (site / "agentdeck" / "prompts" / "memory_brief.md").write_text("installed brief for $agent\n")
    code = "from agentdeck.memory.inject import load_prompt; print(load_prompt('memory_brief.md'), end='')"
    env = child_env()
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "installed brief for $agent\n"
