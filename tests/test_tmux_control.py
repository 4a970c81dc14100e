"""The control-mode client (a real tmux server on its own socket)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

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
        shown = client.command("show-environment", "-t", "agent")
        assert shown.returncode == 0
        assert not any("the-watchers-own-agent" in line for line in shown.stdout), shown.stdout
        term = client.command("display-message", "-p", "#{client_termname}")
        assert term.stdout == ["dumb"]
        with open(f"/proc/{client.proc.pid}/environ", "rb") as fh:
            names = {item.split(b"=", 1)[0].decode() for item in fh.read().split(b"\0") if item}
        assert "AGENTDECK_SOME_SECRET" not in names and "SSH_AUTH_SOCK" not in names
        assert names <= {"PATH", "HOME", "TMUX_TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TERM"}
    finally:
        client.close()
