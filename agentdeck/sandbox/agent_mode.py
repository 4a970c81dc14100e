"""How an agent is sandboxed: the ``sandbox`` / ``autonomy`` / ``network`` choice, checked
before anything is created, and the launch plan that applies it.

Modes (``[agents.X] sandbox``, ``new --sandbox``; default ``[deck] sandbox``, itself ``none``):

``none``
    The CLI runs with the user's rights (agentdeck's behaviour before sandboxes).
``agent``
    The CLI's own sandbox, configured by agentdeck for this worktree, without touching the
    user's files.  Known for two kinds (:data:`AGENT_MODE_KINDS`):

    * Claude Code: the ``sandbox`` and ``permissions`` keys merged into the one ``--settings``
      file agentdeck writes for the agent (:func:`claude_settings`).  Its sandbox covers the
      Bash tool only, with bubblewrap and a ``socat`` network proxy (both needed: ``doctor``
      checks them); ``failIfUnavailable`` makes a missing one a failure at start instead of
      commands run unsandboxed, and ``allowUnsandboxedCommands = false`` takes away the
      model's way out (``dangerouslyDisableSandbox``).  Its sandbox opens the worktree's git
      directory (commits work; so does moving another branch: measured), and with it agentdeck's
      state folder, which agentdeck closes again (``denyWrite``); the user's secrets
      (``~/.ssh``...) are hidden from commands (``denyRead``).  ``network = false`` pre-allows
      no domain (``allowedDomains = []``): Claude's proxy then asks before every connection a
      command makes, it has no hard off; host unix sockets stay blocked either way (measured).
    * Codex: ``-s workspace-write`` (0.169 has no ``--full-auto``) with ``/tmp`` and ``$TMPDIR``
      left out of its writable roots; its commands never get the network (with
      ``network_access`` Codex also opens the host's unix sockets, tmux's among them: measured),
      so ``network = true`` is refused there (the model's API is Codex's own, unaffected).  Its
      helper lives in ``$CODEX_HOME``: a ``CODEX_HOME`` under ``/tmp`` breaks its sandbox
      ("execvp codex-linux-sandbox", measured).

    Other kinds are refused, naming the modes that work for them.
``bwrap``
    Any agent, inside agentdeck's own bubblewrap sandbox
    (:mod:`agentdeck.sandbox.agent_bwrap`): the worktree and a private home writable, the
    rest read-only, the user's home, host sockets and agentdeck's state hidden.
``docker``
    A name kept for a container engine; not available in this version (refused).

``autonomy = "auto"`` starts the CLI in its no-prompt mode *inside* a sandbox:

* ``agent`` + Claude: sandboxed Bash commands run without a prompt
  (``autoAllowBashIfSandboxed``) and edits inside the worktree are accepted
  (``permissions.defaultMode = "acceptEdits"``).  Not ``--dangerously-skip-permissions``:
  Claude's sandbox does not cover its Write/Edit tools, which would then write anywhere
  unasked, and Claude refuses that flag as root (measured, 2.1.197).  An edit outside the
  worktree still asks.
* ``agent`` + Codex: ``-a never`` (failures go back to the model, never a prompt).
* ``bwrap``: Claude ``--dangerously-skip-permissions`` (the uid inside is never 0, so Claude's
  root check passes without ``IS_SANDBOX``), Codex ``--dangerously-bypass-approvals-and-sandbox``
  (bubblewrap is the boundary; Codex's own cannot nest inside it, so ``ask`` gets
  ``-s danger-full-access`` there too).
* ``none``: refused unless the user says ``--i-know-it-is-unsandboxed``.

agentdeck never sets ``IS_SANDBOX`` or ``CLAUDE_CODE_BUBBLEWRAP`` (what tells Claude it is
sandboxed) and removes them from an agent's environment outside ``bwrap``.

The choice is recorded in the agent's row (``extra["sandbox"]``: mode, autonomy, network) so a
restart applies it again; :func:`recorded` reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentdeck.errors import MissingTool, Refused, UsageError

if TYPE_CHECKING:
    from agentdeck.sandbox.probe import Probe

#: Every sandbox mode name (``docker`` is reserved: refused in this version).
MODES = ("none", "agent", "bwrap", "docker")
#: The modes this version can run.
AVAILABLE_MODES = ("none", "agent", "bwrap")
AUTONOMY = ("ask", "auto")
#: Kinds whose own sandbox agentdeck knows how to turn on.
AGENT_MODE_KINDS = ("claude", "codex")
#: Each kind's no-prompt flags, put right after its command (:func:`_no_prompt`).
AUTO_FLAGS: dict[str, tuple[str, ...]] = {
    "claude": ("--dangerously-skip-permissions",),
    "codex": ("--dangerously-bypass-approvals-and-sandbox",),
}
#: Kinds whose no-prompt mode agentdeck knows.
AUTO_KINDS = tuple(AUTO_FLAGS)
#: Words right after a kind's command that take its options themselves (``codex resume ...``).
SUBCOMMANDS: dict[str, tuple[str, ...]] = {"codex": ("resume", "fork")}
#: The row's ``extra`` key holding the choice.
EXTRA_KEY = "sandbox"
#: Variables that tell Claude Code it runs in a sandbox: never set by agentdeck, and removed
#: from an agent's environment unless it runs in bubblewrap.
SANDBOX_CLAIMS = ("IS_SANDBOX", "CLAUDE_CODE_BUBBLEWRAP")
#: What a user or a script says to run ``autonomy = "auto"`` with no sandbox.
UNSANDBOXED_FLAG = "--i-know-it-is-unsandboxed"


@dataclass(frozen=True)
class SandboxChoice:
    """What one agent runs in (recorded in its row's ``extra["sandbox"]``)."""

    mode: str = "none"
    autonomy: str = "ask"
    network: bool = True
    unsandboxed_ok: bool = False
    """``autonomy = "auto"`` with mode ``none`` was asked for explicitly."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "autonomy": self.autonomy, "network": self.network}
        if self.unsandboxed_ok:
            out["unsandboxed_ok"] = True
        return out

    @property
    def label(self) -> str:
        """Short form for tables: ``none``, ``agent``, ``bwrap/auto``, ``bwrap/auto/offline``."""
        parts = [self.mode]
        if self.autonomy == "auto":
            parts.append("auto")
        if not self.network and self.mode != "none":
            parts.append("offline")
        return "/".join(parts)


def recorded(extra: Mapping[str, Any] | None) -> SandboxChoice:
    """The choice recorded in an agent's ``extra`` (``none``/``ask`` for agents made before sandboxes)."""
    raw = (extra or {}).get(EXTRA_KEY)
    if not isinstance(raw, dict):
        return SandboxChoice()
    mode = raw.get("mode") if raw.get("mode") in MODES else "none"
    autonomy = raw.get("autonomy") if raw.get("autonomy") in AUTONOMY else "ask"
    return SandboxChoice(mode=str(mode), autonomy=str(autonomy), network=bool(raw.get("network", True)),
                         unsandboxed_ok=bool(raw.get("unsandboxed_ok", False)))


# ----------------------------------------------------------------------------- what works here
@dataclass(frozen=True)
class ModeSupport:
    """Whether a mode can run here (for one kind, or in general), and why not."""

    mode: str
    works: bool
    detail: str
    fix: str = ""


def _probe() -> Probe:
    from agentdeck.sandbox import probe

    return probe()


def support(mode: str, kind: str | None = None) -> ModeSupport:
    """Can *mode* run here (for *kind*: None = the mode in general)?  Probes once per process."""
    if mode == "none":
        return ModeSupport(mode, True, "no sandbox: the agent runs with your rights")
    if mode == "docker":
        return ModeSupport(mode, False, "the docker mode is not available in this version of agentdeck",
                           "use sandbox = \"bwrap\" (any agent) or \"agent\" (claude, codex)")
    if mode not in MODES:
        return ModeSupport(mode, False, f"unknown sandbox mode {mode!r}", f"use one of {', '.join(AVAILABLE_MODES)}")
    found = _probe()
    bwrap_fix = ("install bubblewrap (apt-get install bubblewrap) and allow user namespaces "
                 "(sysctl kernel.unprivileged_userns_clone=1), or run as root")
    if mode == "bwrap":
        if found.works:
            return ModeSupport(mode, True, f"agentdeck's bubblewrap sandbox: {found.describe()}")
        return ModeSupport(mode, False, found.reason, bwrap_fix)
    # agent
    if kind is not None and kind not in AGENT_MODE_KINDS:
        return ModeSupport(mode, False, f"agentdeck turns on the own sandbox of {', '.join(AGENT_MODE_KINDS)} "
                                        f"agents only")
    problems = []
    if not found.works:
        problems.append(found.reason)
    needs_socat = kind in (None, "claude")
    if needs_socat and shutil.which("socat") is None:
        problems.append("socat is not installed (Claude Code's sandbox proxies the network through it)")
    if problems:
        fix = []
        if not found.works:
            fix.append(bwrap_fix)
        if needs_socat and shutil.which("socat") is None:
            fix.append("install socat (apt-get install socat)")
        return ModeSupport(mode, False, "; ".join(problems), "; ".join(fix))
    which = {"claude": "Claude Code's sandbox (bubblewrap + socat)", "codex": "Codex's -s workspace-write",
             None: "the CLI's own sandbox (claude: bubblewrap + socat; codex: workspace-write)"}[kind]
    return ModeSupport(mode, True, f"{which}: {found.describe()}")


def modes_for(kind: str) -> list[str]:
    """The modes that work for *kind* here (``none`` always)."""
    return [m for m in AVAILABLE_MODES if support(m, kind).works]


# ----------------------------------------------------------------------------- the choice
def _setting(obj: Any, name: str, default: Any) -> Any:
    value = getattr(obj, name, None)
    return default if value in (None, "") else value


def choose(config: Any, definition: str, kind: str, *, sandbox: str | None = None, autonomy: str | None = None,
           network: bool | None = None, unsandboxed_ok: bool = False) -> SandboxChoice:
    """The sandbox an agent of *definition* (adapter *kind*) gets, checked before anything is made.

    Flags (``new --sandbox/--autonomy``) win over ``[agents.X]``, which wins over ``[deck]
    sandbox`` (default ``none``).  Raises :class:`UsageError` (exit 2, one line naming the
    problem and the fix) for a mode or autonomy that cannot run: an unknown name, ``docker``,
    ``agent`` for a kind agentdeck cannot sandbox that way, a missing bubblewrap/socat, or
    ``auto`` without a sandbox (unless *unsandboxed_ok*).
    """
    agent_def = config.agent_def(definition) if config is not None else None
    deck = getattr(config, "deck", None)
    mode = sandbox or _setting(agent_def, "sandbox", "") or _setting(deck, "sandbox", "none")
    auto = autonomy or _setting(agent_def, "autonomy", "ask")
    net_setting = network if network is not None else getattr(agent_def, "network", None)
    where = "--sandbox" if sandbox else f"[agents.{definition}] sandbox" if _setting(agent_def, "sandbox", "") \
        else "[deck] sandbox"
    if mode not in MODES:
        raise UsageError(f"unknown sandbox mode {mode!r} ({where}); use one of {', '.join(AVAILABLE_MODES)}")
    if auto not in AUTONOMY:
        raise UsageError(f"unknown autonomy {auto!r}; use ask or auto")
    if mode != "none":
        ok = support(mode, kind)
        if not ok.works:
            working = sorted((m for m in modes_for(kind) if m != mode), key=lambda m: m == "none")
            fix = f"{ok.fix}, or " if ok.fix else ""
            article = "an" if kind[:1] in "aeiou" else "a"
            raise MissingTool(f"sandbox {mode!r} ({where}) cannot run {article} {kind} agent here: {ok.detail}; "
                              f"{fix}use --sandbox {' or '.join(working)}")
    net = True if net_setting is None else bool(net_setting)
    if mode == "agent" and kind == "codex":
        if net_setting:
            raise UsageError(f"network = true cannot be kept in Codex's own sandbox: it also opens the host's unix "
                             f"sockets (agentdeck's tmux server runs commands outside it); use --sandbox bwrap, "
                             f"or leave [agents.{definition}] network unset")
        net = False  # commands offline; the model's API is Codex's own (outside its sandbox)
    if auto == "auto":
        if kind not in AUTO_KINDS:
            raise UsageError(f"autonomy = \"auto\" is known only for {', '.join(AUTO_KINDS)} agents; "
                             f"put the {kind} CLI's own no-prompt flag in [agents.{definition}] args instead")
        if mode == "none" and not unsandboxed_ok:
            sandboxes = [m for m in modes_for(kind) if m != "none"]
            hint = f"use --sandbox {' or '.join(sandboxes)}" if sandboxes else "make a sandbox work here (doctor)"
            raise UsageError(f"autonomy = \"auto\" without a sandbox lets the agent do anything you can; "
                             f"{hint}, or pass {UNSANDBOXED_FLAG}")
        if mode == "none" and kind == "claude" and os.geteuid() == 0:
            raise UsageError("Claude Code refuses --dangerously-skip-permissions as root; "
                             "use --sandbox bwrap (a non-root uid inside) or --sandbox agent")
    return SandboxChoice(mode=mode, autonomy=auto, network=net, unsandboxed_ok=bool(unsandboxed_ok and mode == "none"))


# ----------------------------------------------------------------------------- the launch plan
@dataclass
class LaunchPlan:
    """What the pane runs: *argv* with *env* as its whole environment."""

    argv: list[str]
    env: dict[str, str]
    mode: str = "none"
    notes: list[str] = field(default_factory=list)
    sandbox: Any = None
    """The :class:`agentdeck.sandbox.agent_bwrap.AgentSandbox` (``bwrap`` only)."""


def _insert_options(argv: Sequence[str], command_len: int, options: Sequence[str],
                    subcommands: Sequence[str] = ()) -> list[str]:
    """*argv* with *options* right after the command (and after a subcommand word such as
    Codex's ``resume``/``fork``, whose options are its own)."""
    at = command_len
    if at < len(argv) and argv[at] in subcommands:
        at += 1
    return [*argv[:at], *options, *argv[at:]]


def _no_prompt(argv: Sequence[str], kind: str, command_len: int) -> list[str]:
    """*argv* with *kind*'s no-prompt flags (:data:`AUTO_FLAGS`; none for a kind without)."""
    return _insert_options(argv, command_len, AUTO_FLAGS.get(kind, ()), SUBCOMMANDS.get(kind, ()))


def claude_settings(worktree: str | Path, *, autonomy: str, network: bool, home: str | None = None,
                    deny_write: Sequence[str | Path] = ()) -> dict[str, Any]:
    """The ``sandbox`` (and, for ``auto``, ``permissions``) keys of Claude Code's ``--settings`` for
    an agent in ``agent`` mode (key names from Claude Code 2.1.197's settings schema).

    *deny_write*: folders kept read-only although Claude's sandbox would open them (it opens a
    worktree's git directory, and with it agentdeck's state folder inside: measured)."""
    from agentdeck.sandbox.agent_wrap import HOME_SECRETS

    home = home or os.path.expanduser("~")
    sandbox: dict[str, Any] = {
        "enabled": True,
        "failIfUnavailable": True,
        "allowUnsandboxedCommands": False,
        "autoAllowBashIfSandboxed": autonomy == "auto",
        "filesystem": {
            "allowWrite": [str(worktree)],
            "denyWrite": [str(p) for p in deny_write],
            "denyRead": [os.path.join(home, s) for s in HOME_SECRETS],
        },
    }
    if not network:
        sandbox["network"] = {"allowedDomains": [], "allowLocalBinding": False}
    out: dict[str, Any] = {"sandbox": sandbox}
    if autonomy == "auto":
        out["permissions"] = {"defaultMode": "acceptEdits"}
    return out


def merge_claude_settings(path: str | Path, extra: Mapping[str, Any]) -> None:
    """Merge *extra*'s top-level keys into the settings file agentdeck wrote (atomic; dicts merged
    one level down, so agentdeck's ``permissions.allow`` from other features stays)."""
    path = Path(path)
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Refused(f"cannot read the agent's Claude settings {path}: {exc}; restart the agent") from None
    for key, value in extra.items():
        old = settings.get(key)
        settings[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    tmp = path.with_name(f".{path.name}.{os.getpid()}.sandbox.tmp")
    tmp.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _without_claims(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in SANDBOX_CLAIMS}


def launch_plan(mode: str, kind: str, argv: Sequence[str], env: Mapping[str, str], *, command_len: int = 1,
                autonomy: str = "ask", network: bool = True, worktree: str | Path = "",
                settings_path: str | Path | None = None, state_dir: str | Path | None = None,
                bwrap: Mapping[str, Any] | None = None) -> LaunchPlan:
    """The pane's argv and environment for an agent of *kind* in sandbox *mode*.

    *argv*/*env*: what the adapter built (its command first, *command_len* words long) and the
    agent's whole environment.  ``agent`` + Claude merges the sandbox keys into
    *settings_path* (the ``--settings`` file the adapter wrote for this agent).  ``bwrap`` needs
    *bwrap*: keyword arguments for :func:`agentdeck.sandbox.agent_bwrap.prepare` (``repo``,
    ``name``, ``worktree``, ``branch``) plus optional ``ports`` and ``show`` for ``wrap``.
    Raises UsageError/Refused (one line) for a combination :func:`choose` would have refused.
    """
    argv = list(argv)
    plan_env = dict(env)
    if mode == "none":
        plan_env = _without_claims(plan_env)
        if autonomy == "auto":
            if kind not in AUTO_FLAGS:
                raise UsageError(f"autonomy = \"auto\" is known only for {', '.join(AUTO_KINDS)} agents")
            argv = _no_prompt(argv, kind, command_len)
        return LaunchPlan(argv, plan_env, mode, ["unsandboxed"])
    if mode == "agent":
        plan_env = _without_claims(plan_env)
        if kind == "claude":
            if not settings_path:
                raise Refused("the Claude agent has no --settings file to turn its sandbox on; restart it")
            home = plan_env.get("HOME") or os.path.expanduser("~")
            keys = claude_settings(worktree, autonomy=autonomy, network=network, home=home,
                                   deny_write=[state_dir] if state_dir else [])
            merge_claude_settings(settings_path, keys)
            return LaunchPlan(argv, plan_env, mode, ["Claude Code's sandbox (Bash tool)"])
        if kind == "codex":
            # workspace-write also opens /tmp and $TMPDIR by default: a repository or another
            # worktree there would be writable (measured, 0.169), so both are closed.
            options = ["-s", "workspace-write", "-a", "never" if autonomy == "auto" else "on-request",
                       "-c", "sandbox_workspace_write.exclude_slash_tmp=true",
                       "-c", "sandbox_workspace_write.exclude_tmpdir_env_var=true"]
            # Never network_access: with it Codex 0.169 also lifts its block on unix sockets, and a
            # command reached agentdeck's tmux server and ran a command outside (measured).
            return LaunchPlan(_insert_options(argv, command_len, options, SUBCOMMANDS[kind]), plan_env, mode,
                              ["Codex -s workspace-write"])
        raise UsageError(f"sandbox \"agent\" is not known for {kind} agents; use --sandbox bwrap or none")
    if mode == "bwrap":
        from agentdeck.sandbox import agent_bwrap

        spec = dict(bwrap or {})
        ports = spec.pop("ports", ())
        show = spec.pop("show", ())
        spec.setdefault("source_env", plan_env)  # the CLI's state comes from the agent's own HOME
        sandbox = agent_bwrap.prepare(spec.pop("repo"), spec.pop("name"), Path(spec.pop("worktree")),
                                      spec.pop("branch"), kind, network, **spec)
        if autonomy == "auto":
            argv = _no_prompt(argv, kind, command_len)
        elif kind == "codex":
            # Codex's own sandbox cannot start inside bubblewrap (nested user namespaces are off).
            argv = _insert_options(argv, command_len, ["-s", "danger-full-access"], SUBCOMMANDS[kind])
        wrapped = agent_bwrap.wrap(sandbox, argv, plan_env, ports=ports, show=show)
        return LaunchPlan(wrapped, plan_env, mode, ["bubblewrap"], sandbox=sandbox)
    if mode == "docker":
        raise UsageError("the docker sandbox is not available in this version; use --sandbox bwrap or agent")
    raise UsageError(f"unknown sandbox mode {mode!r}; use one of {', '.join(AVAILABLE_MODES)}")


def plan_for(deck: Any, rec: Any, adapter: Any, ctx: Any, argv: Sequence[str], env: Mapping[str, str]) -> LaunchPlan:
    """:func:`launch_plan` for agent *rec* of *deck* (the launch path's one call): the mode
    recorded in its row, the adapter's command length, the settings file it wrote, and for
    ``bwrap`` the sandbox's place, the MCP server's port and the agent's own state folder."""
    choice = recorded(rec.extra)
    spec: dict[str, Any] | None = None
    if choice.mode == "bwrap":
        from agentdeck.paths import slugify

        mcp = ctx.extra.get("mcp") if isinstance(ctx.extra.get("mcp"), dict) else {}
        state = Path(deck.repo.state_dir)
        own = state / "agents" / slugify(rec.name)
        # The files the adapter wrote in agentdeck's (hidden) state folder and names on the command
        # line (Claude's --settings and --mcp-config) come back read-only, and nothing else there.
        named = {a for a in argv if a.startswith(f"{state}/") and Path(a).is_file()}
        spec = {"repo": deck.repo, "name": rec.name, "worktree": rec.worktree, "branch": rec.branch,
                "ports": [int(mcp["port"])] if ctx.mcp_url and mcp.get("port") else [],
                "show": sorted(named | ({str(own)} if own.exists() else set()))}
    return launch_plan(choice.mode, adapter.kind, argv, env, command_len=len(adapter.command_argv()),
                       autonomy=choice.autonomy, network=choice.network, worktree=rec.worktree,
                       settings_path=ctx.extra.get("claude_settings"), state_dir=deck.repo.state_dir, bwrap=spec)


# ----------------------------------------------------------------------------- doctor
def doctor_checks(config: Any = None) -> list[dict[str, Any]]:
    """``doctor``: one finding per agent sandbox mode (bubblewrap, user namespaces and socat probed
    once), saying which work and why not; then, with *config*, an error for each agent
    definition whose configured mode cannot run here."""
    out = []
    for kind in AGENT_MODE_KINDS:
        found = support("agent", kind)
        out.append({"name": f"sandbox agent ({kind})", "level": "ok" if found.works else "warn",
                    "detail": found.detail, "fix": found.fix})
    found = support("bwrap")
    out.append({"name": "sandbox bwrap", "level": "ok" if found.works else "warn",
                "detail": found.detail + (" (any agent)" if found.works else ""), "fix": found.fix})
    if config is None or not hasattr(config, "definitions"):
        return out
    deck = getattr(config, "deck", None)
    for definition in sorted({*getattr(config, "agents", {}), _setting(deck, "default_agent", "claude")}):
        try:
            agent_def = config.agent_def(definition)
        except UsageError:
            continue
        mode = _setting(agent_def, "sandbox", "") or _setting(deck, "sandbox", "none")
        if mode == "none":
            continue
        found = support(mode, agent_def.kind)
        if not found.works:
            out.append({"name": f"agent {definition} sandbox", "level": "error",
                        "detail": f"sandbox = {mode!r} cannot run here: {found.detail}",
                        "fix": found.fix or f"set [agents.{definition}] sandbox to one of "
                                            f"{', '.join(modes_for(agent_def.kind))}"})
    return out


__all__ = [
    "AGENT_MODE_KINDS",
    "AUTONOMY",
    "AVAILABLE_MODES",
    "EXTRA_KEY",
    "MODES",
    "SANDBOX_CLAIMS",
    "UNSANDBOXED_FLAG",
    "LaunchPlan",
    "ModeSupport",
    "SandboxChoice",
    "choose",
    "claude_settings",
    "doctor_checks",
    "launch_plan",
    "merge_claude_settings",
    "modes_for",
    "plan_for",
    "recorded",
    "support",
]
