"""OpenCode (kind ``opencode``): screen-only status; the adapter is ``adapter.py``.

Launch: ``opencode --prompt <prompt>``; restart: ``opencode --session <id>`` when the
session id is known (``extra``/``session_id``), else a fresh start - never
``--continue``, whose "last session" is per repository and could be another agent's
(worktrees of one repository share OpenCode's project id).

Facts from OpenCode 1.18.33 against the OpenAI chat stub (tests/fixtures/screens/opencode_*.txt):

* busy shows "esc interrupt" in the bottom line; idle shows the input box
  ("Ask anything…" when empty) and a footer without it;
* a permission (``"permission": {"bash": "ask"}``) shows "△ Permission required" with
  "Allow once   Allow always   Reject": Enter allows once, Esc rejects;
* by default bash and edits run without asking.

The shared memory reaches it through the env (``AGENTDECK_MEMORY_DIR`` and the brief's
path, ``AGENTDECK_MEMORY_BRIEF``), as for the generic kind.
"""
