"""The Aider adapter (see :mod:`agentdeck.agents.aider`)."""

from __future__ import annotations

import re

from agentdeck.agents.base import Adapter, LaunchContext, MemoryWiring, PaneIO, ScreenRule

FIXED_ARGS = ["--no-check-update", "--no-show-release-notes", "--no-gitignore", "--no-analytics"]

_QUESTION_RE = re.compile(r"\(Y\)es/\(N\)o\b.*\[(?:Yes|No)\]:\s*\S{0,3}\s*$", re.IGNORECASE)
_WORKING_RE = re.compile(r"Waiting for \S+|Thinking\.\.\.|Summarizing", re.IGNORECASE)
_PROMPT_RE = re.compile(r"^\s*[\w-]*>\s*$")  # the whole last line, spaces around it aside

#: The screen table: a question or the prompt on the last line; busy in the last 3.
SCREEN_RULES = (
    ScreenRule("waiting", "question", (_QUESTION_RE,), 1),
    ScreenRule("working", "waiting for the model", (_WORKING_RE,), 3),
    ScreenRule("idle", "prompt", (_PROMPT_RE,), 1),
)


def memory_args(wiring: MemoryWiring) -> list[str]:
    """Aider has no MCP: the brief as a read-only file (it tells the agent about the CLI too)."""
    return ["--read", str(wiring.brief_file)]


class AiderAdapter(Adapter):
    """Aider: see the package's notes (:mod:`agentdeck.agents.aider`)."""

    kind = "aider"
    SCREEN_RULES = SCREEN_RULES
    binary = "aider"
    has_events = False
    quiet_s = 2.0

    def launch_argv(self, ctx: LaunchContext) -> list[str]:
        argv = [*self.command_argv(), *[a for a in FIXED_ARGS if a not in self.agent_def.args]]
        wiring = self.memory_wiring(ctx)
        if wiring is not None:
            argv += memory_args(wiring)  # the memory brief, read-only (aider has no MCP)
        if ctx.resume:
            argv.append("--restore-chat-history")
        return argv

    def prompt_typed_after_start(self, ctx: LaunchContext) -> bool:
        return bool(ctx.prompt) and not ctx.resume

    def approve(self, pane: PaneIO) -> None:
        pane.send_keys("y", "Enter")

    def deny(self, pane: PaneIO) -> None:
        pane.send_keys("n", "Enter")
