"""The shared machinery of the API stubs: a threaded HTTP server, a request log, rules.

A test scripts a stub with rules, checked in order for each model request:

    stub.when("make the file", Reply.tool("Bash", {"command": "touch x"}))
    stub.when(lambda req: req.is_tool_turn, Reply.text("Done."))

``when`` takes a substring of the request's last user turn (its text, tool
results included) or a predicate over :class:`StubRequest`; ``times`` limits how
often a rule fires.  Requests no rule answers get ``stub.default`` (a short text).
Side requests of the CLIs (titles, topic checks, quota probes: requests without
tools) only match rules made with ``side=True``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ToolCall:
    name: str
    input: dict[str, Any]
    call_id: str = ""


@dataclass
class Reply:
    """One model answer: some text and/or tool calls, or an HTTP error."""

    text_: str = ""
    tools: list[ToolCall] = field(default_factory=list)
    delay: float = 0.0  # seconds before the first byte
    chunk_delay: float = 0.0  # seconds between streamed text pieces
    error_status: int = 0
    error_message: str = ""

    @classmethod
    def text(cls, text: str, delay: float = 0.0, chunk_delay: float = 0.0) -> Reply:
        return cls(text_=text, delay=delay, chunk_delay=chunk_delay)

    @classmethod
    def tool(cls, name: str, input: dict[str, Any], text: str = "", delay: float = 0.0) -> Reply:
        return cls(text_=text, tools=[ToolCall(name, dict(input))], delay=delay)

    @classmethod
    def error(cls, status: int, message: str = "stub error") -> Reply:
        return cls(error_status=status, error_message=message)


@dataclass
class StubRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    last_user_text: str  # text of the last user turn, tool results included
    tool_results: list[str]  # contents of tool results in the last user turn
    tool_names: list[str]  # names of the tools the request offers
    model: str = ""
    stream: bool = False
    prompt: str = ""  # what the human typed in the last user turn (no tool results, no reminders)
    answered_by: str = ""  # which rule answered ("default" / "side" / rule index)

    @property
    def is_tool_turn(self) -> bool:
        """The agent loop came back with tool results, and the human typed nothing new."""
        return bool(self.tool_results) and not self.prompt.strip()

    @property
    def is_main(self) -> bool:
        """A turn of the agent loop (it offers tools), not a side request."""
        return bool(self.tool_names)


Matcher = str | Callable[[StubRequest], bool]


@dataclass
class Rule:
    match: Matcher
    reply: Reply
    times: int | None = None
    side: bool = False
    used: int = 0

    def matches(self, req: StubRequest) -> bool:
        if self.times is not None and self.used >= self.times:
            return False
        if not self.side and not req.is_main:
            return False
        if callable(self.match):
            return bool(self.match(req))
        return self.match in req.last_user_text


class StubServer:
    """Base class: subclasses parse requests and write replies in their API's format."""

    def __init__(self, port: int = 0, default: Reply | None = None):
        self.rules: list[Rule] = []
        self.requests: list[StubRequest] = []
        self.unknown: list[tuple[str, str]] = []  # (method, path) nobody handled
        self.default = default or Reply.text("OK.")
        self.side_default = Reply.text("OK")
        self._lock = threading.Lock()
        self._seq = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.headers.get("Content-Encoding") == "zstd":  # pragma: no cover - not sent today
                    return {}
                if raw and self.headers.get("Content-Encoding") == "gzip":
                    import gzip

                    raw = gzip.decompress(raw)
                try:
                    return json.loads(raw) if raw else {}
                except ValueError:
                    return {}

            def do_GET(self) -> None:
                stub._dispatch(self, "GET", {})

            def do_POST(self) -> None:
                stub._dispatch(self, "POST", self._body())

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -------------------------------------------------------------- scripting
    def when(self, match: Matcher, reply: Reply, times: int | None = None, side: bool = False) -> StubServer:
        with self._lock:
            self.rules.append(Rule(match, reply, times, side))
        return self

    def main_requests(self) -> list[StubRequest]:
        with self._lock:
            return [r for r in self.requests if r.is_main]

    def pick(self, req: StubRequest) -> Reply:
        with self._lock:
            self.requests.append(req)
            for index, rule in enumerate(self.rules):
                if rule.matches(req):
                    rule.used += 1
                    req.answered_by = str(index)
                    return rule.reply
            req.answered_by = "default" if req.is_main else "side"
            return self.default if req.is_main else self.side_default

    def next_id(self, prefix: str) -> str:
        with self._lock:
            self._seq += 1
            return f"{prefix}{self._seq:06d}{int(time.time() * 1000) % 100000:05d}"

    # -------------------------------------------------------------- HTTP helpers
    def _dispatch(self, h: BaseHTTPRequestHandler, method: str, body: dict[str, Any]) -> None:
        path = h.path.split("?", 1)[0]
        try:
            handled = self.handle(h, method, path, body)
        except (BrokenPipeError, ConnectionResetError):
            return
        if not handled:
            with self._lock:
                self.unknown.append((method, h.path))
            self.send_json(h, 404, {"error": {"type": "not_found_error", "message": f"stub: no {method} {path}"}})

    def handle(self, h: BaseHTTPRequestHandler, method: str, path: str, body: dict[str, Any]) -> bool:
        raise NotImplementedError

    @staticmethod
    def send_json(h: BaseHTTPRequestHandler, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def start_sse(h: BaseHTTPRequestHandler, headers: dict[str, str] | None = None) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.close_connection = True

    @staticmethod
    def sse(h: BaseHTTPRequestHandler, event: str | None, data: Any) -> None:
        chunk = (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"
        h.wfile.write(chunk.encode())
        h.wfile.flush()


def split_text(text: str, size: int = 12) -> list[str]:
    """Pieces of *text* to stream (keeps the stream realistic: several deltas)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def serve_forever(stub: StubServer) -> None:
    """Run a stub in the foreground (``python -m tests.stubs.X --port N``)."""
    stub.start()
    print(f"{type(stub).__name__} listening on {stub.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.stop()
