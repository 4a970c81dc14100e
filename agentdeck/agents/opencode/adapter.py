"""The OpenCode adapter (see :mod:`agentdeck.agents.opencode`)."""

from __future__ import annotations

import re

from agentdeck.agents.base import Adapter, LaunchContext, PaneIO, ScreenRule

_WAITING_RE = re.compile(r"Permission required|Allow once\s+Allow always\s+Reject", re.IGNORECASE)
_WORKING_RE = re.compile(r"esc interrupt|esc to interrupt", re.IGNORECASE)
_IDLE_RE = re.compile(r"ctrl\+p commands|Ask anything", re.IGNORECASE)

#: The screen table (first match wins).
SCREEN_RULES = (
    ScreenRule("waiting", "permission required", (_WAITING_RE,), 25),
    ScreenRule("working", "esc interrupt", (_WORKING_RE,), 3),
    ScreenRule("idle", "input box", (_IDLE_RE,), 30),
)


class OpenCodeAdapter(Adapter):
    """OpenCode: see the package's notes (:mod:`agentdeck.agents.opencode`)."""

    kind = "opencode"
    SCREEN_RULES = SCREEN_RULES
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
