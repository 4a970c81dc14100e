"""The adapter interface: everything agentdeck knows about one agent CLI.

An adapter builds the argv to launch (and resume) its CLI, submits text,
answers permission prompts, reads its status off the screen, maps its hook
events to statuses, and clears its first-run dialogs.  It never talks to tmux
or git itself: it gets a :class:`PaneIO` to type into and read from.

Adding an agent = adding one module and one line in :data:`agentdeck.agents.ADAPTERS`.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentdeck.config import AgentDef, Config
from agentdeck.errors import MissingTool


class PaneIO(Protocol):
    """What an adapter may do to its pane (implemented by :mod:`agentdeck.tmux`)."""

    def send_text(self, text: str, enter: bool = True) -> None: ...

    def send_keys(self, *keys: str) -> None: ...

    def capture(self) -> str: ...


@dataclass
class LaunchContext:
    """Everything an adapter may need to build its launch argv and environment."""

    name: str  # agent name
    worktree: Path
    start_dir: Path
    state_dir: Path
    repo_root: Path
    prompt: str = ""
    session_id: str = ""  # the conversation id agentdeck chose or found
    resume: bool = False  # True on restart: continue the conversation
    hook_command: list[str] = field(default_factory=list)  # argv prefix for `agentdeck hook`
    mcp_command: list[str] = field(default_factory=list)  # argv for `agentdeck mcp` (stdio)
    # The repository's MCP server over HTTP (agentdeck.mcp.service.wire_launch) and this launch's
    # bearer token: set only for adapters with ``mcp_http``; never persisted (only its sha256 is).
    mcp_url: str = ""
    mcp_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-owned per-agent data (persisted)


@dataclass
class ScreenVerdict:
    """What the screen says. ``status`` None = the screen tells nothing certain."""

    status: str | None
    reason: str = ""


class Adapter:
    """Base adapter; the generic kind uses it almost as is."""

    kind = "generic"
    binary = ""  # default executable when the definition has no command
    #: True when the CLI reports its own events (hooks/notify); the screen then only fills gaps.
    has_events = False
    #: Seconds of unchanged output before "quiet" counts as idle.
    quiet_s = 1.5
    #: True when the CLI reaches an MCP server over streamable HTTP with a bearer token read from its
    #: environment: it is then wired to the repository's one server (agentdeck.mcp.service) instead
    #: of starting its own ``agentdeck mcp`` over stdio.
    mcp_http = False

    def __init__(self, definition: str, agent_def: AgentDef, config: Config):
        self.definition = definition
        self.agent_def = agent_def
        self.config = config
        if agent_def.quiet_s:
            self.quiet_s = agent_def.quiet_s
        self._waiting_re = self._compile(agent_def.waiting_pattern)
        self._idle_re = self._compile(agent_def.idle_pattern)
        self._working_re = self._compile(agent_def.working_pattern)

    @staticmethod
    def _compile(pattern: str) -> re.Pattern[str] | None:
        return re.compile(pattern, re.MULTILINE) if pattern else None

    # ------------------------------------------------------------------ launch
    def command_argv(self) -> list[str]:
        """The executable and its fixed arguments (definition's command + args)."""
        command = shlex.split(self.agent_def.command) if self.agent_def.command else [self.binary]
        return [*command, *self.agent_def.args]

    def check_installed(self) -> None:
        """Raise MissingTool (exit 2) when the executable is not on PATH."""
        exe = self.command_argv()[0]
        if not exe or shutil.which(exe) is None:
            raise MissingTool(
                f"agent command {exe!r} (definition {self.definition!r}) is not installed or not on PATH; "
                f"install it or set [agents.{self.definition}] command in .agentdeck.toml"
            )

    def prepare(self, ctx: LaunchContext) -> None:
        """Before the first launch: choose ids, write per-agent files (under ctx.state_dir)."""

    def launch_argv(self, ctx: LaunchContext) -> list[str]:
        argv = self.command_argv()
        mode = self.agent_def.prompt_arg
        if ctx.prompt and not ctx.resume and mode:
            argv = [*argv, ctx.prompt] if mode == "-" else [*argv, mode, ctx.prompt]
        return argv

    def launch_env(self, ctx: LaunchContext) -> dict[str, str]:
        # The definition's own env wins over what agentdeck adds.
        return {**self.memory_env(ctx), **self.agent_def.env}

    def memory_env(self, ctx: LaunchContext) -> dict[str, str]:
        """Where the shared memory is (``AGENTDECK_MEMORY_DIR``) and the brief's path
        (``AGENTDECK_MEMORY_BRIEF``): what an agent without MCP can use."""
        if not memory_wired(ctx):
            return {}
        from agentdeck.memory import inject

        return inject.memory_env(ctx, ctx.name)

    def prompt_typed_after_start(self, ctx: LaunchContext) -> bool:
        """True when the initial prompt must be typed into the pane once the CLI is ready."""
        return bool(ctx.prompt) and not ctx.resume and not self.agent_def.prompt_arg

    def prompt_waits_for_tools(self, ctx: LaunchContext) -> bool:
        """True when the initial prompt is left out of the argv and typed once the agent's MCP
        client has listed agentdeck's tools (:mod:`agentdeck.mcp.first_prompt`): a CLI given its
        prompt at launch starts its first turn before its MCP servers are connected."""
        return False

    def after_launch(self, ctx: LaunchContext, pane: PaneIO) -> dict[str, Any]:
        """Called once the pane exists; returns updates for the agent's persisted ``extra``."""
        return {}

    # ------------------------------------------------------------------ input
    def submit(self, pane: PaneIO, text: str) -> None:
        pane.send_text(text, enter=True)

    def approve(self, pane: PaneIO) -> None:
        pane.send_keys(*self.agent_def.approve_keys)

    def deny(self, pane: PaneIO) -> None:
        pane.send_keys(*self.agent_def.deny_keys)

    # ------------------------------------------------------------------ status
    def classify(self, screen: str) -> ScreenVerdict:
        """Status from the visible screen alone (patterns). Quietness is judged by the watcher."""
        if self._waiting_re and self._waiting_re.search(screen):
            return ScreenVerdict("waiting", "waiting pattern")
        if self._working_re and self._working_re.search(screen):
            return ScreenVerdict("working", "working pattern")
        if self._idle_re and self._idle_re.search(_last_lines(screen, 5)):
            return ScreenVerdict("idle", "idle pattern")
        return ScreenVerdict(None)

    #: The CLI's folder-trust dialog, and the line showing its "trust" choice selected (subclasses).
    trust_re: re.Pattern[str] | None = None
    trust_selected_re: re.Pattern[str] | None = None

    def dialog_action(self, screen: str) -> list[str] | None:
        """Keys that clear a first-run dialog visible on *screen* (folder trust…), else None.

        By default: accept the folder-trust dialog (agentdeck made this worktree for the user) when
        its "trust" choice is the selected one.
        """
        if self.trust_re is None or self.trust_selected_re is None:
            return None
        bottom = "\n".join(screen.rstrip().splitlines()[-30:])
        if self.trust_re.search(bottom) and self.trust_selected_re.search(bottom):
            return ["Enter"]
        return None

    def hook_status(self, event: str, payload: dict[str, Any]) -> str | None:
        """The status an agent event implies (None = no change)."""
        return None


def memory_wired(ctx: LaunchContext) -> bool:
    """True when the agent gets the shared memory: it runs for a repository that exists.

    The store and the per-agent artefacts (brief, MCP config) live under the
    repository's state dir; a context built for no repository (a dry run, a unit
    test of the argv) gets none of them, and nothing is written for it.
    """
    return Path(ctx.repo_root).is_dir()


def _last_lines(screen: str, n: int) -> str:
    lines = [line for line in screen.rstrip().splitlines()]
    return "\n".join(lines[-n:])
