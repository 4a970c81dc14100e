"""Helpers for the memory and MCP tests (fixtures are imported by the test modules)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_memory_env(monkeypatch):
    """Tests decide the memory location themselves."""
    monkeypatch.delenv("AGENTDECK_MEMORY_DIR", raising=False)
    monkeypatch.delenv("AGENTDECK_MEMORY_BRIEF", raising=False)
    monkeypatch.delenv("AGENTDECK_REPO", raising=False)
    monkeypatch.delenv("AGENTDECK_WORKTREE", raising=False)


@pytest.fixture
def store(git_repo):
    from agentdeck.memory.store import MemoryStore

    s = MemoryStore.open(cwd=git_repo)
    yield s
    s.close()


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("AGENTDECK_MEMORY_DIR", "AGENTDECK_STATE_DIR", "AGENTDECK_AGENT", "AGENTDECK_REPO"):
        env.pop(key, None)
    env.update(extra or {})
    return env


def memory_cli(*args: str, cwd: Path, input: str | None = "", env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m agentdeck memory ARGS`` (stdin empty unless given)."""
    return subprocess.run(
        [sys.executable, "-m", "agentdeck", "memory", *args], cwd=str(cwd), input=input,
        capture_output=True, text=True, env=child_env(env), timeout=timeout,
    )


def cli_json(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    proc = memory_cli(*args, "--json", cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def server_params(cwd: Path, agent: str = "", env: dict[str, str] | None = None):
    from mcp.client.stdio import StdioServerParameters

    full = {"PYTHONPATH": str(ROOT)}
    if agent:
        full["AGENTDECK_AGENT"] = agent
    full.update(env or {})
    return StdioServerParameters(command=sys.executable, args=["-m", "agentdeck", "mcp"], env=full, cwd=str(cwd))


@asynccontextmanager
async def mcp_session(params) -> AsyncIterator[Any]:
    """An initialized ClientSession talking to ``agentdeck mcp`` over stdio."""
    from mcp.client import ClientSession
    from mcp.client.stdio import stdio_client

    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def result_data(result: Any) -> Any:
    """The structured result of a successful tool call (lists come wrapped as {"result": [...]})."""
    assert not result.is_error, result.content[0].text if result.content else result
    data = result.structured_content
    if isinstance(data, dict) and set(data) == {"result"}:
        return data["result"]
    return data


def error_text(result: Any) -> str:
    assert result.is_error, f"expected an error, got {result.structured_content!r}"
    return result.content[0].text


# ----------------------------------------------------------------------------- concurrent writers
# Run in child processes: ``python -c "import memory_support as m; m.cli_writer(...)"``.


def _wait_for(go_file: str, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not os.path.exists(go_file):
        if time.monotonic() > deadline:
            raise SystemExit("the start signal never came")
        time.sleep(0.01)


def concurrent_title(i: int) -> str:
    return f"Concurrent finding {i}"  # the same titles in every writer: ids collide on purpose


def concurrent_body(writer: str, i: int) -> str:
    return f"Writer {writer} learned fact {i}: unique token {writer}x{i}."


def cli_writer(repo: str, writer: str, count: int, go_file: str) -> None:
    _wait_for(go_file)
    for i in range(count):
        subprocess.run(
            [sys.executable, "-m", "agentdeck", "memory", "add", concurrent_title(i), "--body",
             concurrent_body(writer, i), "--tag", writer],
            cwd=repo, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            env={**os.environ, "AGENTDECK_AGENT": writer},
        )


def mcp_writer(repo: str, writer: str, count: int, go_file: str) -> None:
    import anyio

    async def main() -> None:
        async with mcp_session(server_params(Path(repo), agent=writer)) as session:
            _wait_for(go_file)
            for i in range(count):
                result = await session.call_tool("memory_write", {
                    "title": concurrent_title(i), "body": concurrent_body(writer, i), "tags": [writer]})
                assert not result.is_error, result.content

    anyio.run(main)


def start_writer(kind: str, repo: Path, writer: str, count: int, go_file: Path) -> subprocess.Popen:
    code = f"import memory_support as m; m.{kind}_writer({str(repo)!r}, {writer!r}, {count}, {str(go_file)!r})"
    env = child_env({"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])})
    return subprocess.Popen([sys.executable, "-c", code], cwd=str(repo), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def update_racer(repo: str, note_id: str, tag: str, go_file: str, out_file: str) -> None:
    """Read the note, say so (``<out_file>.ready``), wait for the signal, update with the version read."""
    from agentdeck.errors import Refused
    from agentdeck.memory.store import MemoryStore

    s = MemoryStore.open(cwd=repo, author=tag)
    note = s.get(note_id)
    Path(out_file + ".ready").touch()
    _wait_for(go_file)
    try:
        s.update(note_id, body=f"{note.body}edit by {tag}\n", expected_version=note.version)
        outcome = "won"
    except Refused as err:
        outcome = f"refused: {err}"
    Path(out_file).write_text(outcome)
