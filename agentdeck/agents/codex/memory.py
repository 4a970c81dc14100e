"""The shared memory as Codex ``-c`` overrides (from a neutral
:class:`~agentdeck.agents.base.MemoryWiring`); the same on ``codex resume``.

Wired to the HTTP server: ``mcp_servers.agentdeck.url`` and ``bearer_token_env_var`` (Codex
reads the token from its own environment); else ``command``/``args``/``env`` of a stdio
server.  Then the brief as ``developer_instructions``, and the server's tools approved
without a prompt.
"""

from __future__ import annotations

import json

from agentdeck.agents.base import MemoryWiring


def toml_string(text: str) -> str:
    """A TOML basic string (a JSON string is one, for everything ``json.dumps`` emits)."""
    return json.dumps(text, ensure_ascii=False)


def config_args(wiring: MemoryWiring, *, with_brief: bool = True) -> list[str]:
    """``-c mcp_servers.agentdeck.*=...`` overrides (and the brief as ``developer_instructions``)."""
    name = wiring.server_name
    if wiring.mcp_url:
        out = [
            "-c", f"mcp_servers.{name}.url={toml_string(wiring.mcp_url)}",
            "-c", f"mcp_servers.{name}.bearer_token_env_var={toml_string(wiring.token_env)}",
        ]
    else:
        spec = wiring.stdio_server
        args_toml = "[" + ", ".join(toml_string(a) for a in spec["args"]) + "]"
        env_toml = "{" + ", ".join(f"{k} = {toml_string(v)}" for k, v in spec["env"].items()) + "}"
        out = [
            "-c", f"mcp_servers.{name}.command={toml_string(spec['command'])}",
            "-c", f"mcp_servers.{name}.args={args_toml}",
            "-c", f"mcp_servers.{name}.env={env_toml}",
        ]
    if with_brief:
        out += ["-c", f"developer_instructions={toml_string(wiring.brief)}"]
    return out


def options(wiring: MemoryWiring) -> list[str]:
    """Everything Codex's command line gets: :func:`config_args`, then the tools approved.

    Without the approval, the default policy asks before a tool marked destructive
    (memory_update).  The server is not made ``required``: Codex would then refuse to start
    at all when it fails.
    """
    return config_args(wiring) + ["-c", f"mcp_servers.{wiring.server_name}.default_tools_approval_mode=\"approve\""]
