"""The command line that runs an agent inside its ``bwrap`` sandbox: mounts, environment, filter.

:func:`wrap` gives the argv that runs an agent's argv inside the sandbox (see its docstring for
what is visible).  With ``network=False`` the sandbox has its own network namespace with only
loopback; the ports named in ``wrap(..., ports=...)`` (the warm MCP server, a local model) are
bridged to the host's loopback through unix sockets (:mod:`agentdeck.sandbox.agent_bridge`):
the agent reaches ``127.0.0.1:PORT`` and nothing else.  A cloud model's API is then out of
reach too.  :func:`command_in_worktree` wraps a command agentdeck itself runs on an agent's
files the same way.

The bubblewrap part reuses :mod:`agentdeck.sandbox` (probe, profile, profiles), like research
jobs: host read-only, homes, host sockets and root secrets hidden, a private ``/tmp``, its own
pid namespace (nothing outlives the pane: ``--die-with-parent``), a non-root uid inside, nested
user namespaces forbidden.  Unlike a research job it keeps the pane's controlling terminal (no
``--new-session``: a TUI needs ``SIGWINCH`` and ``^C``); a seccomp filter
(:mod:`agentdeck.sandbox.agent_seccomp`) refuses ``TIOCSTI`` (typing into that terminal) and
set-uid/set-gid files (run by root, the agent's files are root's on the host).

Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from agentdeck.errors import Refused, UsageError
from agentdeck.sandbox.agent_record import AgentSandbox, load_record
from agentdeck.sandbox.agent_registry import holding
from agentdeck.sandbox.probe import inside_uid, probe
from agentdeck.sandbox.profile import Profile, ProfileError, bwrap_argv, path_facts

#: The descriptor bubblewrap reads the seccomp filter from.
SECCOMP_FD = 9  # one digit: what every POSIX shell can redirect

#: Variables a sandboxed agent never gets (host sockets, the user's agents and sessions).
UNSET_ENV = (
    "TMUX", "TMUX_PANE", "TMUX_TMPDIR", "SSH_AUTH_SOCK", "SSH_AGENT_PID", "GPG_AGENT_INFO", "GNUPGHOME",
    "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "KRB5CCNAME",
    "AGENTDECK_TMUX_SOCKET", "CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
    "XDG_STATE_HOME", "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_CONFIG", "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_SSH", "GIT_SSH_COMMAND",
    "GIT_ASKPASS", "SSH_ASKPASS", "PYTHONPATH", "PYTHONSTARTUP", "NODE_OPTIONS", "BASH_ENV", "ENV",
)

#: Secrets under the user's home, hidden even where a folder above them comes back read-only
#: (a tool on ``PATH`` under ``~/.cargo/bin`` shows ``~/.cargo`` again, not its credentials).
HOME_SECRETS = (
    ".ssh", ".aws", ".azure", ".gnupg", ".netrc", ".git-credentials", ".config/gh", ".config/gcloud",
    ".docker", ".kube", ".npmrc", ".pypirc", ".cargo/credentials", ".cargo/credentials.toml",
    ".bash_history", ".zsh_history", ".python_history", ".node_repl_history", ".local/share/keyrings",
    ".claude", ".claude.json", ".codex", ".gemini", ".config/opencode", ".local/share/opencode",
)


def wrap(sandbox: AgentSandbox, argv: Sequence[str], env: Mapping[str, str],
         ports: Iterable[int] = (), show: Iterable[str | Path] = (), cwd: Path | str | None = None) -> list[str]:
    """The argv that runs *argv* inside *sandbox* (bwrap's arguments, then *argv*).

    Run it with *env* as its environment (bwrap hands the environment to *argv*; nothing secret
    goes on the command line): :data:`UNSET_ENV` (``TMUX``, ``SSH_AUTH_SOCK``...) is removed
    inside and ``HOME`` (plus ``CODEX_HOME``, ``TMPDIR``) point into the sandbox whatever *env*
    says (the launcher re-adds the pane's own ``TMUX``: it is removed inside all the same).
    *env*'s ``PATH`` decides which hidden folders come back read-only (a CLI installed under
    the home).  *ports*: host loopback ports the agent may reach when ``network`` is False
    (the MCP server's, a local model's), bridged at the same numbers; with ``network`` True
    the host's network (loopback included) is shared and *ports* is not needed.  *show*: host
    files or folders the argv names that would be hidden (a settings or MCP config file the
    adapter wrote in agentdeck's state folder), shown again read-only.  *cwd*: where *argv*
    starts (a folder of the worktree; default its top).

    Inside: the worktree, the home, the agent's git directory and objects are writable; the
    rest of the file system read-only; hidden: the homes (``/root``, ``/home``, ``$HOME`` and
    their secrets: ``~/.ssh``, ``~/.aws``, shell history...), ``/run``, a private ``/tmp``
    (the tmux socket folders), the main checkout, the main git directory (but its object store,
    read-only), agentdeck's state (``state.db``), the other worktrees, agentdeck's user
    folders.  A seccomp filter refuses set-id files and ``TIOCSTI``
    (:mod:`agentdeck.sandbox.agent_seccomp`; ``/bin/sh`` opens it for bwrap).  Raises Refused
    when bubblewrap does not work here.
    """
    from agentdeck.sandbox.profiles import _readable_extras, base_hidden, path_binds  # glob: only when wrapping

    found = probe()
    if not found.works:
        raise Refused(f"cannot start {sandbox.name} in a bwrap sandbox: {found.reason}; "
                      f"fix that or use another sandbox mode")
    ports = sorted({int(p) for p in ports}) if not sandbox.network else []
    homes = [h for h in _host_homes(env) if not os.path.realpath(h).startswith(str(sandbox.root) + "/")]
    hidden = [*base_hidden(homes[0]), *homes[1:], *_repo_hidden(sandbox),
              *(os.path.join(h, s) for h in homes for s in HOME_SECRETS)]
    private = ["/tmp", "/var/tmp"]
    shown = [*path_binds(env.get("PATH", ""), [*hidden, *private]), *_python_binds([*hidden, *private]),
             *_readable_extras(sandbox.network, [])]
    bridge = bridge_dir(sandbox) if ports else None
    shown += [str(p) for p in show]
    if bridge is not None:
        shown.append(str(bridge))
    start = os.path.realpath(cwd) if cwd else str(sandbox.worktree)
    if not (start == str(sandbox.worktree) or start.startswith(str(sandbox.worktree) + "/")):
        raise UsageError(f"{start} is not inside {sandbox.name}'s worktree {sandbox.worktree}")
    profile = Profile(
        cwd=start,
        # objects/info is bound onto itself so that it cannot be renamed (a mount point), and its
        # alternates file read-only on top (below): the agent's gc still writes info/packs there.
        writable=(str(sandbox.worktree), str(sandbox.home), str(sandbox.git_dir), str(sandbox.objects_dir),
                  str(sandbox.objects_dir / "info")),
        read_only=(str(sandbox.common_dir / "objects"), *shown),
        hidden=tuple(hidden),
        network=sandbox.network,
        env={},
    ).resolved()
    facts = path_facts(profile.paths())
    try:
        args = bwrap_argv(profile, facts, userns=found.userns, uid=inside_uid(),
                          disable_userns=found.disable_userns, bwrap=found.bwrap)
    except ProfileError as exc:
        raise Refused(f"cannot sandbox {sandbox.name}: {exc}; move its worktree out of that folder "
                      f"([deck] worktree_dir)") from exc
    args.remove("--new-session")  # keep the pane's terminal (see the module docstring)
    extra = ["--ro-bind", str(sandbox.dotgit), str(sandbox.worktree / ".git"),
             "--ro-bind", str(sandbox.objects_dir / "info" / "alternates"),
             str(sandbox.objects_dir / "info" / "alternates")]
    for name in UNSET_ENV:
        extra += ["--unsetenv", name]
    home = str(sandbox.home)
    extra += ["--setenv", "HOME", home, "--setenv", "TMPDIR", "/tmp", "--setenv", "AGENTDECK_SANDBOX", "bwrap"]
    if sandbox.kind == "codex":
        extra += ["--setenv", "CODEX_HOME", f"{home}/.codex"]
    prelude: list[str] = []
    filter_path = _seccomp_file(sandbox)
    if filter_path is not None:  # bwrap reads the filter from a descriptor: sh opens it, then execs bwrap
        extra += ["--seccomp", str(SECCOMP_FD)]
        prelude = ["/bin/sh", "-c", f'exec "$@" {SECCOMP_FD}<"$0"', str(filter_path)]
    chdir = len(args) - 1 - args[::-1].index("--chdir")
    args[chdir:chdir] = extra
    args = [*prelude, *args]
    if bridge is None:
        return [*args, *argv]
    bridge_script = str(Path(__file__).with_name("agent_bridge.py"))
    port_args = [str(p) for p in ports]
    host = [sys.executable, "-I", "-S", bridge_script, "host", str(bridge), *port_args, "--"]
    inside = [sys.executable, "-I", "-S", bridge_script, "inside", str(bridge), *port_args, "--"]
    return [*host, *args, *inside, *argv]


def command_in_worktree(cwd: Path | str, argv: Sequence[str], env: Mapping[str, str]) -> list[str] | None:
    """*argv* wrapped in the sandbox of the agent whose worktree holds *cwd* (a command agentdeck
    runs on the agent's files, e.g. ``compare``'s ``test_command``: ``["sh", "-c", COMMAND]``),
    or None when *cwd* is in no sandboxed worktree (run it as before).  Network as the agent's."""
    here = os.path.realpath(cwd)
    for _wt, entry in holding(here):
        sb = load_record(Path(entry["root"]))
        if sb is not None:
            return wrap(sb, argv, env, cwd=here)
    return None


def _host_homes(env: Mapping[str, str]) -> list[str]:
    """agentdeck's own home, then the agent's ``HOME`` when it names another one (both hidden)."""
    homes = [os.path.expanduser("~")]
    other = env.get("HOME", "")
    if other and os.path.isabs(other) and os.path.realpath(other) not in ("/", os.path.realpath(homes[0])):
        homes.append(other)
    return homes


def _repo_hidden(sb: AgentSandbox) -> list[str]:
    """The repository's parts an agent must not see or change, plus agentdeck's own folders and
    the tmux socket folder."""
    from agentdeck import paths, tmux

    hidden = [str(sb.repo_root), str(sb.common_dir), str(sb.state_dir), str(sb.worktree.parent),
              str(paths.agentdeck_home()), str(paths.user_data_dir())]
    sockets = os.environ.get(paths.ENV_TMUX_SOCKET) or "agentdeck"
    hidden.append(os.path.dirname(tmux.socket_path(sockets)))
    if os.environ.get("TMUX_TMPDIR"):
        hidden.append(os.environ["TMUX_TMPDIR"])
    return [h for h in hidden if h and h != "/"]


def _python_binds(hidden: Sequence[str]) -> list[str]:
    """This interpreter's installation when it lives under a hidden folder (the bridge and the
    ``agentdeck hook`` run with it inside), plus agentdeck's own package folder."""
    from agentdeck.sandbox.profiles import _under

    out = []
    for p in {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix),
              os.path.realpath(str(Path(__file__).resolve().parent.parent.parent))}:
        if _under(p, hidden):
            out.append(p)
    return sorted(out)


def _seccomp_file(sb: AgentSandbox) -> Path | None:
    """The sandbox's seccomp filter (:mod:`agentdeck.sandbox.agent_seccomp`) in its host-only
    folder, written when missing or different; None on an architecture without one."""
    from agentdeck.sandbox.agent_seccomp import program  # platform: only when wrapping

    data = program()
    if data is None:
        return None
    path = sb.root / "seccomp.bpf"
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    sb.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".seccomp.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def bridge_dir(sb: AgentSandbox, create: bool = True) -> Path:
    """A short folder for the loopback bridge's unix sockets (a socket path has ~100 bytes)."""
    key = hashlib.sha1(str(sb.root).encode()).hexdigest()[:12]
    base = Path(f"/tmp/agentdeck-{os.getuid()}")
    path = base / key
    if create:
        base.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(base)
        if not os.path.isdir(base) or os.path.islink(base) or st.st_uid != os.getuid():
            raise UsageError(f"{base} is not a folder of this user; remove it and try again")
        os.chmod(base, 0o700)
        path.mkdir(mode=0o700, exist_ok=True)
    return path
