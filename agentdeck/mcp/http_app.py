"""The repository's MCP server over streamable HTTP: ``python -m agentdeck.mcp.http_app``.

Started in the background by :func:`agentdeck.mcp_link.service.ensure_server` (never by hand);
one per repository (an ``flock`` on ``<state dir>/mcp.lock``), on 127.0.0.1 only.

Every request passes :class:`Gate` first, before the SDK sees it:

* ``Host`` must be ``127.0.0.1:PORT`` or ``localhost:PORT`` (a DNS-rebound page sends its own
  name): else 421;
* ``Origin`` may be absent (the agent CLIs send none); one that is present must be this
  server's own: else 403;
* ``Authorization: Bearer <token>`` must name a live agent's token (:class:`TokenBook`):
  else 401.  The token's agent is the caller for everything the request does (notes,
  journals, research submissions), whatever the request says.

The server is stateless (the SDK's ``stateless_http``): it hands out no ``mcp-session-id``,
so every request stands alone and carries its own identity (the token).  A server that was
killed and started again is therefore invisible to the agents: the pinned CLIs do not all
recover a session the server no longer knows (the spec's 404, then a new ``initialize``) -
Codex 0.169 lost its tools for good after such a restart under load - and there is no
server-held state a session would protect (notes, journals and submissions live in the
repository and the state database).

The SDK's middleware records each launch's first ``tools/list`` (one token per launch) as the
agent's ``mcp_tools`` event: the moment its first prompt may be typed
(:mod:`agentdeck.mcp_link.first_prompt`).
A housekeeping thread ends the server once no agent has lived for a grace period
(``AGENTDECK_MCP_GRACE``, default 30 s).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp.server.transport_security import TransportSecuritySettings

from agentdeck import paths
from agentdeck.fsutil import FileLock, LockTimeout
from agentdeck.mcp.context import CALLER, ServerContext
from agentdeck.mcp.server import build_server
from agentdeck.mcp_link import auth, service
from agentdeck.memory.watch import MemoryWatcher
from agentdeck.status import launch_abandoned
from agentdeck.store import Store
from agentdeck.tmux import Tmux

GRACE_S = float(os.environ.get("AGENTDECK_MCP_GRACE", "30"))
HOUSEKEEPING_S = 2.0


class Gate:
    """ASGI wrapper: Host, Origin and bearer token checks; the caller set for the request."""

    def __init__(self, app: Any, book: auth.TokenBook, port: int):
        self.app = app
        self.book = book
        self.port = port
        self.refused = 0

    async def _refuse(self, send: Any, status: int, message: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.refused += 1
        body = (message + "\n").encode("utf-8")
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                   *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan: the SDK's session manager
            return
        headers: dict[str, str] = {}
        for key, value in scope.get("headers") or []:
            headers.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
        if not auth.host_ok(headers.get("host"), self.port):
            await self._refuse(send, 421, "agentdeck: Host not allowed (use 127.0.0.1 with this port)")
            return
        if not auth.origin_ok(headers.get("origin"), self.port):
            await self._refuse(send, 403, "agentdeck: Origin not allowed")
            return
        who = self.book.lookup(auth.bearer(headers.get("authorization")))
        if who is None:
            await self._refuse(send, 401, "agentdeck: missing or unknown bearer token (restart the agent)",
                               [(b"www-authenticate", b'Bearer realm="agentdeck"')])
            return
        token = CALLER.set(who)
        try:
            await self.app(scope, receive, send)
        finally:
            CALLER.reset(token)


class ListingRecorder:
    """SDK middleware: the first ``tools/list`` of each launch of an agent becomes an ``mcp_tools`` event."""

    def __init__(self, store: Any):
        self.store = store
        self.seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        result = await call_next(ctx)
        if getattr(ctx, "method", "") == "tools/list":
            who = CALLER.get()
            if who is not None:
                listed = result.get("tools") if isinstance(result, dict) else getattr(result, "tools", None)
                tools = len(listed or [])
                await anyio.to_thread.run_sync(self.record, who.name, who.launch, tools)
        return result

    def forget(self, known: set[str]) -> None:
        with self._lock:
            self.seen = {(agent, launch) for agent, launch in self.seen if agent in known}

    def record(self, agent: str, launch: str, tools: int) -> None:
        with self._lock:
            if (agent, launch) in self.seen:
                return
            self.seen.add((agent, launch))
        try:
            self.store.add_event(agent, "mcp_tools", "mcp", detail={"tools": tools, "launch": launch[:8]})
        except Exception as exc:  # the agent's row may be gone; never fail the listing
            print(f"{time.strftime('%H:%M:%S')} could not record tools/list of {agent}: {exc!r}",
                  file=sys.stderr, flush=True)


def live_agents(store: Any, tmux: Any) -> bool:
    """True while an agent of this repository lives (its pane) or is being created."""
    panes = tmux.list_panes() or {}
    for rec in store.list_agents():
        if rec.kept:
            continue
        if rec.extra.get("launching"):
            if launch_abandoned(rec):
                continue  # `new` was killed half way: nothing will connect for it
            return True
        pane = panes.get(rec.session)
        if pane is not None and not pane.dead:
            return True
    return False


def _watch_memory(context: ServerContext) -> Any:
    """Keep the shared index in step with the files by inotify (edits by hand, other processes),
    so a search never pays for a ``stat`` pass over every note (70-100 ms at 10,000 notes, once a
    second per caller otherwise).  None, and reads sync by ``stat`` as before, when it cannot start."""
    try:
        watcher = MemoryWatcher(context.memory).start()
    except Exception as exc:
        print(f"{time.strftime('%H:%M:%S')} memory watcher not started ({exc!r}): searches sync by stat",
              file=sys.stderr, flush=True)
        return None
    context.read_sync = False
    return watcher


def run(repo_root: Path, port: int | None, tmux_socket: str) -> int:
    """Serve until no agent lives (see the module docstring)."""
    repo = paths.find_repo(repo_root)
    state_dir = repo.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(service.lock_path(state_dir), timeout=0)  # held until this process ends
    try:
        lock.acquire()
    except LockTimeout:
        return 0  # another server owns this repository
    os.environ[service.ENV_SELF] = str(os.getpid())
    store = Store(repo.db_path)
    with service.spawn_lock(state_dir):
        listener = service.bind_listener(port)
        actual = listener.getsockname()[1]
        service.write_record(store, port=actual, pid=os.getpid(), state="running", started_at=time.time(),
                             url=service.url_for(actual))
    print(f"{time.strftime('%H:%M:%S')} serving {service.url_for(actual)} (pid {os.getpid()})", file=sys.stderr,
          flush=True)
    if port and actual != port:
        print(f"{time.strftime('%H:%M:%S')} port {port} was taken; serving on {actual} (agents wired to {port} "
              f"need `agentdeck restart`)", file=sys.stderr, flush=True)

    context = ServerContext(cwd=repo.root, agent="user")
    watcher = _watch_memory(context)
    book = auth.TokenBook(store)
    recorder = ListingRecorder(store)
    server = build_server(context, middleware=[recorder])
    hosts = sorted(auth.allowed_hosts(actual))
    security = TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                         allowed_origins=[f"http://{h}" for h in hosts])
    app = server.streamable_http_app(transport_security=security, host=service.HOST, stateless_http=True)
    gate = Gate(app, book, actual)
    config = uvicorn.Config(gate, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=1)
    web = uvicorn.Server(config)
    tmux = Tmux(tmux_socket, paths.agentdeck_home())
    stop = threading.Event()

    def housekeeping() -> None:
        last_alive = time.monotonic()
        while not stop.wait(HOUSEKEEPING_S):
            try:
                known = book.agents()
                context.forget_writers(known)
                recorder.forget(known)
                if live_agents(store, tmux):
                    last_alive = time.monotonic()
                    continue
            except Exception as exc:  # never die on one bad pass
                print(f"{time.strftime('%H:%M:%S')} housekeeping failed: {exc!r}", file=sys.stderr, flush=True)
                continue
            if time.monotonic() - last_alive < GRACE_S:
                continue
            # Decide under the spawn lock, and keep it until this process ends: a launch then either
            # saw this server running (and its agent is live, so we stay) or starts a new one after us.
            exiting = service.spawn_lock(state_dir, timeout=60)
            exiting.__enter__()
            if live_agents(store, tmux):
                exiting.__exit__(None, None, None)
                last_alive = time.monotonic()
                continue
            service.write_record(store, state="stopping", pid=os.getpid())
            print(f"{time.strftime('%H:%M:%S')} no agent for {GRACE_S:g}s: exiting", file=sys.stderr, flush=True)
            web.should_exit = True
            return

    keeper = threading.Thread(target=housekeeping, name="mcp-housekeeping", daemon=True)
    keeper.start()
    try:
        web.run(sockets=[listener])
    finally:
        stop.set()
        if watcher is not None:
            watcher.stop()
        record = service.read_record(store)
        if record.get("pid") == os.getpid():
            service.write_record(store, state="stopped", pid=None)
        context.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentdeck.mcp.http_app")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tmux-socket", required=True)
    args = parser.parse_args(argv)
    return run(Path(args.repo), args.port or None, args.tmux_socket)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
