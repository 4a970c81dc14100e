"""The Codex adapter: launch, sessions, input, the screen table, fork (see :mod:`agentdeck.agents.codex`)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from agentdeck.agents.base import Adapter, LaunchContext, PaneIO, ScreenRule, UsageSource, memory_wired
from agentdeck.agents.codex import memory

_WAITING_RE = re.compile(
    r"Would you like to (?:run the following command|make the following edits|allow|grant)"
    r"|Press enter to confirm or esc to cancel"
    r"|^\s*›?\s*1\.\s+Yes, (?:proceed|allow)",
    re.MULTILINE | re.IGNORECASE,
)
_TRUST_RE = re.compile(r"Trust this folder\?|Do you trust the contents of this directory", re.IGNORECASE)
_TRUST_SELECTED_RE = re.compile(r"›\s*1\.\s*(?:Trust and continue|Yes)", re.IGNORECASE)
_WORKING_RE = re.compile(r"esc to interrupt", re.IGNORECASE)
_IDLE_RE = re.compile(r"\? for shortcuts|^›\s", re.MULTILINE)
_LOGIN_RE = re.compile(r"Sign in with ChatGPT|Provide your own API key", re.IGNORECASE)
#: The screen table (first match wins; after the folder-trust dialog's row, see ``trust_re``): the
#: last 30 lines for dialogs, the last 8 for the rest.
SCREEN_RULES = (
    ScreenRule("waiting", "approval prompt", (_WAITING_RE,), 30),
    ScreenRule("working", "esc to interrupt", (_WORKING_RE,), 8),
    ScreenRule("waiting", "sign-in screen", (_LOGIN_RE,), 30),
    ScreenRule("idle", "composer", (_IDLE_RE,), 8),
)
_SESSION_ID_RE = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.jsonl$")


class CodexAdapter(Adapter):
    """Codex: see the package's notes (:mod:`agentdeck.agents.codex`)."""

    kind = "codex"
    SCREEN_RULES = SCREEN_RULES
    trust_re = _TRUST_RE
    trust_selected_re = _TRUST_SELECTED_RE
    binary = "codex"
    # `notify` reports turn completion; working/waiting come from the screen.
    has_events = True
    quiet_s = 1.5
    mcp_http = True  # mcp_servers.<name>.url with bearer_token_env_var

    # ------------------------------------------------------------------ launch
    def codex_home(self) -> Path:
        env = {**os.environ, **self.agent_def.env}
        override = env.get("CODEX_HOME")
        return Path(override).expanduser() if override else Path(env.get("HOME") or Path.home()) / ".codex"

    def notify_argv(self, ctx: LaunchContext) -> list[str]:
        return [*ctx.hook_command, "codex", "notify"]

    def common_options(self, ctx: LaunchContext) -> list[str]:
        options = ["--no-daemon"]
        if ctx.hook_command:
            # A JSON array of strings is a valid TOML array.
            options += ["-c", "notify=" + json.dumps(self.notify_argv(ctx))]
        options += ["-c", "check_for_update_on_startup=false"]
        return options + self.memory_options(ctx)

    def memory_options(self, ctx: LaunchContext) -> list[str]:
        """The agentdeck MCP server (``-c mcp_servers.agentdeck.*``), its tools approved without a
        prompt, and the memory brief (``developer_instructions``); on ``codex resume`` too."""
        wiring = self.memory_wiring(ctx)
        return memory.options(wiring) if wiring else []

    @classmethod
    def usage_source(cls) -> UsageSource | None:
        from agentdeck.agents.codex.usage import SOURCE

        return SOURCE

    def prepare(self, ctx: LaunchContext) -> None:
        """On restart, find the conversation this agent had (by its folder) if none is known yet."""
        if ctx.resume:
            if ctx.session_id and self.session_file(ctx.session_id) is None:
                ctx.session_id = ""
            if not ctx.session_id:
                ctx.session_id = self.find_session_id(ctx.start_dir) or ""
        ctx.extra["codex_launched_at"] = time.time()

    def launch_argv(self, ctx: LaunchContext) -> list[str]:
        argv = self.command_argv()
        if ctx.resume and ctx.session_id:
            return [*argv, "resume", *self.common_options(ctx), ctx.session_id]
        prompt = self.prompt_args(ctx)
        source = self.fork_source(ctx)
        if source:  # a fork's first launch: `codex fork ... -C <its folder> -- SOURCE [PROMPT]`
            return [*argv, "fork", *self.common_options(ctx), "-C", str(ctx.start_dir), "--", source, *prompt]
        argv += self.common_options(ctx)
        # No conversation to resume (it never got a message): start afresh, prompt included
        # (typed once the tools are listed, when wired to agentdeck's server).
        if prompt:
            argv += ["--", *prompt]
        return argv

    def prompt_typed_after_start(self, ctx: LaunchContext) -> bool:
        return False  # an argument, or typed once the tools are listed (prompt_waits_for_tools)

    def prompt_waits_for_tools(self, ctx: LaunchContext) -> bool:
        """Wired to agentdeck's HTTP server: the prompt waits (Codex leaves a server still
        connecting out of the turn's tools)."""
        return bool(ctx.prompt and ctx.mcp_url and memory_wired(ctx)) and not (ctx.resume and ctx.session_id)

    def after_launch(self, ctx: LaunchContext, pane: PaneIO) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ sessions
    def session_files(self) -> list[Path]:
        """Session files, newest first (their names start with the creation time)."""
        root = self.codex_home() / "sessions"
        files = list(root.glob("*/*/*/rollout-*.jsonl"))
        files.sort(key=lambda p: p.name, reverse=True)
        return files

    def session_file(self, session_id: str) -> Path | None:
        for path in (self.codex_home() / "sessions").glob(f"*/*/*/rollout-*{session_id}.jsonl"):
            return path
        return None

    @staticmethod
    def read_session_meta(path: Path) -> dict[str, Any] | None:
        try:
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
            record = json.loads(first)
        except (OSError, ValueError):
            return None
        if record.get("type") != "session_meta" or not isinstance(record.get("payload"), dict):
            return None
        meta: dict[str, Any] = record["payload"]
        return meta

    def find_session_id(self, start_dir: Path | str, since: float | None = None) -> str | None:
        """The newest conversation Codex recorded for *start_dir* (each agent has its own
        worktree, so another agent's conversation never matches)."""
        target = os.path.realpath(str(start_dir))
        for path in self.session_files():
            if since is not None:
                try:
                    if path.stat().st_mtime < since - 5:
                        break  # newest first: the rest are older still
                except OSError:
                    continue
            meta = self.read_session_meta(path)
            if not meta or not meta.get("cwd"):
                continue
            if os.path.realpath(str(meta["cwd"])) == target:
                sid = meta.get("id") or meta.get("session_id")
                if not sid:
                    m = _SESSION_ID_RE.search(path.name)
                    sid = m.group(1) if m else None
                if sid:
                    return str(sid)
        return None

    # ------------------------------------------------------------------ input
    def submit(self, pane: PaneIO, text: str) -> None:
        """Type, let Codex's paste detection settle, then Enter (else Enter becomes a newline)."""
        pane.send_text(text, enter=False)
        time.sleep(self.submit_settle_s(text))
        pane.send_keys("Enter")

    @staticmethod
    def submit_settle_s(text: str) -> float:
        return min(3.0, 0.4 + len(text) / 1000.0)

    def approve(self, pane: PaneIO) -> None:
        pane.send_keys("y")  # "1. Yes, proceed (y)"

    def deny(self, pane: PaneIO) -> None:
        pane.send_keys("Escape")  # "No, and tell Codex what to do differently (esc)"

    # ------------------------------------------------------------------ fork (Deck.fork)
    def fork_source(self, ctx: LaunchContext) -> str | None:
        """The source conversation to fork while a forked agent has none of its own.

        ``Deck.fork`` stores the source's id in ``extra["fork_session_id"]``.  Codex 0.169's
        ``codex fork [OPTIONS] SESSION_ID [PROMPT]`` starts a new thread (its own id, learnt
        from the turn-complete ``notify`` as usual) whose history is the source's; the
        source's session file stays as it was.  ``-C`` names the fork's own folder: without
        it Codex asks which working directory to use (the source's or the current one)
        whenever they differ, as they always do here.  The fork's session file starts with
        ``session_meta.forked_from_id`` and its cumulative token totals continue from the
        source's (see :mod:`agentdeck.agents.codex.usage`).
        """
        source = ctx.extra.get("fork_session_id")
        if not source or source == ctx.session_id or self.session_file(source) is None:
            return None
        return str(source)
