"""The repository's MCP server over HTTP beside one stdio server per agent, in one run.

    python bench/bench_mcp.py                       # every figure (the real Claude CLI if installed)
    python bench/bench_mcp.py --only connect,memory --rounds 10
    python bench/bench_mcp.py --claude-launches 5   # fewer real-CLI launches on a slow machine

1. connect-to-``tools/list``: a new client session on the warm HTTP server (initialize + list)
   beside spawning ``agentdeck mcp`` over stdio (spawn + initialize + list); and the stdio
   server's time to answer ``initialize`` through the fast dispatch beside the full parser
   (every command's modules imported first), with ``-X importtime``'s top entries;
2. memory added per agent with 1, 10 and 30 agents: the HTTP server's RSS/PSS with that many
   agents holding an open session, beside that many stdio server processes;
3. ``memory_search`` round trip with 10,000 notes and 8 agents calling at once (8 processes,
   each its own token, session and kept-alive connection, raw HTTP as the CLIs send it);
4. first-turn tool availability with the real Claude Code CLI (against the local Anthropic
   stub): does the first API request carrying tools list ``mcp__agentdeck__*``? Over N launches
   through agentdeck (HTTP, prompt typed after ``tools/list``), and a few the old way
   (``AGENTDECK_MCP_HTTP=0``: stdio, prompt on the command line);
5. ``agentdeck new`` wall time with the server cold (``new`` starts it), warm, and with no
   server at all (``AGENTDECK_MCP_HTTP=0``), rounds interleaved, for an agent of kind ``claude``
   whose command only sleeps (so the figure is agentdeck's own).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, cleanup, isolate, pct, summary

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}}}
LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def ms(v: float) -> str:
    return f"{v * 1000:.0f} ms"


def repo_with_fake_claude(tmp: Path, name: str = "repo") -> Path:
    from support import make_repo

    fake = ROOT / "tests" / "fake_mcp_cli.py"
    config = (f'[deck]\ndefault_agent = "claude"\n'
              f'[agents.claude]\nkind = "claude"\ncommand = "{sys.executable} {fake}"\n')
    return make_repo(tmp / name, {"README.md": "x\n", ".agentdeck.toml": config})


def agent_rows(repo: Path, names: list[str]) -> dict[str, str]:
    """Live agent rows with tokens (no panes: marked as launched by this process)."""
    from mcp_support import agent_row

    from agentdeck import paths
    from agentdeck.store import Store

    store = Store(paths.find_repo(repo).db_path)
    tokens = {n: agent_row(store, n, repo) for n in names}
    store.close()
    return tokens


# ----------------------------------------------------------------------------- 1. connect


def stdio_round(repo: Path, argv: list[str]) -> tuple[float, float]:
    """(spawn -> initialize answered, spawn -> tools/list answered) for one stdio server."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdin and proc.stdout
    proc.stdin.write(json.dumps(INIT) + "\n")
    proc.stdin.flush()
    proc.stdout.readline()
    t_init = time.perf_counter() - t0
    proc.stdin.write(json.dumps(INITIALIZED) + "\n" + json.dumps(LIST) + "\n")
    proc.stdin.flush()
    while '"id":2' not in proc.stdout.readline().replace(" ", ""):
        pass
    t_list = time.perf_counter() - t0
    proc.stdin.close()
    proc.wait(timeout=30)
    return t_init, t_list


def raw_request(sock, port: int, method: str, body: dict | None, headers: dict[str, str]) -> tuple[str, bytes]:
    """One HTTP/1.1 request on a kept-alive socket, sent in one write, as the CLIs' clients do."""
    import re

    data = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + f"Content-Length: {len(data)}\r\n\r\n")
    sock.sendall(head.encode() + data)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    raw_headers, rest = buf.split(b"\r\n\r\n", 1)
    lower = raw_headers.lower()
    if b"transfer-encoding: chunked" in lower:
        while not rest.endswith(b"0\r\n\r\n"):
            rest += sock.recv(65536)
    else:
        match = re.search(rb"content-length: (\d+)", lower)
        while len(rest) < (int(match.group(1)) if match else 0):
            rest += sock.recv(65536)
    return raw_headers.decode("latin-1"), rest


def session_headers(head: str, headers: dict[str, str]) -> None:
    """The follow-up headers after ``initialize``: the protocol version, and the session id when
    the server hands one out (agentdeck's server is stateless and does not)."""
    headers["Mcp-Protocol-Version"] = "2025-06-18"
    for line in head.split("\r\n"):
        if line.lower().startswith("mcp-session-id"):
            headers["Mcp-Session-Id"] = line.split(":", 1)[1].strip()


def raw_connect_to_list(port: int, token: str) -> float:
    """TCP connect, initialize, initialized, tools/list on one connection (what a CLI's client does)."""
    import socket

    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    head, _ = raw_request(sock, port, "POST", INIT, headers)
    session_headers(head, headers)
    raw_request(sock, port, "POST", INITIALIZED, headers)
    _, body = raw_request(sock, port, "POST", LIST, headers)
    elapsed = time.perf_counter() - t0
    assert b"memory_search" in body, body[:200]
    if "Mcp-Session-Id" in headers:
        raw_request(sock, port, "DELETE", None, headers)
    sock.close()
    return elapsed


def bench_connect(tmp: Path, rounds: int) -> dict:
    import anyio
    from mcp_support import http_session, start_server

    from agentdeck import paths
    from agentdeck.store import Store

    repo = repo_with_fake_claude(tmp, "connect")
    tokens = agent_rows(repo, ["bench"])
    store = Store(paths.find_repo(repo).db_path)
    port = start_server(repo, store)

    async def one() -> float:
        t0 = time.perf_counter()
        async with http_session(port, tokens["bench"]) as s:
            await s.list_tools()
            return time.perf_counter() - t0

    async def many() -> list[float]:
        await one()  # the client's own first-use imports are not the server's cost
        return [await one() for _ in range(rounds)]

    http = anyio.run(many)
    raw_connect_to_list(port, tokens["bench"])
    raw = [raw_connect_to_list(port, tokens["bench"]) for _ in range(rounds)]
    fast = [stdio_round(repo, [sys.executable, "-m", "agentdeck", "mcp"]) for _ in range(rounds)]
    full = [stdio_round(repo, [sys.executable, "-c", "import sys; from agentdeck.cli import _main; "
                               "sys.exit(_main(['mcp']))"]) for _ in range(max(3, rounds // 2))]
    imports = subprocess.run([sys.executable, "-X", "importtime", "-m", "agentdeck", "mcp"], cwd=repo,
                             input=json.dumps(INIT) + "\n", capture_output=True, text=True).stderr
    top = []
    for line in imports.splitlines():
        parts = line.split("|")
        top_level = parts[2].startswith(" ") and not parts[2].startswith("  ") if len(parts) == 3 else False
        if top_level and parts[1].strip().isdigit():
            top.append((int(parts[1]), parts[2].strip()))
    top.sort(reverse=True)
    own = sum(us for us, name in top if name.startswith("agentdeck"))
    sdk = sum(us for us, name in top if name.split(".")[0] in ("mcp", "mcp_types", "pydantic", "anyio"))
    result = {
        "http_warm_raw_client": summary(raw),
        "http_warm_python_sdk_client": summary(http),
        "stdio_spawn_to_list": summary([t[1] for t in fast]),
        "stdio_spawn_to_initialize_fast_dispatch": summary([t[0] for t in fast]),
        "stdio_spawn_to_initialize_full_parser": summary([t[0] for t in full]),
        "importtime_top": [f"{name} {us / 1000:.0f} ms" for us, name in top[:6]],
        "importtime_agentdeck_ms": round(own / 1000), "importtime_sdk_ms": round(sdk / 1000),
    }
    from mcp_support import stop_server

    stop_server(repo, store)
    return result


# ----------------------------------------------------------------------------- 2. memory per agent


def rss_pss_kb(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def bench_memory(tmp: Path, counts: list[int], stdio_counts: list[int]) -> dict:
    import anyio
    from mcp_support import http_session, server_pid, start_server, stop_server

    from agentdeck import paths
    from agentdeck.store import Store

    repo = repo_with_fake_claude(tmp, "memory")
    top = max(counts)
    tokens = agent_rows(repo, [f"a{i:02d}" for i in range(top)])
    store = Store(paths.find_repo(repo).db_path)
    port = start_server(repo, store)
    pid = server_pid(store)
    names = list(tokens)
    out: dict = {"http": {}, "stdio": {}}
    base = rss_pss_kb(pid)
    out["http"]["0 agents"] = {"rss_mb": round(base[0] / 1024, 1), "pss_mb": round(base[1] / 1024, 1)}

    async def hold(n: int, ready: anyio.Event, done: anyio.Event) -> None:
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:
            for name in names[:n]:
                s = await stack.enter_async_context(http_session(port, tokens[name]))
                await s.list_tools()
                await s.call_tool("memory_search", {"query": "cache"})
            ready.set()
            await done.wait()

    for n in counts:
        async def measure(n: int = n) -> tuple[int, int]:
            ready, done = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(hold, n, ready, done)
                await ready.wait()
                await anyio.sleep(1.0)
                value = rss_pss_kb(pid)
                done.set()
            return value

        rss, pss = anyio.run(measure)
        out["http"][f"{n} agents"] = {
            "rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1),
            "added_per_agent_mb": round((rss - base[0]) / 1024 / n, 2), "processes": 1}
    stop_server(repo, store)

    for n in stdio_counts:
        procs = []
        for name in names[:n]:
            env = {**os.environ, "AGENTDECK_AGENT": name}
            p = subprocess.Popen([sys.executable, "-m", "agentdeck", "mcp"], cwd=repo, env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert p.stdin and p.stdout
            p.stdin.write(json.dumps(INIT) + "\n" + json.dumps(INITIALIZED) + "\n" + json.dumps(LIST) + "\n")
            p.stdin.flush()
            procs.append(p)
        for p in procs:
            while '"id":2' not in p.stdout.readline().replace(" ", ""):  # type: ignore[union-attr]
                pass
        time.sleep(1.0)
        sizes = [rss_pss_kb(p.pid) for p in procs]
        for p in procs:
            p.stdin.close()  # type: ignore[union-attr]
            p.wait(timeout=30)
        out["stdio"][f"{n} agents"] = {
            "rss_mb_total": round(sum(s[0] for s in sizes) / 1024, 1),
            "pss_mb_total": round(sum(s[1] for s in sizes) / 1024, 1),
            "added_per_agent_mb": round(sum(s[0] for s in sizes) / 1024 / n, 1), "processes": n}
    return out


# ----------------------------------------------------------------------------- 3. search under load


def search_worker(port: int, token: str, queries: list[str], go: str, out: str) -> None:
    """One agent: its own session on a kept-alive connection, raw HTTP as the CLIs send it (the
    Python SDK client would measure its own CPU: ~50 ms a call on this machine)."""
    import socket

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    head, _ = raw_request(sock, port, "POST", INIT, headers)
    session_headers(head, headers)
    raw_request(sock, port, "POST", INITIALIZED, headers)

    def call(i: int, query: str) -> bytes:
        body = {"jsonrpc": "2.0", "id": 100 + i, "method": "tools/call",
                "params": {"name": "memory_search", "arguments": {"query": query, "limit": 10}}}
        return raw_request(sock, port, "POST", body, headers)[1]

    call(0, queries[0])
    while not os.path.exists(go):
        time.sleep(0.01)
    times = []
    for i, query in enumerate(queries):
        t0 = time.perf_counter()
        answer = call(i + 1, query)
        times.append(time.perf_counter() - t0)
        assert b'"isError":false' in answer.replace(b" ", b""), answer[:300]
    Path(out).write_text(json.dumps(times))


def bench_search(tmp: Path, notes: int, callers: int, per_caller: int) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_memory
    from mcp_support import start_server, stop_server

    from agentdeck import paths
    from agentdeck.memory.store import MemoryStore
    from agentdeck.store import Store

    repo = repo_with_fake_claude(tmp, "search")
    store_mem = MemoryStore.open(cwd=repo)
    words = bench_memory.make_notes(store_mem, notes)
    store_mem.reindex()
    store_mem.close()
    tokens = agent_rows(repo, [f"s{i}" for i in range(callers)])
    store = Store(paths.find_repo(repo).db_path)
    port = start_server(repo, store)
    ctx = mp.get_context("spawn")
    out: dict = {"notes": notes}
    for n in sorted({1, callers}):
        go = tmp / f"go-{n}"
        workers = []
        for i, token in enumerate(list(tokens.values())[:n]):
            qs = bench_memory.queries(words, per_caller, seed=100 + i)
            workers.append(ctx.Process(target=search_worker,
                                       args=(port, token, qs, str(go), str(tmp / f"s{n}-{i}.json"))))
        for w in workers:
            w.start()
        time.sleep(5)  # every worker connected and warmed up
        t0 = time.perf_counter()
        go.touch()
        for w in workers:
            w.join(timeout=600)
        wall = time.perf_counter() - t0
        times = [t for i in range(n) for t in json.loads((tmp / f"s{n}-{i}.json").read_text())]
        out[f"{n} caller(s)"] = {"round_trip": summary(times), "p50_ms": round(statistics.median(times) * 1000, 1),
                                 "p95_ms": round(pct(times, 95) * 1000, 1), "calls_per_s": round(len(times) / wall, 1)}
    stop_server(repo, store)
    # The same searches in process (the store alone), for the HTTP overhead.
    local = MemoryStore.open(cwd=repo)
    qs = bench_memory.queries(words, per_caller, seed=100)
    local.search(qs[0], 10, sync=False)
    inproc = []
    for q in qs:
        t0 = time.perf_counter()
        local.search(q, 10, sync=False)
        inproc.append(time.perf_counter() - t0)
    local.close()
    out["in-process search (no HTTP)"] = summary(inproc)
    return out


# ----------------------------------------------------------------------------- 4. first turn with Claude


def bench_first_turn(tmp: Path, launches: int, old_launches: int) -> dict:
    from realcli_support import claude_env, find_cli, seed_claude_home, write_agent_config
    from stubs.anthropic_stub import AnthropicStub, Reply
    from support import make_repo, retry_until, run_cli

    claude = find_cli("claude")
    if claude is None:
        return {"skipped": "the real Claude CLI is not installed (tests/install_clis.sh)"}
    results: dict = {}
    home = tmp / "claude-home"
    seed_claude_home(home)
    for mode, count, env in (("http", launches, {}), ("stdio-argv (old)", old_launches, {"AGENTDECK_MCP_HTTP": "0"})):
        if not count:
            continue
        repo = make_repo(tmp / f"first-{mode.split()[0]}")
        ok, seconds, waited = 0, [], []
        with AnthropicStub() as stub:
            write_agent_config(Path(os.environ["AGENTDECK_HOME"]), "claude", claude, claude_env(home, stub.url))
            stub.default = Reply.text("Done.")
            for i in range(count):
                before = len(stub.main_requests())
                t0 = time.perf_counter()
                proc = run_cli("new", f"c{i}", "--agent", "claude", "--prompt", f"task number {i}", cwd=repo, env=env)
                assert proc.returncode == 0, proc.stderr
                try:
                    retry_until(lambda before=before: len(stub.main_requests()) > before, timeout=90, interval=0.2)
                except AssertionError:
                    print(f"  {mode} launch {i}: no request", file=sys.stderr)
                else:
                    first = stub.main_requests()[before]
                    has = any(t.startswith("mcp__agentdeck__") for t in first.tool_names)
                    ok += has
                    seconds.append(time.perf_counter() - t0)
                    events = json.loads(run_cli("events", f"c{i}", "--json", cwd=repo).stdout)
                    waited += [e["detail"]["typed_after_s"] for e in events
                               if e["type"] == "prompt" and "typed_after_s" in e["detail"]]
                    print(f"  {mode} launch {i}: agentdeck tools in the first request: {has}", file=sys.stderr)
                run_cli("kill", f"c{i}", "--discard", cwd=repo)
        results[mode] = {"launches": count, "first_request_has_tools": f"{ok}/{count}",
                         "new_to_first_request": summary(seconds) if seconds else None,
                         "prompt_typed_after": summary(waited) if waited else None}
    return results


# ----------------------------------------------------------------------------- 5. new cold / warm


def bench_new(tmp: Path, rounds: int) -> dict:
    """Rounds interleaved across the three modes (a loaded machine drifts); the agent is a sleeping
    process of kind ``claude`` (its options ignored), so no agent start-up competes for the CPU."""
    from support import make_repo, run_cli

    from agentdeck import paths
    from agentdeck.mcp_link import service
    from agentdeck.store import Store

    sleeper = f"{sys.executable} -c 'import time; time.sleep(600)'"
    config = f'[deck]\ndefault_agent = "claude"\n[agents.claude]\nkind = "claude"\ncommand = "{sleeper}"\n'
    modes = ("no server (stdio)", "cold", "warm")
    repos = {m: make_repo(tmp / f"new-{i}", {"README.md": "x\n", ".agentdeck.toml": config})
             for i, m in enumerate(modes)}
    times: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(rounds + 1):
        for mode in modes:
            repo = repos[mode]
            state_dir = paths.find_repo(repo).state_dir
            store = Store(paths.find_repo(repo).db_path)
            if mode == "cold" and service.server_alive(state_dir):
                pid = service.read_record(store).get("pid")
                if isinstance(pid, int):
                    os.kill(pid, 9)
                while service.server_alive(state_dir):
                    time.sleep(0.05)
            if mode == "warm" and i:
                deadline = time.monotonic() + 60
                while not service.server_listening(state_dir, store) and time.monotonic() < deadline:
                    time.sleep(0.1)
            store.close()
            time.sleep(1.0)  # let the previous round's background work settle
            env = {"AGENTDECK_MCP_HTTP": "0"} if mode.startswith("no") else {}
            t0 = time.perf_counter()
            proc = run_cli("new", f"n{i}", cwd=repo, env=env)
            elapsed = time.perf_counter() - t0
            assert proc.returncode == 0, proc.stderr
            if i:  # round 0 warms the file cache (and, for "warm", starts the server)
                times[mode].append(elapsed)
    return {m: summary(v) for m, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="connect,memory,search,first,new")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--per-caller", type=int, default=50)
    parser.add_argument("--agents", default="1,10,30")
    parser.add_argument("--stdio-agents", default="1,10")
    parser.add_argument("--claude-launches", type=int, default=20)
    parser.add_argument("--old-launches", type=int, default=5)
    args = parser.parse_args()
    only = set(args.only.split(","))
    tmp = isolate()
    os.environ["AGENTDECK_MCP_GRACE"] = "5"
    os.environ["AGENTDECK_WATCH_GRACE"] = "5"
    report: dict = {"load_average": os.getloadavg(), "cpus": os.cpu_count()}
    random.seed(1)
    try:
        if "connect" in only:
            report["connect_to_tools_list"] = bench_connect(tmp, args.rounds)
            print(json.dumps(report["connect_to_tools_list"], indent=1), file=sys.stderr)
        if "memory" in only:
            report["memory_per_agent"] = bench_memory(tmp, [int(x) for x in args.agents.split(",")],
                                                      [int(x) for x in args.stdio_agents.split(",") if x])
            print(json.dumps(report["memory_per_agent"], indent=1), file=sys.stderr)
        if "search" in only:
            report["memory_search_concurrent"] = bench_search(tmp, args.notes, args.callers, args.per_caller)
            print(json.dumps(report["memory_search_concurrent"], indent=1), file=sys.stderr)
        if "new" in only:
            report["new_wall_time"] = bench_new(tmp, max(3, args.rounds // 2))
            print(json.dumps(report["new_wall_time"], indent=1), file=sys.stderr)
        if "first" in only:
            report["first_turn_tools_real_claude"] = bench_first_turn(tmp, args.claude_launches, args.old_launches)
    finally:
        cleanup()
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
