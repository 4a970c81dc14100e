"""The shared memory as Claude Code options, env and settings (from a neutral
:class:`~agentdeck.agents.base.MemoryWiring`).

* ``--mcp-config <file>``: the agentdeck server (the file under ``<state dir>/mcp/``);
* ``--allowedTools mcp__agentdeck__*``: its tools without a permission prompt;
* ``--append-system-prompt <brief>``;
* env: ``CLAUDE_CODE_DISABLE_AUTO_MEMORY=1`` (one memory, not two) plus the wiring's env;
* a SessionStart ``compact`` hook in the ``--settings`` file: the brief again after compaction.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from agentdeck.agents.base import LaunchContext, MemoryWiring, wire_memory


def allowed_tools(wiring: MemoryWiring) -> str:
    return f"mcp__{wiring.server_name}__*"


def mcp_config(wiring: MemoryWiring) -> dict[str, Any]:
    """``{"mcpServers": {"agentdeck": {...}}}`` for ``claude --mcp-config``.

    ``alwaysLoad``: Claude Code (2.1.197) otherwise may defer the server's tools behind tool search.
    Wired to the HTTP server: ``"type": "http"``, the token as ``${AGENTDECK_MCP_TOKEN}`` in the
    ``Authorization`` header (Claude expands it from its environment; the file holds no secret).
    """
    if wiring.mcp_url:
        server = {"type": "http", "url": wiring.mcp_url,
                  "headers": {"Authorization": f"Bearer ${{{wiring.token_env}}}"}}
        return {"mcpServers": {wiring.server_name: {**server, "alwaysLoad": True}}}
    return {"mcpServers": {wiring.server_name: {"type": "stdio", **wiring.stdio_server, "alwaysLoad": True}}}


def mcp_config_file(wiring: MemoryWiring) -> Path:
    """The config above written to ``<state dir>/mcp/<agent>.json``."""
    return wiring.write(wiring.artefact("mcp"), json.dumps(mcp_config(wiring), indent=2) + "\n")


def args(wiring: MemoryWiring) -> list[str]:
    """Claude Code options: the server, its tools allowed without prompts, the brief.

    Keep them together and before the prompt: ``--mcp-config`` and
    ``--allowedTools`` take several values, so each is followed by another option.
    """
    return [
        "--mcp-config", str(mcp_config_file(wiring)),
        "--allowedTools", allowed_tools(wiring),
        "--append-system-prompt", wiring.brief,
    ]


def env(wiring: MemoryWiring) -> dict[str, str]:
    """Env for Claude Code: its private auto-memory off (one memory, not two) + the wiring's env."""
    return {"CLAUDE_CODE_DISABLE_AUTO_MEMORY": "1", **wiring.env}


def session_start_hooks(wiring: MemoryWiring) -> list[dict[str, Any]]:
    """Entries for ``settings["hooks"]["SessionStart"]``: the brief again after compaction.

    A SessionStart hook's stdout is added to the conversation; the brief file is
    rewritten at every launch, so it carries the CORE summary of that moment.
    """
    return [{
        "matcher": "compact",
        "hooks": [{"type": "command", "command": f"cat {shlex.quote(str(wiring.brief_file))}"}],
    }]


def add_compact_hook(settings: dict[str, Any], wiring: MemoryWiring) -> None:
    """Add :func:`session_start_hooks` to a ``--settings`` dict."""
    hooks = settings.setdefault("hooks", {})
    hooks.setdefault("SessionStart", []).extend(session_start_hooks(wiring))


def settings_extension(ctx: LaunchContext, settings: dict[str, Any]) -> None:
    """A settings extension (``adapter.register_settings_extension``): the compact hook, when
    the launch gets the shared memory."""
    wiring = wire_memory(ctx)
    if wiring is not None:
        add_compact_hook(settings, wiring)
