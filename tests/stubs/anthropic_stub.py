"""A stub of the Anthropic Messages API for Claude Code (``ANTHROPIC_BASE_URL``).

Serves ``POST /v1/messages`` (streaming SSE and plain JSON, text and ``tool_use``
answers) and ``POST /v1/messages/count_tokens``.  Anything else answers 404 and
is recorded in ``stub.unknown``.

    with AnthropicStub() as stub:
        stub.when("create the file", Reply.tool("Bash", {"command": "touch made.txt"}))
        stub.when(lambda r: r.is_tool_turn, Reply.text("Created it."))
        env["ANTHROPIC_BASE_URL"] = stub.url

Run alone: ``python -m tests.stubs.anthropic_stub --port 8765``.
"""

from __future__ import annotations

import argparse
import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

try:
    from ._server import Reply, StubRequest, StubServer, serve_forever, split_text
except ImportError:  # loaded as a top-level module (tests dir on sys.path)
    from stubs._server import Reply, StubRequest, StubServer, serve_forever, split_text  # type: ignore

__all__ = ["AnthropicStub", "Reply", "StubRequest"]


_NOT_TYPED = ("<system-reminder>", "[Request interrupted", "<command-", "<local-command")


def _content_text(content: Any) -> tuple[str, list[str], str]:
    """(all text, tool result texts, what the human typed) of one message's content."""
    if isinstance(content, str):
        return content, [], "" if content.startswith(_NOT_TYPED) else content
    texts: list[str] = []
    results: list[str] = []
    typed: list[str] = []
    for block in content or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text = block.get("text", "")
            texts.append(text)
            if not text.lstrip().startswith(_NOT_TYPED):
                typed.append(text)
        elif block.get("type") == "tool_result":
            inner = block.get("content")
            inner_text = inner if isinstance(inner, str) else _content_text(inner)[0]
            prefix = "[error] " if block.get("is_error") else ""
            results.append(prefix + inner_text)
            texts.append(prefix + inner_text)
    return "\n".join(texts), results, "\n".join(typed)


def parse_request(method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> StubRequest:
    last_text, results, typed = "", [], ""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            last_text, results, typed = _content_text(message.get("content"))
            break
    tools = [t.get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]
    return StubRequest(
        method=method, path=path, headers=headers, body=body, last_user_text=last_text,
        tool_results=results, tool_names=tools, model=str(body.get("model", "")),
        stream=bool(body.get("stream")), prompt=typed,
    )


class AnthropicStub(StubServer):
    def handle(self, h: BaseHTTPRequestHandler, method: str, path: str, body: dict[str, Any]) -> bool:
        if method == "POST" and path.endswith("/v1/messages/count_tokens"):
            size = len(json.dumps(body.get("messages", []))) // 4 + 1
            self.send_json(h, 200, {"input_tokens": size})
            return True
        if method == "POST" and path.endswith("/v1/messages"):
            req = parse_request(method, path, dict(h.headers.items()), body)
            self._answer(h, req, self.pick(req))
            return True
        if method == "GET" and path.endswith("/v1/models"):
            self.send_json(h, 200, {"data": [{"type": "model", "id": "claude-stub", "display_name": "Stub"}],
                                    "has_more": False, "first_id": "claude-stub", "last_id": "claude-stub"})
            return True
        return False

    # -------------------------------------------------------------- answers
    def _blocks(self, reply: Reply) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if reply.text_:
            blocks.append({"type": "text", "text": reply.text_})
        for call in reply.tools:
            blocks.append({"type": "tool_use", "id": call.call_id or self.next_id("toolu_stub"),
                           "name": call.name, "input": call.input})
        return blocks

    def _answer(self, h: BaseHTTPRequestHandler, req: StubRequest, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        if reply.error_status:
            kind = {429: "rate_limit_error", 529: "overloaded_error", 401: "authentication_error"}.get(
                reply.error_status, "api_error")
            error = {"type": kind, "message": reply.error_message}
            self.send_json(h, reply.error_status, {"type": "error", "error": error})
            return
        blocks = self._blocks(reply)
        stop = "tool_use" if reply.tools else "end_turn"
        message_id = self.next_id("msg_stub")
        model = req.model or "claude-stub"
        in_tokens = len(json.dumps(req.body.get("messages", []))) // 4 + 1
        out_tokens = sum(len(json.dumps(b)) for b in blocks) // 4 + 1
        usage = {"input_tokens": in_tokens, "output_tokens": out_tokens,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        if not req.stream:
            self.send_json(h, 200, {"id": message_id, "type": "message", "role": "assistant", "model": model,
                                    "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage},
                           {"request-id": message_id})
            return
        self.start_sse(h, {"request-id": message_id})
        self.sse(h, "message_start", {"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1}}})
        self.sse(h, "ping", {"type": "ping"})
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                self.sse(h, "content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {"type": "text", "text": ""}})
                for piece in split_text(block["text"]):
                    if reply.chunk_delay:
                        time.sleep(reply.chunk_delay)
                    self.sse(h, "content_block_delta", {"type": "content_block_delta", "index": index,
                                                        "delta": {"type": "text_delta", "text": piece}})
            else:
                self.sse(h, "content_block_start", {"type": "content_block_start", "index": index,
                                                    "content_block": {**block, "input": {}}})
                for piece in split_text(json.dumps(block["input"]), 40):
                    self.sse(h, "content_block_delta", {"type": "content_block_delta", "index": index,
                                                        "delta": {"type": "input_json_delta", "partial_json": piece}})
            self.sse(h, "content_block_stop", {"type": "content_block_stop", "index": index})
        self.sse(h, "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                      "usage": {"output_tokens": out_tokens}})
        self.sse(h, "message_stop", {"type": "message_stop"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Anthropic Messages API stub")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default="OK.", help="text of every answer")
    args = parser.parse_args(argv)
    serve_forever(AnthropicStub(port=args.port, default=Reply.text(args.reply)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
