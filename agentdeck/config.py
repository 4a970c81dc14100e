"""Typed settings from ``.agentdeck.toml`` (repository root) over the user config.

Every section of the contract is modelled here, so every part of agentdeck reads
one typed object.  Files are found nearest-first: the repository's
``.agentdeck.toml`` wins over ``$AGENTDECK_HOME/config.toml`` (or
``~/.config/agentdeck/config.toml``), table by table.

A syntax error, an unknown key or a wrong type raises :class:`ConfigError` with
one message naming the file, the key, the line (where it can be found) and what
was expected.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from agentdeck.errors import ConfigError

BUILTIN_KINDS = ("claude", "codex", "gemini", "aider", "opencode", "generic")


@dataclass
class DeckSettings:
    default_agent: str = "claude"
    """Definition used by ``new`` without ``--agent``."""
    branch_prefix: str = "agentdeck/"
    """Prefix of every branch agentdeck creates."""
    worktree_dir: str = ""
    """Where worktrees go; empty = the user data dir. Relative paths are from the repository root."""
    tmux_socket: str = "agentdeck"
    """Name of agentdeck's own tmux server socket (``tmux -L NAME``)."""
    setup_copy: list[str] = field(default_factory=list)
    """Untracked files (globs, relative to the root) copied into each new worktree, e.g. ``.env``."""
    setup_command: str = ""
    """Shell command run in each new worktree before the agent starts."""
    status_interval: float = 0.25
    """Seconds between screen samples when watching agent status."""
    repos: list[str] = field(default_factory=list)
    """Repositories the deck shows beside the current one (user config): one deck over several."""
    recovery_days: float = 30.0
    """``gc`` removes recovery refs older than this many days."""


@dataclass
class AgentDef:
    command: str = ""
    """Executable (and fixed leading words) to launch; empty = the kind's own binary."""
    kind: str = "generic"
    """Adapter: claude, codex, gemini, aider, opencode or generic."""
    args: list[str] = field(default_factory=list)
    """Extra arguments after the command."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the agent's pane."""
    prompt_arg: str = ""
    """generic: how the initial prompt is passed. Empty = typed into the pane once it starts;
    ``"-"`` = appended as the last argument; anything else = that flag then the prompt."""
    waiting_pattern: str = ""
    """generic: regex; when the screen matches it the agent is ``waiting``."""
    idle_pattern: str = ""
    """generic: regex for the agent's prompt; optional (quiet output alone means idle)."""
    working_pattern: str = ""
    """generic: regex that marks ``working`` even while the screen is still (a spinner word)."""
    approve_keys: list[str] = field(default_factory=lambda: ["y", "Enter"])
    """tmux key names sent by ``approve``."""
    deny_keys: list[str] = field(default_factory=lambda: ["n", "Enter"])
    """tmux key names sent by ``deny``."""
    quiet_s: float = 1.5
    """Seconds of unchanged output before a generic agent counts as idle."""


@dataclass
class NotifySettings:
    bell: bool = True
    """Ring the terminal bell when an agent starts waiting."""
    desktop: bool = False
    """Desktop notification (notify-send / osascript)."""
    tmux_status: bool = True
    """Show waiting agents in the status line of agentdeck's tmux server."""


@dataclass
class LlmSettings:
    provider: Literal["anthropic", "openai"] = "anthropic"
    model: str = ""
    """Model name; empty = no LLM configured."""
    base_url: str = ""
    """Any compatible endpoint (vLLM, ollama, llama.cpp server) for ``openai``."""
    api_key_env: str = ""
    """Environment variable holding the key (default ANTHROPIC_API_KEY / OPENAI_API_KEY)."""


@dataclass
class ReviewSettings:
    merge_strategy: Literal["merge", "squash", "rebase"] = "merge"
    test_command: str = ""
    """Run in each worktree by ``compare``."""


@dataclass
class MemorySettings:
    dir: str = ""
    """Memory directory; empty = under agentdeck's state in the git common dir."""


@dataclass
class RaySettings:
    address: str = ""
    """Ray dashboard/Jobs address, e.g. ``http://127.0.0.1:8265``."""
    num_gpus: float = 1.0
    """GPUs per trial entrypoint."""
    runtime_env: dict[str, Any] = field(default_factory=dict)
    """Extra runtime_env entries merged into each job's."""
    shared_fs: Union[bool, None] = None
    """True: jobs run in the worktree in place (the nodes share its filesystem); false: the worktree
    is uploaded as working_dir. Unset: in place for a cluster on this host, uploaded otherwise."""


@dataclass
class SlurmSettings:
    partition: str = ""
    gres: str = "gpu:1"
    time: str = ""
    """``--time`` for each job; empty = derived from ``timeout_s``."""
    sbatch_args: list[str] = field(default_factory=list)
    """Extra sbatch arguments."""


@dataclass
class ResearchSettings:
    workdir: str = "."
    """Folder (relative to the repository root) the job runs in."""
    program: str = "program.md"
    """The lab's instructions for proposers (relative to workdir)."""
    command: str = "python train.py"
    """The training job; it must print ``<metric>: <value>``."""
    editable: list[str] = field(default_factory=lambda: ["train.py"])
    """Files (relative to workdir) proposers may change."""
    protected: list[str] = field(default_factory=lambda: ["prepare.py"])
    """Files whose change rejects a trial (checksummed)."""
    metric: str = "val_bpb"
    direction: Literal["min", "max"] = "min"
    budget_s: float = 300.0
    """Training time budget handed to the job as AGENTDECK_BUDGET_S."""
    timeout_s: float = 600.0
    """Hard limit per job; past it the job is killed and the trial is a crash."""
    gpus: Union[Literal["auto"], list[int]] = "auto"
    """``"auto"`` or a list of device ids, one slot each."""
    proposer: Literal["mutate", "llm", "agent", "command"] = "mutate"
    proposer_command: str = ""
    agent: str = "claude"
    """Definition used by the ``agent`` proposer."""
    workers: int = 0
    """Proposers working at once; 0 = one per slot plus one."""
    executor: Literal["local", "ray", "slurm"] = "local"
    confirm: bool = True
    """Re-run a promising result before keeping it."""
    repeats_baseline: int = 2
    """Baseline runs used to measure the metric's noise."""
    ray: RaySettings = field(default_factory=RaySettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)


@dataclass
class McpSettings:
    deck_tools: bool = False
    """Add deck tools (list, spawn, send, status, diff) to the MCP server."""


@dataclass
class Config:
    deck: DeckSettings = field(default_factory=DeckSettings)
    agents: dict[str, AgentDef] = field(default_factory=dict)
    keymap: dict[str, str] = field(default_factory=dict)
    notify: NotifySettings = field(default_factory=NotifySettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    research: ResearchSettings = field(default_factory=ResearchSettings)
    mcp: McpSettings = field(default_factory=McpSettings)
    sources: list[Path] = field(default_factory=list)

    def agent_def(self, name: str) -> AgentDef:
        """The definition called *name*: a ``[agents.NAME]`` table or a built-in."""
        if name in self.agents:
            return self.agents[name]
        if name in BUILTIN_KINDS:
            return AgentDef(kind=name)
        known = sorted(set(self.agents) | set(BUILTIN_KINDS))
        from agentdeck.errors import UsageError

        raise UsageError(
            f"unknown agent definition {name!r}; use one of {', '.join(known)} "
            f"or add [agents.{name}] to .agentdeck.toml"
        )

    def definitions(self) -> list[str]:
        return sorted(set(self.agents) | set(BUILTIN_KINDS))


# --------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


class _Loader:
    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, dotted: str) -> str:
        """Best-effort line number of a key (the TOML parser only reports syntax errors)."""
        parts = dotted.split(".")
        key = parts[-1]
        section = ".".join(parts[:-1])
        current = ""
        pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
        header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
        for number, line in enumerate(self.lines, 1):
            m = header.match(line)
            if m:
                current = m.group(1).replace('"', "")
                if current == dotted:
                    return f", line {number}"
                continue
            if pattern.match(line) and (current == section or section.endswith(current) and current):
                return f", line {number}"
        return ""

    def fail(self, dotted: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {dotted}{self.line_of(dotted)}: {problem}")

    def value(self, dotted: str, tp: Any, raw: Any) -> Any:
        origin = get_origin(tp)
        if dataclasses.is_dataclass(tp):
            if not isinstance(raw, dict):
                raise self.fail(dotted, f"expected a table [{dotted}], got {type(raw).__name__}")
            return self.table(dotted, tp, raw)
        if origin is Literal:
            if raw not in get_args(tp):
                raise self.fail(dotted, f"expected {_type_name(tp)}, got {raw!r}")
            return raw
        if origin in (Union, types.UnionType):
            for option in get_args(tp):
                try:
                    return self.value(dotted, option, raw)
                except ConfigError:
                    continue
            raise self.fail(dotted, f"expected {_type_name(tp)}, got {raw!r}")
        if origin is list:
            (item_tp,) = get_args(tp)
            if not isinstance(raw, list):
                raise self.fail(dotted, f"expected {_type_name(tp)}, got {raw!r}")
            return [self.value(f"{dotted}[{i}]", item_tp, item) for i, item in enumerate(raw)]
        if origin is dict:
            key_tp, val_tp = get_args(tp)
            if not isinstance(raw, dict):
                raise self.fail(dotted, f"expected a table, got {raw!r}")
            return {k: self.value(f"{dotted}.{k}", val_tp, v) for k, v in raw.items()}
        if tp is Any:
            return raw
        if tp is float:
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise self.fail(dotted, f"expected a number, got {raw!r}")
            return float(raw)
        if tp is int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise self.fail(dotted, f"expected an integer, got {raw!r}")
            return raw
        if tp is bool:
            if not isinstance(raw, bool):
                raise self.fail(dotted, f"expected true or false, got {raw!r}")
            return raw
        if tp is str:
            if not isinstance(raw, str):
                raise self.fail(dotted, f"expected a string, got {raw!r}")
            return raw
        raise self.fail(dotted, f"unsupported setting type {tp!r}")  # pragma: no cover

    def table(self, prefix: str, cls: type, raw: dict[str, Any]) -> Any:
        hints = get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls) if f.name != "sources"}
        kwargs = {}
        for key, val in raw.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if key not in names:
                allowed = ", ".join(sorted(names))
                raise self.fail(dotted, f"unknown key {key!r}; expected one of: {allowed}")
            kwargs[key] = self.value(dotted, hints[key], val)
        return kwargs


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], val)
        else:
            out[key] = val
    return out


def _validate_file(path: Path) -> dict[str, Any]:
    """Parse and validate one file; returns its raw (validated) table."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); fix its permissions") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}; fix the file and try again") from exc
    loader = _Loader(path, text)
    _build(loader, raw)  # validate now, to name the file that is wrong
    return raw


def _build(loader: _Loader, raw: dict[str, Any]) -> Config:
    hints = get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for key, val in raw.items():
        if key not in hints or key == "sources":
            allowed = ", ".join(k for k in hints if k != "sources")
            raise loader.fail(key, f"unknown section [{key}]; expected one of: {allowed}")
        if key == "agents":
            if not isinstance(val, dict):
                raise loader.fail("agents", "expected tables [agents.NAME]")
            agents = {}
            for name, table in val.items():
                if not isinstance(table, dict):
                    raise loader.fail(f"agents.{name}", "expected a table [agents.NAME]")
                kw = loader.table(f"agents.{name}", AgentDef, table)
                if "kind" not in table and name in BUILTIN_KINDS:
                    kw["kind"] = name
                agent = AgentDef(**kw)
                if agent.kind not in BUILTIN_KINDS:
                    raise loader.fail(
                        f"agents.{name}.kind",
                        f"expected one of {', '.join(BUILTIN_KINDS)}, got {agent.kind!r}",
                    )
                if agent.kind == "generic" and not agent.command:
                    raise loader.fail(f"agents.{name}.command", "a generic agent needs a command")
                for pat_key in ("waiting_pattern", "idle_pattern", "working_pattern"):
                    pat = getattr(agent, pat_key)
                    if pat:
                        try:
                            re.compile(pat, re.MULTILINE)
                        except re.error as exc:
                            raise loader.fail(f"agents.{name}.{pat_key}", f"invalid regex: {exc}")
                agents[name] = agent
            kwargs["agents"] = agents
            continue
        if key == "keymap":
            kwargs["keymap"] = loader.value("keymap", dict[str, str], val)
            continue
        section_kwargs = loader.value(key, hints[key], val)
        kwargs[key] = section_kwargs
    # Build nested dataclasses from the validated kwargs.
    return Config(**{k: _construct(hints[k], v) for k, v in kwargs.items()})


def _construct(tp: Any, value: Any) -> Any:
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        sub = get_type_hints(tp)
        return tp(**{k: _construct(sub[k], v) for k, v in value.items()})
    return value


def load_config(repo_root: Path | None = None) -> Config:
    """Load the user config, then the repository's over it."""
    from agentdeck import paths

    files = [paths.user_config_file()]
    if repo_root is not None:
        files.append(Path(repo_root) / paths.CONFIG_FILENAME)
    merged: dict[str, Any] = {}
    sources = []
    for path in files:
        if path.is_file():
            merged = _merge(merged, _validate_file(path))
            sources.append(path)
    config = _build(_Loader(sources[-1] if sources else Path("<defaults>"), ""), merged)
    config.sources = sources
    default = config.deck.default_agent
    if default not in config.agents and default not in BUILTIN_KINDS:
        where = sources[-1] if sources else Path(paths.CONFIG_FILENAME)
        raise ConfigError(
            f"{where}: deck.default_agent: unknown definition {default!r}; "
            f"expected one of {', '.join(config.definitions())}"
        )
    return config


# Exposed for documentation tooling and tests: section name -> dataclass.
SECTIONS: dict[str, type] = {
    "deck": DeckSettings,
    "agents.DEF": AgentDef,
    "notify": NotifySettings,
    "llm": LlmSettings,
    "review": ReviewSettings,
    "memory": MemorySettings,
    "research": ResearchSettings,
    "research.ray": RaySettings,
    "research.slurm": SlurmSettings,
    "mcp": McpSettings,
}

__all__ = ["Config", "AgentDef", "load_config", "SECTIONS", "BUILTIN_KINDS", "typing"]
