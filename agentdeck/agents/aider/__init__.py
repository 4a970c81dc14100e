"""Aider (kind ``aider``): screen-only status; the adapter is ``adapter.py``.

Launch: ``aider --no-check-update --no-show-release-notes --no-gitignore
--no-analytics --read <memory brief>``; the initial prompt is typed once it is ready;
restart adds ``--restore-chat-history`` (aider keeps the chat in the worktree, so it is
this agent's own).  Aider has no MCP: the brief (a file under agentdeck's state dir,
never in the worktree) tells it about the shared memory and its CLI.

Facts from aider 0.86.2 against the OpenAI chat stub (tests/fixtures/screens/aider_*.txt):

* without those flags a new worktree stops at "Add .aider* to .gitignore
  (recommended)? (Y)es/(N)o [Yes]:" (and would edit .gitignore) and at "Would you
  like to see what's new in this version?";
* every question is a line ending "(Y)es/(N)o [Yes]:" - answered with ``y``/``n``;
* busy shows a spinner with "Waiting for <model>"; idle is the ``>`` prompt
  (``ask>``, ``architect>`` ... in other modes);
* ``--notifications-command`` runs at both idle and a question, with no payload, so it
  cannot tell them apart: agentdeck does not use it.
"""
