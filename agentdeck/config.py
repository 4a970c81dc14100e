"""Typed settings from ``.agentdeck.toml`` (repository root) over the user config.

Every section of the contract is modelled here, so every part of agentdeck reads
one typed object.  Files are found nearest-first: the repository's
``.agentdeck.toml`` wins over ``$AGENTDECK_HOME/config.toml`` (or
``~/.config/agentdeck/config.toml``), table by table.

A syntax error, an unknown key, a wrong type or a value outside what the setting
accepts (its :class:`Rule`, declared beside the field with :func:`setting`) raises
:class:`ConfigError` (exit 2) with one message naming the file, the key, the line
(where it can be found) and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
import os
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


# --------------------------------------------------------------------------- value rules


@dataclass(frozen=True)
class Rule:
    """What values a setting accepts beyond its type, declared once beside the field.

    Each bound applies to a number, and to every number of a list (``gpus = [0, 1]``); each string
    check to a string, and to every string of a list or value of a table.  ``means`` says in words
    what a ``pattern`` accepts (the error quotes it).  A number under any rule must be finite
    (``nan``/``inf`` are valid TOML): ``setting(None)`` declares a number that may take any finite value.
    """

    gt: float | None = None
    """Numbers must be greater than this."""
    ge: float | None = None
    """Numbers must be at least this."""
    le: float | None = None
    """Numbers must be at most this."""
    pattern: str = ""
    """Strings must match this regex entirely."""
    means: str = ""
    """The accepted form in words, for the error message."""
    regex: bool = False
    """Strings must be valid regexes (multi-line mode, as the screen matchers use them)."""
    relpath: bool = False
    """Strings are relative paths that stay inside their base folder (no ``/x``, no ``..``)."""
    keys: str = ""
    """Every key of a table must match this regex entirely."""
    keys_mean: str = ""
    """The accepted key form in words."""
    nonempty: bool = False
    """A list needs at least one item."""


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **rule: Any) -> Any:
    """A dataclass field whose values the loader checks against ``Rule(**rule)``."""
    return field(default=default, default_factory=factory, metadata={"rule": Rule(**rule)})


#: A path that cannot hold a NUL or a line break (git and the shell would cut or split it).
PATH_TEXT = dict(pattern=r"[^\x00\r\n]*", means="a path without NUL or line breaks")
#: An environment variable's name.
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``tmux -L NAME``: a plain file name in tmux's own socket folder, never a path.
SOCKET_NAME = r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}"
SOCKET_MEANS = ("a plain name of 1-64 letters, digits, '_', '.' or '-', not starting with '.' "
                "(tmux keeps the socket in its own folder)")


def socket_name_problem(name: str) -> str | None:
    """Why *name* cannot be a ``tmux -L`` socket name, or None when it can."""
    if re.fullmatch(SOCKET_NAME, name):
        return None
    return f"expected {SOCKET_MEANS}, got {name!r}"


@dataclass
class DeckSettings:
    default_agent: str = "claude"
    """Definition used by ``new`` without ``--agent``."""
    branch_prefix: str = setting("agentdeck/", pattern=r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9._/-]{0,99}",
                                 means="up to 100 letters, digits, '_', '.', '/' or '-', starting with a letter, "
                                       "digit or '_', without '..'")
    """Prefix of every branch agentdeck creates."""
    worktree_dir: str = setting("", **PATH_TEXT)
    """Where worktrees go; empty = the user data dir. Relative paths are from the repository root."""
    tmux_socket: str = setting("agentdeck", pattern=SOCKET_NAME, means=SOCKET_MEANS)
    """Name of agentdeck's own tmux server socket (``tmux -L NAME``)."""
    setup_copy: list[str] = field(default_factory=list)
    """Untracked files (globs, relative to the root) copied into each new worktree, e.g. ``.env``."""
    setup_command: str = ""
    """Shell command run in each new worktree before the agent starts."""
    status_interval: float = setting(0.25, gt=0, le=60)
    """Seconds between screen samples when watching agent status."""
    repos: list[str] = setting(factory=list, **PATH_TEXT)
    """Repositories the deck shows beside the current one (user config): one deck over several."""
    recovery_days: float = setting(30.0, ge=0)
    """``gc`` removes recovery refs older than this many days."""


@dataclass
class AgentDef:
    command: str = ""
    """Executable (and fixed leading words) to launch; empty = the kind's own binary."""
    kind: str = "generic"
    """Adapter: claude, codex, gemini, aider, opencode or generic."""
    args: list[str] = field(default_factory=list)
    """Extra arguments after the command."""
    env: dict[str, str] = setting(factory=dict, keys=ENV_NAME, keys_mean="an environment variable name",
                                  pattern=r"[^\x00]*", means="a value without NUL")
    """Extra environment for the agent's pane."""
    prompt_arg: str = ""
    """generic: how the initial prompt is passed. Empty = typed into the pane once it starts;
    ``"-"`` = appended as the last argument; anything else = that flag then the prompt."""
    waiting_pattern: str = setting("", regex=True)
    """generic: regex; when the screen matches it the agent is ``waiting``."""
    idle_pattern: str = setting("", regex=True)
    """generic: regex for the agent's prompt; optional (quiet output alone means idle)."""
    working_pattern: str = setting("", regex=True)
    """generic: regex that marks ``working`` even while the screen is still (a spinner word)."""
    approve_keys: list[str] = setting(factory=lambda: ["y", "Enter"], pattern=r".+", means="a tmux key name")
    """tmux key names sent by ``approve``."""
    deny_keys: list[str] = setting(factory=lambda: ["n", "Enter"], pattern=r".+", means="a tmux key name")
    """tmux key names sent by ``deny``."""
    quiet_s: float = setting(1.5, gt=0, le=3600)
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
    base_url: str = setting("", pattern=r"(https?://[^\s/?#]+\S*)?", means="empty or an http(s):// URL")
    """Any compatible endpoint (vLLM, ollama, llama.cpp server) for ``openai``."""
    api_key_env: str = setting("", pattern=f"({ENV_NAME})?", means="empty or an environment variable name")
    """Environment variable holding the key (default ANTHROPIC_API_KEY / OPENAI_API_KEY)."""


@dataclass
class ReviewSettings:
    merge_strategy: Literal["merge", "squash", "rebase"] = "merge"
    test_command: str = ""
    """Run in each worktree by ``compare``."""


@dataclass
class MemorySettings:
    dir: str = setting("", **PATH_TEXT)
    """Memory directory; empty = under agentdeck's state in the git common dir."""


@dataclass
class RaySettings:
    address: str = setting("", pattern=r"(auto|[a-z][a-z0-9+.-]*://[^\s/?#]+\S*|[^\s/:]+:\d{1,5})?",
                           means="empty, \"auto\", a URL such as http://HEAD:8265, or HOST:PORT")
    """Ray dashboard/Jobs address, e.g. ``http://127.0.0.1:8265``."""
    num_gpus: float = setting(1.0, ge=0, le=1024)
    """GPUs per trial entrypoint."""
    runtime_env: dict[str, Any] = field(default_factory=dict)
    """Extra runtime_env entries merged into each job's."""
    shared_fs: Union[bool, None] = None
    """True: jobs run in the worktree in place (the nodes share its filesystem); false: the worktree
    is uploaded as working_dir. Unset: in place for a cluster on this host, uploaded otherwise."""


@dataclass
class SlurmSettings:
    partition: str = setting("", pattern=r"[A-Za-z0-9_.,-]*", means="a partition name (or a comma-separated list)")
    gres: str = setting("gpu:1", pattern=r"([A-Za-z0-9_.:-]+(,[A-Za-z0-9_.:-]+)*)?",
                        means="empty or GRES such as gpu:1 or gpu:a100:2")
    time: str = setting("", pattern=r"(\d+(-\d+)?(:\d+){0,2}|UNLIMITED|INFINITE|unlimited|infinite)?",
                        means="empty or a Slurm time such as 90, 1:30:00 or 2-00:00:00")
    """``--time`` for each job; empty = derived from ``timeout_s``."""
    sbatch_args: list[str] = field(default_factory=list)
    """Extra sbatch arguments."""


@dataclass
class SpaceParam:
    """One ``[research.space]`` entry: a searched constant's range (any subset of the keys)."""

    low: Union[int, float, None] = setting(None)
    """Lowest value (default: derived from the constant's value)."""
    high: Union[int, float, None] = setting(None)
    """Highest value (default: derived)."""
    log: Union[bool, None] = None
    """Log scale (default: derived; with low and high given, when they span a decade or more)."""
    step: Union[int, float, None] = setting(None, gt=0)
    """Grid step on a linear scale."""
    choices: list[Union[int, float]] = setting(factory=list)
    """The values to choose from (instead of low/high)."""


@dataclass
class ResearchSettings:
    workdir: str = setting(".", relpath=True)
    """Folder (relative to the repository root) the job runs in."""
    program: str = setting("program.md", relpath=True)
    """The lab's instructions for proposers (relative to workdir)."""
    command: str = setting("python train.py", pattern=r"(?s).*\S.*", means="a command")
    """The training job; it must print ``<metric>: <value>``."""
    editable: list[str] = setting(factory=lambda: ["train.py"], relpath=True)
    """Files (relative to workdir) proposers may change."""
    protected: list[str] = setting(factory=lambda: ["prepare.py"], relpath=True)
    """Files whose change rejects a trial (checksummed)."""
    metric: str = setting("val_bpb", pattern=r"[A-Za-z_][A-Za-z0-9_.-]{0,99}",
                          means="a name such as val_bpb (a letter or '_', then letters, digits, '_', '.' or '-')")
    direction: Literal["min", "max"] = "min"
    budget_s: float = setting(300.0, gt=0)
    """Training time budget handed to the job as AGENTDECK_BUDGET_S."""
    timeout_s: float = setting(600.0, gt=0)
    """Hard limit per job; past it the job is killed and the trial is a crash."""
    gpus: Union[Literal["auto"], list[int]] = setting("auto", ge=0, le=1023, nonempty=True)
    """``"auto"`` or a list of device ids, one slot each."""
    proposer: Literal["mutate", "search", "llm", "agent", "command"] = "mutate"
    proposer_command: str = ""
    agent: str = "claude"
    """Definition used by the ``agent`` proposer."""
    workers: int = setting(0, ge=0, le=1024)
    """Proposers working at once; 0 = one per slot plus one."""
    executor: Literal["local", "ray", "slurm"] = "local"
    confirm: bool = True
    """Re-run a promising result before keeping it."""
    repeats_baseline: int = setting(2, ge=1, le=100)
    """Baseline runs used to measure the metric's noise."""
    eval_command: str = ""
    """Protected evaluation run by agentdeck after each job (its own sandboxed process, reading what the
    job saved in AGENTDECK_ARTIFACT_DIR); when set, only its metric counts. Empty = the job's printed metric."""
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    """Jobs and evaluations run in a bubblewrap sandbox: ``auto`` where it works, ``bwrap`` always, ``none`` never."""
    network: bool = False
    """Let jobs reach the network (the sandbox leaves only loopback otherwise)."""
    env: dict[str, str] = setting(factory=dict, keys=ENV_NAME, keys_mean="an environment variable name",
                                  pattern=r"[^\x00]*", means="a value without NUL")
    """Extra environment for jobs and evaluations (they get an allow-list, not agentdeck's environment);
    ``"${NAME}"`` copies agentdeck's own NAME, and is left out when NAME is unset."""
    hardware: str = ""
    """The run's primary hardware class (default: the first lane's GPU model, or cpu)."""
    max_jump: Union[float, None] = setting(None, gt=0)
    """Largest believable improvement in one trial, in the metric's unit; a larger one is ``suspect``
    (re-run twice, kept only if the runs agree, promoted only with --accept-suspect). Unset: 3x the
    largest improvement kept so far in the run, or 10 % of the baseline's value before any."""
    metric_floor: Union[float, None] = setting(None)
    """A value no honest result reaches (below it with direction min, above it with max); a result
    beyond it is ``suspect``."""
    max_crashes: int = setting(5, ge=1, le=1000000)
    """Crashes in a row that pause the run (its message names the last reason)."""
    sampler: Literal["tpe", "cmaes", "random"] = "tpe"
    """The ``search`` proposer's Optuna sampler (``cmaes`` needs the cmaes package)."""
    space: dict[str, SpaceParam] = setting(factory=dict, keys=r"[A-Za-z_][A-Za-z0-9_]*",
                                           keys_mean="a constant's name")
    """``[research.space]``: NAME = { low, high, log, step, choices } narrows or widens what ``search``
    derives for a constant of the editable files (a name that is none of them is an error at run time)."""
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
        dotted = re.sub(r"(\[\d+\])+$", "", dotted)  # an item of a list: the list's line
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
        # a key inside an inline table (``lr = { low = 1 }``): the line of the table's own key
        return self.line_of(section) if "." in section else ""

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
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "sources"}
        kwargs = {}
        for key, val in raw.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if key not in fields:
                allowed = ", ".join(sorted(fields))
                raise self.fail(dotted, f"unknown key {key!r}; expected one of: {allowed}")
            kwargs[key] = self.value(dotted, hints[key], val)
            rule = fields[key].metadata.get("rule")
            if rule is not None:
                self.check(dotted, rule, kwargs[key])
        return kwargs

    def check(self, dotted: str, rule: Rule, value: Any) -> None:
        """Raise ConfigError when a (well-typed) *value* breaks *rule*."""
        if isinstance(value, list):
            if rule.nonempty and not value:
                raise self.fail(dotted, "expected at least one item, got an empty list")
            for i, item in enumerate(value):
                self.check_one(dotted, rule, item, f"item {i + 1}: ")
        elif isinstance(value, dict):
            for key, item in value.items():
                if rule.keys and not re.fullmatch(rule.keys, key):
                    raise self.fail(f"{dotted}.{key}", f"expected {rule.keys_mean or rule.keys}, got key {key!r}")
                self.check_one(f"{dotted}.{key}", rule, item, "")
        else:
            self.check_one(dotted, rule, value, "")

    def check_one(self, dotted: str, rule: Rule, value: Any, which: str) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            noun = "an integer" if isinstance(value, int) else "a finite number"
            bounds = [(op, b) for op, b in ((">", rule.gt), (">=", rule.ge), ("<=", rule.le)) if b is not None]
            holds = {">": lambda b: value > b, ">=": lambda b: value >= b, "<=": lambda b: value <= b}
            if not math.isfinite(value) or not all(holds[op](b) for op, b in bounds):
                limits = " and ".join(f"{op} {b:g}" for op, b in bounds)
                raise self.fail(dotted, f"{which}expected {noun} {limits}".rstrip() + f", got {value!r}")
            return
        if not isinstance(value, str):
            return
        if rule.pattern and not re.fullmatch(rule.pattern, value):
            raise self.fail(dotted, f"{which}expected {rule.means or 'a match of ' + rule.pattern}, got {value!r}")
        if rule.regex and value:
            try:
                re.compile(value, re.MULTILINE)
            except re.error as exc:
                raise self.fail(dotted, f"{which}invalid regex: {exc}") from None
        if rule.relpath:
            parts = value.replace("\\", "/").split("/")
            if not value.strip() or value.startswith(("/", "~")) or ".." in parts or re.search(r"[\x00\r\n]", value):
                raise self.fail(dotted, f"{which}expected a relative path inside its folder (no leading '/' or '~', "
                                        f"no '..'), got {value!r}")


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
    if get_origin(tp) is dict and isinstance(value, dict) and dataclasses.is_dataclass(get_args(tp)[1]):
        return {k: _construct(get_args(tp)[1], v) for k, v in value.items()}  # [research.space]
    return value


def load_config(repo_root: Path | None = None) -> Config:
    """Load the user config, then the repository's over it.

    ``AGENTDECK_TMUX_SOCKET`` overrides ``[deck] tmux_socket``, so it is held to the same rule here.
    """
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
    socket_override = os.environ.get(paths.ENV_TMUX_SOCKET, "")
    if socket_override and socket_name_problem(socket_override):  # it overrides [deck] tmux_socket
        raise ConfigError(f"environment variable {paths.ENV_TMUX_SOCKET}: {socket_name_problem(socket_override)}; "
                          f"fix it or unset it")
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
