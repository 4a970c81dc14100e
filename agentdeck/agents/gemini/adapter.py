"""The Gemini CLI adapter: launch, its settings file, input, the screen table (see
:mod:`agentdeck.agents.gemini`)."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import sys
import uuid
from pathlib import Path
from typing import Any

from agentdeck.agents.base import Adapter, LaunchContext, MemoryWiring, PaneIO, ScreenRule, memory_wired
from agentdeck.agents.gemini.events import HOOK_EVENTS

DEFAULT_SYSTEM_SETTINGS = {
    "linux": Path("/etc/gemini-cli/settings.json"),
    "darwin": Path("/Library/Application Support/GeminiCli/settings.json"),
}


_WAITING_RE = re.compile(
    r"Allow execution of|Apply this change\?|Do you want to proceed\?|Waiting for user confirmation"
    r"|^[│\s]*●\s*1\.\s+(?:Allow once|Yes, allow once)",
    re.MULTILINE | re.IGNORECASE,
)
_TRUST_RE = re.compile(r"Do you trust the files in this folder\?")
_TRUST_SELECTED_RE = re.compile(r"●\s*1\.\s*Trust folder")
_AUTH_RE = re.compile(r"How would you like to authenticate|Enter Gemini API Key|Waiting for auth", re.IGNORECASE)
_WORKING_RE = re.compile(r"esc to cancel", re.IGNORECASE)
_IDLE_RE = re.compile(r"Type your message or @path/to/file")

#: The screen table (first match wins; after the folder-trust dialog's row, see ``trust_re``): the
#: last 30 lines for dialogs, the last 8 for the rest.
SCREEN_RULES = (
    ScreenRule("waiting", "sign-in dialog", (_AUTH_RE,), 30),
    ScreenRule("waiting", "confirmation", (_WAITING_RE,), 30),
    ScreenRule("working", "esc to cancel", (_WORKING_RE,), 8),
    ScreenRule("idle", "input box", (_IDLE_RE,), 8),
)


def memory_settings(wiring: MemoryWiring) -> dict[str, Any]:
    """``{"mcpServers": {"agentdeck": {...}}}`` for the settings file (its tools trusted).

    Wired to the HTTP server: ``httpUrl`` and the token as ``${AGENTDECK_MCP_TOKEN}`` in the
    ``Authorization`` header (Gemini expands variables in its settings files).
    """
    if wiring.mcp_url:
        server = {"httpUrl": wiring.mcp_url, "headers": {"Authorization": f"Bearer ${{{wiring.token_env}}}"},
                  "trust": True}
        return {"mcpServers": {wiring.server_name: server}}
    return {"mcpServers": {wiring.server_name: {**wiring.stdio_server, "trust": True}}}


class GeminiAdapter(Adapter):
    """Gemini CLI: see the package's notes (:mod:`agentdeck.agents.gemini`)."""

    kind = "gemini"
    SCREEN_RULES = SCREEN_RULES
    trust_re = _TRUST_RE
    trust_selected_re = _TRUST_SELECTED_RE
    binary = "gemini"
    has_events = True  # when the hooks could be installed; otherwise no hook ever sets a status
    quiet_s = 1.5
    mcp_http = True  # "httpUrl" + headers in the settings file

    # ------------------------------------------------------------------ launch
    def settings_path(self, ctx: LaunchContext) -> Path:
        from agentdeck.paths import slugify

        return Path(ctx.state_dir) / "agents" / slugify(ctx.name) / "gemini-system-settings.json"

    def settings_dict(self, ctx: LaunchContext) -> dict[str, Any]:
        """agentdeck's hooks and the shared memory's MCP server (its tools trusted)."""
        settings: dict[str, Any] = {}
        if ctx.hook_command:
            hooks = {}
            for event in HOOK_EVENTS:
                command = shlex.join([*ctx.hook_command, "gemini", event])
                hooks[event] = [{"hooks": [{"type": "command", "command": command, "name": f"agentdeck-{event}",
                                            "timeout": 10_000}]}]
            settings["hooks"] = hooks
        wiring = self.memory_wiring(ctx)
        if wiring is not None:
            settings.update(memory_settings(wiring))
        return settings

    def can_install_hooks(self, path: Path) -> bool:
        env = {**os.environ, **self.agent_def.env}
        if env.get("GEMINI_CLI_SYSTEM_SETTINGS_PATH"):
            return False  # the user's (or admin's) own system settings: never hide them
        default = DEFAULT_SYSTEM_SETTINGS.get(sys.platform)
        if default is not None and default.exists():
            return False
        return not any(_loosely_writable(parent) for parent in path.parents)

    def prepare(self, ctx: LaunchContext) -> None:
        if not ctx.session_id:
            ctx.session_id = str(uuid.uuid4())
        path = self.settings_path(ctx)
        ctx.extra["gemini_settings"] = ""
        settings = self.settings_dict(ctx)
        if settings and self.can_install_hooks(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, path)
            ctx.extra["gemini_settings"] = str(path)

    def launch_env(self, ctx: LaunchContext) -> dict[str, str]:
        env = super().launch_env(ctx)  # the definition's env and the memory's
        if ctx.extra.get("gemini_settings"):
            env["GEMINI_CLI_SYSTEM_SETTINGS_PATH"] = ctx.extra["gemini_settings"]
        return env

    def gemini_dir(self) -> Path:
        env = {**os.environ, **self.agent_def.env}
        return Path(env.get("HOME") or Path.home()) / ".gemini"

    def transcript_exists(self, session_id: str) -> bool:
        if not session_id:
            return False
        return any((self.gemini_dir() / "tmp").glob(f"*/chats/session-*-{session_id[:8]}.json*"))

    def launch_argv(self, ctx: LaunchContext) -> list[str]:
        argv = [*self.command_argv(), "--skip-trust"]
        if ctx.resume and self.transcript_exists(ctx.session_id):
            return [*argv, "--resume", ctx.session_id]
        if ctx.session_id:
            argv += ["--session-id", ctx.session_id]
        return argv + self.prompt_args(ctx, "--prompt-interactive")

    def prompt_typed_after_start(self, ctx: LaunchContext) -> bool:
        return False

    def prompt_waits_for_tools(self, ctx: LaunchContext) -> bool:
        """Wired to agentdeck's HTTP server (through the settings file, which needs a usable
        system settings path): typed once the tools are listed."""
        if not (ctx.prompt and ctx.mcp_url and memory_wired(ctx) and ctx.extra.get("gemini_settings")):
            return False
        return not (ctx.resume and self.transcript_exists(ctx.session_id))

    # ------------------------------------------------------------------ input
    def approve(self, pane: PaneIO) -> None:
        pane.send_keys("1")  # "● 1. Allow once"

    def deny(self, pane: PaneIO) -> None:
        pane.send_keys("Escape")  # "No, suggest changes (esc)"


def _loosely_writable(path: Path) -> bool:
    """True when group or others may write *path* (Gemini refuses settings below such a folder)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # not created yet: made by us, with the default umask
    return bool(mode & (stat.S_IWGRP | stat.S_IWOTH))
