"""What the engine needs of agentdeck's MCP server, without the server itself.

The server (:mod:`agentdeck.mcp`) is a face: its tools call the deck.  The deck, the watcher
and ``doctor`` in turn start that server, wire agents to it and type first prompts; that part
lives here, below the deck, so neither package imports the other's upper half:

* :mod:`agentdeck.mcp_link.service` - the repository's HTTP server seen from the deck: start it
  in the background, record its port, wire an agent's launch to it, bring it back after a
  kill, ``doctor``'s check;
* :mod:`agentdeck.mcp_link.auth` - bearer tokens (only their sha256 is stored), ``Host`` and
  ``Origin`` rules;
* :mod:`agentdeck.mcp_link.first_prompt` - the initial prompt typed once the agent's MCP client
  has listed the tools.

Standard library, the state store and :mod:`agentdeck.paths` only (the watcher imports it; the
server's name and the token's variable are defined there, where the memory wiring below reads them
too); the adapters' base is imported when an agent launches or a prompt is typed.
"""

from agentdeck.paths import ENV_MCP_TOKEN as TOKEN_ENV
from agentdeck.paths import MCP_SERVER_NAME as SERVER_NAME

__all__ = ["SERVER_NAME", "TOKEN_ENV"]
