"""A stub of the OpenAI APIs for Codex (Responses API) and chat clients (Chat Completions).

Serves ``POST /v1/responses`` (streaming SSE; messages and ``function_call``
items), ``POST /v1/chat/completions`` (streaming and plain, ``tool_calls``) and
``GET /v1/models``.  The ``/v1`` prefix is optional (Codex appends ``/responses``
to its provider's ``base_url``).  Anything else answers 404 and is recorded in
``stub.unknown``.

Codex points at it through a custom provider in ``$CODEX_HOME/config.toml``::

    model_provider = "stub"
    [model_providers.stub]
    name = "stub"
    base_url = "<stub.url>/v1"
    wire_api = "responses"
    env_key = "STUB_API_KEY"

Run alone: ``python -m tests.stubs.openai_stub --port 8766``.
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

__all__ = ["OpenAIStub", "Reply", "StubRequest"]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for piece in content or []:
        if isinstance(piece, dict) and isinstance(piece.get("text"), str):
            parts.append(piece["text"])
    return "\n".join(parts)


def parse_responses_request(method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> StubRequest:
    """The last turn of a Responses API request.

    Trailing user messages make a human turn; otherwise the trailing tool outputs
    (after the model's last calls) make a tool turn.
    """
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    items = [i for i in items or [] if isinstance(i, dict)]
    texts: list[str] = []
    results: list[str] = []
    index = len(items) - 1
    while index >= 0 and items[index].get("type", "message") == "message" and items[index].get("role") == "user":
        texts.insert(0, _text_of(items[index].get("content")))
        index -= 1
    if not texts:
        while index >= 0 and items[index].get("type") in ("function_call_output", "custom_tool_call_output"):
            output = items[index].get("output")
            if isinstance(output, dict):
                output = output.get("content", json.dumps(output))
            elif isinstance(output, list):
                output = _text_of(output)
            results.insert(0, str(output))
            index -= 1
    tools = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            tools.append(tool.get("name") or (tool.get("function") or {}).get("name") or tool.get("type", ""))
    prompt = texts[-1] if texts else ""
    return StubRequest(
        method=method, path=path, headers=headers, body=body, last_user_text="\n".join(texts + results),
        tool_results=results, tool_names=tools, model=str(body.get("model", "")), stream=bool(body.get("stream")),
        prompt=prompt,
    )


def parse_chat_request(method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> StubRequest:
    texts: list[str] = []
    results: list[str] = []
    for message in reversed(body.get("messages") or []):
        role = message.get("role")
        if role == "user" and not results:
            texts.insert(0, _text_of(message.get("content")))
        elif role == "tool" and not texts:
            results.insert(0, _text_of(message.get("content")))
        else:
            break
    tools = [(t.get("function") or {}).get("name", "") for t in body.get("tools") or [] if isinstance(t, dict)]
    req = StubRequest(
        method=method, path=path, headers=headers, body=body, last_user_text="\n".join(texts + results),
        tool_results=results, tool_names=tools, model=str(body.get("model", "")), stream=bool(body.get("stream")),
        prompt=texts[-1] if texts else "",
    )
    return req


class OpenAIStub(StubServer):
    #: Chat clients (aider, llm) send no tools: answer their requests as main turns.
    chat_requests_are_main = True

    def handle(self, h: BaseHTTPRequestHandler, method: str, path: str, body: dict[str, Any]) -> bool:
        route = path[3:] if path.startswith("/v1/") else path
        if method == "POST" and route == "/responses":
            req = parse_responses_request(method, path, dict(h.headers.items()), body)
            self._answer_responses(h, req, self.pick(req))
            return True
        if method == "POST" and route == "/chat/completions":
            req = parse_chat_request(method, path, dict(h.headers.items()), body)
            if self.chat_requests_are_main and not req.tool_names:
                req.tool_names = ["<chat>"]
            self._answer_chat(h, req, self.pick(req))
            return True
        if method == "GET" and route == "/models":
            self.send_json(h, 200, {"object": "list", "data": [
                {"id": "stub-model", "object": "model", "created": 0, "owned_by": "stub"}]})
            return True
        return False

    def _error(self, h: BaseHTTPRequestHandler, reply: Reply) -> None:
        kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(reply.error_status, "server_error")
        self.send_json(h, reply.error_status, {"error": {"message": reply.error_message, "type": kind,
                                                         "code": kind, "param": None}})

    # -------------------------------------------------------------- Responses API
    def _answer_responses(self, h: BaseHTTPRequestHandler, req: StubRequest, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        if reply.error_status:
            self._error(h, reply)
            return
        response_id = self.next_id("resp_stub")
        model = req.model or "stub-model"
        items: list[dict[str, Any]] = []
        if reply.text_:
            items.append({"type": "message", "id": self.next_id("msg_stub"), "role": "assistant", "status": "completed",
                          "content": [{"type": "output_text", "text": reply.text_, "annotations": []}]})
        for call in reply.tools:
            items.append({"type": "function_call", "id": self.next_id("fc_stub"), "status": "completed",
                          "call_id": call.call_id or self.next_id("call_stub"), "name": call.name,
                          "arguments": json.dumps(call.input)})
        in_tokens = len(json.dumps(req.body.get("input", []))) // 4 + 1
        out_tokens = sum(len(json.dumps(i)) for i in items) // 4 + 1
        usage = {"input_tokens": in_tokens, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": in_tokens + out_tokens}
        base = {"id": response_id, "object": "response", "created_at": int(time.time()), "model": model,
                "output": [], "status": "in_progress", "usage": None}
        if not req.stream:
            self.send_json(h, 200, {**base, "status": "completed", "output": items, "usage": usage})
            return
        seq = 0

        def emit(kind: str, **data: Any) -> None:
            nonlocal seq
            self.sse(h, kind, {"type": kind, "sequence_number": seq, **data})
            seq += 1

        self.start_sse(h)
        emit("response.created", response=base)
        emit("response.in_progress", response=base)
        for index, item in enumerate(items):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                emit("response.output_item.added", output_index=index,
                     item={**item, "status": "in_progress", "content": []})
                part = {"type": "output_text", "text": "", "annotations": []}
                emit("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part)
                for piece in split_text(text):
                    if reply.chunk_delay:
                        time.sleep(reply.chunk_delay)
                    emit("response.output_text.delta", item_id=item["id"], output_index=index, content_index=0,
                         delta=piece)
                emit("response.output_text.done", item_id=item["id"], output_index=index, content_index=0, text=text)
                emit("response.content_part.done", item_id=item["id"], output_index=index, content_index=0,
                     part={**part, "text": text})
            else:
                emit("response.output_item.added", output_index=index,
                     item={**item, "status": "in_progress", "arguments": ""})
                emit("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                     delta=item["arguments"])
                emit("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                     arguments=item["arguments"])
            emit("response.output_item.done", output_index=index, item=item)
        emit("response.completed", response={**base, "status": "completed", "output": items, "usage": usage})

    # -------------------------------------------------------------- Chat Completions
    def _answer_chat(self, h: BaseHTTPRequestHandler, req: StubRequest, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        if reply.error_status:
            self._error(h, reply)
            return
        chat_id = self.next_id("chatcmpl-stub")
        model = req.model or "stub-model"
        created = int(time.time())
        calls = [{"id": c.call_id or self.next_id("call_stub"), "type": "function",
                  "function": {"name": c.name, "arguments": json.dumps(c.input)}} for c in reply.tools]
        finish = "tool_calls" if calls else "stop"
        prompt_tokens = len(json.dumps(req.body.get("messages", []))) // 4 + 1
        completion_tokens = len(reply.text_) // 4 + 1
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        if not req.stream:
            message: dict[str, Any] = {"role": "assistant", "content": reply.text_ or None}
            if calls:
                message["tool_calls"] = calls
            self.send_json(h, 200, {"id": chat_id, "object": "chat.completion", "created": created, "model": model,
                                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                                    "usage": usage})
            return

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> None:
            self.sse(h, None, {"id": chat_id, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra})

        self.start_sse(h)
        chunk({"role": "assistant", "content": ""})
        for piece in split_text(reply.text_) if reply.text_ else []:
            if reply.chunk_delay:
                time.sleep(reply.chunk_delay)
            chunk({"content": piece})
        for index, call in enumerate(calls):
            chunk({"tool_calls": [{"index": index, **call}]})
        chunk({}, finish)
        if (req.body.get("stream_options") or {}).get("include_usage"):
            self.sse(h, None, {"id": chat_id, "object": "chat.completion.chunk", "created": created, "model": model,
                               "choices": [], "usage": usage})
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI Responses / Chat Completions API stub")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default="OK.", help="text of every answer")
    args = parser.parse_args(argv)
    serve_forever(OpenAIStub(port=args.port, default=Reply.text(args.reply)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
