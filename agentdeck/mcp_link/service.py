"""The repository's MCP server seen from the deck: start it, find it, wire agents to it.

One long-lived process per repository (:mod:`agentdeck.mcp.http_app`) serves every agent's
MCP session over streamable HTTP on 127.0.0.1.  Its record is one row of the state
database's ``meta`` table (``mcp_server``: port, pid, state); its liveness is an ``flock``
on ``<state dir>/mcp.lock``, held for the process's whole life (like the watcher's).

* **Started in the background**, never waited for: :func:`ensure_server` (called by each
  launch, and by the watcher) picks the port - the recorded one while it is free, else a
  random free one - records it and spawns the server, which binds it (or, should another
  program have taken it meanwhile, a new one it records).  The launch goes on at once; on a
  cold start the agent's pane waits (in the pane, :data:`PANE_WAITER`) until the port
  accepts connections, then starts the CLI.
* **Exits when no agent lives** (no pane alive, no launch in progress, for a grace period);
  under ``mcp-spawn.lock``, so a launch either sees it running or starts a new one.
* **Killed** (or crashed): the watcher (:func:`tick`) brings it back on the recorded port
  where free (the agents' CLIs reconnect to the same URL), else on a new one; ``doctor``
  names the agents whose URL is no longer the server's (:func:`doctor_checks`): they need
  ``agentdeck restart``.
* **Wiring** (:func:`wire_launch`): each launch of an agent whose adapter speaks MCP over HTTP
  (``Adapter.mcp_http``) gets a fresh token in its launch environment and the server's URL
  in its MCP configuration; the row keeps the token's sha256 (:mod:`agentdeck.mcp_link.auth`).
  :func:`pane_command` holds the first prompt (:mod:`agentdeck.mcp_link.first_prompt`);
  :func:`settle_before_typing` makes ``send`` wait for a CLI still connecting.
  ``AGENTDECK_MCP_HTTP=0`` in the deck's environment keeps every agent on stdio (one
  ``agentdeck mcp`` per agent, as before; used by the benchmarks to compare).

Standard library and the state store only: the deck, the watcher and ``doctor`` import it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentdeck import paths
from agentdeck.fsutil import FileLock, LockTimeout
from agentdeck.mcp_link import TOKEN_ENV, first_prompt
from agentdeck.mcp_link.auth import new_token
from agentdeck.procutil import pid_alive

RECORD_KEY = "mcp_server"
LOCK_NAME = "mcp.lock"
SPAWN_LOCK_NAME = "mcp-spawn.lock"
LOG_NAME = "mcp-server.log"
HOST = "127.0.0.1"
PATH = "/mcp"
#: The watcher checks the server at most this often.
CHECK_EVERY_S = 2.0
#: A spawned server that has not taken its lock yet counts as starting for this long.
STARTING_GRACE_S = 15.0
ENV_DISABLE = "AGENTDECK_MCP_HTTP"
#: Set in the server's own environment (its pid): a launch from inside it (deck tools) needs no spawn.
ENV_SELF = "AGENTDECK_MCP_SERVER_PID"


def url_for(port: int) -> str:
    return f"http://{HOST}:{port}{PATH}"


def enabled() -> bool:
    return os.environ.get(ENV_DISABLE, "1") != "0"


# ----------------------------------------------------------------------------- the record


def read_record(store: Any) -> dict[str, Any]:
    try:
        value = json.loads(store.get_meta(RECORD_KEY) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def write_record(store: Any, **fields: Any) -> dict[str, Any]:
    record = {**read_record(store), **fields}
    store.set_meta(RECORD_KEY, json.dumps(record, sort_keys=True))
    return record


def recorded_port(store: Any) -> int | None:
    port = read_record(store).get("port")
    return port if isinstance(port, int) and 0 < port < 65536 else None


# ----------------------------------------------------------------------------- locks


def lock_path(state_dir: Path) -> Path:
    return Path(state_dir) / LOCK_NAME


def server_alive(state_dir: Path) -> bool:
    """True while a server process holds the repository's ``mcp.lock``."""
    path = lock_path(state_dir)
    if not path.exists():
        return False
    probe = FileLock(path, timeout=0)
    try:
        probe.acquire()
    except LockTimeout:
        return True
    probe.release()
    return False


@contextlib.contextmanager
def spawn_lock(state_dir: Path, timeout: float = 10.0) -> Iterator[None]:
    """Serialise deciding and starting (``ensure_server``) with a server deciding to exit."""
    lock = FileLock(Path(state_dir) / SPAWN_LOCK_NAME, timeout=timeout)
    try:
        lock.acquire()
    except LockTimeout:
        raise TimeoutError(f"{lock.path} stayed locked for {timeout:g}s") from None
    try:
        yield
    finally:
        lock.release()


# ----------------------------------------------------------------------------- ports


def port_free(port: int) -> bool:
    """True when a listening socket could bind 127.0.0.1:*port* now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def bind_listener(port: int | None) -> socket.socket:
    """A listening socket on 127.0.0.1: *port* where possible, else a random free one."""
    for wanted in ([port] if port else []) + [0]:
        # IPPROTO_TCP named, and TCP_NODELAY set (accepted sockets inherit it): asyncio only turns
        # Nagle off itself for sockets whose proto says TCP, and with Nagle on, every response
        # after the first on a kept-alive connection waits ~40 ms for the client's delayed ACK.
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            s.bind((HOST, wanted))
        except OSError as exc:
            s.close()
            if wanted == 0 or exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                raise
            continue
        s.listen(128)
        s.set_inheritable(False)
        return s
    raise OSError("no port to bind")  # pragma: no cover - port 0 always binds or raises above


# ----------------------------------------------------------------------------- starting


def server_listening(state_dir: Path, store: Any) -> bool:
    """True when the server runs and has bound its recorded port (connections are accepted)."""
    return read_record(store).get("state") == "running" and server_alive(state_dir)


def ensure_server(repo: Any, store: Any, tmux_socket: str) -> int:
    """The port of the repository's server, starting one in the background when none runs.

    Never waits for the server: the port is decided here (the recorded one when free) and
    the server binds it.  *repo* is a :class:`agentdeck.paths.RepoPaths`.
    """
    own = os.environ.get(ENV_SELF)
    if own and own == str(os.getpid()):
        port = recorded_port(store)
        if port:
            return port
    state_dir = Path(repo.state_dir)
    with spawn_lock(state_dir):
        record = read_record(store)
        port = recorded_port(store)
        state = record.get("state")
        if port and state in ("running", "starting") and server_alive(state_dir):
            return port
        if (port and state == "starting" and pid_alive(record.get("pid"))
                and time.time() - float(record.get("spawned_at") or 0) < STARTING_GRACE_S):
            return port  # spawned a moment ago, still importing (it takes its lock first thing)
        if state == "stopping" and pid_alive(record.get("pid")):
            _wait_gone(record.get("pid"), 5.0)  # it is exiting; its port frees with it
        if not port or not port_free(port):
            port = free_port()
        pid = spawn(repo, port, tmux_socket)
        write_record(store, port=port, pid=pid, state="starting", spawned_at=time.time(), url=url_for(port))
        return port


def _wait_gone(pid: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def server_argv(repo_root: Path, port: int, tmux_socket: str) -> list[str]:
    return [sys.executable, "-m", "agentdeck.mcp.http_app", "--repo", str(repo_root), "--port", str(port),
            "--tmux-socket", tmux_socket]


def spawn(repo: Any, port: int, tmux_socket: str) -> int:
    """Start the server process, detached (its own session), logging to ``logs/mcp-server.log``."""
    logs = Path(repo.logs_dir)
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in (paths.ENV_AGENT, "AGENTDECK_FAULT", ENV_SELF, TOKEN_ENV)}
    env[paths.ENV_STATE_DIR] = str(repo.state_dir)
    env[paths.ENV_REPO] = str(repo.root)
    env[paths.ENV_TMUX_SOCKET] = tmux_socket
    pkg_parent = str(Path(__file__).resolve().parent.parent.parent)
    if "site-packages" not in pkg_parent and "dist-packages" not in pkg_parent:
        env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(logs / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(
            server_argv(Path(repo.root), port, tmux_socket), cwd=str(repo.root), env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
        )
    return proc.pid


# ----------------------------------------------------------------------------- wiring a launch


def wire_launch(deck: Any, rec: Any, adapter: Any, ctx: Any) -> None:
    """Before an agent's launch (``Deck._launch``, before ``adapter.prepare``): the server's URL
    and a fresh token for this launch in *ctx*, the token's sha256 in the agent's row.

    The row is written before the pane starts, so the agent's first request is recognised;
    a relaunch replaces the digest (the previous token stops working).  Agents whose adapter
    has no HTTP support, or launched for no repository, keep stdio (nothing changes).
    """
    # The adapters' base is loaded only when an agent launches: the watcher imports this module.
    from agentdeck.agents.base import memory_wired

    ctx.extra.pop("pending_prompt", None)
    if not (getattr(adapter, "mcp_http", False) and enabled() and memory_wired(ctx)):
        if ctx.extra.pop("mcp", None) is not None:
            deck.store.merge_extra(rec.name, mcp=None)
        return
    warm = server_listening(deck.repo.state_dir, deck.store)
    port = ensure_server(deck.repo, deck.store, deck.tmux.socket)
    token, token_digest = new_token()
    ctx.mcp_url = url_for(port)
    ctx.mcp_token = token
    ctx.extra["mcp"] = {"token_sha256": token_digest, "port": port, "issued_at": time.time(), "cold": not warm}
    deck.store.merge_extra(rec.name, mcp=ctx.extra["mcp"], pending_prompt=None)


def pane_command(deck: Any, rec: Any, adapter: Any, ctx: Any, argv: list[str]) -> list[str]:
    """After the adapter built *argv*: what the pane runs, and the first prompt's hold.

    * When the adapter left the initial prompt out to wait for the tools
      (``Adapter.prompt_waits_for_tools``), it is marked pending in *ctx.extra* (saved with
      the launch) and the watcher types it (:mod:`agentdeck.mcp_link.first_prompt`).
    * A CLI wired to the server connects to it once, at start (Codex 0.169 does not retry a
      server that refused it until a turn begins): when the server was not listening yet (a
      cold start), the pane first waits, at most :data:`PANE_WAIT_S`, until it accepts
      connections (:data:`PANE_WAITER`, in the pane, so ``new`` never waits for it), then
      runs *argv*.
    """
    if not ctx.mcp_url:
        return argv
    if adapter.prompt_waits_for_tools(ctx):
        ctx.extra["pending_prompt"] = {"since": time.time(), "timeout": first_prompt.timeout_s()}
        deck.store.add_event(rec.name, "prompt", "deck", detail={"held": "until its MCP client lists the tools"})
    if not ctx.extra["mcp"].get("cold"):
        return argv  # the server listens already: nothing to wait for
    port = int(ctx.extra["mcp"]["port"])
    return [sys.executable, "-S", "-c", PANE_WAITER, HOST, str(port), str(PANE_WAIT_S), "--", *argv]


#: ``send`` waits at most this long after an agent's launch for its MCP client to list the tools.
SEND_WAIT_S = 20.0
#: ... and this long after the listing, for the CLI to take input again.
SEND_SETTLE_S = 1.0


def settle_before_typing(deck: Any, rec: Any, timeout: float = SEND_WAIT_S) -> None:
    """Before text is typed into an agent wired to the server (``send``): when its MCP client has
    not yet listed the tools since its latest launch, wait until it has (and a moment more), at
    most *timeout* seconds from that launch.  Claude Code 2.1.197 connecting an HTTP server at
    start-up takes a paste but drops the Enter that follows (seen after ``restart`` then ``send``)."""
    mcp = rec.extra.get("mcp")
    if not isinstance(mcp, dict) or not enabled():
        return
    issued = float(mcp.get("issued_at") or 0.0)
    deadline = issued + timeout
    while time.time() < deadline:
        listed = deck.store.last_event(rec.name, "mcp_tools")
        if listed is not None and listed["ts"] >= issued:
            wait = listed["ts"] + SEND_SETTLE_S - time.time()
            if wait > 0:
                time.sleep(wait)
            return
        time.sleep(0.1)


#: For this long after a launch, ``send`` checks that its Enter was taken (:func:`just_launched`).
JUST_LAUNCHED_S = 60.0


def just_launched(rec: Any, now: float | None = None) -> bool:
    """An agent wired to the server launched less than :data:`JUST_LAUNCHED_S` ago: a CLI still
    finishing its start-up can take a paste and drop the Enter after it (Claude Code, after
    ``restart``, on a loaded machine), so ``send`` presses Enter again if the text still sits in
    the input box (:func:`agentdeck.mcp_link.first_prompt.enter_again_if_still_typed`)."""
    mcp = rec.extra.get("mcp")
    if not isinstance(mcp, dict):
        return False
    return (time.time() if now is None else now) - float(mcp.get("issued_at") or 0.0) < JUST_LAUNCHED_S


#: How long an agent's pane waits for a cold server before starting the agent anyway.
PANE_WAIT_S = 20.0
#: Runs in the pane (``python -S``: no site start-up): wait until HOST:PORT accepts a connection
#: (or SECONDS pass), then exec the agent.  argv: HOST PORT SECONDS -- AGENT...
PANE_WAITER = """import os,socket,sys,time
h,p,t=sys.argv[1],int(sys.argv[2]),float(sys.argv[3])
d=time.monotonic()+t
while time.monotonic()<d:
 try:
  socket.create_connection((h,p),1).close();break
 except OSError:time.sleep(0.05)
a=sys.argv[5:]
try:os.execvp(a[0],a)
except OSError as x:
 sys.stderr.write("agentdeck: cannot start %s: %s\\n"%(a[0],x));sys.exit(127)
"""


# ----------------------------------------------------------------------------- the watcher's part

_last_check: dict[str, float] = {}


def tick(deck: Any, now: float | None = None) -> None:
    """One watcher pass: type first prompts that are due; every few seconds, bring the server
    back when agents wired to it live and it does not run."""
    now = time.time() if now is None else now
    try:
        records = deck.store.list_agents()
        first_prompt.deliver(deck, records, now)
        key = str(deck.repo.state_dir)
        if now - _last_check.get(key, 0.0) < CHECK_EVERY_S:
            return
        _last_check[key] = now
        if not enabled() or not any(r.extra.get("mcp") and r.status != "exited" and not r.kept for r in records):
            return
        if not server_alive(deck.repo.state_dir):
            port = ensure_server(deck.repo, deck.store, deck.tmux.socket)
            print(f"{time.strftime('%H:%M:%S')} the MCP server was not running: (re)starting it on port {port}",
                  file=sys.stderr, flush=True)
    except Exception as exc:  # the watcher's other work goes on
        print(f"{time.strftime('%H:%M:%S')} MCP upkeep failed: {exc!r}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- doctor


def doctor_checks(deck: Any) -> list[dict[str, Any]]:
    """``agentdeck doctor``'s view (``{"name", "level", "detail", "fix"}`` like its own checks):
    the server, and one warning per live agent that cannot reach it with its configuration
    (wired to another port: a restart gives it the current URL and a new token)."""
    records = [r for r in deck.store.list_agents() if r.extra.get("mcp") and r.status != "exited" and not r.kept]
    record = read_record(deck.store)
    port = recorded_port(deck.store)
    running = server_alive(deck.repo.state_dir)
    checks: list[dict[str, Any]] = []
    if running:
        checks.append(_check("mcp server", "ok", f"{url_for(port or 0)} (pid {record.get('pid')})"))
    elif records:
        checks.append(_check("mcp server", "warn", "not running while agents use it",
                             "the watcher starts it again within seconds; see <state dir>/logs/mcp-server.log "
                             "if it does not"))
    else:
        checks.append(_check("mcp server", "ok", "not running (no agent uses it)"))
    for r in records:
        wired = r.extra["mcp"].get("port")
        if running and wired != port:
            checks.append(_check(f"agent {r.name} memory", "warn",
                                 f"wired to the MCP server on port {wired}, which now listens on {port}",
                                 f"agentdeck restart {r.name}"))
    return checks


def _check(name: str, level: str, detail: str, fix: str = "") -> dict[str, Any]:
    return {"name": name, "level": level, "detail": detail, "fix": fix}
