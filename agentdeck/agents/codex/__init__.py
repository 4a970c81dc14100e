"""OpenAI Codex CLI (kind ``codex``): everything agentdeck knows about it, in one folder.

* ``adapter.py``: launch, sessions, input, the screen table, fork (:class:`~.adapter.CodexAdapter`);
* ``events.py``: ``notify`` -> status (standard library only: the hook path);
* ``usage.py``: token usage from its session files;
* ``memory.py``: the shared memory as ``-c`` overrides.

Launch: ``codex --no-daemon -c notify=[<agentdeck hook codex notify>] [-- <prompt>]``;
restart: ``codex resume --no-daemon -c notify=[...] <session id>``.  Wired to the
repository's MCP server over HTTP, the prompt is typed once Codex's MCP client has listed
the tools (:mod:`agentdeck.mcp_link.first_prompt`).

Facts from Codex 0.169.0 (tests/fixtures/screens/codex_*.txt are real captures):

* by default the TUI talks to a shared background app-server ("daemon") per
  ``CODEX_HOME``; quitting the TUI then leaves the turn running ("Disconnected from
  this task. Any running work continues.").  ``--no-daemon`` keeps each agent one
  process tree that dies with its pane, as agentdeck's kill and liveness expect;
* ``notify`` runs a program with one JSON argument on each completed turn
  (``{"type": "agent-turn-complete", "thread-id": ..., "cwd": ...}``) - also for the
  side thread that writes the conversation's title, which has no session file;
* a conversation's id is its ``thread-id``; its session file
  ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl`` starts with a
  ``session_meta`` line holding ``id`` and ``cwd``; it appears with the first
  message, not at start;
* text typed faster than a person types is taken as a paste: an Enter that follows it
  within ~0.2-0.4 s (longer for long text) becomes a newline instead of submitting;
* the folder-trust dialog ("Trust this folder? ... 1. Trust and continue") shows for
  a folder outside a trusted repository (trust is recorded for the repository root).

This ``__init__`` imports nothing: ``agentdeck hook`` imports ``events.py`` through it.
"""
