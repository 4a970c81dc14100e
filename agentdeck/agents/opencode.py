"""OpenCode (kind ``opencode``): screen-only status.

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

from __future__ import annotations

import re

from agentdeck.agents.base import Adapter, LaunchContext, PaneIO, ScreenVerdict


def tail_lines(screen: str, n: int) -> str:
    return "\n".join(screen.rstrip().splitlines()[-n:])


_WAITING_RE = re.compile(r"Permission required|Allow once\s+Allow always\s+Reject", re.IGNORECASE)
_WORKING_RE = re.compile(r"esc interrupt|esc to interrupt", re.IGNORECASE)
_IDLE_RE = re.compile(r"ctrl\+p commands|Ask anything", re.IGNORECASE)


class OpenCodeAdapter(Adapter):
    kind = "opencode"
    binary = "opencode"
    has_events = False
    quiet_s = 2.0

    def launch_argv(self, ctx: LaunchContext) -> list[str]:
        argv = self.command_argv()
        session = ctx.session_id or ctx.extra.get("opencode_session", "")
        if ctx.resume and session:
            return [*argv, "--session", session]
        if ctx.prompt:
            argv += ["--prompt", ctx.prompt]
        return argv

    def prompt_typed_after_start(self, ctx: LaunchContext) -> bool:
        return False

    def approve(self, pane: PaneIO) -> None:
        pane.send_keys("Enter")  # "Allow once" is selected

    def deny(self, pane: PaneIO) -> None:
        pane.send_keys("Escape")

    def classify(self, screen: str) -> ScreenVerdict:
        if _WAITING_RE.search(tail_lines(screen, 25)):
            return ScreenVerdict("waiting", "permission required")
        tail = tail_lines(screen, 3)
        if _WORKING_RE.search(tail):
            return ScreenVerdict("working", "esc interrupt")
        if _IDLE_RE.search(tail_lines(screen, 30)):
            return ScreenVerdict("idle", "input box")
        return ScreenVerdict(None)
