"""agentdeck's MCP server (named ``agentdeck``): a face, like the CLI and the TUI.

* :mod:`agentdeck.mcp.context` - what the tool groups share: the caller, the server context,
  ``tool_errors``, ``tool_adder``;
* :mod:`agentdeck.mcp.server` - the group registry (``TOOL_GROUPS``), ``build_server`` and the
  stdio entry point (``agentdeck mcp``);
* :mod:`agentdeck.mcp.memory_tools`, :mod:`agentdeck.mcp.research_tools`,
  :mod:`agentdeck.mcp.deck_tools` - one module per tool group;
* :mod:`agentdeck.mcp.http_app` - the long-lived streamable HTTP server of one repository (the
  process ``python -m agentdeck.mcp.http_app`` runs).

These import the ``mcp`` SDK.  What the deck, the watcher and ``doctor`` need of the server
(starting it, tokens, the first prompt) is :mod:`agentdeck.mcp_link`, below the deck.
"""
