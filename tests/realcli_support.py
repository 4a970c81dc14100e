"""Helpers for the tests that drive the real agent CLIs (Claude Code, Codex) against local stubs.

The CLIs are the pinned npm packages that ``tests/install_clis.sh`` installs under
``.ci/.cache/npm``.  Every run gets a fresh HOME (and CODEX_HOME) in a temp dir, so
the user's own ``~/.claude*`` and ``~/.codex`` are never read or written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NPM_BIN = ROOT / ".ci" / ".cache" / "npm" / "node_modules" / ".bin"
PINNED = {"claude": "2.1.197", "codex": "0.169.0"}
REQUIRE_ENV = "AGENTDECK_REQUIRE_REAL_CLIS"
STUB_KEY = "sk-ant-agentdeck-stub-key-0123456789"


def find_cli(name: str) -> str | None:
    """The pinned CLI from the npm cache, else one on PATH."""
    candidate = NPM_BIN / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def require_cli(name: str) -> str:
    """The CLI's path; skips the test (fails it when AGENTDECK_REQUIRE_REAL_CLIS=1) when missing."""
    path = find_cli(name)
    if path is None:
        reason = (f"the real {name} CLI is not installed (run tests/install_clis.sh; "
                  f"set {REQUIRE_ENV}=1 to make this a failure)")
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    return path


def cli_version(path: str) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60).stdout
    return out.strip()


# ---------------------------------------------------------------------- Claude Code
def seed_claude_home(home: Path, api_key: str = STUB_KEY) -> None:
    """A HOME where Claude Code skips its first-run screens (tests only: never the user's).

    ``hasCompletedOnboarding`` skips the theme/login screens (which also probe
    api.anthropic.com); ``customApiKeyResponses`` pre-answers "use this API key?"
    with the key's last 20 characters, as Claude Code records it.  Folder trust is
    left unanswered: agentdeck must handle that dialog itself.
    """
    home.mkdir(parents=True, exist_ok=True)
    state = {
        "hasCompletedOnboarding": True,
        "theme": "dark",
        "customApiKeyResponses": {"approved": [api_key[-20:]], "rejected": []},
    }
    (home / ".claude.json").write_text(json.dumps(state, indent=2))


def claude_env(home: Path, base_url: str, api_key: str = STUB_KEY) -> dict[str, str]:
    return {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "1",
    }


# ---------------------------------------------------------------------- Codex
def seed_codex_home(home: Path, base_url: str) -> Path:
    """``$CODEX_HOME/config.toml`` pointing Codex at the stub through a custom provider."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        'model = "stub-model"\n'
        'model_provider = "stub"\n'
        "check_for_update_on_startup = false\n"
        "\n"
        "[model_providers.stub]\n"
        'name = "stub"\n'
        f'base_url = "{base_url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "AGENTDECK_STUB_API_KEY"\n'
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
    )
    return codex_home


def codex_env(home: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "CODEX_HOME": str(home / ".codex"),
        "AGENTDECK_STUB_API_KEY": "stub-key",
    }


# ---------------------------------------------------------------------- agentdeck config
def write_agent_config(agentdeck_home: Path, kind: str, command: str, env: dict[str, str]) -> Path:
    """A user config (``$AGENTDECK_HOME/config.toml``) defining *kind* with the pinned binary and env."""
    lines = [f"[agents.{kind}]", f"command = {json.dumps(command)}", f'kind = "{kind}"', "",
             f"[agents.{kind}.env]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in env.items()]
    path = agentdeck_home / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
