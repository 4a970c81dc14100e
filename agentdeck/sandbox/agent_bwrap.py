"""The ``bwrap`` sandbox for agents: full autonomy that can only touch its own worktree.

One agent = one :class:`AgentSandbox`, kept in ``<state dir>/sandboxes/<slug>/``
(a folder the agent cannot change as a whole: only the sub-folders below are
bound writable into its sandbox)::

    home/       the agent's HOME (writable inside): the CLI's state *copied* in
                (credentials, config), never the user's real ~/.claude or ~/.codex
    git/        the agent's own git directory (writable inside): HEAD, config,
                refs (its branch, a snapshot of the others), index, logs;
                ``git/objects`` is a symlink to ``../objects``
    objects/    the agent's own object store (writable inside); its
                ``info/alternates`` (read-only inside, and ``info/`` cannot be
                moved: both are mount points) names the main repository's
                object store, itself read-only inside
    dotgit      "gitdir: <sandbox>/git", bound read-only over the worktree's
                ``.git`` inside the sandbox (the host's ``.git`` file is untouched)
    sync.lock   taken by :func:`sync_back` (host only)

Inside, the agent commits to its own repository; nothing in the main
repository can change (its refs, objects, other worktrees and agentdeck's
state are hidden or read-only).  Its branch comes back on the host with
:func:`sync_back` (the engine calls it before it reads the branch: diff,
commit list, merge, radar): the new objects are copied into the main object
store and ``refs/heads/<branch>`` is fast-forwarded; a diverged branch is left
alone and reported.

Git on the host treats everything the agent could write as hostile: the
worktree's ``.git`` file, its config, an index, a nested repository.
:func:`host_git` (and :func:`host_git_argv` / :func:`host_git_env`) run git
on a sandboxed worktree with an explicit ``GIT_DIR`` (the worktree's admin
folder in the main repository, found from the host's own records),
``core.fsmonitor`` and hooks off, and submodules ignored.  The agent's own
repository is never used as a git directory on the host (its config is the
agent's); :func:`sync_back` only reads its branch's ref file (no symlinks
followed) and its objects (as an alternate object directory).  Every
sandboxed worktree is listed in a user-level registry (:func:`registry_path`,
hidden from sandboxes) so that :func:`guard` can give :mod:`agentdeck.git` the
safe options for any command whose ``cwd`` lies in one (tried: a nested
repository the agent committed as a gitlink, with ``core.fsmonitor`` in its
own config, ran that command on the host on a plain ``git status`` or
``git diff`` in the worktree).

:func:`wrap` gives the command line that runs an agent's argv inside the
sandbox (see its docstring for what is visible).  With ``network=False`` the
sandbox has its own network namespace with only loopback; the ports named in
``wrap(..., ports=...)`` (the warm MCP server, a local model) are bridged to
the host's loopback through unix sockets (:mod:`agentdeck.sandbox.agent_bridge`):
the agent reaches ``127.0.0.1:PORT`` and nothing else.  A cloud model's API
is then out of reach too.

The bubblewrap part reuses :mod:`agentdeck.sandbox` (probe, profile,
profiles), like research jobs: host read-only, homes, host sockets and root
secrets hidden, a private ``/tmp``, its own pid namespace (nothing outlives
the pane: ``--die-with-parent``), a non-root uid inside, nested user
namespaces forbidden.  Unlike a research job it keeps the pane's controlling
terminal (no ``--new-session``: a TUI needs ``SIGWINCH`` and ``^C``); a seccomp
filter (:mod:`agentdeck.sandbox.agent_seccomp`) refuses ``TIOCSTI`` (typing
into that terminal) and set-uid/set-gid files (run by root, the agent's files
are root's on the host).

The engine's entry points (``sb`` = :func:`prepare` at launch, :func:`load` later; None
means the agent is not sandboxed):

- launch / restart: :func:`prepare` (idempotent), then :func:`wrap` on the CLI's argv;
- before reading the agent's branch: :func:`sync_back` (or :func:`sync_branch` by name);
- after agentdeck moved the branch on the host (``commit``): :func:`follow_host`;
- git on the worktree: :func:`host_git`, :func:`host_git_argv`, :func:`guard`;
- a command on the agent's files (``compare``'s ``test_command``): :func:`command_in_worktree`;
- kill / gc: :func:`sync_back` first (a ``diverged`` agent's own tip: :func:`keep_tip`, when
  :func:`unsaved_tip` says no ref reaches it), then ``remove(sb, sync=False)`` once the worktree
  is gone (no sync then: it would bring back a branch the removal deleted); a folder without a
  record: :func:`remove_leftover`; ``gc`` finds orphans with :func:`load_at`;
- a path in a sandboxed worktree (``commit``): :func:`for_worktree`.

Known limits: with ``network=True`` the host's network namespace is shared (its loopback
services and abstract unix sockets are reachable); folders on ``PATH`` under the hidden
home come back read-only (minus :data:`HOME_SECRETS`); the agent's objects are parsed by
the host's git during :func:`sync_back`.

Standard library only (no textual, no GitPython).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agentdeck.errors import Refused, UsageError

#: Where the sandboxes of a repository live, under its state directory.
SANDBOXES = "sandboxes"
#: The record of one sandbox, in its folder (host only).
RECORD = "sandbox.json"
#: The sandbox's token in the worktree's admin folder (host only; gone with the worktree).
TOKEN_FILE = "agentdeck-sandbox"

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

#: What each kind needs from the user's home to start, relative to it (copied, never linked).
#: ``$CODEX_HOME`` / ``$CLAUDE_CONFIG_DIR`` are honoured as sources (see :func:`_state_sources`).
CLI_STATE: dict[str, tuple[str, ...]] = {
    "claude": (".claude.json", ".claude/.credentials.json", ".claude/settings.json"),
    "codex": (".codex/auth.json", ".codex/config.toml"),
    "gemini": (".gemini/settings.json", ".gemini/oauth_creds.json", ".gemini/google_accounts.json"),
    "aider": (".aider.conf.yml",),
    "opencode": (".config/opencode/opencode.json", ".local/share/opencode/auth.json"),
    "generic": (),
}

#: Options every host git command on a sandboxed worktree gets (config on the command line
#: wins over every file, and reaches git's child processes through GIT_CONFIG_PARAMETERS).
HOST_GIT_CONFIG = (
    "core.fsmonitor=", "core.hooksPath=/dev/null", "core.untrackedCache=false", "core.pager=cat",
    "diff.ignoreSubmodules=all", "status.submoduleSummary=false", "submodule.recurse=false",
)

_HEX = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


@dataclass(frozen=True)
class AgentSandbox:
    """One agent's sandbox (see the module docstring for the folder's layout)."""

    name: str
    slug: str
    kind: str
    worktree: Path
    branch: str
    network: bool
    root: Path
    """``<state dir>/sandboxes/<slug>``: host only, never writable inside."""
    common_dir: Path
    """The main repository's git common directory."""
    admin_dir: Path
    """The worktree's admin folder in the main repository (``<common>/worktrees/<id>``): the
    ``GIT_DIR`` of every host git command on this worktree."""
    repo_root: Path
    """The main checkout (hidden inside)."""
    token: str = ""
    """Also written in the worktree's admin folder (:data:`TOKEN_FILE`): a sandbox whose token is
    not there belongs to an earlier worktree of the same name and is started afresh."""

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def git_dir(self) -> Path:
        return self.root / "git"

    @property
    def objects_dir(self) -> Path:
        return self.root / "objects"

    @property
    def dotgit(self) -> Path:
        return self.root / "dotgit"

    @property
    def state_dir(self) -> Path:
        return self.common_dir / "agentdeck"

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


# ----------------------------------------------------------------------------- public API
def sandbox_root(repo, name: str) -> Path:
    """Where agent *name*'s sandbox lives (whether or not it exists)."""
    from agentdeck.paths import slugify

    return Path(repo.state_dir) / SANDBOXES / slugify(name)


def load(repo, name: str) -> AgentSandbox | None:
    """The sandbox :func:`prepare` made for agent *name*, None when it has none."""
    return _load_record(sandbox_root(repo, name))


def load_at(root: Path) -> AgentSandbox | None:
    """The sandbox whose folder is *root* (``<state dir>/sandboxes/<slug>``), None without a
    record; its ``root`` is *root* whatever the record says (a folder moved or copied there)."""
    sb = _load_record(Path(root))
    if sb is None:
        return None
    from dataclasses import replace

    return replace(sb, root=Path(os.path.realpath(root)))


def _load_record(root: Path) -> AgentSandbox | None:
    try:
        data = json.loads((root / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    try:
        return AgentSandbox(
            name=data["name"], slug=data["slug"], kind=data["kind"], worktree=Path(data["worktree"]),
            branch=data["branch"], network=bool(data["network"]), root=Path(data["root"]),
            common_dir=Path(data["common_dir"]), admin_dir=Path(data["admin_dir"]),
            repo_root=Path(data["repo_root"]), token=str(data.get("token", "")))
    except (KeyError, TypeError):
        return None


def prepare(repo, name: str, worktree: Path, branch: str, kind: str, network: bool,
            *, source_home: Path | None = None, source_env: Mapping[str, str] | None = None) -> AgentSandbox:
    """Create (or bring up to date, on restart) agent *name*'s sandbox; idempotent.

    *repo*: :class:`agentdeck.paths.RepoPaths`.  *worktree*/*branch*: the agent's worktree (made
    by ``git worktree add`` on the host) and its branch.  *kind*: the adapter kind (what the
    CLI needs in its home: :data:`CLI_STATE`).  *network*: False = loopback only.
    *source_home* / *source_env*: where the CLI's state is copied from (default: this process's
    ``$HOME`` and environment; ``$CODEX_HOME`` and ``$CLAUDE_CONFIG_DIR`` are honoured).

    First call: the folder, the home with the CLI's state copied in, the agent's own git
    repository (its branch at the host's tip, the other branches and tags as a snapshot, the
    worktree's index copied, ``user.name``/``user.email`` from the host's config).  Later calls
    (restart): bring the agent's commits back first (:func:`sync_back`), re-copy the
    credentials (the user may have logged in again), and move the agent's branch to the host's
    when the host's is ahead (agentdeck changed it on the host).  Raises Refused (one line)
    when the worktree is not a worktree of *repo*.
    """
    worktree = Path(os.path.realpath(worktree))
    common = Path(os.path.realpath(repo.common_dir))
    admin = _admin_dir(common, worktree)
    from agentdeck.paths import slugify

    root = sandbox_root(repo, name)
    root.parent.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(root.parent)) / root.name
    old = _load_record(root)
    try:
        token = (admin / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        token = ""
    fresh = old is None or not token or old.token != token or old.worktree != worktree or old.branch != branch
    if fresh:
        token = secrets.token_hex(8)
    sb = AgentSandbox(name=name, slug=slugify(name), kind=kind, worktree=worktree, branch=branch,
                      network=network, root=root, common_dir=common, admin_dir=admin,
                      repo_root=Path(os.path.realpath(repo.root)), token=token)
    if fresh and sb.root.exists():  # half made (a crash mid-prepare), or an earlier agent's: start again
        shutil.rmtree(sb.root)
    sb.root.mkdir(mode=0o700, exist_ok=True)
    with _locked(sb):
        if fresh:
            _make_repository(sb)
        else:
            _sync_locked(sb)
            _follow_host(sb)
        _copy_cli_state(sb, source_home, source_env)
        _write_host_file(sb.dotgit, f"gitdir: {sb.git_dir}\n")
        _write_agent_file(sb.objects_dir, "info/alternates", f"{common / 'objects'}\n".encode(), 0o644)
        _write_host_file(sb.root / RECORD, json.dumps(sb.to_json(), indent=1) + "\n")
        _write_host_file(admin / TOKEN_FILE, token + "\n")
    _update_registry(sb.worktree, sb)
    return sb


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
    from agentdeck.sandbox import probe
    from agentdeck.sandbox.profile import Profile, bwrap_argv, path_facts
    from agentdeck.sandbox.profiles import _readable_extras, base_hidden, path_binds

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
    bridge = _bridge_dir(sandbox) if ports else None
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
    from agentdeck.sandbox.probe import inside_uid
    from agentdeck.sandbox.profile import ProfileError

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
    for wt, entry in _registry().items():
        if here == wt or here.startswith(wt.rstrip("/") + "/"):
            sb = _load_record(Path(entry["root"]))
            if sb is not None:
                return wrap(sb, argv, env, cwd=here)
    return None


def sync_back(sandbox: AgentSandbox) -> str:
    """Bring the agent's branch back into the main repository (host side; safe to call often).

    Returns ``"same"`` (nothing new), ``"fast-forward"`` (the host's ``refs/heads/<branch>``
    moved to the agent's tip, its new objects copied into the main object store, the host's
    index of the worktree reset to it) or ``"diverged"`` (the host's branch is not an ancestor
    of the agent's: left alone; the caller may say so).  Reads only the agent's ref file (no
    symlinks followed, the value checked) and its objects; never runs git in its repository.
    Raises Refused (one line) when the agent's tip is not a commit in its store.
    """
    with _locked(sandbox):
        return _sync_locked(sandbox)


def keep_tip(sandbox: AgentSandbox, ref: str) -> str | None:
    """Save the agent's own tip under *ref* in the main repository (e.g. a recovery ref under
    ``refs/agentdeck/trash/`` when :func:`sync_back` said ``diverged`` and the agent is being
    killed): its objects copied, the ref written.  Returns the commit, None when it has none."""
    if not ref.startswith("refs/"):
        raise UsageError(f"{ref!r} is not a full ref name; use refs/...")
    with _locked(sandbox):
        tip = _agent_tip(sandbox)
        if tip is None:
            return None
        env = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(sandbox.objects_dir)}
        if _out(_git(sandbox.common_dir, "cat-file", "-t", tip, env_extra=env, check=False)) != "commit":
            return None
        _import_objects(sandbox, tip)
        _git(sandbox.common_dir, "update-ref", "-m", f"agentdeck: {sandbox.name}'s own tip", ref, tip)
        return tip


def unsaved_tip(sandbox: AgentSandbox) -> str | None:
    """The agent's own tip when no ref of the main repository reaches it (commits that live only
    in its sandbox: what :func:`keep_tip` must save before :func:`remove`), else None.  Never
    creates or moves a host ref (unlike :func:`sync_back`: for a sandbox whose branch is gone)."""
    with _locked(sandbox):
        tip = _agent_tip(sandbox)
        if tip is None:
            return None
        env = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(sandbox.objects_dir)}
        if _out(_git(sandbox.common_dir, "cat-file", "-t", tip, env_extra=env, check=False)) != "commit":
            return None
        left = _git(sandbox.common_dir, "rev-list", "-n1", tip, "--not", "--all", env_extra=env, check=False)
        return tip if left.returncode == 0 and _out(left) else None


def follow_host(sandbox: AgentSandbox) -> bool:
    """After agentdeck moved the agent's branch on the host (``agentdeck commit`` of its worktree,
    a merge into its branch): move the agent's own branch there too, with the host's index of
    the worktree, when the agent's is an ancestor of it (else nothing: True only when moved).
    Call :func:`sync_back` first; the host's side must be complete (its index matching)."""
    with _locked(sandbox):
        before = _agent_tip(sandbox)
        _follow_host(sandbox)
        return _agent_tip(sandbox) != before


def host_git_argv(sandbox_or_admin: AgentSandbox | Path, worktree: Path | None = None) -> list[str]:
    """``git --git-dir=ADMIN --work-tree=WT -c core.fsmonitor= -c core.hooksPath=/dev/null ...``:
    the argv prefix of every git command agentdeck runs on a sandboxed worktree on the host."""
    if isinstance(sandbox_or_admin, AgentSandbox):
        admin, wt = sandbox_or_admin.admin_dir, sandbox_or_admin.worktree
    else:
        admin, wt = Path(sandbox_or_admin), Path(worktree or ".")
    argv = ["git", f"--git-dir={admin}", f"--work-tree={wt}"]
    for item in HOST_GIT_CONFIG:
        argv += ["-c", item]
    return argv


def host_git_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for :func:`host_git_argv`: *base* (default: this process's) without any
    ``GIT_*`` variable that could redirect git, plus no prompts and no optional locks."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("GIT_")}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C",
                "GIT_NO_REPLACE_OBJECTS": "1"})
    return env


def host_git(sandbox: AgentSandbox, *args: str, check: bool = True, input: str | None = None) -> str:
    """Run ``git ARGS`` on *sandbox*'s worktree on the host, safely (:func:`host_git_argv`);
    stdout without its last newline.  Raises :class:`agentdeck.git.GitError` when it fails."""
    from agentdeck.git import GitError

    argv = host_git_argv(sandbox)
    proc = subprocess.run([*argv, *args], cwd=str(sandbox.worktree), capture_output=True, text=True,
                          env=host_git_env(), input=input)
    if check and proc.returncode != 0:
        raise GitError(list(args), proc.returncode, proc.stderr)
    return proc.stdout.rstrip("\n")


def host_git_for(repo, worktree: Path | str) -> list[str] | None:
    """The safe git argv prefix for *worktree* (or a folder in it) when it belongs to a sandboxed
    agent, else None (plain ``git -C``).  For call sites that hold a path; *repo* is unused (the
    user-level registry covers every repository)."""
    extra = guard(worktree)
    return ["git", *extra] if extra else None


def registry_path() -> Path:
    """The user's list of sandboxed worktrees (worktree -> admin folder), read by :func:`guard`;
    in agentdeck's user data folder (hidden from every sandbox)."""
    from agentdeck import paths

    return paths.user_data_dir() / "sandboxed-worktrees.json"


_guard_cache: dict[str, object] = {"key": None, "map": {}}


def _registry() -> dict[str, dict[str, str]]:
    path = registry_path()
    try:
        st = os.stat(path)
    except OSError:
        return {}
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    if _guard_cache["key"] != key:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        _guard_cache["map"] = {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("admin"), str)}
        _guard_cache["key"] = key
    return _guard_cache["map"]  # type: ignore[return-value]


def _update_registry(worktree: Path, sb: AgentSandbox | None) -> None:
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if sb is None:
            data.pop(str(worktree), None)
        else:
            data[str(worktree)] = {"admin": str(sb.admin_dir), "root": str(sb.root), "branch": sb.branch,
                                   "common": str(sb.common_dir), "repo_root": str(sb.repo_root)}
        _write_host_file(path, json.dumps(data, indent=1, sort_keys=True) + "\n", 0o600)
    finally:
        os.close(fd)


def guard(cwd: Path | str) -> list[str]:
    """git's global options for a command run in *cwd*: for a folder inside a sandboxed worktree,
    ``--git-dir``/``--work-tree`` of its host records and :data:`HOST_GIT_CONFIG` (as
    :func:`host_git_argv`, without the leading ``git``); elsewhere ``[]``.  Cheap (one ``stat``
    of the registry while it is unchanged): meant for :mod:`agentdeck.git` to call for every
    command.  An entry whose worktree was removed (its admin folder has no :data:`TOKEN_FILE`)
    no longer counts."""
    reg = _registry()
    if not reg:
        return []
    here = os.path.realpath(cwd)
    for wt, entry in reg.items():
        if (here == wt or here.startswith(wt.rstrip("/") + "/")) and os.path.exists(
                os.path.join(entry["admin"], TOKEN_FILE)):
            return host_git_argv(Path(entry["admin"]), Path(wt))[1:]
    return []


def sync_branch(cwd: Path | str, branch: str) -> str | None:
    """:func:`sync_back` for the sandboxed agent (if any) whose branch is *branch* in the
    repository of *cwd* (a checkout or its git directory): for code that reads a branch by name
    (review's ``branch_tip``).  None when no sandbox has that branch; cheap then (one ``stat``)."""
    reg = _registry()
    if not reg:
        return None
    for entry in reg.values():
        if entry.get("branch") != branch:
            continue
        here = os.path.realpath(cwd)
        roots = [entry.get("common", ""), entry.get("repo_root", "")]
        if not any(r and (here == r or here.startswith(r.rstrip("/") + "/")) for r in roots):
            continue
        sb = _load_record(Path(entry["root"]))
        return sync_back(sb) if sb is not None else None
    return None


def remove(sandbox: AgentSandbox, sync: bool = True) -> None:
    """Delete the sandbox's folder (kill/gc), after a last :func:`sync_back` where it can (the
    agent's commits are then on its branch).  *sync* False skips that sync (the caller synced
    and may have deleted the branch since: a sync would create it again).  Symlinks inside are
    removed, never followed; folders the agent made read-only are opened again to be deleted."""
    if sync and (sandbox.root / RECORD).exists():
        try:
            sync_back(sandbox)
        except Refused:
            pass
    bridge = _bridge_dir(sandbox, create=False)
    shutil.rmtree(bridge, ignore_errors=True)
    _update_registry(sandbox.worktree, None)
    _rmtree_forcing(sandbox.root)


def remove_leftover(folder: Path) -> None:
    """Delete a sandbox folder that has no record left (a removal or a first :func:`prepare`
    interrupted half way): only a real folder directly under a ``sandboxes`` folder."""
    folder = Path(folder)
    if folder.parent.name == SANDBOXES and folder.is_dir() and not folder.is_symlink():
        _rmtree_forcing(folder)


def for_worktree(cwd: Path | str) -> AgentSandbox | None:
    """The sandbox of the agent whose worktree holds *cwd* (from the user-level registry), None
    when *cwd* lies in no sandboxed worktree (cheap then: one ``stat``)."""
    here = os.path.realpath(cwd)
    for wt, entry in _registry().items():
        if here == wt or here.startswith(wt.rstrip("/") + "/"):
            return _load_record(Path(entry["root"]))
    return None


def _rmtree_forcing(root: Path) -> None:
    """``rm -rf`` *root* (never following symlinks), making a folder writable where a
    deletion in it failed (the agent may ``chmod`` its own folders)."""
    def retry(func, path, _exc):  # shutil's onerror/onexc signature
        parent = os.path.dirname(path)
        with contextlib.suppress(OSError):
            if not os.path.islink(parent):
                os.chmod(parent, 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
                shutil.rmtree(path, ignore_errors=True)
            else:
                func(path)

    if not os.path.lexists(root):
        return
    if sys.version_info >= (3, 12):
        shutil.rmtree(root, onexc=retry)
    else:
        shutil.rmtree(root, onerror=retry)


# ----------------------------------------------------------------------------- internals
@contextlib.contextmanager
def _locked(sb: AgentSandbox) -> Iterator[None]:
    sb.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(sb.root / "sync.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _admin_dir(common: Path, worktree: Path) -> Path:
    """The admin folder of *worktree*, from the main repository's own records (its ``gitdir``
    files), never from the worktree's ``.git`` file."""
    want = str(worktree / ".git")
    base = common / "worktrees"
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        entries = []
    for entry in entries:
        try:
            recorded = (base / entry / "gitdir").read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if os.path.realpath(recorded) == want or recorded == want:
            return base / entry
    raise Refused(f"{worktree} is not a worktree of {common}; recreate the agent with `agentdeck restart`")


def _git(common: Path, *args: str, env_extra: Mapping[str, str] | None = None, input: bytes | None = None,
         check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """git on the main repository itself (its own config only: trusted)."""
    env = host_git_env()
    env.update(env_extra or {})
    # The agent's store is read as an alternate: none of its side files (commit-graph,
    # multi-pack-index) is trusted; every object copied is hashed again by unpack-objects.
    argv = ["git", f"--git-dir={common}", "-c", "core.fsmonitor=", "-c", "core.hooksPath=/dev/null",
            "-c", "core.commitGraph=false", "-c", "core.multiPackIndex=false", *args]
    proc = subprocess.run(argv, capture_output=True, env=env, input=input, cwd=str(common))
    if check and proc.returncode != 0:
        from agentdeck.git import GitError

        raise GitError(list(args), proc.returncode, proc.stderr.decode("utf-8", "replace"))
    return proc


def _out(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stdout.decode("utf-8", "replace").strip()


def _host_tip(sb: AgentSandbox) -> str | None:
    proc = _git(sb.common_dir, "rev-parse", "-q", "--verify", f"refs/heads/{sb.branch}^{{commit}}", check=False)
    return _out(proc) or None


def _write_host_file(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file in a host-only folder (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _open_dir_nofollow(root: Path, parts: Sequence[str], create: bool = False) -> int:
    """A file descriptor of ``root/parts...``, each step refusing symlinks (the folders below
    *root* are the agent's: a symlink there must not lead the host elsewhere).  With *create*,
    missing folders are made and a symlink or file in the way is removed (not followed)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(root, flags)
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise OSError(f"bad path part {part!r}")
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except OSError:
                if not create:
                    raise
                os.unlink(part, dir_fd=fd)  # a planted symlink or file: replaced, never followed
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_agent_file(root: Path, rel: str, limit: int = 1 << 20) -> bytes | None:
    """The content of ``root/rel`` (a regular file reached without symlinks), None if absent."""
    parts = rel.split("/")
    try:
        dfd = _open_dir_nofollow(root, parts[:-1])
    except OSError:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _write_agent_file(root: Path, rel: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``root/rel`` in a folder the agent can change: folders made or entered without
    following symlinks, the file replaced atomically (a planted symlink is replaced, not followed)."""
    parts = rel.split("/")
    dfd = _open_dir_nofollow(root, parts[:-1], create=True)
    try:
        tmp = f".{parts[-1]}.agentdeck-tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode, dir_fd=dfd)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)


def _agent_tip(sb: AgentSandbox) -> str | None:
    """The agent's ``refs/heads/<branch>`` in its own repository (loose, else packed)."""
    rel = f"refs/heads/{sb.branch}"
    raw = _read_agent_file(sb.git_dir, rel)
    if raw is not None:
        value = raw.decode("ascii", "replace").strip()
        return value if _HEX.match(value) else None
    packed = _read_agent_file(sb.git_dir, "packed-refs", limit=64 << 20)
    if packed is None:
        return None
    for line in packed.decode("utf-8", "replace").splitlines():
        fields = line.split(" ", 1)
        if len(fields) == 2 and fields[1] == rel and _HEX.match(fields[0]):
            return fields[0]
    return None


def _make_repository(sb: AgentSandbox) -> None:
    """The agent's own git repository (see the module docstring)."""
    common = sb.common_dir
    tip = _host_tip(sb)
    if tip is None:
        raise Refused(f"branch {sb.branch} does not exist in {common}; recreate the agent")
    git = sb.git_dir
    for sub in ("refs/heads", "refs/tags", "info", "logs/refs/heads"):
        (git / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("info", "pack"):
        (sb.objects_dir / sub).mkdir(parents=True, exist_ok=True)
    os.symlink("../objects", git / "objects")
    (git / "HEAD").write_text(f"ref: refs/heads/{sb.branch}\n")
    fmt = _out(_git(common, "config", "--get", "core.repositoryformatversion", check=False)) or "0"
    objfmt = _out(_git(common, "config", "--get", "extensions.objectformat", check=False))
    lines = ["[core]", f"\trepositoryformatversion = {fmt}", "\tfilemode = true", "\tbare = false",
             "\tlogallrefupdates = true"]
    if objfmt:
        lines += ["[extensions]", f"\tobjectformat = {objfmt}"]
    ident = []
    for key in ("name", "email"):
        value = _out(_git(common, "config", "--get", f"user.{key}", check=False))
        if value and "\n" not in value:
            ident.append(f"\t{key} = {json.dumps(value, ensure_ascii=False)}")
    if ident:
        lines += ["[user]", *ident]
    (git / "config").write_text("\n".join(lines) + "\n")
    # The other branches and tags as they are now (read-only in effect: never brought back).
    refs = _out(_git(common, "for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"))
    packed = ["# pack-refs with: peeled fully-peeled sorted "]
    packed += [line for line in refs.splitlines() if line and not line.endswith(f" refs/heads/{sb.branch}")]
    (git / "packed-refs").write_text("\n".join(packed) + "\n")
    _write_agent_file(git, f"refs/heads/{sb.branch}", f"{tip}\n".encode(), 0o644)
    with contextlib.suppress(OSError):
        shutil.copyfile(common / "info" / "exclude", git / "info" / "exclude")
    if (sb.admin_dir / "index").is_file():
        shutil.copyfile(sb.admin_dir / "index", git / "index")
    (git / "description").write_text("agentdeck sandbox\n")


def _follow_host(sb: AgentSandbox) -> None:
    """On restart: when the host's branch is ahead of the agent's (agentdeck moved it on the
    host), the agent's follows, with the host's index of the worktree."""
    host, agent = _host_tip(sb), _agent_tip(sb)
    if host is None or host == agent:
        return
    env = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(sb.objects_dir)}
    if agent is not None and _git(sb.common_dir, "merge-base", "--is-ancestor", agent, host,
                                  env_extra=env, check=False).returncode != 0:
        return  # diverged: the agent's own history stays; sync_back reports it
    _write_agent_file(sb.git_dir, f"refs/heads/{sb.branch}", f"{host}\n".encode(), 0o644)
    if (sb.admin_dir / "index").is_file():
        _write_agent_file(sb.git_dir, "index", (sb.admin_dir / "index").read_bytes(), 0o644)


def _sync_locked(sb: AgentSandbox) -> str:
    tip = _agent_tip(sb)
    host = _host_tip(sb)
    if tip is None or tip == host:
        return "same"
    env = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(sb.objects_dir)}
    kind = _out(_git(sb.common_dir, "cat-file", "-t", tip, env_extra=env, check=False))
    if kind != "commit":
        raise Refused(f"{sb.name}'s branch {sb.branch} points at {tip[:12]}, which is not a commit in its "
                      f"repository; look at it with `agentdeck peek {sb.name}`")
    if host is not None and _git(sb.common_dir, "merge-base", "--is-ancestor", host, tip, env_extra=env,
                                 check=False).returncode != 0:
        return "diverged"
    _import_objects(sb, tip)
    _git(sb.common_dir, "update-ref", "-m", f"agentdeck: sync from {sb.name}'s sandbox",
         f"refs/heads/{sb.branch}", tip, host or "0" * len(tip))
    # The host's index of the worktree follows the branch (stat data kept where unchanged).
    if (sb.admin_dir / "HEAD").exists():
        head = _out(subprocess.run([*host_git_argv(sb), "symbolic-ref", "-q", "HEAD"], capture_output=True,
                                   env=host_git_env(), cwd=str(sb.admin_dir)))
        if head == f"refs/heads/{sb.branch}":
            subprocess.run([*host_git_argv(sb), "reset", "-q", "--no-refresh"], capture_output=True,
                           env=host_git_env(), cwd=str(sb.admin_dir))
    return "fast-forward"


def _import_objects(sb: AgentSandbox, tip: str) -> None:
    """Copy into the main object store what *tip* needs and no host ref reaches: packed with the
    agent's store as an alternate, unpacked without it (so each object is hashed and really copied)."""
    env = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(sb.objects_dir)}
    listing = _git(sb.common_dir, "rev-list", "--objects", tip, "--not", "--all", env_extra=env).stdout
    if listing.strip():
        pack = _git(sb.common_dir, "pack-objects", "--stdout", "-q", env_extra=env, input=listing).stdout
        _git(sb.common_dir, "unpack-objects", "-q", "--strict", input=pack)


def _state_sources(kind: str, home: Path, env: Mapping[str, str]) -> list[tuple[Path, str]]:
    """(host file, path relative to the sandbox's home) for what *kind* needs."""
    out = []
    for rel in CLI_STATE.get(kind, ()):
        src = home / rel
        if kind == "codex" and env.get("CODEX_HOME") and rel.startswith(".codex/"):
            src = Path(env["CODEX_HOME"]) / rel.split("/", 1)[1]
        if kind == "claude" and env.get("CLAUDE_CONFIG_DIR") and rel.startswith(".claude/"):
            src = Path(env["CLAUDE_CONFIG_DIR"]) / rel.split("/", 1)[1]
        out.append((src, rel))
    return out


def _copy_cli_state(sb: AgentSandbox, source_home: Path | None, source_env: Mapping[str, str] | None) -> None:
    env = os.environ if source_env is None else source_env
    home = Path(source_home) if source_home else Path(env.get("HOME") or os.path.expanduser("~"))
    sb.home.mkdir(mode=0o700, exist_ok=True)
    for src, rel in _state_sources(sb.kind, home, env):
        try:
            data = src.read_bytes()
        except OSError:
            continue
        _write_agent_file(sb.home, rel, data, 0o600)


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
    from agentdeck.sandbox.agent_seccomp import program

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


def _bridge_dir(sb: AgentSandbox, create: bool = True) -> Path:
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


__all__ = [
    "CLI_STATE",
    "HOST_GIT_CONFIG",
    "UNSET_ENV",
    "AgentSandbox",
    "command_in_worktree",
    "follow_host",
    "for_worktree",
    "guard",
    "host_git",
    "host_git_argv",
    "host_git_env",
    "host_git_for",
    "keep_tip",
    "load",
    "load_at",
    "prepare",
    "registry_path",
    "remove",
    "remove_leftover",
    "sandbox_root",
    "sync_back",
    "sync_branch",
    "unsaved_tip",
    "wrap",
]
