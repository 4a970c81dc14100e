"""The control-mode client (a real tmux server on its own socket)."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from support import retry_until

from agentdeck.tmux.control import ControlClient


@pytest.fixture
def server():
    socket = f"ad-ctl-{uuid.uuid4().hex[:8]}"
    subprocess.run(["tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", "agent", "sleep 600"],
                   check=True)
    yield socket
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


def test_a_watching_client_leaves_the_agents_session_environment_alone(server, monkeypatch):
    """Attaching applies no ``update-environment`` (``-E``), and the client carries a small
    environment (fewer identify messages: the window in which tmux 3.3a crashes on a
    notification to a half-made control client)."""
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/the-watchers-own-agent.sock")
    monkeypatch.setenv("AGENTDECK_SOME_SECRET", "x" * 40)
    client = ControlClient(server, "agent")
    try:
        def tmux(*args: str) -> str:
            return subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True).stdout

        retry_until(lambda: tmux("list-clients", "-t", "agent").strip(), timeout=10, what="the client attached")
        assert "the-watchers-own-agent" not in tmux("show-environment", "-t", "agent")
        with open(f"/proc/{client.proc.pid}/environ", "rb") as fh:
            env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if item)
        names = {key.decode() for key in env}
        assert "AGENTDECK_SOME_SECRET" not in names and "SSH_AUTH_SOCK" not in names
        assert names <= {"PATH", "HOME", "TMUX_TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TERM"}
        assert env[b"TERM"] == b"dumb"
    finally:
        client.close()
