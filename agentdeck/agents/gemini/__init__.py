"""Gemini CLI (kind ``gemini``): everything agentdeck knows about it, in one folder.

* ``adapter.py``: launch, the system settings file (hooks and the shared memory's MCP
  server), input, the screen table (:class:`~.adapter.GeminiAdapter`);
* ``events.py``: hook event -> status (standard library only: the hook path).

agentdeck does not read Gemini's token usage.

Launch: ``gemini --skip-trust --session-id <uuid> [-i <prompt>]``; restart:
``gemini --skip-trust --resume <uuid>``.

Facts from Gemini CLI 0.61.0 (tests/fixtures/screens/gemini_*.txt are real captures):

* hooks (``BeforeAgent``, ``BeforeTool``, ``AfterTool``, ``AfterAgent``,
  ``Notification`` with ``notification_type: "ToolPermission"``, ``SessionStart``,
  ``SessionEnd``) take their payload on stdin like Claude Code's, but live only in
  settings files; the one a launch can name is the *system* settings file
  (``GEMINI_CLI_SYSTEM_SETTINGS_PATH``).  agentdeck writes its own there only when
  that does not hide a real one (the variable unset and no file at the default
  location), and Gemini refuses a file under a group/world-writable directory
  (``/tmp``), so the hooks are skipped there and the screen alone tells the status;
* the same settings file carries the shared memory's MCP server (``mcpServers.agentdeck``,
  ``trust: true``: its tools run without a confirmation); where the file cannot be used,
  the agent still gets ``AGENTDECK_MEMORY_DIR`` and ``AGENTDECK_MEMORY_BRIEF``;
* ``--skip-trust`` trusts the folder for this session only (no dialog, nothing saved);
* ``--resume`` takes the id given with ``--session-id``; conversations are kept in
  ``~/.gemini/tmp/<project>/chats/session-<time>-<first 8 chars of the id>.jsonl``;
* with the model on "Auto", each prompt first goes to a routing model; pass
  ``-m`` in the definition's args to skip it.

This ``__init__`` imports nothing: ``agentdeck hook`` imports ``events.py`` through it.
"""
