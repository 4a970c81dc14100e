"""End to end with the real Codex CLI (the pinned version, against the local Responses stub): wired
to the repository's HTTP MCP server (``url`` + ``bearer_token_env_var``), an agent given a prompt at
launch has agentdeck's tools in the first API request that carries tools, and its first-turn memory
write lands with its name as author; the same after the server was killed and came back.

Skipped when the CLI is not installed, unless AGENTDECK_REQUIRE_REAL_CLIS=1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import test_memory_e2e_codex as codex_e2e
from mcp_support import kill_server
from memory_support import _no_memory_env  # noqa: F401
from realcli_support import codex_env, require_cli, seed_codex_home, write_agent_config
from stubs.openai_stub import Reply
from support import retry_until, run_cli

from agentdeck import paths
from agentdeck.mcp_link import service
from agentdeck.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.realcli, pytest.mark.timeout(240)]

NAMESPACE = codex_e2e.NAMESPACE
FIRST = {"title": "Codex found the flaky port", "body": "Port 8080 is taken by the docs server.", "tags": ["tests"],
         "kind": "gotcha"}
SECOND = {"title": "Codex found the slow disk", "body": "The CI disk is slow after 5 pm.", "tags": ["ci"],
          "kind": "gotcha"}


def note_with_title(repo: Path, title: str) -> dict | None:
    proc = run_cli("memory", "search", title, "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return next((hit for hit in json.loads(proc.stdout) if hit["title"] == title), None)


def events(repo: Path, name: str) -> list[dict]:
    return json.loads(run_cli("events", name, "--json", cwd=repo).stdout)


@pytest.fixture(autouse=True)
def _quick_exit(monkeypatch):
    monkeypatch.setenv("AGENTDECK_MCP_GRACE", "3")


def test_first_turn_has_the_memory_tools_before_and_after_a_server_kill(git_repo, isolated_home, tmp_path):
    codex = require_cli("codex")
    home = tmp_path / "codex-home"
    with codex_e2e.NamespacedStub() as stub:
        seed_codex_home(home, stub.url)
        write_agent_config(isolated_home, "codex", codex, codex_env(home))
        tools = codex_e2e.namespace_tools
        stub.when(lambda r: r.is_tool_turn and re.search(r'"version":\s*1', "".join(r.tool_results)),
                  Reply.text("Saved it."))
        stub.when(lambda r: "remember the port gotcha" in r.prompt and "memory_write" in tools(r),
                  Reply.tool(f"{NAMESPACE}__memory_write", FIRST))
        stub.when(lambda r: "remember the disk gotcha" in r.prompt and "memory_write" in tools(r),
                  Reply.tool(f"{NAMESPACE}__memory_write", SECOND))
        proc = run_cli("new", "cx", "--agent", "codex", "--prompt", "please remember the port gotcha", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr

        def diagnostics() -> str:
            offered = [tools(r) for r in stub.main_requests()]
            return (f"\n--- screen:\n{run_cli('peek', 'cx', cwd=git_repo).stdout}\n--- agentdeck tools per request: "
                    f"{offered}\n--- events: {events(git_repo, 'cx')}")

        try:
            first = retry_until(lambda: note_with_title(git_repo, FIRST["title"]), timeout=120, interval=0.5,
                                what="the first-turn note")
        except AssertionError as exc:
            raise AssertionError(f"{exc}{diagnostics()}") from None
        opening = stub.main_requests()[0]
        assert {"memory_write", "memory_search"} <= set(tools(opening)), diagnostics()
        assert "remember the port gotcha" in opening.prompt
        assert first["author"] == "cx"

        store = Store(paths.find_repo(git_repo).db_path)
        retry_until(lambda: "Saved it." in run_cli("peek", "cx", cwd=git_repo).stdout, timeout=30,
                    what="the first turn's end")
        port = kill_server(git_repo, store)
        state_dir = paths.find_repo(git_repo).state_dir
        retry_until(lambda: service.server_alive(state_dir) and service.read_record(store).get("state") == "running",
                    timeout=60, what="the server back")
        assert service.recorded_port(store) == port
        before = len(stub.main_requests())
        assert run_cli("send", "cx", "please remember the disk gotcha", cwd=git_repo).returncode == 0
        try:
            second = retry_until(lambda: note_with_title(git_repo, SECOND["title"]), timeout=120, interval=0.5,
                                 what="the note written after the server came back")
        except AssertionError as exc:
            raise AssertionError(f"{exc}{diagnostics()}") from None
        assert "memory_write" in tools(stub.main_requests()[before]), diagnostics()
        assert second["author"] == "cx"
