"""`agentdeck serve`: the deck in a real headless Chromium, behind its token.

The browser is driven through the Chrome DevTools protocol (aiohttp's websocket
client).  Proof that the agents show: the terminal output the served deck sends
to that browser tab (textual-serve's websocket frames, as Chromium received
them) holds each agent's row; xterm.js draws them on a canvas, so the DOM alone
cannot say.  Without the token: 403 for the page, its scripts and its websocket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support import retry_until
from tui_support import open_deck

pytestmark = pytest.mark.slow
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-allow-origins=*"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("AGENTDECK_REQUIRE_BROWSER") == "1":
            pytest.fail("AGENTDECK_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install -y chromium)")
        pytest.skip("the browser test needs Debian's chromium (apt-get install -y chromium)")
    return path


def http_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode("utf-8", "replace")


@pytest.fixture
def served(fake_repo):
    pytest.importorskip("textual_serve")
    deck = open_deck(fake_repo)
    deck.new("north-star")
    deck.new("south-wind")
    deck.close()
    proc = subprocess.Popen([sys.executable, "-m", "agentdeck", "serve", "--repo", str(fake_repo)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 20
        while "http://" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        match = re.search(r"(http://\S+)", line)
        assert match, f"no URL printed; got {line!r} (exit {proc.poll()})"
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_serve_listens_on_loopback_with_a_token_and_refuses_without(served):
    url = served
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]{20,}", url), url
    base, _token = url.split("/?token=")
    status, headers, body = http_status(url)
    assert status == 200 and "Set-Cookie" in headers and "HttpOnly" in headers["Set-Cookie"]
    assert "SameSite=Strict" in headers["Set-Cookie"]
    cookie = headers["Set-Cookie"].split(";")[0]
    assert http_status(base + "/static/js/textual.js", {"Cookie": cookie})[0] == 200
    for path in ("/", "/?token=wrong", "/static/js/textual.js", "/ws", "/download/x", "/?token="):
        status, _h, body = http_status(base + path)
        assert status == 403, (path, status)
        assert "forbidden" in body
    assert http_status(base + "/", {"Cookie": cookie.split("=")[0] + "=nope"})[0] == 403


def test_serve_shows_the_agents_in_headless_chromium_and_refuses_without_token(served):
    binary = chromium()
    url = served
    base = url.split("/?token=")[0]
    profile = tempfile.mkdtemp(prefix="adchrome-")
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        retry_until(lambda: port_file.is_file() and port_file.read_text().strip(), timeout=20)
        devtools = int(port_file.read_text().split()[0])
        result = asyncio.run(asyncio.wait_for(drive(devtools, base, url), 45))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
    refused_status, refused_text, screen = result
    assert refused_status == 403 and "forbidden" in refused_text
    assert "north-star" in screen and "south-wind" in screen, screen[-3000:]
    assert "agentdeck" in screen and "2 agents" in screen


async def drive(devtools: int, base: str, url: str) -> tuple[int, str, str]:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{devtools}/json/list") as resp:
            targets = await resp.json(content_type=None)
        page = next(t for t in targets if t.get("type") == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            cdp = Cdp(ws)
            reader = asyncio.create_task(cdp.read())
            try:
                await cdp.call("Network.enable")
                await cdp.call("Page.enable")
                # without the token: the page is refused
                cdp.statuses.clear()
                await cdp.call("Page.navigate", url=base + "/")
                await cdp.wait(lambda: cdp.loaded, "refused page loaded")
                status = cdp.statuses.get(base + "/", 0)
                text = (await cdp.call("Runtime.evaluate", expression="document.body.innerText",
                                       returnByValue=True))["result"]["value"]
                # with the token: the deck, streamed over the websocket into xterm.js
                cdp.loaded = False
                await cdp.call("Page.navigate", url=url)
                await cdp.wait(lambda: "north-star" in cdp.screen() and "south-wind" in cdp.screen(),
                               "the agents in the served deck", timeout=35)
                return status, text, cdp.screen()
            finally:
                reader.cancel()


class Cdp:
    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future] = {}
        self.statuses: dict[str, int] = {}
        self.frames: list[str] = []
        self.loaded = False

    async def call(self, method: str, **params):
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        return await fut

    async def read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                fut = self.pending.pop(data["id"])
                if "error" in data:
                    fut.set_exception(RuntimeError(str(data["error"])))
                else:
                    fut.set_result(data.get("result", {}))
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Network.responseReceived":
                self.statuses[params["response"]["url"]] = params["response"]["status"]
            elif method == "Page.loadEventFired":
                self.loaded = True
            elif method == "Network.webSocketFrameReceived":
                frame = params["response"]
                payload = frame["payloadData"]
                if frame.get("opcode") == 2:
                    payload = base64.b64decode(payload).decode("utf-8", "replace")
                self.frames.append(payload)

    def screen(self) -> str:
        """What the served deck wrote to the browser, escape sequences removed."""
        return ANSI.sub("", "".join(self.frames))

    async def wait(self, fn, what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not fn():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; frames so far: {self.screen()[-2000:]!r}")
            await asyncio.sleep(0.1)
