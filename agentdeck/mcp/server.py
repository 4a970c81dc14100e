"""The ``agentdeck`` MCP server: the group registry, ``build_server``, and stdio (``agentdeck mcp``).

Two ways to serve the same tools (mcp SDK 2.x, ``MCPServer``):

* **streamable HTTP** (:mod:`agentdeck.mcp.http_app`): one long-lived server per repository,
  which every agent started by agentdeck reaches with its own bearer token; the caller is the
  token's agent (:data:`CALLER`, set per request), whatever the request says;
* **stdio** (``agentdeck mcp``, :func:`main`): one process per client, for people who add
  agentdeck to their own agent's configuration and for agents without HTTP support; the
  caller is the process's ``AGENTDECK_AGENT`` (or ``user``).  It finds the repository through
  ``AGENTDECK_MEMORY_DIR`` / ``AGENTDECK_STATE_DIR`` or its working directory.

Tools come in groups, registered in one place: :data:`TOOL_GROUPS` is a list of
``register(server, context)`` callables, one module per group (memory, research, deck).  A
group may decide not to register (``context.config.mcp.deck_tools`` false).  Errors a tool
expects (bad input, a refused update) reach the agent as a tool error with agentdeck's
one-line message (:func:`tool_errors`).

Start-up (stdio): ``agentdeck mcp`` is dispatched before argparse and the other commands'
modules (:func:`agentdeck.cli.main`), and imports here are the SDK plus what a tool call
needs; the SDK's own import (its protocol types for two protocol versions) is most of the
time to ``initialize`` (measured in bench/bench_mcp.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

from agentdeck import __version__
from agentdeck.mcp.context import CALLER, ServerContext, tool_errors
from agentdeck.mcp.deck_tools import register_deck_tools
from agentdeck.mcp.memory_tools import register_memory_tools
from agentdeck.mcp.research_tools import register_research_tools
from agentdeck.mcp_link import SERVER_NAME

__all__ = ["CALLER", "INSTRUCTIONS", "TOOL_GROUPS", "ServerContext", "build_server", "main", "serve", "tool_errors"]

INSTRUCTIONS = (
    "agentdeck's shared memory: Markdown notes shared by every coding agent working on this repository "
    "and by the user. Search it before starting work and when something surprises you; write a note when "
    "you learn something another agent would want (a gotcha, a decision and why, a result, a dead end); "
    "correct notes with memory_update and the version you read; log your steps with memory_append_journal."
)

#: Every tool group of the server, in registration order.
TOOL_GROUPS: list[Callable[[Any, ServerContext], None]] = [
    register_memory_tools, register_research_tools, register_deck_tools,
]


def build_server(context: ServerContext | None = None, middleware: list[Any] | None = None) -> MCPServer:
    """The MCPServer with every tool group registered (*middleware*: SDK server middleware)."""
    context = context or ServerContext()
    server = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, version=__version__, log_level="WARNING",
                       middleware=middleware or None)
    for register in TOOL_GROUPS:
        register(server, context)
    return server


def serve(cwd: str | os.PathLike[str] | None = None) -> int:
    """Run the server on stdio until the client closes it."""
    context = ServerContext(cwd=Path(cwd) if cwd else Path.cwd())
    server = build_server(context)
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        context.close()
    return 0


def main(argv: list[str]) -> int | None:
    """``agentdeck [--repo PATH] mcp`` without argparse; None when *argv* is anything else
    (the full parser then handles it, ``--help`` included)."""
    if argv == ["mcp"]:
        return serve(None)
    if len(argv) == 3 and argv[0] == "--repo" and argv[2] == "mcp":
        return serve(argv[1])
    if len(argv) == 2 and argv[0].startswith("--repo=") and argv[1] == "mcp":
        return serve(argv[0][len("--repo="):])
    return None
