"""Claude Code (kind ``claude``): everything agentdeck knows about it, in one folder.

* ``adapter.py``: launch, input, the screen table, fork (:class:`~.adapter.ClaudeAdapter`);
* ``events.py``: hook event -> status (standard library only: the hook path);
* ``usage.py``: token usage from its transcripts;
* ``memory.py``: the shared memory as Claude Code options and settings.

Launch: ``claude --settings <file> <memory options> --session-id <uuid> [-- <prompt>]``;
restart: ``claude --settings <file> <memory options> --resume <uuid>``.  Wired to the
repository's MCP server over HTTP, the prompt is not an argument: agentdeck types it once
Claude's MCP client has listed the tools (:mod:`agentdeck.mcp_link.first_prompt`).  The settings
file (one per agent, under ``<state_dir>/agents/<slug>/``) carries agentdeck's hooks;
other features add to the same dict through ``register_settings_extension`` (a
second ``--settings`` would replace the first): the shared memory adds its SessionStart
``compact`` hook.  The memory options give the agentdeck MCP server (``--mcp-config``),
allow its tools without a prompt (``--allowedTools``) and add the memory brief
(``--append-system-prompt``); ``CLAUDE_CODE_DISABLE_AUTO_MEMORY=1`` turns Claude's own
auto-memory off.  The user's ``~/.claude`` files are never written.

Facts from Claude Code 2.1.197 (tests/fixtures/screens/claude_*.txt are real captures):

* hooks get their payload as JSON on stdin; ``PermissionRequest`` fires the moment a
  permission dialog or an AskUserQuestion question appears, ``Notification
  permission_prompt`` about 6 s later; a "No"/Esc at the dialog fires no hook;
  ``StopFailure`` ends a turn that failed (API error);
* ``--resume ID`` fails ("No conversation found") until the conversation has a first
  message: restart then starts the same id afresh with ``--session-id``;
* a worktree of a trusted repository is trusted; otherwise the folder-trust dialog
  ("Quick safety check ... Yes, I trust this folder") shows before any hook runs, and
  the prompt given on the command line is submitted once it is accepted.

This ``__init__`` imports nothing: ``agentdeck hook`` imports ``events.py`` through it.
"""
