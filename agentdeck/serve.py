"""``agentdeck serve``: the deck in a browser (textual-serve), behind a random token.

The server listens on 127.0.0.1 (another interface only with an explicit
``--host``) on a free port, and prints one URL holding a random token.  Every
request must carry that token, in the query (``?token=``) or in the cookie the
server sets when it sees a valid one; anything else gets 403.  Each browser tab
runs its own ``agentdeck`` deck process (textual-serve's model) over the same
repositories and tmux server.

textual-serve is imported only when serving, so the rest of the engine never
pulls in a UI library.
"""

from __future__ import annotations

import hmac
import os
import secrets
import shlex
import socket
import sys
from pathlib import Path
from typing import Any

COOKIE_PREFIX = "agentdeck_token_"
FORBIDDEN = "agentdeck serve: forbidden; open the exact URL that `agentdeck serve` printed (it holds the token)\n"


def deck_command(repos: list[str]) -> str:
    """The shell command textual-serve runs per browser tab: the deck over *repos*."""
    argv = [sys.executable, "-m", "agentdeck"]
    for repo in repos:
        argv += ["--repo", str(repo)]
    return shlex.join(argv)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one, chosen by the kernel)."""
    from agentdeck.errors import Refused, UsageError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r} is not an address of this machine ({exc}); use 127.0.0.1") from exc
    family, kind, proto, _name, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise Refused(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from exc
    sock.set_inheritable(False)
    return sock


def url_host(host: str) -> str:
    """The host part of the printed URL (a wildcard address becomes this machine's name)."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"[{host}]" if ":" in host else host


def make_server(repos: list[str], host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                title: str = "agentdeck") -> Any:
    """A ready :class:`TokenServer` (bound, not yet serving)."""
    from textual_serve.server import Server
    from aiohttp import web

    class TokenServer(Server):
        """textual-serve's Server with a token guard in front of every route."""

        def __init__(self) -> None:
            self.sock = bind(host, port)
            self.bound_port = self.sock.getsockname()[1]
            self.token = token or secrets.token_urlsafe(24)
            self.cookie = f"{COOKIE_PREFIX}{self.bound_port}"  # cookies ignore ports: one name per server
            public = f"http://{url_host(host)}:{self.bound_port}"
            super().__init__(deck_command(repos), host=host, port=self.bound_port, title=title,
                             public_url=public)
            self.url = f"{public}/?token={self.token}"

        def allowed(self, request: web.Request) -> tuple[bool, bool]:
            """(allowed, token given in the query)."""
            given = request.query.get("token", "")
            if given and hmac.compare_digest(given.encode(), self.token.encode()):
                return True, True
            cookie = request.cookies.get(self.cookie, "")
            return bool(cookie) and hmac.compare_digest(cookie.encode(), self.token.encode()), False

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()

            @web.middleware
            async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
                ok, in_query = self.allowed(request)
                if not ok:
                    return web.Response(status=403, text=FORBIDDEN)
                response = await handler(request)
                if in_query and not response.prepared:
                    response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict", path="/")
                return response

            app.middlewares.append(guard)
            return app

        async def on_startup(self, app: web.Application) -> None:
            print(f"agentdeck serve: the deck is at {self.url}", flush=True)
            print("(anyone with this URL can drive your agents; Ctrl+C stops serving)", flush=True)

        def serve(self, debug: bool = False) -> None:
            import asyncio
            import signal

            self.debug = debug
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, self.request_exit)
                except (NotImplementedError, RuntimeError):
                    pass
            web.run_app(self._make_app(), sock=self.sock, handle_signals=False, loop=loop,
                        print=lambda *args: None)

    return TokenServer()


def cmd_serve(args: Any) -> int:
    from agentdeck.deck import Deck
    from agentdeck.errors import UsageError

    try:
        import textual_serve  # noqa: F401
    except ImportError as exc:
        raise UsageError("agentdeck serve needs textual-serve; install it with `pip install textual-serve`") from exc
    repos = list(args.repos or ([args.repo] if getattr(args, "repo", None) else [])) or [os.getcwd()]
    roots = []
    for repo in repos:  # fail here, once, rather than in every browser tab
        deck = Deck.open(repo)
        roots.append(str(Path(deck.repo.root)))
        deck.close()
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port; use 1-65535, or 0 for a free one")
    server = make_server(list(dict.fromkeys(roots)), host=args.host, port=args.port)
    server.serve()
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve the deck in a browser (127.0.0.1, a random token in the URL)",
                       description="Serve the deck over HTTP with textual-serve. Listens on 127.0.0.1 unless "
                                   "--host says otherwise; prints a URL with a random token; requests without "
                                   "it get 403.")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 exposes the deck to your network)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--repo", dest="repos", action="append", default=None, metavar="REPO",
                   help="a repository to show (repeat for several; default: the current one)")
    p.set_defaults(func=cmd_serve)
