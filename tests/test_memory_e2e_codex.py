"""End to end: the real Codex CLI launched by agentdeck (against the local OpenAI Responses stub) is
offered the shared memory's tools and writes a note through them, with no approval prompt.

Skipped when the CLI is not installed, unless AGENTDECK_REQUIRE_REAL_CLIS=1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from memory_support import _no_memory_env  # noqa: F401
from realcli_support import codex_env, require_cli, seed_codex_home, write_agent_config
from stubs.openai_stub import OpenAIStub, Reply
from support import git, retry_until, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.realcli, pytest.mark.timeout(180)]

NAMESPACE = "mcp__agentdeck"  # Codex 0.169 offers an MCP server's tools as one "namespace" tool
NOTE = {"title": "Codex found the flaky port", "body": "Port 8080 is taken by the docs server; tests use 8181.",
        "tags": ["tests"], "kind": "gotcha"}
UPDATED = "Port 8080 is taken by the docs server; tests use 8282 since the docs server moved to 8181."


class NamespacedStub(OpenAIStub):
    """The OpenAI stub, answering a call of ``mcp__agentdeck__TOOL`` as a Responses API call of TOOL
    in the ``mcp__agentdeck`` namespace (how Codex expects a namespaced tool to be called)."""

    @staticmethod
    def _namespaced(obj: Any) -> Any:
        if isinstance(obj, dict):
            name = str(obj.get("name", ""))
            if obj.get("type") == "function_call" and name.startswith(NAMESPACE + "__"):
                return {**obj, "namespace": NAMESPACE, "name": name[len(NAMESPACE) + 2:]}
            return {k: NamespacedStub._namespaced(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [NamespacedStub._namespaced(v) for v in obj]
        return obj

    def sse(self, h, event, data):  # type: ignore[override]
        OpenAIStub.sse(h, event, self._namespaced(data))


def status(repo: Path, name: str) -> str:
    proc = run_cli("ls", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a for a in json.loads(proc.stdout)}[name]["status"]


def namespace_tools(req) -> list[str]:
    for tool in req.body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "namespace" and tool.get("name") == NAMESPACE:
            return [t.get("name", "") for t in tool.get("tools") or []]
    return []


def test_codex_writes_a_note_through_the_memory_tools(git_repo, isolated_home, tmp_path):
    codex = require_cli("codex")
    home = tmp_path / "codex-home"
    with NamespacedStub() as stub:
        seed_codex_home(home, stub.url)
        write_agent_config(isolated_home, "codex", codex, codex_env(home))
        # The model writes a note, then corrects it: memory_update is marked destructive, which Codex
        # would ask the user about ("Allow the agentdeck MCP server to run tool ...?") unless the
        # server's tools are approved, as agentdeck's launch does.
        stub.when(lambda r: r.is_tool_turn and re.search(r'"version":\s*2', "".join(r.tool_results)),
                  Reply.text("Saved it to the shared memory."))
        stub.when(lambda r: r.is_tool_turn and re.search(r'"version":\s*1', "".join(r.tool_results)),
                  Reply.tool(f"{NAMESPACE}__memory_update", {"id": "{id}", "body": UPDATED, "expected_version": 1}))
        stub.when(lambda r: "remember the port gotcha" in r.prompt and "memory_write" in namespace_tools(r),
                  Reply.tool(f"{NAMESPACE}__memory_write", NOTE))
        original_pick = stub.pick

        def pick(req):  # fill in the id the write returned
            reply = original_pick(req)
            if reply.tools and reply.tools[0].input.get("id") == "{id}":
                note_id = re.search(r'"id":\s*"([^"]+)"', "".join(req.tool_results)).group(1)
                return Reply.tool(reply.tools[0].name, {**reply.tools[0].input, "id": note_id})
            return reply

        stub.pick = pick  # type: ignore[method-assign]
        proc = run_cli("new", "cx", "--agent", "codex", "--prompt", "please remember the port gotcha", "--json",
                       cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        worktree = Path(json.loads(proc.stdout)["worktree"])

        def found():
            proc = run_cli("memory", "search", "docs server moved", "--json", cwd=git_repo)
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout)

        def offered_or_resent():
            """Codex leaves out a server still starting from a turn's tools (it is not `required`:
            a broken server must not stop the agent); then ask again, as a user would."""
            if any(namespace_tools(r) for r in stub.main_requests()):
                return True
            if stub.main_requests() and status(git_repo, "cx") == "idle":
                assert run_cli("send", "cx", "please remember the port gotcha", cwd=git_repo).returncode == 0
            return False

        try:
            retry_until(offered_or_resent, timeout=60, interval=1.0, what="the memory tools offered")
            hits = retry_until(found, timeout=60, interval=0.5, what="the note in the store")
            retry_until(lambda: "Saved it to the shared memory." in run_cli("peek", "cx", cwd=git_repo).stdout,
                        timeout=30, interval=0.3, what="the closing text")
        except AssertionError as exc:
            screen = run_cli("peek", "cx", cwd=git_repo).stdout
            offered = [namespace_tools(r) for r in stub.main_requests()]
            raise AssertionError(f"{exc}\n--- screen:\n{screen}\n--- memory tools offered: {offered}") from None
        offered = next(r for r in stub.main_requests() if namespace_tools(r))
        assert {"memory_write", "memory_search", "memory_update"} <= set(namespace_tools(offered))
        # The brief came as developer instructions.
        assert "memory_search(query)" in json.dumps(stub.main_requests()[0].body)

    (hit,) = hits
    assert hit["title"] == NOTE["title"] and hit["author"] == "cx" and hit["kind"] == "gotcha"
    assert Path(hit["path"]).parent == git_repo / ".git" / "agentdeck" / "memory" / "notes"
    text = Path(hit["path"]).read_text()
    assert "tests use 8282" in text and "tests use 8181" not in text and "version: 2" in text
    events = json.loads(run_cli("events", "cx", "--json", cwd=git_repo).stdout)
    assert "waiting" not in [e["status"] for e in events if e["type"] == "status"], events
    assert git(worktree, "status", "--porcelain") == ""
    assert not (home / ".codex" / "config.toml").read_text().count("agentdeck")  # the user's config untouched
