"""The adapter interface: everything agentdeck knows about one agent CLI.

An adapter builds the argv to launch (and resume) its CLI, submits text,
answers permission prompts, reads its status off the screen, maps its hook
events to statuses, and clears its first-run dialogs.  It never talks to tmux
or git itself: it gets a :class:`PaneIO` to type into and read from.

The protocols every CLI's folder fills in (``agentdeck/agents/<kind>/``):

* the adapter (``adapter.py``): a subclass of :class:`Adapter`; its screen rules are a
  table (:class:`ScreenRule`) read by the one classifier here, :meth:`Adapter.classify`;
* its hook events (``events.py``, standard library only: ``agentdeck hook`` imports it
  alone, see :mod:`agentdeck.hooks`);
* its token usage (``usage.py``): a :class:`UsageSource`, given by
  :meth:`Adapter.usage_source`;
* its memory wiring: :meth:`Adapter.memory_wiring` gives a neutral
  :class:`MemoryWiring` (the store, the brief, the MCP server) and the adapter turns
  it into the CLI's own flags, env or settings (``memory.py`` where that is more
  than a line).

Adding an agent CLI = one folder and one line in :data:`agentdeck.agents.ADAPTERS`.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agentdeck import paths
from agentdeck.config import AgentDef, Config
from agentdeck.errors import MissingTool

if TYPE_CHECKING:
    from agentdeck.agents.tokens import AgentUsage


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
    # The repository's MCP server over HTTP (agentdeck.mcp_link.service.wire_launch) and this launch's
    # bearer token: set only for adapters with ``mcp_http``; never persisted (only its sha256 is).
    mcp_url: str = ""
    mcp_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # adapter-owned per-agent data (persisted)


@dataclass
class ScreenVerdict:
    """What the screen says. ``status`` None = the screen tells nothing certain."""

    status: str | None
    reason: str = ""


@dataclass(frozen=True)
class ScreenRule:
    """One row of an adapter's screen table: when every pattern is found in the last
    ``lines`` lines of the screen (0 = all of it), the screen says ``status`` (None = "still
    starting, nothing certain", e.g. a dialog :meth:`Adapter.dialog_action` answers)."""

    status: str | None
    reason: str
    patterns: tuple[re.Pattern[str], ...]
    lines: int = 0


def classify_screen(rules: tuple[ScreenRule, ...] | list[ScreenRule], screen: str) -> ScreenVerdict:
    """The first rule of *rules* whose patterns are all on *screen* (in its region) decides."""
    regions: dict[int, str] = {}
    for row in rules:
        region = regions.get(row.lines)
        if region is None:
            region = regions[row.lines] = tail_lines(screen, row.lines) if row.lines else screen
        if all(p.search(region) for p in row.patterns):
            return ScreenVerdict(row.status, row.reason)
    return ScreenVerdict(None)


def tail_lines(screen: str, n: int) -> str:
    """The last *n* lines of a screen, trailing blank lines left out (agents draw at the top of a
    tall pane)."""
    return "\n".join(screen.rstrip().splitlines()[-n:])


# ---------------------------------------------------------------------- the shared memory
@dataclass
class MemoryWiring:
    """The shared memory for one launch, in no CLI's terms; each adapter turns it into its
    flags, env or settings file (:meth:`Adapter.memory_wiring` builds it).

    ``mcp_url`` set: the CLI reaches the repository's MCP server over streamable HTTP with
    the bearer token in the variable ``token_env`` (config files name the variable, never
    the token); empty: it starts ``stdio_server`` (``{"command", "args", "env"}`` of
    ``agentdeck mcp``).  ``env`` is what any agent gets: ``AGENTDECK_MEMORY_DIR``,
    ``AGENTDECK_MEMORY_BRIEF`` (the path of ``brief_file``) and, over HTTP, the token.
    """

    agent: str
    locations: Any  # agentdeck.memory.store.Locations: memory dir, state dir, repo root
    brief: str  # the brief's text: the tools, then the CORE summary of this moment
    brief_file: Path  # the same, written under the state dir
    server_name: str  # the MCP server's name in the CLI's config ("agentdeck")
    mcp_url: str
    token_env: str
    stdio_server: dict[str, Any]
    env: dict[str, str]

    def artefact(self, sub: str, suffix: str = ".json") -> Path:
        """A per-agent file under the state dir (``<state>/<sub>/<agent><suffix>``); the folder
        is made."""
        from agentdeck.memory import inject
        from agentdeck.memory.store import note_slug

        return inject.artefact_dir(self.locations, sub) / f"{note_slug(self.agent, 64)}{suffix}"

    @staticmethod
    def write(path: Path, text: str) -> Path:
        """Write an artefact whole or not at all (never through a link)."""
        from agentdeck import fsutil

        fsutil.atomic_write(path, text)
        return path


# ---------------------------------------------------------------------- token usage
class UsageRecords(Protocol):
    """What a :class:`UsageSource` may ask of agentdeck's usage reader (:class:`agentdeck.usage.UsageReader`)."""

    def read(self, path: Path | str, kind: str) -> dict[str, Any] | None:
        """The parsed state of one record file (read incrementally through the cache), None if gone."""
        ...

    def hook_session_ids(self, rec: Any) -> list[str]:
        """Conversation ids the agent's hooks reported, oldest first."""
        ...

    def lookup(self, key: str) -> str | None:
        """A path remembered under *key* (and still there)."""
        ...

    def remember(self, key: str, path: str) -> None: ...


class RecordParser(Protocol):
    """Parses one CLI's record file line by line into a JSON-able state (kept in the usage cache)."""

    kind: str
    needles: tuple[bytes, ...]  # a line without any of these holds no usage (skipped unparsed)

    def empty(self) -> dict[str, Any]: ...

    def feed(self, state: dict[str, Any], record: dict[str, Any], offset: int) -> None: ...


class UsageSource(Protocol):
    """How agentdeck reads one CLI's token usage from the CLI's own records (never estimated)."""

    cli: str  # the CLI's name in messages ("Claude Code")

    @property
    def parser(self) -> RecordParser:
        """The parser of the CLI's record files (the usage cache keeps its state per file)."""
        ...

    def usage(self, rec: Any, adapter: Any, records: UsageRecords) -> AgentUsage:
        """The agent's usage, or an :class:`~agentdeck.agents.tokens.AgentUsage` with a ``reason``."""
        ...


#: The last lines of the screen where a CLI's dialogs (folder trust, sign-in, approval) are looked for.
DIALOG_LINES = 30


class Adapter:
    """Base adapter; the generic kind uses it almost as is."""

    kind = "generic"
    binary = ""  # default executable when the definition has no command
    #: True when the CLI reports its own events (hooks/notify); the screen then only fills gaps.
    has_events = False
    #: Seconds of unchanged output before "quiet" counts as idle.
    quiet_s = 1.5
    #: True when the CLI reaches an MCP server over streamable HTTP with a bearer token read from its
    #: environment: it is then wired to the repository's one server (agentdeck.mcp_link.service) instead
    #: of starting its own ``agentdeck mcp`` over stdio.
    mcp_http = False

    def __init__(self, definition: str, agent_def: AgentDef, config: Config):
        self.definition = definition
        self.agent_def = agent_def
        self.config = config
        if agent_def.quiet_s:
            self.quiet_s = agent_def.quiet_s
        rules = self.SCREEN_RULES or self.pattern_rules(agent_def)
        if self.trust_re is not None:  # dialog_action answers it: still starting, not waiting for the user
            rules = (ScreenRule(None, "folder trust dialog", (self.trust_re,), DIALOG_LINES), *rules)
        self.screen_rules: tuple[ScreenRule, ...] = rules
        #: The screen table knows this CLI's prompt: until it shows, the CLI is still starting.
        self.knows_prompt = any(rule.status == "idle" for rule in self.screen_rules)

    #: The CLI's screen table, first match wins (:func:`classify_screen`); empty: the definition's
    #: ``waiting_pattern`` / ``working_pattern`` / ``idle_pattern`` (:meth:`pattern_rules`).  A CLI
    #: with a folder-trust dialog (:attr:`trust_re`) gets that dialog's row first.
    SCREEN_RULES: tuple[ScreenRule, ...] = ()

    @staticmethod
    def pattern_rules(agent_def: AgentDef) -> tuple[ScreenRule, ...]:
        """The table a definition's patterns make: waiting, then working (anywhere on the screen),
        then idle (in the last 5 lines)."""
        rows = []
        for status, pattern, lines in (("waiting", agent_def.waiting_pattern, 0),
                                       ("working", agent_def.working_pattern, 0),
                                       ("idle", agent_def.idle_pattern, 5)):
            if pattern:
                rows.append(ScreenRule(status, f"{status} pattern", (re.compile(pattern, re.MULTILINE),), lines))
        return tuple(rows)

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
        wiring = self.memory_wiring(ctx)
        return dict(wiring.env) if wiring else {}

    def memory_wiring(self, ctx: LaunchContext) -> MemoryWiring | None:
        """The shared memory for this launch (None when :func:`memory_wired` says no): the brief
        is written under the state dir on the way (:func:`wire_memory`)."""
        return wire_memory(ctx)

    @classmethod
    def usage_source(cls) -> UsageSource | None:
        """Where this CLI's token usage is read from (None: agentdeck cannot read it)."""
        return None

    def prompt_typed_after_start(self, ctx: LaunchContext) -> bool:
        """True when the initial prompt must be typed into the pane once the CLI is ready."""
        return bool(ctx.prompt) and not ctx.resume and not self.agent_def.prompt_arg

    def prompt_waits_for_tools(self, ctx: LaunchContext) -> bool:
        """True when the initial prompt is left out of the argv and typed once the agent's MCP
        client has listed agentdeck's tools (:mod:`agentdeck.mcp_link.first_prompt`): a CLI given its
        prompt at launch starts its first turn before its MCP servers are connected."""
        return False

    def prompt_args(self, ctx: LaunchContext, *flag: str) -> list[str]:
        """The initial prompt as launch arguments (after *flag*, if given): none without a prompt,
        or when it is typed once the tools are listed (:meth:`prompt_waits_for_tools`)."""
        return [*flag, ctx.prompt] if ctx.prompt and not self.prompt_waits_for_tools(ctx) else []

    def after_launch(self, ctx: LaunchContext, pane: PaneIO) -> dict[str, Any]:
        """Called once the pane exists; returns updates for the agent's persisted ``extra``."""
        return {}

    # ------------------------------------------------------------------ input
    def submit(self, pane: PaneIO, text: str) -> None:
        pane.send_text(text, enter=True)

    def input_box(self, screen: str) -> str | None:
        """The text in the CLI's input box on *screen* ("" when empty), None when this adapter cannot
        tell (used to check that typed text was submitted)."""
        return None

    def approve(self, pane: PaneIO) -> None:
        pane.send_keys(*self.agent_def.approve_keys)

    def deny(self, pane: PaneIO) -> None:
        pane.send_keys(*self.agent_def.deny_keys)

    # ------------------------------------------------------------------ status
    def classify(self, screen: str) -> ScreenVerdict:
        """Status from the visible screen alone (the screen table). Quietness is judged by the watcher."""
        return classify_screen(self.screen_rules, screen)

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
        bottom = "\n".join(screen.rstrip().splitlines()[-DIALOG_LINES:])
        if self.trust_re.search(bottom) and self.trust_selected_re.search(bottom):
            return ["Enter"]
        return None

    def hook_status(self, event: str, payload: dict[str, Any]) -> str | None:
        """The status an agent event implies by the kind's event table (None = no change; what
        depends on the agent's row, such as a first idle, is decided by :mod:`agentdeck.hooks`)."""
        from agentdeck import hooks

        status = hooks.status_for(self.kind, hooks.event_name(self.kind, [event], payload), payload)
        return None if status == "first-idle" else status


def memory_wired(ctx: LaunchContext) -> bool:
    """True when the agent gets the shared memory: it runs for a repository that exists.

    The store and the per-agent artefacts (brief, MCP config) live under the
    repository's state dir; a context built for no repository (a dry run, a unit
    test of the argv) gets none of them, and nothing is written for it.
    """
    return Path(ctx.repo_root).is_dir()


def wire_memory(ctx: LaunchContext) -> MemoryWiring | None:
    """The :class:`MemoryWiring` of one launch (None when :func:`memory_wired` says no); writes the brief."""
    if not memory_wired(ctx):
        return None
    from agentdeck.memory import inject
    from agentdeck.memory.store import ENV_MEMORY_BRIEF, ENV_MEMORY_DIR

    loc = inject.locations(ctx)
    brief_file = inject.brief_file(loc, ctx.name)
    env = {ENV_MEMORY_DIR: str(loc.memory_dir), ENV_MEMORY_BRIEF: str(brief_file)}
    url = inject.http_url(ctx)
    if url and ctx.mcp_token:
        env[paths.ENV_MCP_TOKEN] = ctx.mcp_token
    return MemoryWiring(
        agent=ctx.name, locations=loc, brief=inject.brief_text(loc, ctx.name), brief_file=brief_file,
        server_name=paths.MCP_SERVER_NAME, mcp_url=url, token_env=paths.ENV_MCP_TOKEN,
        stdio_server=inject.mcp_server_spec(loc, ctx.name, mcp_command=ctx.mcp_command or None), env=env,
    )
