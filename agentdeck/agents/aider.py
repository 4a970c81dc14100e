"""Aider (kind ``aider``): screen-only status.

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

from __future__ import annotations

import re

from agentdeck.agents.base import Adapter, LaunchContext, PaneIO, ScreenVerdict, memory_wired

FIXED_ARGS = ["--no-check-update", "--no-show-release-notes", "--no-gitignore", "--no-analytics"]


def tail_lines(screen: str, n: int) -> str:
    return "\n".join(screen.rstrip().splitlines()[-n:])


_QUESTION_RE = re.compile(r"\(Y\)es/\(N\)o\b.*\[(?:Yes|No)\]:\s*\S{0,3}\s*$", re.IGNORECASE)
_WORKING_RE = re.compile(r"Waiting for \S+|Thinking\.\.\.|Summarizing", re.IGNORECASE)
_PROMPT_RE = re.compile(r"^[\w-]*>\s?$")


class AiderAdapter(Adapter):
    kind = "aider"
    binary = "aider"
    has_events = False
    quiet_s = 2.0

    def launch_argv(self, ctx: LaunchContext) -> list[str]:
        argv = [*self.command_argv(), *[a for a in FIXED_ARGS if a not in self.agent_def.args]]
        if memory_wired(ctx):
            from agentdeck.memory import inject

            argv += inject.aider_args(ctx, ctx.name)  # the memory brief, read-only (aider has no MCP)
        if ctx.resume:
            argv.append("--restore-chat-history")
        return argv

    def prompt_typed_after_start(self, ctx: LaunchContext) -> bool:
        return bool(ctx.prompt) and not ctx.resume

    def approve(self, pane: PaneIO) -> None:
        pane.send_keys("y", "Enter")

    def deny(self, pane: PaneIO) -> None:
        pane.send_keys("n", "Enter")

    def classify(self, screen: str) -> ScreenVerdict:
        lines = screen.rstrip().splitlines()
        last = lines[-1] if lines else ""
        if _QUESTION_RE.search(last):
            return ScreenVerdict("waiting", "question")
        if _WORKING_RE.search(tail_lines(screen, 3)):
            return ScreenVerdict("working", "waiting for the model")
        if _PROMPT_RE.match(last.strip()):
            return ScreenVerdict("idle", "prompt")
        return ScreenVerdict(None)
