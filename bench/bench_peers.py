"""agentdeck beside ccmanager 4.4.3, in one run, on this machine (issue 16).

ccmanager (npm ``@kodaikabasawa/ccmanager-linux-x64@4.4.3``, installed by this script into a
temporary prefix with ``npm install``; or ``--ccmanager PATH``) and agentdeck run the same
stand-in agent (bench/peer_agent.py: a prompt; now and then a permission question in Claude
Code's words, at a random moment relative to any polling) in the same repository.  Both UIs
run in panes of a harness tmux server; a control-mode client on each tells the harness the
moment either screen changes.

Parts (``--parts``, default all):

* ``latency`` — prompt appears -> waiting recorded (agentdeck: the status event's time;
  ccmanager: its ``waiting_input`` status hook, ``date +%s.%N``, whose shell start adds a few
  ms) and prompt appears -> shown (the deck's row reads ``waiting``; ccmanager's menu row reads
  ``◐ Waiting``).  Both agents run at the same time, so rounds interleave.
* ``idle`` — N idle agents (default 30): CPU seconds per minute of agentdeck's watcher plus its
  tmux server; then with the deck open (the deck process, the watcher and agentdeck's tmux
  server); the deck's resident memory with 10 and with N agents; ccmanager with 10 idle
  sessions and its menu open, beside it (``ccidle``: that figure alone).
* ``ls`` — ``agentdeck ls --json`` with N agents beside ``python -c pass``, interleaved.
* ``new`` — ``agentdeck new`` on the 20,000-file repository beside ``git worktree add``,
  interleaved; and how long the launch waits for the pane's launcher to take its environment
  file (``Deck._await_launcher``), measured in process.

Usage: python3 bench/bench_peers.py [--rounds 15] [--agents 30] [--idle-s 60] [--files 20000]
                                    [--parts latency,idle,ls,new] [--ccmanager PATH]
The machine is shared: the load average is printed with each part.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import ROOT, isolate, pct

from agentdeck.tmux import ControlClient

CCMANAGER_PKG = "@kodaikabasawa/ccmanager-linux-x64@4.4.3"
PEER = ROOT / "bench" / "peer_agent.py"
TICKS = os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f} on {} cores".format(*os.getloadavg(), os.cpu_count())


def ms(values: list[float]) -> str:
    if not values:
        return "no samples"
    return (f"p50 {statistics.median(values) * 1000:.0f} ms, p90 {pct(values, 90) * 1000:.0f} ms "
            f"(n={len(values)})")


def cpu_s(pid: int, children: bool = False) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return used / TICKS


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def quiet(pids: list[int], window: float = 3.0, longest: float = 60.0) -> None:
    """Wait until *pids* used no CPU for *window* seconds (at most *longest*)."""
    end = time.monotonic() + longest
    while time.monotonic() < end:
        before = sum(cpu_s(p) for p in pids)
        time.sleep(window)
        if sum(cpu_s(p) for p in pids) == before:
            return


def until(fn, timeout: float = 60.0, interval: float = 0.1, what: str = "", show=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}" + (f"; the screen:\n{show()}" if show else ""))


# ---------------------------------------------------------------------- set-up


def install_ccmanager(tmp: Path) -> Path:
    prefix = tmp / "npm"
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), CCMANAGER_PKG],
                   check=True, capture_output=True)
    return prefix / "node_modules" / "@kodaikabasawa" / "ccmanager-linux-x64" / "bin" / "ccmanager"


def make_repo(path: Path, files: int) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    for i in range(files):
        d = path / f"pkg{i % 200:03d}"
        d.mkdir(exist_ok=True)
        (d / f"mod{i}.py").write_text(f"VALUE = {i}\n")
    (path / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "files"], cwd=path, check=True)
    return path


def agentdeck_config(repo: Path, tmp: Path, rounds: int) -> None:
    peer = f"{sys.executable} {PEER}"
    (repo / ".agentdeck.toml").write_text(f"""
[deck]
default_agent = "still"

[agents.peer]
kind = "generic"
command = "{peer}"
waiting_pattern = 'Do you want to proceed\\?'
idle_pattern = '^> *$'
quiet_s = 1.0
env = {{ PEER_LOG = "{tmp / 'ad-prompts.log'}", PEER_ROUNDS = "{rounds}", PEER_GO = "{tmp / 'go'}" }}

[agents.still]
kind = "generic"
command = "{peer}"
waiting_pattern = 'Do you want to proceed\\?'
idle_pattern = '^> *$'
quiet_s = 1.0
""")


def ccmanager_home(tmp: Path, rounds: int) -> Path:
    home = tmp / f"cchome-{uuid.uuid4().hex[:6]}"
    conf = home / ".config" / "ccmanager"
    conf.mkdir(parents=True)
    env_args = [f"PEER_LOG={tmp / 'cc-prompts.log'}", f"PEER_ROUNDS={rounds}", f"PEER_GO={tmp / 'go'}"]
    (conf / "config.json").write_text(json.dumps({
        "commandPresets": {
            "presets": [{"id": "1", "name": "peer", "command": "env",
                         "args": [*env_args, sys.executable, str(PEER)], "detectionStrategy": "claude"},
                        {"id": "2", "name": "still", "command": sys.executable, "args": [str(PEER)],
                         "detectionStrategy": "claude"}],
            "defaultPresetId": "1", "selectPresetOnStart": False},
        "statusHooks": {"waiting_input": {"command": f"date +%s.%N >> {tmp / 'cc-hook.log'}", "enabled": True}},
    }))
    return home


def ccmanager_menu(harness: Harness) -> None:
    """Wait for ccmanager's worktree menu (declining to restore sessions of an earlier run)."""
    def menu() -> bool:
        screen = harness.screen("ccm")
        if "Restore previous sessions" in screen:
            harness.keys("ccm", "Down", "Enter")
            return False
        return "Select a worktree" in screen

    until(menu, what="ccmanager's menu", show=lambda: harness.screen("ccm"))
    time.sleep(1.0)  # it takes keys a moment after drawing


class Harness:
    """A tmux server of its own where the UIs run, with one control client per UI."""

    def __init__(self) -> None:
        self.socket = f"adpeers-{uuid.uuid4().hex[:8]}"
        self.clients: dict[str, ControlClient] = {}

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True).stdout

    def start(self, name: str, cwd: Path, command: str, env: dict[str, str]) -> int:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", name, "-x", "160", "-y", "45", "-c", str(cwd),
                  f"exec env -u TMUX -u COLUMNS -u LINES {exports} {command}")
        self.clients[name] = ControlClient(self.socket, name)
        return int(self.tmux("display-message", "-p", "-t", f"={name}:", "#{pane_pid}").strip())

    def screen(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", f"={name}:")

    def keys(self, name: str, *keys: str) -> None:
        self.tmux("send-keys", "-t", f"={name}:", *keys)

    def stop(self, name: str) -> None:
        client = self.clients.pop(name, None)
        if client is not None:
            client.close()
        self.tmux("kill-session", "-t", f"={name}")

    def watch(self, markers: dict[str, re.Pattern[str]], seconds: float) -> dict[str, list[tuple[float, bool]]]:
        """For *seconds*: every change of whether each UI's screen matches its marker, timed."""
        shown = {name: [(time.time(), bool(markers[name].search(self.screen(name))))] for name in markers}
        end = time.monotonic() + seconds
        by_fd = {self.clients[n].fileno(): n for n in markers}
        panes = {n: self._pane(n) for n in markers}
        while time.monotonic() < end:
            waiting = [fd for fd, n in by_fd.items() if self.clients[n].pending]
            ready = waiting or select.select(list(by_fd), [], [], max(0.0, end - time.monotonic()))[0]
            for fd in ready:
                name = by_fd[fd]
                client = self.clients[name]
                if fd not in waiting:
                    client.read()
                if any(kind == "output" for kind, _ in client.events()):
                    now = time.time()
                    match = bool(markers[name].search(client.capture(panes[name])))
                    if match != shown[name][-1][1]:
                        shown[name].append((now, match))
        return shown

    def _pane(self, name: str) -> str:
        return self.tmux("display-message", "-p", "-t", f"={name}:", "#{pane_id}").strip()

    def close(self) -> None:
        for name in list(self.clients):
            self.stop(name)
        self.tmux("kill-server")


def first_after(times: list[float], start: float, window: float) -> float | None:
    return next((t for t in sorted(times) if start <= t < start + window), None)


def first_shown(changes: list[tuple[float, bool]], start: float, window: float) -> float | None:
    return next((t for t, on in changes if on and start <= t < start + window), None)


def read_times(path: Path) -> list[float]:
    return [float(x) for x in path.read_text().split()] if path.is_file() else []


def agentdeck(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentdeck", *args], cwd=cwd, capture_output=True, text=True)


# ---------------------------------------------------------------------- parts


def part_latency(tmp: Path, repo: Path, ccm: Path | None, rounds: int, harness: Harness) -> None:
    print(f"\n## latency: {rounds} prompts each, both tools at once ({load()})")
    out = agentdeck("new", "peer-ad", "--agent", "peer", cwd=repo)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    until(lambda: '"idle"' in agentdeck("ls", "--json", cwd=repo).stdout, what="peer-ad idle")
    harness.start("deck", repo, f"{sys.executable} -m agentdeck", dict(os.environ))
    until(lambda: "peer-ad" in harness.screen("deck") and "idle" in harness.screen("deck"), what="the deck")
    markers = {"deck": re.compile(r"peer-ad +peer +◆ waiting")}  # the row (a notice also names it)
    if ccm is not None:
        home = ccmanager_home(tmp, rounds)
        harness.start("ccm", repo, str(ccm), {**os.environ, "HOME": str(home)})
        ccmanager_menu(harness)
        harness.keys("ccm", "0")  # the main worktree: a session with the default preset (peer)
        until(lambda: "peer agent 1.0 ready" in harness.screen("ccm"), what="ccmanager's session",
              show=lambda: harness.screen("ccm"))
        harness.keys("ccm", "C-e")  # back to the menu; the session goes on
        until(lambda: re.search(r"main.*Idle", harness.screen("ccm")), what="ccmanager's menu, session idle")
        markers["ccm"] = re.compile(r"main \(main\).*◐ Waiting")
    (tmp / "go").write_text("")
    shown = harness.watch(markers, rounds * (1.6 + 1.0) + 4.0)
    ad_prompts = read_times(tmp / "ad-prompts.log")
    deck = __import__("agentdeck.deck", fromlist=["Deck"]).Deck.open(repo)
    recorded = [e["ts"] for e in deck.events("peer-ad") if e["type"] == "status" and e["status"] == "waiting"]
    deck.close()
    ad_rec = [r - p for p in ad_prompts if (r := first_after(recorded, p, 1.0)) is not None]
    ad_shown = [s - p for p in ad_prompts if (s := first_shown(shown["deck"], p, 1.0)) is not None]
    print(f"agentdeck: prompt -> waiting recorded  {ms(ad_rec)} (missed {len(ad_prompts) - len(ad_rec)})")
    print(f"agentdeck: prompt -> shown in the deck {ms(ad_shown)} (missed {len(ad_prompts) - len(ad_shown)})")
    if ccm is not None:
        cc_prompts = read_times(tmp / "cc-prompts.log")
        hooks = read_times(tmp / "cc-hook.log")
        cc_rec = [r - p for p in cc_prompts if (r := first_after(hooks, p, 1.0)) is not None]
        cc_shown = [s - p for p in cc_prompts if (s := first_shown(shown["ccm"], p, 1.0)) is not None]
        print(f"ccmanager: prompt -> waiting recorded  {ms(cc_rec)} (status hook; missed "
              f"{len(cc_prompts) - len(cc_rec)})")
        print(f"ccmanager: prompt -> shown in its menu {ms(cc_shown)} (missed {len(cc_prompts) - len(cc_shown)})")
        if ad_rec and cc_rec:
            rec_ratio = statistics.median(ad_rec) / statistics.median(cc_rec)
            print(f"recorded: agentdeck p50 / ccmanager p50 = {rec_ratio:.2f}"
                  f" (goal <= 0.5); shown: {statistics.median(ad_shown) / statistics.median(cc_shown):.2f} "
                  f"(goal < 1)")
        harness.stop("ccm")
    harness.stop("deck")
    agentdeck("kill", "peer-ad", "--discard", cwd=repo)


def _watcher_and_server(repo: Path) -> tuple[int, int]:
    state = repo / ".git" / "agentdeck" / "watcher.lock"
    watcher = until(lambda: state.read_text().strip().isdigit() and int(state.read_text()), what="the watcher")
    server = int(subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "display-message", "-p",
                                 "#{pid}"], capture_output=True, text=True).stdout.strip())
    return watcher, server


def part_idle(tmp: Path, ccm: Path | None, agents: int, idle_s: float, harness: Harness) -> Path:
    print(f"\n## idle: {agents} agents at their prompts, {idle_s:.0f} s per figure ({load()})")
    repo = make_repo(tmp / "small", 20)
    agentdeck_config(repo, tmp, 0)

    def settle_deck(n: int) -> int:
        pid = harness.start("deck", repo, f"{sys.executable} -m agentdeck", dict(os.environ))
        until(lambda: f"{n} agents" in harness.screen("deck") and "starting" not in harness.screen("deck"),
              what=f"the deck with {n} agents")
        quiet([pid])  # its start-up work is over: first sizes, conflict radar, usage
        return pid

    for i in range(10):
        agentdeck("new", f"idle-{i:02d}", cwd=repo)
    pid = settle_deck(10)
    rss10 = rss_mb(pid)
    harness.stop("deck")
    for i in range(10, agents):
        agentdeck("new", f"idle-{i:02d}", cwd=repo)
    until(lambda: all(a["status"] == "idle" for a in json.loads(agentdeck("ls", "--json", cwd=repo).stdout)),
          timeout=120, what="every agent idle")
    watcher, server = _watcher_and_server(repo)
    quiet([watcher, server])
    w0, s0 = cpu_s(watcher), cpu_s(server)
    time.sleep(idle_s)
    w1, s1 = cpu_s(watcher), cpu_s(server)
    per_min = 60.0 / idle_s
    watched = ((w1 - w0) + (s1 - s0)) * per_min
    print(f"agentdeck, {agents} idle agents watched: {watched:.3f} CPU-s/min "
          f"(watcher {(w1 - w0) * per_min:.3f} + tmux server {(s1 - s0) * per_min:.3f}; goal <= 0.2)")
    pid = settle_deck(agents)
    rss30 = rss_mb(pid)
    d0, w0, s0, h0 = cpu_s(pid), cpu_s(watcher), cpu_s(server), cpu_s(harness_server(harness))
    time.sleep(idle_s)
    d1, w1, s1, h1 = cpu_s(pid), cpu_s(watcher), cpu_s(server), cpu_s(harness_server(harness))
    more = ((d1 - d0) + (w1 - w0) + (s1 - s0)) * per_min - watched
    print(f"agentdeck, deck open on {agents} idle agents: deck {(d1 - d0) * per_min:.3f} CPU-s/min, watcher + "
          f"tmux {((w1 - w0) + (s1 - s0)) * per_min:.3f}: {more:+.3f} CPU-s/min over watching alone (goal <= 0.5); "
          f"the terminal showing it (harness tmux) {(h1 - h0) * per_min:.3f}")
    print(f"deck memory: {rss10:.1f} MB with 10 agents, {rss30:.1f} MB with {agents} "
          f"({(rss30 / rss10 - 1) * 100:+.1f} %; goal <= +10 %)")
    harness.stop("deck")
    if ccm is not None:
        part_ccidle(tmp, repo, ccm, idle_s, harness)
    return repo


def part_ccidle(tmp: Path, repo: Path, ccm: Path, idle_s: float, harness: Harness) -> None:
    """ccmanager with 10 sessions of the agent that only sits at its prompt, its menu open."""
    per_min = 60.0 / idle_s
    for i in range(9):
        subprocess.run(["git", "worktree", "add", "-q", "-b", f"cc{i}", str(tmp / f"cc{i}")], cwd=repo, check=True)
    home = ccmanager_home(tmp, 0)
    conf = home / ".config" / "ccmanager" / "config.json"
    data = json.loads(conf.read_text())
    data["commandPresets"]["defaultPresetId"] = "2"  # the agent that only sits at its prompt
    conf.write_text(json.dumps(data))
    cpid = harness.start("ccm", repo, str(ccm), {**os.environ, "HOME": str(home)})
    ccmanager_menu(harness)
    started = 0
    for _ in range(60):
        rows = list(re.finditer(r"^\s*(?:❯\s*)?(\d) ❯ (.+)$", harness.screen("ccm"), re.M))
        if not rows or any("fetching" in m.group(2) for m in rows):  # still drawing, or reading git
            time.sleep(0.5)
            continue
        fresh = [m for m in rows if not re.search(r"Idle|Busy|Waiting", m.group(2))]
        if not fresh or started >= 10:
            break
        harness.keys("ccm", fresh[0].group(1))
        until(lambda: "peer agent 1.0 ready" in harness.screen("ccm"), what="a ccmanager session",
              show=lambda: harness.screen("ccm"))
        harness.keys("ccm", "C-e")
        ccmanager_menu(harness)
        started += 1
    if not started:
        print("ccmanager: could not start sessions; its screen:\n" + harness.screen("ccm"))
    time.sleep(5.0)  # (ccmanager never goes quiet: it checks every session every 100 ms)
    c0 = cpu_s(cpid, children=True)
    time.sleep(idle_s)
    c1 = cpu_s(cpid, children=True)
    print(f"ccmanager, {started} idle sessions, menu open: {(c1 - c0) * per_min:.3f} CPU-s/min "
          f"(ccmanager process; its rss {rss_mb(cpid):.0f} MB)")
    harness.stop("ccm")


def harness_server(harness: Harness) -> int:
    return int(harness.tmux("display-message", "-p", "#{pid}").strip() or 0)


def part_ls(repo: Path, rounds: int) -> None:
    n = len(json.loads(agentdeck("ls", "--json", cwd=repo).stdout))
    print(f"\n## ls: `agentdeck ls --json` with {n} agents beside `python -c pass`, {rounds} rounds ({load()})")
    ls, bare = [], []
    env = dict(os.environ)
    for _ in range(rounds):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], capture_output=True, env=env)
        bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "agentdeck", "ls", "--json"], cwd=repo, capture_output=True,
                             env=env)
        ls.append(time.perf_counter() - t)
        assert out.returncode == 0
    a, b = statistics.median(ls), statistics.median(bare)
    print(f"agentdeck ls --json {ms(ls)}; python -c pass {ms(bare)}; ratio {a / b:.2f}x "
          f"(goals: <= 100 ms, <= 3x)")


def part_new(tmp: Path, big: Path, rounds: int) -> None:
    print(f"\n## new: `agentdeck new` beside `git worktree add`, {rounds} rounds ({load()})")
    plain, ours = [], []
    for r in range(rounds):
        t = time.perf_counter()
        subprocess.run(["git", "worktree", "add", "-q", "-b", f"plain{r}", str(tmp / f"plain{r}"), "HEAD"], cwd=big,
                       check=True, capture_output=True)
        plain.append(time.perf_counter() - t)
        t = time.perf_counter()
        out = agentdeck("new", f"new{r}", cwd=big)
        ours.append(time.perf_counter() - t)
        if out.returncode != 0:
            raise SystemExit(out.stderr)
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"git worktree add {ms(plain)}; agentdeck new {ms(ours)}; ratio {o / p:.2f}x (goal <= 1.3x)")
    from agentdeck.deck import Deck

    deck = Deck.open(big)
    waits: list[float] = []
    original = deck._await_launcher

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            waits.append(time.perf_counter() - t0)

    deck._await_launcher = timed  # type: ignore[method-assign]
    for r in range(3):
        deck.new(f"await{r}")
    deck.close()
    print(f"of which the launch waits for the pane's launcher to take its environment file: {ms(waits)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--agents", type=int, default=30)
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--parts", default="latency,idle,ls,new")
    parser.add_argument("--ccmanager", help="a ccmanager 4.4.3 binary (default: install it from npm)")
    parser.add_argument("--no-ccmanager", action="store_true")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    tmp = isolate()
    harness = Harness()
    ccm: Path | None = None
    try:
        if not args.no_ccmanager and parts & {"latency", "idle", "ccidle"}:
            ccm = Path(args.ccmanager) if args.ccmanager else install_ccmanager(tmp)
            version = subprocess.run([str(ccm), "--version"], capture_output=True, text=True).stdout.strip()
            print(f"ccmanager {version} ({ccm})")
        print(f"agentdeck from {ROOT}; {load()}")
        big = None
        if parts & {"latency", "new"}:
            big = make_repo(tmp / "big", args.files)
            agentdeck_config(big, tmp, args.rounds)
            print(f"repository: {args.files} files")
        if "latency" in parts:
            part_latency(tmp, big, ccm, args.rounds, harness)
        small = None
        if "idle" in parts:
            small = part_idle(tmp, ccm, args.agents, args.idle_s, harness)
        elif "ccidle" in parts and ccm is not None:
            part_ccidle(tmp, make_repo(tmp / "ccsmall", 20), ccm, args.idle_s, harness)
        if "ls" in parts:
            if small is None:
                small = make_repo(tmp / "small", 20)
                agentdeck_config(small, tmp, 0)
                for i in range(args.agents):
                    agentdeck("new", f"idle-{i:02d}", cwd=small)
            part_ls(small, max(10, args.rounds))
        if "new" in parts:
            part_new(tmp, big, max(3, min(args.rounds, 7)))
        print(f"\ndone ({load()})")
    finally:
        harness.close()
        subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "kill-server"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    tempfile.tempdir = None
    main()
