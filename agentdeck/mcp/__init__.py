"""agentdeck's MCP server (named ``agentdeck``): one package, one module per part.

* :mod:`agentdeck.mcp.context` - what the tool groups share: the caller, the server context,
  ``tool_errors``;
* :mod:`agentdeck.mcp.server` - the group registry (``TOOL_GROUPS``), ``build_server`` and the
  stdio entry point (``agentdeck mcp``);
* :mod:`agentdeck.mcp.memory_tools`, :mod:`agentdeck.mcp.research_tools`,
  :mod:`agentdeck.mcp.deck_tools` - one module per tool group;
* :mod:`agentdeck.mcp.auth` - bearer tokens (only their sha256 is stored), ``Host`` and ``Origin``
  rules;
* :mod:`agentdeck.mcp.http_app` - the long-lived streamable HTTP server of one repository (the
  process ``python -m agentdeck.mcp.http_app`` runs);
* :mod:`agentdeck.mcp.service` - its life cycle seen from the deck: start it in the background,
  record its port, wire an agent's launch to it, bring it back after a kill, ``doctor``'s check;
* :mod:`agentdeck.mcp.first_prompt` - the initial prompt typed once the agent's MCP client has
  listed the tools.

No module here imports the ``mcp`` SDK at import time (``build_server`` and ``http_app.run``
import it when they serve): the deck, the watcher and ``doctor`` import only ``service``,
``auth`` and ``first_prompt``, which use the standard library and the state store.
"""

SERVER_NAME = "agentdeck"
#: The environment variable that carries an agent's bearer token (never a command-line argument).
TOKEN_ENV = "AGENTDECK_MCP_TOKEN"
