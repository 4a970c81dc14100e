#!/usr/bin/env python3
"""A scripted agent CLI that reaches MCP servers the way Claude Code does, for deterministic tests.

Configured as an agent of kind ``claude`` (``[agents.claude] command = "python fake_mcp_cli.py"``),
it takes Claude's options, reads the ``agentdeck`` server of its ``--mcp-config`` file (``"type":
"http"`` with ``${VAR}`` expanded in its headers from its environment, or stdio), connects with the
real ``mcp`` client and lists the tools at start (retrying while the server does not answer, as the
CLIs do), then shows a Claude-like prompt box and reads lines:

  write TITLE    memory_write(TITLE) through the server; prints "wrote <id>"
  journal TEXT   memory_append_journal(TEXT)
  anything else  echoed as "got: ..."

A call that fails on a broken session reconnects once (a restarted server).  The prompt given
after ``--`` is printed as "argv prompt: ..." (or "argv prompt: none") and run like a typed line.

Environment: ``FAKE_NO_MCP=1`` never connects; ``FAKE_TOKEN_OUT=FILE`` writes the bearer token
it was given to FILE (so a test can look for it where it must not be).
"""

import json
import os
import re
import sys
import time

BOX = "─" * 40


def show(text: str = "") -> None:
    if text:
        print(text)
    print(BOX)
    print("❯ ")
    print(BOX, flush=True)


def server_spec(argv: list[str]) -> dict:
    if "--mcp-config" not in argv:
        return {}
    with open(argv[argv.index("--mcp-config") + 1], encoding="utf-8") as fh:
        return json.load(fh)["mcpServers"]["agentdeck"]


def port_open(url: str) -> bool:
    """The server accepts connections (a CLI's connection attempt, without the SDK's retries)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2):
            return True
    except OSError:
        return False


def expand(value: str) -> str:
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: os.environ.get(m.group(1), ""), value)


class Client:
    def __init__(self, spec: dict):
        self.spec = spec
        self.stack = None
        self.session = None

    async def connect(self, deadline: float) -> int:
        from contextlib import AsyncExitStack

        import anyio

        while True:
            stack = AsyncExitStack()
            try:
                if self.spec.get("type") == "http" and not port_open(self.spec["url"]):
                    raise ConnectionRefusedError(self.spec["url"])
                return await self._connect(stack)
            except Exception as exc:
                try:
                    await stack.aclose()
                except BaseException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not connect: {exc!r}") from None
                await anyio.sleep(0.3)

    async def _connect(self, stack) -> int:
        from mcp.client import ClientSession

        if self.spec.get("type") == "http":
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            headers = {k: expand(v) for k, v in (self.spec.get("headers") or {}).items()}
            client = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=30))
            read, write = await stack.enter_async_context(streamable_http_client(self.spec["url"], http_client=client))
        else:
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(command=self.spec["command"], args=self.spec.get("args", []),
                                           env={**os.environ, **self.spec.get("env", {})})
            read, write = await stack.enter_async_context(stdio_client(params))
        session = await stack.enter_async_context(ClientSession(read, write, read_timeout_seconds=20))
        await session.initialize()
        tools = await session.list_tools()
        self.stack, self.session = stack, session
        return len(tools.tools)

    async def call(self, tool: str, arguments: dict) -> dict:
        for attempt in (1, 2):
            try:
                if self.session is None:
                    await self.connect(time.monotonic() + 30)
                result = await self.session.call_tool(tool, arguments)
                if result.is_error:
                    return {"error": result.content[0].text if result.content else "error"}
                return result.structured_content or {}
            except Exception:
                if attempt == 2:
                    raise
                await self.close()
        return {}

    async def close(self) -> None:
        if self.stack is not None:
            try:
                await self.stack.aclose()
            except BaseException:
                pass
        self.stack = self.session = None


async def main() -> None:
    import anyio

    argv = sys.argv[1:]
    prompt = argv[argv.index("--") + 1] if "--" in argv else ""
    print(f"argv prompt: {prompt or 'none'}", flush=True)
    out = os.environ.get("FAKE_TOKEN_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(os.environ.get("AGENTDECK_MCP_TOKEN", ""))
    spec = server_spec(argv)
    client = Client(spec)
    if spec and os.environ.get("FAKE_NO_MCP") != "1":
        try:
            print(f"tools: {await client.connect(time.monotonic() + 60)} listed", flush=True)
        except RuntimeError as exc:
            print(f"mcp: {exc}", flush=True)
    show()

    async def handle(line: str) -> None:
        line = line.strip()
        if line.startswith("write "):
            result = await client.call("memory_write", {"title": line[6:], "body": "written by the fake CLI"})
            show(f"wrote {result.get('id') or result}")
        elif line.startswith("journal "):
            result = await client.call("memory_append_journal", {"text": line[8:]})
            show(f"journaled {result.get('id') or result}")
        elif line:
            show(f"got: {line}")

    if prompt:
        await handle(prompt)
    while True:
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            break
        try:
            await handle(line)
        except Exception as exc:
            show(f"error: {exc!r}")


if __name__ == "__main__":
    import anyio

    anyio.run(main)
