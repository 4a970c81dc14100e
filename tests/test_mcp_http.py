"""The repository's MCP server over streamable HTTP, driven by the real ``mcp`` client and raw requests.

Identity comes from the bearer token only; no token or a wrong, revoked or killed agent's token
gets 401; ``Host`` must be this server's loopback address and port; a foreign ``Origin`` is
refused, a missing one accepted; a session belongs to the agent that opened it.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import anyio
import pytest
from mcp_support import agent_row, http_session, post, server_pid, start_server, stop_server
from memory_support import _no_memory_env, result_data  # noqa: F401
from support import retry_until

from agentdeck import paths
from agentdeck.mcp_link import auth, service
from agentdeck.store import Store

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def served(git_repo):
    """A server for *git_repo* with two live agents, north and south: (repo, store, port, tokens)."""
    repo_paths = paths.find_repo(git_repo)
    repo_paths.ensure_state_dir()
    store = Store(repo_paths.db_path)
    tokens = {"north": agent_row(store, "north", git_repo), "south": agent_row(store, "south", git_repo)}
    port = start_server(git_repo, store)
    yield git_repo, store, port, tokens
    stop_server(git_repo, store)
    store.close()


def note_author(path: str) -> str:
    for line in Path(path).read_text().splitlines():
        if line.startswith("author:"):
            return line.split(":", 1)[1].strip()
    return ""


def test_each_token_writes_as_its_own_agent_whatever_the_request_says(served):
    repo, _store, port, tokens = served

    async def main():
        out = {}
        # south's token, claiming north everywhere a request can claim anything.
        claims = {"X-Agent": "north", "X-Agentdeck-Agent": "north"}
        async with http_session(port, tokens["south"], claims) as s:
            written = result_data(await s.call_tool("memory_write", {"title": "Written by south", "body": "b",
                                                                     "tags": ["north"]}))
            journal = result_data(await s.call_tool("memory_append_journal", {"text": "I am north"}))
            bad = await s.call_tool("memory_write", {"title": "t", "body": "b", "author": "north"})
            out["south"] = (written, journal, bad)
        async with http_session(port, tokens["north"]) as s:
            out["north"] = result_data(await s.call_tool("memory_write", {"title": "Written by north", "body": "b"}))
            updated = result_data(await s.call_tool("memory_update", {
                "id": out["south"][0]["id"], "body": "north edits it", "expected_version": 1}))
            out["update"] = updated
        return out

    out = anyio.run(main)
    written, journal, bad = out["south"]
    assert note_author(written["path"]) == "south"
    assert journal["id"] == "journal/south"
    assert "I am north" in (repo / ".git" / "agentdeck" / "memory" / "journal" / "south.md").read_text()
    assert not (repo / ".git" / "agentdeck" / "memory" / "journal" / "north.md").exists()
    # An unknown argument cannot smuggle an author in: either refused or ignored, never used.
    if not bad.is_error:
        assert note_author(bad.structured_content["path"]) == "south"
    assert note_author(out["north"]["path"]) == "north"
    text = Path(out["update"]["path"]).read_text()
    assert "author: south" in text and "updated_by: north" in text


def test_no_wrong_or_revoked_token_gets_401(served):
    repo, store, port, tokens = served
    ok = {"Authorization": f"Bearer {tokens['north']}"}
    assert post(port, ok)[0] == 200
    status, headers, _body = post(port, {})
    assert status == 401 and "bearer" in headers.get("www-authenticate", headers.get("WWW-Authenticate", "")).lower()
    assert post(port, {"Authorization": "Bearer " + "x" * 43})[0] == 401
    assert post(port, {"Authorization": f"Basic {tokens['north']}"})[0] == 401
    assert post(port, {"Authorization": f"Bearer {tokens['north']}x"})[0] == 401
    # A relaunch replaces the digest: the old token stops working at once.
    _, new_digest = auth.new_token()
    store.merge_extra("north", mcp={"token_sha256": new_digest, "port": port})
    assert post(port, ok)[0] == 401
    # Killed and kept, or being removed: revoked too.
    assert post(port, {"Authorization": f"Bearer {tokens['south']}"})[0] == 200
    store.update_agent("south", kept=True)
    assert post(port, {"Authorization": f"Bearer {tokens['south']}"})[0] == 401
    store.update_agent("south", kept=False)
    store.merge_extra("south", removing={"ref": None})
    assert post(port, {"Authorization": f"Bearer {tokens['south']}"})[0] == 401
    # The state holds digests only.
    for db in (repo / ".git" / "agentdeck").glob("state.db*"):
        data = db.read_bytes()
        assert tokens["north"].encode() not in data and tokens["south"].encode() not in data


def test_host_and_origin(served):
    _, _, port, tokens = served
    ok = {"Authorization": f"Bearer {tokens['north']}"}
    assert post(port, ok, host=f"127.0.0.1:{port}")[0] == 200
    assert post(port, ok, host=f"localhost:{port}")[0] == 200
    for host in (f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", f"attacker.localhost:{port}"):
        assert post(port, ok, host=host)[0] == 421, host
    assert post(port, {**ok, "Origin": f"http://127.0.0.1:{port}"})[0] == 200
    for origin in ("http://evil.example", f"http://evil.example:{port}", "null", f"https://127.0.0.1:{port}"):
        assert post(port, {**ok, "Origin": origin})[0] == 403, origin
    # Checked before the token: a rebound page learns nothing, even with no token.
    assert post(port, {}, host=f"evil.example:{port}")[0] == 421


def test_no_session_to_lose_a_request_stands_alone_across_a_server_restart(git_repo):
    """The server hands out no session: a client's next call after a restart (a session id
    from before it included) is served, with no new ``initialize``, as the token's agent."""
    repo_paths = paths.find_repo(git_repo)
    repo_paths.ensure_state_dir()
    store = Store(repo_paths.db_path)
    token = agent_row(store, "solo", git_repo)
    port = start_server(git_repo, store, env_grace="30")
    auth_header = {"Authorization": f"Bearer {token}"}
    status, headers, _ = post(port, auth_header)
    assert status == 200
    assert "mcp-session-id" not in {k.lower() for k in headers}
    os.kill(server_pid(store), signal.SIGKILL)
    retry_until(lambda: not service.server_alive(repo_paths.state_dir), timeout=10, what="the lock released")
    assert start_server(git_repo, store, env_grace="30") == port
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "memory_write", "arguments": {"title": "After the restart", "body": "b"}}}
    status, _, body = post(port, {**auth_header, "Mcp-Session-Id": "0" * 32, "Mcp-Protocol-Version": "2025-06-18"},
                           call)
    assert status == 200, body
    payload = json.loads(body[body.index("{"):body.rindex("}") + 1])
    assert not payload["result"].get("isError"), payload
    path = Path(payload["result"]["structuredContent"]["path"])
    assert "author: solo" in path.read_text()
    stop_server(git_repo, store)
    store.close()


def test_tools_list_is_recorded_once_per_launch_for_the_tokens_agent(served):
    _, store, port, tokens = served

    async def main():
        async with http_session(port, tokens["north"]) as s:
            for _ in range(3):
                await s.list_tools()

    anyio.run(main)
    listed = retry_until(lambda: [e for e in store.events("north") if e["type"] == "mcp_tools"], timeout=10,
                         what="the listing event")
    assert len(listed) == 1 and listed[0]["source"] == "mcp" and listed[0]["detail"]["tools"] >= 7
    assert not [e for e in store.events("south") if e["type"] == "mcp_tools"]


def test_server_comes_back_on_its_port_and_exits_when_no_agent_lives(git_repo):
    repo_paths = paths.find_repo(git_repo)
    repo_paths.ensure_state_dir()
    store = Store(repo_paths.db_path)
    token = agent_row(store, "solo", git_repo)
    port = start_server(git_repo, store, env_grace="1")
    # A second start while it runs spawns nothing and returns the same port.
    pid = server_pid(store)
    assert service.ensure_server(repo_paths, store, os.environ["AGENTDECK_TMUX_SOCKET"]) == port
    assert server_pid(store) == pid
    # Killed outright: started again on the same port.
    os.kill(pid, signal.SIGKILL)
    retry_until(lambda: not service.server_alive(repo_paths.state_dir), timeout=10, what="the lock released")
    assert start_server(git_repo, store, env_grace="1") == port
    assert post(port, {"Authorization": f"Bearer {token}"})[0] == 200
    # No live agent (no pane, no launch in progress) for the grace period: it exits by itself.
    extra = store.get_agent("solo").extra
    extra.pop("launching")
    store.update_agent("solo", extra=extra)
    retry_until(lambda: not service.server_alive(repo_paths.state_dir), timeout=30, what="the idle server's exit")
    assert service.read_record(store)["state"] == "stopped" and service.recorded_port(store) == port
    store.close()


def test_pane_waiter_waits_for_the_port_then_runs_the_agent(tmp_path):
    import socket
    import subprocess
    import sys

    out = tmp_path / "ran"
    free = service.free_port()
    argv = [sys.executable, "-S", "-c", service.PANE_WAITER, "127.0.0.1", str(free), "20", "--",
            sys.executable, "-c", f"open({str(out)!r}, 'w').write('yes')"]
    proc = subprocess.Popen(argv)
    time.sleep(0.5)
    assert proc.poll() is None and not out.exists()  # nothing listens yet: still waiting
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", free))
    listener.listen(1)
    try:
        assert proc.wait(timeout=20) == 0 and out.read_text() == "yes"
    finally:
        listener.close()
    # Never started: its one-line reason and exit 127.
    bad = subprocess.run([sys.executable, "-S", "-c", service.PANE_WAITER, "127.0.0.1", str(free), "0.1", "--",
                          str(tmp_path / "missing-agent")], capture_output=True, text=True)
    assert bad.returncode == 127 and "cannot start" in bad.stderr


def test_auth_rules_units():
    token, token_digest = auth.new_token()
    assert len(token) >= 43 and auth.digest(token) == token_digest and token not in token_digest
    assert auth.bearer(f"Bearer {token}") == token and auth.bearer(f"bearer  {token} ") == token
    assert auth.bearer(None) == "" and auth.bearer(f"Basic {token}") == "" and auth.bearer("Bearer") == ""
    assert auth.host_ok("127.0.0.1:8123", 8123) and auth.host_ok("LOCALHOST:8123", 8123)
    assert not auth.host_ok(None, 8123) and not auth.host_ok("127.0.0.1:8124", 8123)
    assert auth.origin_ok(None, 1) and auth.origin_ok("", 1) and auth.origin_ok("http://localhost:1", 1)
    assert not auth.origin_ok("http://localhost:2", 1) and not auth.origin_ok("null", 1)
    json.dumps(auth.Identity("n", "/w").__dict__)  # plain data
