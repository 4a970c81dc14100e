"""The Claude Code adapter: launch, input, the screen table, fork (see :mod:`agentdeck.agents.claude`)."""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentdeck.agents.base import (
    Adapter,
    LaunchContext,
    PaneIO,
    ScreenRule,
    UsageSource,
    memory_wired,
)
from agentdeck.agents.claude import memory
from agentdeck.agents.claude.events import HOOK_EVENTS

#: Seconds Claude Code waits for one of our hooks before going on without it.
HOOK_TIMEOUT_S = 10

SettingsExtension = Callable[[LaunchContext, dict[str, Any]], None]
_EXTENSIONS: list[SettingsExtension] = []


def register_settings_extension(fn: SettingsExtension) -> SettingsExtension:
    """Let another feature (memory) add to the ``--settings`` dict: ``fn(ctx, settings)`` mutates it."""
    if fn not in _EXTENSIONS:
        _EXTENSIONS.append(fn)
    return fn


register_settings_extension(memory.settings_extension)  # the brief again after compaction


# ---------------------------------------------------------------------- screen patterns
# Permission dialogs: "Do you want to proceed?", "Do you want to make this edit to X?",
# "Do you want to create X?" ... with numbered choices and "Esc to cancel".
_PERMISSION_RE = re.compile(r"^\s*Do you want to .+\?\s*$", re.MULTILINE)
_CHOICE_RE = re.compile(r"^\s*(?:❯\s*)?1\.\s+Yes\b", re.MULTILINE)
_ESC_CANCEL_RE = re.compile(r"Esc to cancel", re.IGNORECASE)
# AskUserQuestion: "Enter to select · ↑/↓ to navigate · Esc to cancel".
_QUESTION_RE = re.compile(r"Enter to select\b.*\bEsc to cancel", re.IGNORECASE)
_TRUST_RE = re.compile(r"Yes, I trust this folder|Do you trust the files in this folder\?")
_TRUST_SELECTED_RE = re.compile(r"❯\s*1\.\s*Yes, I trust this folder")
_API_KEY_RE = re.compile(r"Detected a custom API key in your environment")
_ONBOARDING_RE = re.compile(
    r"Choose the text style|Select login method|Let's get started|Unable to connect to Anthropic services"
    r"|Welcome to Claude Code v[\d.]+\n[.\s]*$",
    re.IGNORECASE,
)
_BYPASS_RE = re.compile(r"Bypass Permissions mode", re.IGNORECASE)
_ACCEPT_RE = re.compile(r"accept", re.IGNORECASE)
_WORKING_RE = re.compile(r"esc to interrupt", re.IGNORECASE)
# The prompt box: "❯ " between two rules, with the hints line under it.
_PROMPT_RE = re.compile(r"^❯(?:\s.*)?$", re.MULTILINE)  # the box holds "❯" + NBSP
_RULE_RE = re.compile(r"^─{10,}\s*$", re.MULTILINE)
_BOX_RULE_RE = re.compile(r"─{10,}\s*")


#: The screen table (first match wins; after the folder-trust dialog's row, see ``trust_re``): the
#: last 30 lines for dialogs, the last 6 for the rest.
SCREEN_RULES = (
    ScreenRule("waiting", "API key dialog", (_API_KEY_RE,), 30),
    ScreenRule("waiting", "bypass-permissions warning", (_BYPASS_RE, _ACCEPT_RE), 30),
    ScreenRule("waiting", "permission prompt", (_PERMISSION_RE, _CHOICE_RE, _ESC_CANCEL_RE), 30),
    ScreenRule("waiting", "question", (_QUESTION_RE,), 30),
    ScreenRule("working", "esc to interrupt", (_WORKING_RE,), 6),
    ScreenRule("idle", "prompt box", (_PROMPT_RE, _RULE_RE), 6),
    ScreenRule("waiting", "first-run setup", (_ONBOARDING_RE,), 30),
)


class ClaudeAdapter(Adapter):
    """Claude Code: see the package's notes (:mod:`agentdeck.agents.claude`)."""

    def input_box(self, screen: str) -> str | None:
        """The lines between the last two rules at the bottom (the prompt box), "❯" taken off."""
        lines = screen.rstrip().splitlines()[-12:]
        rules = [i for i, line in enumerate(lines) if _BOX_RULE_RE.fullmatch(line)]
        if len(rules) < 2:
            return None
        inside = lines[rules[-2] + 1:rules[-1]]
        if not inside or not inside[0].lstrip().startswith("❯"):
            return None
        text = " ".join(line.strip() for line in inside)
        return text.lstrip("❯").replace("\u00a0", " ").strip()

    kind = "claude"
    SCREEN_RULES = SCREEN_RULES
    trust_re = _TRUST_RE
    trust_selected_re = _TRUST_SELECTED_RE
    binary = "claude"
    has_events = True
    quiet_s = 1.5
    mcp_http = True  # "type": "http" in --mcp-config, ${VAR} expanded in its headers

    # ------------------------------------------------------------------ launch
    def prepare(self, ctx: LaunchContext) -> None:
        """Choose the conversation id (kept across restarts) and write the settings file."""
        if not ctx.session_id:
            ctx.session_id = str(uuid.uuid4())
        self.keep_fork_session_id(ctx)
        path = self.settings_path(ctx)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.settings_dict(ctx), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        ctx.extra["claude_settings"] = str(path)

    def settings_path(self, ctx: LaunchContext) -> Path:
        from agentdeck.paths import slugify

        return Path(ctx.state_dir) / "agents" / slugify(ctx.name) / "claude-settings.json"

    def hook_entry(self, ctx: LaunchContext, event: str) -> dict[str, Any]:
        command = shlex.join([*ctx.hook_command, "claude", event])
        return {"hooks": [{"type": "command", "command": command, "timeout": HOOK_TIMEOUT_S}]}

    def settings_dict(self, ctx: LaunchContext) -> dict[str, Any]:
        """The one ``--settings`` JSON: agentdeck's hooks, plus what registered extensions add."""
        settings: dict[str, Any] = {"hooks": {}}
        if ctx.hook_command:
            settings["hooks"] = {event: [self.hook_entry(ctx, event)] for event in HOOK_EVENTS}
        for extend in list(_EXTENSIONS):
            extend(ctx, settings)
        return settings

    def config_dir(self, env: dict[str, str] | None = None) -> Path:
        """Where Claude Code keeps its conversations (``CLAUDE_CONFIG_DIR`` or ``~/.claude``)."""
        merged = {**os.environ, **(env or {})}
        override = merged.get("CLAUDE_CONFIG_DIR")
        return Path(override).expanduser() if override else Path(merged.get("HOME") or Path.home()) / ".claude"

    def transcript_exists(self, session_id: str, env: dict[str, str] | None = None) -> bool:
        if not session_id:
            return False
        pattern = str(self.config_dir(env) / "projects" / "*" / f"{glob.escape(session_id)}.jsonl")
        return bool(glob.glob(pattern))

    def memory_args(self, ctx: LaunchContext) -> list[str]:
        """``--mcp-config`` (the agentdeck server), ``--allowedTools`` (its tools, no prompt) and
        ``--append-system-prompt`` (the brief); they must come before ``--`` and the prompt."""
        wiring = self.memory_wiring(ctx)
        return memory.args(wiring) if wiring else []

    def memory_env(self, ctx: LaunchContext) -> dict[str, str]:
        """Claude's private auto-memory off (one memory, not two), plus the store and the brief."""
        wiring = self.memory_wiring(ctx)
        return memory.env(wiring) if wiring else {}

    @classmethod
    def usage_source(cls) -> UsageSource | None:
        from agentdeck.agents.claude.usage import SOURCE

        return SOURCE

    def resumable(self, ctx: LaunchContext) -> bool:
        return ctx.resume and self.transcript_exists(ctx.session_id, self.agent_def.env)

    def launch_argv(self, ctx: LaunchContext) -> list[str]:
        argv = self.command_argv()
        settings = ctx.extra.get("claude_settings") or str(self.settings_path(ctx))
        argv += ["--settings", settings, *self.memory_args(ctx)]
        if self.resumable(ctx):
            return [*argv, "--resume", ctx.session_id]
        argv += self.fork_args(ctx)  # a fork's first launch: --resume SOURCE --fork-session
        if ctx.session_id:
            argv += ["--session-id", ctx.session_id]
        # A restart of a conversation that never got its first message starts it afresh,
        # prompt included (typed once the tools are listed, when wired to agentdeck's server).
        return argv + self.prompt_args(ctx, "--")

    def prompt_typed_after_start(self, ctx: LaunchContext) -> bool:
        return False  # an argument, or typed once the tools are listed (prompt_waits_for_tools)

    def prompt_waits_for_tools(self, ctx: LaunchContext) -> bool:
        """Wired to agentdeck's HTTP server: the prompt waits (2.1.197 sends its first request
        before listing an MCP server's tools, even a server already running)."""
        return bool(ctx.prompt and ctx.mcp_url and memory_wired(ctx)) and not self.resumable(ctx)

    # ------------------------------------------------------------------ input
    def approve(self, pane: PaneIO) -> None:
        # "1" picks "Yes" in a permission dialog (the first choice of a question).
        pane.send_keys("1")

    def deny(self, pane: PaneIO) -> None:
        # Esc cancels any of its dialogs; Claude then stops the turn and waits for input.
        pane.send_keys("Escape")

    # ------------------------------------------------------------------ fork (Deck.fork)
    def fork_args(self, ctx: LaunchContext) -> list[str]:
        """``--resume SOURCE --fork-session`` while a forked agent has no conversation of its own.

        ``Deck.fork`` stores the source's conversation id in ``extra["fork_session_id"]``.
        Claude Code 2.1.197 copies the source's transcript into a new conversation and
        takes the id of ``--session-id`` for it, so the fork's id is agentdeck's choice
        and a restart resumes the fork, never the source.  ``--resume ID`` finds a
        conversation of another worktree of the same repository (not of an unrelated
        folder); without the source's transcript the fork starts a fresh conversation.
        """
        source = ctx.extra.get("fork_session_id")
        if not source or source == ctx.session_id or not self.transcript_exists(source, self.agent_def.env):
            return []
        return ["--resume", source, "--fork-session"]

    @staticmethod
    def keep_fork_session_id(ctx: LaunchContext) -> None:
        """Keep a fork's own conversation id in ``extra["fork_own_session_id"]``.

        A fork's SessionStart hook reports the *source's* id (``source: "resume"``), which
        the hook may record as the agent's; the id kept here wins back on the next launch.
        """
        source = ctx.extra.get("fork_session_id")
        if not source:
            return
        own = ctx.extra.get("fork_own_session_id")
        if own and ctx.session_id == source:
            ctx.session_id = own
        elif ctx.session_id and ctx.session_id != source:
            ctx.extra["fork_own_session_id"] = ctx.session_id
