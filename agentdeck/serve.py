"""``agentdeck serve``: the deck in a browser (textual-serve), behind a random token.

The server listens on 127.0.0.1 (another interface only with an explicit
``--host``) on a free port, and prints one URL holding a random token.  Every
request must carry that token, in the query (``?token=``) or in the cookie the
server sets when it sees a valid one; anything else gets 403.  Each browser tab
runs its own ``agentdeck`` deck process (textual-serve's model) over the same
repositories and tmux server.

A cookie alone does not prove the request comes from the deck's own page: browsers
send it from any page on the same host (SameSite ignores ports), so before the token
every request must also be addressed to the served origin -- the printed URL's
``http://host:port`` -- in its ``Host`` header (a DNS-rebound name is refused), and
carry that origin in ``Origin`` when it has one.  A request without ``Origin`` passes
only where a browser never sends one: a plain ``GET``/``HEAD`` that is not a
websocket upgrade, and, where the browser says where it comes from
(``Sec-Fetch-Site``), only from this origin or as a top-level navigation.  Pages
may not be framed (``frame-ancestors 'none'``).

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
from urllib.parse import urlsplit

COOKIE_PREFIX = "agentdeck_token_"
FORBIDDEN = "agentdeck serve: forbidden; open the exact URL that `agentdeck serve` printed (it holds the token)\n"
WRONG_HOST = ("agentdeck serve: forbidden: this server answers only as {served} (the request named {given!r}); "
              "open the exact URL that `agentdeck serve` printed\n")
WRONG_ORIGIN = ("agentdeck serve: forbidden: a request from {given!r}, not from {served}; "
                "open the exact URL that `agentdeck serve` printed in its own tab\n")


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


def authority(text: str, default_port: int = 80) -> tuple[str, int] | None:
    """(lower-case host, port) of a ``Host`` header value, or None when it is not one."""
    if not text or any(c in text for c in "/?#@ \t\\"):
        return None
    try:
        parts = urlsplit(f"//{text}")
        return (parts.hostname or "").lower(), parts.port or default_port
    except ValueError:
        return None


def same_origin(origin: str, served: str) -> bool:
    """Is the ``Origin`` header value *origin* the served origin (``http://host:port``)?"""
    scheme, _, rest = origin.partition("://")
    want_scheme, _, want_rest = served.partition("://")
    return (scheme.lower() == want_scheme.lower() and authority(rest) is not None
            and authority(rest) == authority(want_rest))


def origin_problem(method: str, headers: Any, served: str) -> str | None:
    """Why a request with *headers* may not come from the served origin *served* (``http://h:p``), or None.

    A browser sends ``Origin`` with every websocket handshake and every non-GET request, and with
    cross-origin fetches; it is absent only from plain same-origin reads and navigations, which
    ``Sec-Fetch-Site`` (sent by current browsers) then confirms.
    """
    origin = headers.get("Origin")
    if origin is not None:
        return None if same_origin(origin, served) else origin
    upgrade = headers.get("Upgrade", "").lower() == "websocket"
    if upgrade or method not in ("GET", "HEAD"):
        return "a request without Origin"
    site = headers.get("Sec-Fetch-Site")
    if site is None or site in ("same-origin", "none"):
        return None
    if headers.get("Sec-Fetch-Mode") == "navigate" and headers.get("Sec-Fetch-Dest") == "document":
        return None  # a link followed from another site opens the deck in its own tab
    return f"a {site} page"


def make_server(repos: list[str], host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                title: str = "agentdeck") -> Any:
    """A ready :class:`TokenServer` (bound, not yet serving)."""
    from aiohttp import web
    from textual_serve.server import Server

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
            self.origin = public  # the served origin: the pages, scripts and websocket all live here
            self.served = authority(public[len("http://"):])

        def refused(self, request: web.Request) -> str | None:
            """The 403 text for a request not addressed to, or not coming from, the served origin."""
            host = request.headers.get("Host", "")
            if authority(host) != self.served:
                return WRONG_HOST.format(served=self.origin, given=host)
            why = origin_problem(request.method, request.headers, self.origin)
            if why is not None:
                return WRONG_ORIGIN.format(served=self.origin, given=why)
            return None

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
                refused = self.refused(request)
                if refused is not None:
                    return web.Response(status=403, text=refused)
                ok, in_query = self.allowed(request)
                if not ok:
                    return web.Response(status=403, text=FORBIDDEN)
                response = await handler(request)
                if not response.prepared:
                    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
                    response.headers["X-Frame-Options"] = "DENY"
                    if in_query:
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
