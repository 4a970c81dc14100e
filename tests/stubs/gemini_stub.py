"""A stub of the Gemini API for Gemini CLI (``GOOGLE_GEMINI_BASE_URL`` + ``GEMINI_API_KEY``).

Serves ``POST /v1beta/models/<model>:streamGenerateContent`` (SSE),
``:generateContent`` and ``:countTokens``; text and ``functionCall`` answers.
Run alone: ``python -m tests.stubs.gemini_stub --port 8767``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

try:
    from ._server import Reply, StubRequest, StubServer, serve_forever, split_text
except ImportError:  # loaded as a top-level module (tests dir on sys.path)
    from stubs._server import Reply, StubRequest, StubServer, serve_forever, split_text  # type: ignore

__all__ = ["GeminiStub", "Reply", "StubRequest"]

_ROUTE = re.compile(r"/v1(?:beta|alpha)?\d*/models/([^/:]+):(streamGenerateContent|generateContent|countTokens)$")


def parse_request(method: str, path: str, model: str, headers: dict[str, str], body: dict[str, Any]) -> StubRequest:
    texts: list[str] = []
    results: list[str] = []
    contents = body.get("contents") or []
    if contents and isinstance(contents[-1], dict) and contents[-1].get("role", "user") == "user":
        for part in contents[-1].get("parts") or []:
            if "text" in part:
                texts.append(str(part["text"]))
            elif "functionResponse" in part:
                results.append(json.dumps(part["functionResponse"].get("response", {})))
    tools = []
    for tool in body.get("tools") or []:
        for decl in tool.get("functionDeclarations") or []:
            tools.append(decl.get("name", ""))
    return StubRequest(
        method=method, path=path, headers=headers, body=body, last_user_text="\n".join(texts + results),
        tool_results=results, tool_names=tools, model=model, stream="stream" in path,
        prompt=texts[-1] if texts else "",
    )


class GeminiStub(StubServer):
    def handle(self, h: BaseHTTPRequestHandler, method: str, path: str, body: dict[str, Any]) -> bool:
        m = _ROUTE.search(path)
        if method != "POST" or not m:
            return False
        model, action = m.group(1), m.group(2)
        if action == "countTokens":
            self.send_json(h, 200, {"totalTokens": len(json.dumps(body)) // 4 + 1})
            return True
        req = parse_request(method, path, model, dict(h.headers.items()), body)
        self._answer(h, req, self.pick(req), stream=action == "streamGenerateContent")
        return True

    def _answer(self, h: BaseHTTPRequestHandler, req: StubRequest, reply: Reply, stream: bool) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        if reply.error_status:
            self.send_json(h, reply.error_status, {"error": {"code": reply.error_status, "message": reply.error_message,
                                                             "status": "INTERNAL"}})
            return
        usage = {"promptTokenCount": len(json.dumps(req.body)) // 4 + 1, "candidatesTokenCount": 5,
                 "totalTokenCount": len(json.dumps(req.body)) // 4 + 6}

        def chunk(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": req.model or "gemini-stub"}

        calls = [{"functionCall": {"name": c.name, "args": c.input}} for c in reply.tools]
        if not stream:
            parts = ([{"text": reply.text_}] if reply.text_ else []) + calls
            self.send_json(h, 200, chunk(parts, "STOP"))
            return
        self.start_sse(h)
        pieces = split_text(reply.text_) if reply.text_ else []
        for index, piece in enumerate(pieces):
            if reply.chunk_delay:
                time.sleep(reply.chunk_delay)
            last = index == len(pieces) - 1 and not calls
            self.sse(h, None, chunk([{"text": piece}], "STOP" if last else None))
        if calls or not pieces:
            self.sse(h, None, chunk(calls or [{"text": ""}], "STOP"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Gemini API stub")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default="OK.", help="text of every answer")
    args = parser.parse_args(argv)
    serve_forever(GeminiStub(port=args.port, default=Reply.text(args.reply)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
