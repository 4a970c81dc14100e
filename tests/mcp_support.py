"""Helpers for the tests of agentdeck's HTTP MCP server (tests/test_mcp_*.py)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from support import retry_until

from agentdeck import paths
from agentdeck.mcp_link import auth, service
from agentdeck.store import AgentRecord, Store, utc_iso

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


def agent_row(store: Store, name: str, worktree: Path | None = None, live: bool = True) -> str:
    """An agent row holding a fresh MCP token (returned); *live*: marked as being launched by this
    process, which keeps the server from exiting without a tmux pane."""
    token, token_digest = auth.new_token()
    extra: dict[str, Any] = {"mcp": {"token_sha256": token_digest, "port": 0}}
    if live:
        from agentdeck.status import process_identity

        extra.update(launching=True, launcher=process_identity())
    slug = paths.slugify(name)
    store.insert_agent(AgentRecord(
        name=name, slug=slug, definition="claude", kind="claude", branch=f"agentdeck/{slug}", base_branch="main",
        base_commit="0" * 40, worktree=str(worktree or ""), session=f"ad-test-{slug}", created_at=utc_iso(),
        extra=extra))
    return token


def start_server(repo: Path, store: Store, env_grace: str = "30") -> int:
    """The repository's server, started as a launch starts it; returns its port once it answers."""
    os.environ["AGENTDECK_MCP_GRACE"] = env_grace
    try:
        port = service.ensure_server(paths.find_repo(repo), store, os.environ["AGENTDECK_TMUX_SOCKET"])
    finally:
        os.environ.pop("AGENTDECK_MCP_GRACE", None)
    wait_answering(port)
    return port


def wait_answering(port: int, timeout: float = 60) -> None:
    def answers() -> bool:
        try:
            status, _, _ = post(port, {}, INIT)
        except OSError:
            return False
        return status == 401

    retry_until(answers, timeout=timeout, interval=0.1, what=f"the MCP server on port {port}")


def post(port: int, headers: dict[str, str], body: dict[str, Any] | None = None,
         host: str | None = None) -> tuple[int, dict[str, str], str]:
    """One raw POST to /mcp: (status, headers, body text)."""
    data = json.dumps(body or INIT).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json, text/event-stream")
    if host is not None:
        req.add_header("Host", host)
    for key, value in headers.items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode("utf-8", "replace")


@asynccontextmanager
async def http_session(port: int, token: str | None, extra_headers: dict[str, str] | None = None
                       ) -> AsyncIterator[Any]:
    """An initialized ClientSession on the server, sending *token* as its bearer."""
    import httpx2
    from mcp.client import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    headers = dict(extra_headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(headers=headers, timeout=30) as client:
        async with streamable_http_client(service.url_for(port), http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def server_pid(store: Store) -> int | None:
    pid = service.read_record(store).get("pid")
    return pid if isinstance(pid, int) else None


def kill_server(repo: Path, store: Store) -> int:
    """SIGKILL the repository's server (no clean-up at all); returns its port."""
    pid = server_pid(store)
    port = service.recorded_port(store)
    assert pid and port, service.read_record(store)
    os.kill(pid, signal.SIGKILL)
    state_dir = paths.find_repo(repo).state_dir
    retry_until(lambda: not service.server_alive(state_dir), timeout=10, what="the killed server's lock released")
    return port


def stop_server(repo: Path, store: Store) -> None:
    pid = server_pid(store)
    if pid and service.server_alive(paths.find_repo(repo).state_dir):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and service.server_alive(paths.find_repo(repo).state_dir):
            time.sleep(0.05)
