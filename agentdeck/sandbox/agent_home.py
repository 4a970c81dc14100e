"""An agent's private home in its ``bwrap`` sandbox: the CLI's state copied in, never linked.

The agent's ``HOME`` inside is ``<sandbox>/home`` (writable inside).  What its CLI needs there
to start (credentials, config: :data:`CLI_STATE`) is copied from the user's home at each launch
(:func:`copy_cli_state`: the user may have logged in again); the user's real ``~/.claude`` or
``~/.codex`` are never visible inside.

Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from agentdeck.sandbox.agent_fs import write_agent_file
from agentdeck.sandbox.agent_record import AgentSandbox

#: What each kind needs from the user's home to start, relative to it (copied, never linked).
#: ``$CODEX_HOME`` / ``$CLAUDE_CONFIG_DIR`` are honoured as sources (see :func:`state_sources`).
CLI_STATE: dict[str, tuple[str, ...]] = {
    "claude": (".claude.json", ".claude/.credentials.json", ".claude/settings.json"),
    "codex": (".codex/auth.json", ".codex/config.toml"),
    "gemini": (".gemini/settings.json", ".gemini/oauth_creds.json", ".gemini/google_accounts.json"),
    "aider": (".aider.conf.yml",),
    "opencode": (".config/opencode/opencode.json", ".local/share/opencode/auth.json"),
    "generic": (),
}


def state_sources(kind: str, home: Path, env: Mapping[str, str]) -> list[tuple[Path, str]]:
    """(host file, path relative to the sandbox's home) for what *kind* needs."""
    out = []
    for rel in CLI_STATE.get(kind, ()):
        src = home / rel
        if kind == "codex" and env.get("CODEX_HOME") and rel.startswith(".codex/"):
            src = Path(env["CODEX_HOME"]) / rel.split("/", 1)[1]
        if kind == "claude" and env.get("CLAUDE_CONFIG_DIR") and rel.startswith(".claude/"):
            src = Path(env["CLAUDE_CONFIG_DIR"]) / rel.split("/", 1)[1]
        out.append((src, rel))
    return out


def copy_cli_state(sb: AgentSandbox, source_home: Path | None, source_env: Mapping[str, str] | None) -> None:
    """Copy what *sb*'s CLI needs into its home (see :func:`agentdeck.sandbox.agent_bwrap.prepare`
    for *source_home* and *source_env*); a file the user does not have is skipped."""
    env = os.environ if source_env is None else source_env
    home = Path(source_home) if source_home else Path(env.get("HOME") or os.path.expanduser("~"))
    sb.home.mkdir(mode=0o700, exist_ok=True)
    for src, rel in state_sources(sb.kind, home, env):
        try:
            data = src.read_bytes()
        except OSError:
            continue
        write_agent_file(sb.home, rel, data, 0o600)
