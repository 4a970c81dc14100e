from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import make_repo


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Redirect every user-level location and give each test its own tmux server."""
    home = tmp_path_factory.mktemp("adhome")
    socket = f"adtest-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("AGENTDECK_HOME", str(home))
    monkeypatch.setenv("AGENTDECK_TMUX_SOCKET", socket)
    monkeypatch.setenv("AGENTDECK_WATCH_GRACE", "3")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("AGENTDECK_STATE_DIR", raising=False)
    monkeypatch.delenv("AGENTDECK_AGENT", raising=False)
    yield home
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)


@pytest.fixture
def git_repo(tmp_path) -> Path:
    return make_repo(tmp_path / "repo")


FAKE_AGENT = Path(__file__).resolve().parent / "fake_agent.py"

FAKE_CONFIG = f"""
[deck]
default_agent = "fake"

[agents.fake]
kind = "generic"
command = "{sys.executable} {FAKE_AGENT}"
prompt_arg = "-"
waiting_pattern = '\\[y/n\\] *$'
working_pattern = "esc to interrupt"
idle_pattern = '^> *$'
quiet_s = 1.0
"""


@pytest.fixture
def fake_repo(tmp_path) -> Path:
    """A repository whose default agent is the scripted fake agent (tests/fake_agent.py)."""
    return make_repo(tmp_path / "repo", {"README.md": "# test\n", ".agentdeck.toml": FAKE_CONFIG,
                                         "src/app.py": "print('hi')\n"})
