"""The repository's HTTP MCP server through the deck, with a scripted CLI of kind ``claude``
(tests/fake_mcp_cli.py: Claude's options, its ``--mcp-config``, the real ``mcp`` client).

`new` starts the server in the background and wires the agent to it with its own token; the
first prompt is typed once the agent's MCP client has listed the tools (or after a timeout);
the server comes back after a kill; doctor names agents wired to a port it left.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp_support import agent_row, http_session, kill_server, post
from memory_support import _no_memory_env  # noqa: F401
from support import make_repo, retry_until, run_cli

from agentdeck import paths
from agentdeck.mcp_link import auth, service
from agentdeck.store import Store

FAKE_CLI = Path(__file__).resolve().parent / "fake_mcp_cli.py"
pytestmark = pytest.mark.timeout(120)


def config(env: dict[str, str] | None = None) -> str:
    lines = ["[agents.claude]", 'kind = "claude"', f'command = "{sys.executable} {FAKE_CLI}"']
    if env:
        lines.append("[agents.claude.env]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in env.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def _quick_exit(monkeypatch):
    monkeypatch.setenv("AGENTDECK_MCP_GRACE", "2")  # servers left by a test end soon after its tmux


def repo_with(tmp_path: Path, env: dict[str, str] | None = None) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# t\n", ".agentdeck.toml": config(env)})


def screen(repo: Path, name: str) -> str:
    return run_cli("peek", name, cwd=repo).stdout


def events(repo: Path, name: str) -> list[dict]:
    proc = run_cli("events", name, "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def notes(repo: Path) -> dict[str, str]:
    folder = repo / ".git" / "agentdeck" / "memory" / "notes"
    return {p.stem: p.read_text() for p in folder.glob("*.md")} if folder.is_dir() else {}


def wait_note(repo: Path, title_slug: str, name: str) -> str:
    def found():
        return next((text for note_id, text in notes(repo).items() if note_id.endswith(title_slug)), None)

    text = retry_until(found, timeout=60, interval=0.2,
                       what=f"note {title_slug}; screen:\n{screen(repo, name)}\nevents: {events(repo, name)}")
    return text


def test_first_prompt_waits_for_the_tools_and_writes_as_the_agent(tmp_path):
    token_file = tmp_path / "token"
    repo = repo_with(tmp_path, {"FAKE_TOKEN_OUT": str(token_file)})
    proc = run_cli("new", "scribe", "--agent", "claude", "--prompt", "write First note", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    text = wait_note(repo, "first-note", "scribe")
    assert "author: scribe" in text
    shown = screen(repo, "scribe")
    # Not an argument: typed, once the tools were listed.
    assert "argv prompt: none" in shown and shown.index("tools: 7 listed") < shown.index("wrote ")
    history = events(repo, "scribe")
    kinds = [e["type"] for e in history]
    assert kinds.index("mcp_tools") < max(i for i, e in enumerate(history) if e["type"] == "prompt")
    typed = [e["detail"] for e in history if e["type"] == "prompt" and "typed" in e["detail"]]
    assert len(typed) == 1 and typed[0]["typed"] == "after tools/list", history

    # The token: in the agent's environment, never on a command line, never in the state in clear.
    token = token_file.read_text()
    assert len(token) >= 40
    ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    assert token not in ps
    state = repo / ".git" / "agentdeck"
    for db in state.glob("state.db*"):
        assert token.encode() not in db.read_bytes(), db
    assert not list((state / "launch").glob("env-*"))  # the hand-over file is gone
    rec = Store(paths.find_repo(repo).db_path).get_agent("scribe")
    assert rec.extra["mcp"]["token_sha256"] == auth.digest(token)
    mcp_config = json.loads(Path(next(p for p in (state / "mcp").glob("*.json"))).read_text())
    assert token not in json.dumps(mcp_config)
    assert mcp_config["mcpServers"]["agentdeck"]["headers"] == {"Authorization": "Bearer ${AGENTDECK_MCP_TOKEN}"}

    # Killed: the agent's token no longer opens the server (another agent, being launched by this
    # process, keeps the server from ending once scribe is gone, however slow the kill is).
    store = Store(paths.find_repo(repo).db_path)
    agent_row(store, "keeper", repo)
    port = service.recorded_port(store)
    assert post(port, {"Authorization": f"Bearer {token}"})[0] == 200
    assert run_cli("kill", "scribe", "--discard", cwd=repo).returncode == 0
    assert post(port, {"Authorization": f"Bearer {token}"})[0] == 401
    store.delete_agent("keeper")
    store.close()


def test_a_killed_server_comes_back_on_its_port_and_doctor_names_agents_left_behind(tmp_path):
    repo = repo_with(tmp_path)
    assert run_cli("new", "scout", "--agent", "claude", "--prompt", "write Before the kill", cwd=repo).returncode == 0
    wait_note(repo, "before-the-kill", "scout")
    store = Store(paths.find_repo(repo).db_path)
    port = kill_server(repo, store)
    # The watcher brings it back on the same port; the agent reaches it with the same token.
    state_dir = paths.find_repo(repo).state_dir
    retry_until(lambda: service.server_alive(state_dir) and service.read_record(store).get("state") == "running",
                timeout=30, what="the server back")
    assert service.recorded_port(store) == port
    assert run_cli("send", "scout", "write After the kill", cwd=repo).returncode == 0
    assert "author: scout" in wait_note(repo, "after-the-kill", "scout")

    # Its port taken meanwhile: a new port, and doctor says which agent needs a restart.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    kill_server(repo, store)
    holder.close()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        retry_until(lambda: service.server_alive(state_dir) and service.recorded_port(store) != port,
                    timeout=30, what="the server on a new port")
        from agentdeck.deck import Deck

        deck = Deck.open(repo)
        try:
            checks = service.doctor_checks(deck)
        finally:
            deck.close()
        (stale,) = [c for c in checks if c["name"] == "agent scout memory"]
        assert stale["level"] == "warn" and stale["fix"] == "agentdeck restart scout" and str(port) in stale["detail"]
        doctor = run_cli("doctor", cwd=repo)
        assert "agentdeck restart scout" in doctor.stdout + doctor.stderr
    finally:
        holder.close()


def test_the_prompt_is_typed_after_the_timeout_when_the_tools_never_come(tmp_path):
    repo = repo_with(tmp_path, {"FAKE_NO_MCP": "1"})
    proc = run_cli("new", "mute", "--agent", "claude", "--prompt", "hello there", cwd=repo,
                   env={"AGENTDECK_FIRST_PROMPT_TIMEOUT": "2"})
    assert proc.returncode == 0, proc.stderr
    retry_until(lambda: "got: hello there" in screen(repo, "mute"), timeout=40, what="the typed prompt")
    (typed,) = [e["detail"] for e in events(repo, "mute") if e["type"] == "prompt" and "typed" in e["detail"]]
    assert typed["typed"] == "after the timeout" and "no tools/list" in typed["reason"]
    assert not [e for e in events(repo, "mute") if e["type"] == "mcp_tools"]


def test_another_agents_token_writes_as_that_agent(tmp_path):
    """Two agents; a client holding one's token writes as that one, whatever it says it is."""
    files = {n: tmp_path / f"token-{n}" for n in ("north", "south")}
    repo = repo_with(tmp_path, {"FAKE_TOKEN_OUT": str(tmp_path / "token-out")})
    for name in files:
        assert run_cli("new", name, "--agent", "claude", cwd=repo).returncode == 0
        retry_until(lambda: (tmp_path / "token-out").is_file() and (tmp_path / "token-out").read_text(),
                    timeout=30, what="the token")
        (tmp_path / "token-out").rename(files[name])
    store = Store(paths.find_repo(repo).db_path)
    port = service.recorded_port(store)

    async def main():
        # Claims to be north (a header, an argument): the token says south.
        async with http_session(port, files["south"].read_text(), {"X-Agent": "north"}) as s:
            written = await s.call_tool("memory_write", {"title": "Claimed north", "body": "b"})
            journal = await s.call_tool("memory_append_journal", {"text": "south was here"})
            return written.structured_content, journal.structured_content

    written, journal = anyio.run(main)
    assert "author: south" in Path(written["path"]).read_text()
    assert journal["id"] == "journal/south"
