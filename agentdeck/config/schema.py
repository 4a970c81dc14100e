"""The settings' schema: every section of ``.agentdeck.toml`` as a dataclass, with its value rules.

Each setting declares what values it accepts beyond its type once, beside its field
(:func:`setting` builds the field, :class:`Rule` holds the bounds); :mod:`agentdeck.config.loader`
reads the files and checks every value against these declarations.  Adding a key is one field here
(and its line in the example ``.agentdeck.toml``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentdeck.errors import UsageError

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
PATH_TEXT = {"pattern": r"[^\x00\r\n]*", "means": "a path without NUL or line breaks"}
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
    sandbox: Literal["none", "agent", "bwrap", "docker"] = "none"
    """Sandbox of agents whose ``[agents.X]`` names none (:mod:`agentdeck.sandbox.agent_mode`)."""


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
    sandbox: Literal["", "none", "agent", "bwrap", "docker"] = ""
    """``none``, ``agent`` (the CLI's own sandbox: claude, codex), ``bwrap`` (any agent);
    empty = ``[deck] sandbox`` (:mod:`agentdeck.sandbox.agent_mode`)."""
    autonomy: Literal["ask", "auto"] = "ask"
    """``auto``: the CLI's no-prompt mode, only inside a sandbox (or ``--i-know-it-is-unsandboxed``)."""
    network: bool | None = None
    """False: a sandboxed agent reaches only loopback (a cloud model's API too, in ``bwrap``); unset:
    the network, except for Codex's own sandbox (``agent``), whose commands stay offline."""


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
    shared_fs: bool | None = None
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

    low: int | float | None = setting(None)
    """Lowest value (default: derived from the constant's value)."""
    high: int | float | None = setting(None)
    """Highest value (default: derived)."""
    log: bool | None = None
    """Log scale (default: derived; with low and high given, when they span a decade or more)."""
    step: int | float | None = setting(None, gt=0)
    """Grid step on a linear scale."""
    choices: list[int | float] = setting(factory=list)
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
    gpus: Literal["auto"] | list[int] = setting("auto", ge=0, le=1023, nonempty=True)
    """``"auto"`` or a list of device ids, one slot each."""
    proposer: Literal["mutate", "search", "llm", "agent", "command"] = "search"
    """Who proposes changes: ``search`` (Optuna over the editable files' numeric constants, the
    default: it beat ``mutate`` on both benchmark labs, docs/benchmarks.md), ``mutate`` (random
    nudges), ``llm``, ``agent``, ``command``."""
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
    max_jump: float | None = setting(None, gt=0)
    """Largest believable improvement in one trial, in the metric's unit; a larger one is ``suspect``
    (re-run twice, kept only if the runs agree, promoted only with --accept-suspect). Unset: 3x the
    largest improvement kept so far in the run, or 10 % of the baseline's value before any."""
    metric_floor: float | None = setting(None)
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
        raise UsageError(
            f"unknown agent definition {name!r}; use one of {', '.join(known)} "
            f"or add [agents.{name}] to .agentdeck.toml"
        )

    def definitions(self) -> list[str]:
        return sorted(set(self.agents) | set(BUILTIN_KINDS))


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
