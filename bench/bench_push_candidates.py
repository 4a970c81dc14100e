"""How to learn of pane output the moment it happens: the candidates, measured side by side.

For N idle panes (``cat``, nothing printed) on a fresh tmux server each, and one pane that prints a
line at a random moment, this measures:

* latency: a line written by the pane's program -> the watcher knows that pane moved;
* idle cost: CPU seconds per minute of the tmux server plus the watching processes, nothing moving;
* memory: resident set of the processes the candidate adds.

Candidates: ``per-session`` (one ``tmux -C attach`` client per agent session), ``linked`` (every
agent window linked into one monitor session, one control client), ``pipe-pane`` (``pipe-pane -O``
into a FIFO per pane, read by the watcher), ``subscription`` (``refresh-client -B`` on
``#{window_activity}``, one client), ``poll`` (today's ``list-panes -a`` every 250 ms).

Usage: python3 bench/bench_push_candidates.py [N] [IDLE_SECONDS] [ROUNDS]
"""

from __future__ import annotations

import os
import random
import select
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30
IDLE_S = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 10
TICKS = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICKS


def rss_kb(pid: int) -> int:
    """Proportional set size (shared pages divided among their users)."""
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    def __init__(self) -> None:
        self.sock = f"adcand-{uuid.uuid4().hex[:8]}"
        self.tmp = tempfile.mkdtemp(prefix="adcand-")
        self.run("-f", "/dev/null", "new-session", "-d", "-s", "s0", "-x", "200", "-y", "50", "cat")
        for i in range(1, N):
            self.run("new-session", "-d", "-s", f"s{i}", "-x", "200", "-y", "50", "cat")
        self.pid = int(self.run("display-message", "-p", "#{pid}").strip())
        self.panes = [self.run("display-message", "-p", "-t", f"=s{i}:", "#{pane_id}").strip() for i in range(N)]
        self.tty = self.run("display-message", "-p", "-t", "=s0:", "#{pane_tty}").strip()

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True).stdout

    def close(self) -> None:
        self.run("kill-server")


def control(server: Server, session: str) -> subprocess.Popen:
    return subprocess.Popen(["tmux", "-L", server.sock, "-C", "attach", "-t", f"={session}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)


def wait_for(fds: list[int], needle: bytes, timeout: float = 5.0) -> float:
    """Seconds until *needle* is read from any of *fds*."""
    t0 = time.perf_counter()
    buf = dict.fromkeys(fds, b"")
    while time.perf_counter() - t0 < timeout:
        ready, _, _ = select.select(fds, [], [], timeout)
        for fd in ready:
            buf[fd] += os.read(fd, 65536)
            if needle in buf[fd]:
                return time.perf_counter()
    raise TimeoutError(needle)


def drain(fds: list[int], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select(fds, [], [], max(0.0, end - time.monotonic()))
        for fd in ready:
            os.read(fd, 65536)


def measure(name: str, setup, latency_probe) -> dict:
    server = Server()
    try:
        procs, fds, extra = setup(server)
        drain(fds, 1.0)
        t0 = {p.pid: cpu(p.pid) for p in procs}
        s0 = cpu(server.pid)
        w0 = os.times()
        end = time.monotonic() + IDLE_S
        if fds:
            drain(fds, IDLE_S)
        else:
            extra["idle"](end)
        w1 = os.times()
        idle = (cpu(server.pid) - s0) + sum(cpu(p.pid) - t0[p.pid] for p in procs)
        idle += (w1.user - w0.user + w1.system - w0.system + w1.children_user - w0.children_user
                 + w1.children_system - w0.children_system)
        lat = []
        for _ in range(ROUNDS):
            time.sleep(random.uniform(0.05, 0.3))  # the prompt appears at a random moment
            token = uuid.uuid4().hex[:10]
            lat.append(latency_probe(server, fds, extra, token))
        mem = sum(rss_kb(p.pid) for p in procs)
        for p in procs:
            p.kill()
        p90 = sorted(lat)[int(0.9 * (len(lat) - 1))]
        return {"name": name, "latency_ms": statistics.median(lat) * 1000, "p90_ms": p90 * 1000,
                "idle_cpu_s_min": idle * 60 / IDLE_S, "added_rss_mb": mem / 1024, "processes": len(procs)}
    finally:
        server.close()


def write_line(server: Server, token: str) -> float:
    """The pane's program prints a line (written to its terminal: what an agent drawing does)."""
    with open(server.tty, "w") as tty:
        t = time.perf_counter()
        tty.write(token + "\r\n")
    return t


def per_session():
    def setup(server):
        procs = [control(server, f"s{i}") for i in range(N)]
        return procs, [p.stdout.fileno() for p in procs], {}

    def probe(server, fds, extra, token):
        t = write_line(server, token)
        return wait_for(fds, token.encode()) - t

    return setup, probe


def linked():
    def setup(server):
        server.run("new-session", "-d", "-s", "mon", "-x", "200", "-y", "50", "cat")
        for i in range(N):
            server.run("link-window", "-d", "-s", f"=s{i}:0", "-t", "=mon:")
        p = control(server, "mon")
        return [p], [p.stdout.fileno()], {}

    def probe(server, fds, extra, token):
        t = write_line(server, token)
        return wait_for(fds, token.encode()) - t

    return setup, probe


def pipe_pane():
    def setup(server):
        fds = []
        for i, pane in enumerate(server.panes):
            fifo = os.path.join(server.tmp, f"p{i}")
            os.mkfifo(fifo)
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            server.run("pipe-pane", "-O", "-t", pane, f"exec cat > {fifo}")
            fds.append(fd)
        time.sleep(0.5)
        kids = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(server.pid)], capture_output=True,
                              text=True).stdout.splitlines()
        pids = [int(line.split()[0]) for line in kids if "cat >" in line or line.split()[1:] == ["cat"]]
        pids = [pid for pid in pids if os.readlink(f"/proc/{pid}/fd/1").startswith(server.tmp)]
        procs = [type("P", (), {"pid": pid, "kill": lambda self: None})() for pid in pids]
        return procs, fds, {}

    def probe(server, fds, extra, token):
        t = write_line(server, token)
        return wait_for(fds, token.encode()) - t

    return setup, probe


def subscription():
    def setup(server):
        p = control(server, "s0")
        p.stdin.write(b"refresh-client -B 'act:%*:#{history_size}.#{cursor_x}.#{cursor_y}'\n")
        return [p], [p.stdout.fileno()], {}

    def probe(server, fds, extra, token):
        t = write_line(server, token)
        return wait_for(fds, b"%subscription-changed act") - t

    return setup, probe


def poll():
    fmt = "#{session_name}\t#{pane_id}\t#{window_activity}\t#{history_size}\t#{cursor_x}\t#{cursor_y}"

    def once(server):
        return subprocess.run(["tmux", "-L", server.sock, "list-panes", "-a", "-F", fmt], capture_output=True,
                              text=True).stdout

    def setup(server):
        def idle(end):
            while time.monotonic() < end:
                once(server)
                time.sleep(0.25)
        return [], [], {"idle": idle}

    def probe(server, fds, extra, token):
        before = once(server)
        time.sleep(random.uniform(0, 0.25))
        t = write_line(server, token)
        while True:
            time.sleep(0.25 - (time.perf_counter() % 0.25))
            if once(server) != before:
                return time.perf_counter() - t

    return setup, probe


def main() -> None:
    load = os.getloadavg()[0]
    print(f"{N} panes, {IDLE_S:.0f} s idle, {ROUNDS} latency rounds, load {load:.1f} on {os.cpu_count()} cores")
    for name, cand in (("per-session", per_session), ("linked", linked), ("pipe-pane", pipe_pane),
                       ("subscription", subscription), ("poll", poll)):
        setup, probe = cand()
        r = measure(name, setup, probe)
        print(f"{r['name']:<13} latency p50 {r['latency_ms']:6.1f} ms (p90 {r['p90_ms']:6.1f})  idle "
              f"{r['idle_cpu_s_min']:.3f} CPU-s/min  +{r['added_rss_mb']:.1f} MB PSS in {r['processes']} processes")


if __name__ == "__main__":
    main()
