"""`agentdeck serve` refuses requests from other origins and to other host names, token or not.

A page on another port of 127.0.0.1 is "same-site": the browser sends it the deck's SameSite cookie,
so the token alone cannot tell the deck's own page from another one.  A real `agentdeck serve` on
127.0.0.1, and a real HTTP/websocket client (aiohttp) sending what a browser would send.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time

import pytest

ORIGIN_RE = re.compile(r"(http://127\.0\.0\.1:(\d+))/\?token=(\S+)")


@pytest.fixture
def server(git_repo):
    pytest.importorskip("textual_serve")
    proc = subprocess.Popen([sys.executable, "-m", "agentdeck", "serve", "--repo", str(git_repo)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line, deadline = "", time.monotonic() + 60
        while "http://" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        match = ORIGIN_RE.search(line)
        assert match, f"no URL printed; got {line!r} (exit {proc.poll()})"
        origin, port, token = match.groups()
        yield origin, int(port), token
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cookie_of(port: int, token: str) -> str:
    return f"agentdeck_token_{port}={token}"


async def http(url: str, method: str = "GET", headers: dict | None = None) -> tuple[int, dict, str]:
    import aiohttp

    # skip_auto_headers: the client sends exactly the Host the test names (a DNS-rebound name).
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers or {}, allow_redirects=False,
                                   skip_auto_headers=["Origin"]) as resp:
            return resp.status, dict(resp.headers), await resp.text()


async def ws_status(url: str, headers: dict) -> int:
    """101 when the websocket handshake is accepted (then closed at once), else the refusal status."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as err:
            return err.status


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_websocket_needs_the_served_origin_even_with_the_cookie(server):
    origin, port, token = server
    ws = origin.replace("http://", "ws://") + "/ws"
    cookie = {"Cookie": cookie_of(port, token)}
    other_port = port + 1 if port < 65535 else port - 1
    # another page on this host (another port): the cookie travels, the origin does not match
    assert run(ws_status(ws, {**cookie, "Origin": f"http://127.0.0.1:{other_port}"})) == 403
    assert run(ws_status(ws, {**cookie, "Origin": "http://evil.example"})) == 403
    assert run(ws_status(ws, {**cookie, "Origin": "null"})) == 403
    assert run(ws_status(ws, {**cookie, "Origin": f"https://127.0.0.1:{port}"})) == 403
    # a browser always sends Origin on a websocket handshake: none means no browser page of ours
    assert run(ws_status(ws, cookie)) == 403
    # with the token in the query instead of the cookie: still the origin decides
    assert run(ws_status(f"{ws}?token={token}", {"Origin": f"http://127.0.0.1:{other_port}"})) == 403
    # the deck's own page: accepted (so the refusals above are the origin check, not a broken server)
    assert run(ws_status(ws, {**cookie, "Origin": origin})) == 101
    # and the origin alone is not enough: the token still counts
    assert run(ws_status(ws, {"Origin": origin})) == 403


def test_http_checks_host_origin_and_fetch_site_before_the_token(server):
    origin, port, token = server
    page = f"{origin}/?token={token}"
    status, headers, _ = run(http(page))
    assert status == 200  # a navigation: no Origin, as browsers send it
    assert "frame-ancestors 'none'" in headers.get("Content-Security-Policy", "")
    assert headers.get("X-Frame-Options") == "DENY"
    # DNS rebinding: a name of the attacker's that resolves to 127.0.0.1
    status, _, body = run(http(page, headers={"Host": f"rebind.example:{port}"}))
    assert status == 403 and "answers only as" in body and "rebind.example" in body
    assert run(http(page, headers={"Host": f"127.0.0.1:{port + 1 if port < 65535 else 1}"}))[0] == 403
    # a cross-origin fetch (it carries Origin) or a form post (Origin always) from another page
    status, _, body = run(http(page, headers={"Origin": "http://127.0.0.1:1"}))
    assert status == 403 and "http://127.0.0.1:1" in body
    assert run(http(page, "POST"))[0] == 403
    assert run(http(page, "POST", headers={"Origin": origin}))[0] == 405  # past the guard: no POST route
    # no Origin, but the browser says a same-site page embeds it (a script or a frame)
    script = f"{origin}/static/js/textual.js"
    cookie = {"Cookie": cookie_of(port, token)}
    for dest in ("script", "iframe"):
        hdrs = {**cookie, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": dest}
        assert run(http(script, headers=hdrs))[0] == 403, dest
    # what the deck's own page does, and a link followed from elsewhere into a new tab
    assert run(http(script, headers={**cookie, "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors",
                                      "Sec-Fetch-Dest": "script"}))[0] == 200
    assert run(http(page, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                                   "Sec-Fetch-Dest": "document"}))[0] == 200
    assert run(http(script, headers={**cookie, "Origin": origin}))[0] == 200
