"""Compare the benchmarks of two commits in one run, interleaved, so machine noise hits both alike.

    python3 bench/compare_commits.py --old c8ef44e --new HEAD --benches new,status,hooks --runs 2

Each commit is exported with `git archive` into its own snapshot tree (`--work`/old and /new), so
edits to the working tree during the run disturb neither side. Every bench runs with its own tree's
script, `cwd` and `PYTHONPATH` set to that tree (so it imports that tree's `agentdeck`), under
`nice`, in the order old, new, old, new, ... (per bench, `--runs` pairs; `--order abba` puts new first
in every second pair, to expose an order effect). The headline figures each
bench prints are read from its output; the table gives, per figure, the median over the runs of
each side and after/before. Every run's output is kept under `--work`/logs.

Options are reduced from each script's defaults (see BENCHES) so that a comparison of all of them
fits in about an hour on a loaded 2-core machine; `--opts NAME="ARGS"` overrides one bench's.
Agent CLIs, tmux and git are whatever is installed: the same for both sides. A run that printed
no figure (a crash under load) is run once more, its log kept as `*-failed.log`; HARNESS_FIXES
patches a bench script's own harness alike in both trees where an older script needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NUM = r"([-+]?\d+(?:\.\d+)?)"


@dataclass
class Bench:
    """One bench script: its reduced arguments and the figures read from its output."""

    script: str
    args: list[str]
    figures: list[tuple[str, str]] = field(default_factory=list)  # (figure, regex with one number group)
    timeout_s: float = 600.0


def _p50(label: str) -> str:
    return re.escape(label) + r"\s*p50 " + NUM + " ms"


def _p95(label: str) -> str:
    return re.escape(label) + r"\s*p50 \d+ ms, p95 " + NUM + " ms"


def _hook(label: str) -> str:
    return r"^" + re.escape(label) + r"\s+" + NUM


def _kv(key: str) -> str:
    return r"^" + re.escape(key) + r"\s+" + NUM + r"\s*$"


BENCHES: dict[str, Bench] = {
    "new": Bench("bench_new.py", ["10000", "3"], [
        ("new: git worktree add, s", r"git worktree add:\s+median " + NUM),
        ("new: agentdeck new, s", r"agentdeck new:\s+median " + NUM),
        ("new: ratio new / worktree add", r"ratio: " + NUM + "x"),
    ]),
    "status": Bench("bench_status.py", ["6"], [
        ("status: prompt -> waiting p50, ms", _p50("prompt appears -> waiting:")),
        ("status: approve -> working p50, ms", _p50("approve -> working:")),
        ("status: ls --json p50, ms", _p50("call itself:")),
    ]),
    "hooks": Bench("bench_hooks.py", ["-n", "10"], [
        ("hooks: python -c pass p50, ms", _hook("baseline: python -c pass")),
        ("hooks: claude PreToolUse p50, ms", _hook("claude PreToolUse")),
        ("hooks: codex notify p50, ms", _hook("codex notify")),
        ("hooks: claude Stop, python -S p50, ms", _hook("claude Stop, python -S")),
        ("hooks: python -S -c pass p50, ms", _hook("baseline: python -S -c pass")),
    ]),
    "memory": Bench("bench_memory.py", ["--notes", "2000", "--queries", "100", "--writers", "4",
                                        "--per-writer", "20", "--cli-runs", "3"], [
        ("memory: search p50, ms", _kv("search_p50_ms")),
        ("memory: search p95, ms", _kv("search_p95_ms")),
        ("memory: full reindex, s", _kv("reindex_s")),
        ("memory: INDEX.md regeneration, ms", _kv("index_md_ms")),
        ("memory: stat sync p50, ms", _kv("sync_stat_p50_ms")),
        ("memory: python -c pass, s", _kv("cli_python_bare_s")),
        ("memory: agentdeck --version, s", _kv("cli_version_s")),
        ("memory: agentdeck memory search, s", _kv("cli_memory_search_s")),
        ("memory: writers, empty store, notes/s", r"^writes_empty_store\s+\{.*'notes_per_s': " + NUM),
        ("memory: writers, full store, notes/s", r"^writes_full_store\s+\{.*'notes_per_s': " + NUM),
    ]),
    "review": Bench("bench_review.py", ["5000", "10", "3"], [
        ("review: radar p50, ms", r"conflict radar, \d+ agents: first \d+ ms; p50 " + NUM + " ms"),
        ("review: radar after changes p50, ms", _p50("radar after every agent changed a file:")),
        ("review: diff-size refresh p50, ms", _p50("diff-size refresh after a file change:")),
        ("review: full diff p50, ms", r"full diff with hunks \(\d+ files\):\s*p50 " + NUM + " ms"),
    ]),
    "tui": Bench("bench_tui.py", ["--agents", "30", "--keys", "60"], [
        ("tui: first paint in process, ms", r"first paint, in process [^:]*: " + NUM + " ms"),
        ("tui: first paint real terminal, ms", r"first paint, real terminal [^:]*: " + NUM + " ms"),
        ("tui: key-to-screen p50, ms", r"key-to-screen latency over \d+ keys: p50 " + NUM),
        ("tui: key-to-screen p95, ms", r"key-to-screen latency over \d+ keys: p50 [\d.]+ ms, p95 " + NUM),
    ]),
    "watch": Bench("bench_watch.py", ["30", "10"], [
        ("watch: agentdeck watcher, CPU s/min", r"agentdeck watcher[^:]*: " + NUM),
        ("watch: naive capture+hash, CPU s/min", r"naive capture\+hash every 500 ms: " + NUM),
    ]),
    "research": Bench("bench_research.py", ["--slots", "4", "--budget", "2", "--trials", "12"], [
        ("research: slot busy while work remained, %", r'"slot_busy_fraction": ' + NUM),
        ("research: gap per trial mean, ms", r'"gap_mean_s": ' + NUM),
        ("research: gap per trial p95, ms", r'"gap_p95_s": ' + NUM),
        ("research: trials/h", r'"trials_per_hour": ' + NUM),
    ]),
    "peers": Bench("bench_peers.py", ["--parts", "latency,ls", "--rounds", "6", "--agents", "10",
                                      "--no-ccmanager", "--files", "5000"], [
        ("peers: prompt -> waiting recorded p50, ms", r"prompt -> waiting recorded\s+p50 " + NUM),
        ("peers: prompt -> shown in the deck p50, ms", r"prompt -> shown in the deck\s*p50 " + NUM),
        ("peers: ls --json, 10 agents p50, ms", r"agentdeck ls --json p50 " + NUM),
        ("peers: python -c pass p50, ms", r"python -c pass p50 " + NUM),
        ("peers: ratio ls / python -c pass", r"; ratio " + NUM + "x"),
    ]),
    "cluster": Bench("bench_cluster.py", ["--only", "local", "--trials", "8", "--json"], []),
    "mcp": Bench("bench_mcp.py", ["--only", "connect,memory,search,new", "--rounds", "4", "--notes", "2000",
                                  "--callers", "4", "--per-caller", "10", "--agents", "1,10",
                                  "--stdio-agents", "1"], []),
}

# Fixes to a bench script's harness, applied alike to both snapshot trees where the script still needs
# them (the script's text, not agentdeck's): (what the script says, what it should say, why).
HARNESS_FIXES: dict[str, list[tuple[str, str, str]]] = {
    "research": [(
        "repeats_baseline = 2\n'''",
        "repeats_baseline = 2\nsandbox = \"none\"\nenv = {{ BENCH_RECORD = \"${{BENCH_RECORD}}\" }}\n'''",
        "jobs get an allow-listed environment and a private /tmp in the sandbox, so the fake job could not "
        "write BENCH_RECORD; the bench runs them unsandboxed and passes it through [research] env",
    )],
}

# Figures whose raw value is a fraction or seconds but is shown as % or ms.
SCALE = {"research: slot busy while work remained, %": 100.0, "research: gap per trial mean, ms": 1000.0,
         "research: gap per trial p95, ms": 1000.0}


def extract(name: str, out: str) -> dict[str, float]:
    """The headline figures one bench run printed (missing ones are left out)."""
    bench = BENCHES[name]
    found: dict[str, float] = {}
    for figure, pattern in bench.figures:
        m = re.search(pattern, out, re.MULTILINE)
        if m:
            found[figure] = float(m.group(1)) * SCALE.get(figure, 1.0)
    if name == "cluster":
        found.update(_cluster(out))
    elif name == "mcp":
        found.update(_mcp(out))
    return found


def _json_at(out: str, marker: str) -> dict:
    """The JSON object a bench printed, starting at *marker* ({} when it is not there or broken)."""
    at = out.find(marker)
    if at < 0:
        return {}
    try:
        value, _ = json.JSONDecoder().raw_decode(out[at:])
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _cluster(out: str) -> dict[str, float]:
    data = _json_at(out, "{")
    rows = data.get("results", {}).get("local", [])
    found = {}
    for key in ("submit_call", "submit_to_start", "end_to_recorded"):
        values = [r[key] for r in rows if key in r]
        if values:
            found[f"cluster local: {key.replace('_', ' ')} p50, ms"] = statistics.median(values) * 1000
    return found


def _mcp(out: str) -> dict[str, float]:
    # the final report (stdout) is one JSON object; its timings are strings like "p50 8 ms, p95 19 ms (n=8)"
    report = _json_at(out, '{\n  "load_average"')
    if not report:
        return {}
    found: dict[str, float] = {}

    def walk(path: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{path} {key}".strip(), item)
        elif isinstance(value, str):
            m = re.match(r"p50 " + NUM + " ms", value)
            if m:
                found[f"mcp: {path} p50, ms"] = float(m.group(1))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and path.endswith(("_ms", "_mb", "per_s")):
            found[f"mcp: {path}"] = float(value)

    for part, short in (("connect_to_tools_list", "connect"), ("memory_per_agent", "RSS"),
                        ("memory_search_concurrent", "search"), ("new_wall_time", "new")):
        if part in report:
            walk(short, report[part])
    # leave out duplicates (round_trip = p50_ms), PSS beside RSS, and the second-order stdio timings
    drop = ("round_trip", "pss_mb", "importtime_sdk", "stdio_spawn_to_initialize", "0 agents")
    return {k: v for k, v in found.items() if not any(d in k for d in drop)}


def snapshot(rev: str, dest: Path) -> str:
    """Export `rev` into `dest` (emptied first); returns the full commit hash."""
    full = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO, check=True,
                          capture_output=True, text=True).stdout.strip()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", full], cwd=REPO, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise SystemExit(f"git archive {rev} failed")
    return full


def fix_harness(name: str, tree: Path) -> list[str]:
    """Apply HARNESS_FIXES[name] to *tree*'s copy of the script; returns the reasons of those applied."""
    script = tree / "bench" / BENCHES[name].script
    text = script.read_text()
    applied = []
    for before, after, why in HARNESS_FIXES.get(name, []):
        if before in text and after not in text:
            text = text.replace(before, after, 1)
            applied.append(why)
    script.write_text(text)
    return applied


def run_one(name: str, tree: Path, args: list[str], logs: Path, tag: str, nice: int,
            retry: bool = True) -> tuple[dict[str, float], dict]:
    bench = BENCHES[name]
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = ["nice", "-n", str(nice), sys.executable, str(tree / "bench" / bench.script), *args]
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=bench.timeout_s)
        out, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        rc = -1
    wall = time.monotonic() - t0
    header = f"$ {shlex.join(cmd)}\n# rc {rc}, {wall:.1f} s, load {load_before:.1f}\n"
    (logs / f"{name}-{tag}.log").write_text(header + out)
    figures = extract(name, out)
    if not figures and retry:  # a run that printed nothing usable (a crash under load): once more, logged
        print(f"  {name} {tag}: no figures (rc {rc}), retrying once; see {logs / f'{name}-{tag}.log'}", flush=True)
        (logs / f"{name}-{tag}.log").rename(logs / f"{name}-{tag}-failed.log")
        return run_one(name, tree, args, logs, tag, nice, retry=False)
    meta = {"rc": rc, "wall_s": round(wall, 1), "load1": round(load_before, 1), "figures": len(figures)}
    return figures, meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the 'before' revision")
    parser.add_argument("--new", default="HEAD", help="the 'after' revision (default HEAD)")
    parser.add_argument("--benches", default=",".join(BENCHES), help=f"comma list from: {','.join(BENCHES)}")
    parser.add_argument("--runs", type=int, default=2, help="runs per side and bench (default 2)")
    parser.add_argument("--work", default="/tmp/cmp", help="snapshot trees and logs go here")
    parser.add_argument("--nice", type=int, default=5)
    parser.add_argument("--order", choices=("abab", "abba"), default="abab",
                        help="abab: old first in every pair; abba: new first in every second pair "
                             "(to see an order effect)")
    parser.add_argument("--opts", action="append", default=[], metavar='NAME="ARGS"',
                        help="override one bench's arguments, e.g. --opts new=\"20000 5\"")
    parser.add_argument("--json", help="also write every figure of every run here")
    args = parser.parse_args()

    names = [n.strip() for n in args.benches.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown bench {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    overrides = {}
    for item in args.opts:
        key, _, value = item.partition("=")
        overrides[key] = shlex.split(value)

    work = Path(args.work)
    old_tree, new_tree, logs = work / "old", work / "new", work / "logs"
    old_hash = snapshot(args.old, old_tree)
    new_hash = snapshot(args.new, new_tree)
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    for side, tree in (("old", old_tree), ("new", new_tree)):
        missing = [n for n in names if not (tree / "bench" / BENCHES[n].script).exists()]
        if missing:
            raise SystemExit(f"{side} tree ({tree}) lacks {', '.join(BENCHES[n].script for n in missing)}")
    for name in names:
        for side, tree in (("old", old_tree), ("new", new_tree)):
            for why in fix_harness(name, tree):
                print(f"harness fix, {name} ({side}): {why}")
    print(f"before {old_hash[:10]} ({old_tree}), after {new_hash[:10]} ({new_tree}); "
          f"{args.runs} runs each, interleaved ({args.order})", flush=True)

    values: dict[str, dict[str, list[float]]] = {}
    runs: list[dict] = []
    loads: list[float] = []
    started = time.time()
    for name in names:
        bench_args = overrides.get(name, BENCHES[name].args)
        for i in range(args.runs):
            pair = [("old", old_tree), ("new", new_tree)]
            if args.order == "abba" and i % 2:
                pair.reverse()
            for side, tree in pair:
                figures, meta = run_one(name, tree, bench_args, logs, f"{side}{i + 1}", args.nice)
                loads.append(meta["load1"])
                runs.append({"bench": name, "side": side, "run": i + 1, "args": bench_args, **meta,
                             "values": figures})
                print(f"  {name} {side} run {i + 1}: rc {meta['rc']}, {meta['wall_s']} s, load {meta['load1']}, "
                      f"{meta['figures']} figures", flush=True)
                for figure, value in figures.items():
                    values.setdefault(figure, {"old": [], "new": []})[side].append(value)

    print()
    print(f"{'figure':<48} {'before':>10} {'after':>10} {'after/before':>13}")
    rows = []
    for figure, sides in values.items():
        if not sides["old"] or not sides["new"]:
            continue
        old, new = statistics.median(sides["old"]), statistics.median(sides["new"])
        ratio = new / old if old else float("nan")
        flag = "  <-- outside 10 %" if old and abs(ratio - 1) > 0.10 else ""
        rows.append({"figure": figure, "before": old, "after": new, "ratio": ratio,
                     "before_runs": sides["old"], "after_runs": sides["new"]})
        print(f"{figure:<48} {old:>10.4g} {new:>10.4g} {ratio:>12.2f}x{flag}")
    print(f"\nload average (1 min) at the runs' starts: {min(loads):.1f}-{max(loads):.1f}, "
          f"median {statistics.median(loads):.1f}; {time.time() - started:.0f} s in all; logs in {logs}")
    if args.json:
        Path(args.json).write_text(json.dumps({"old": old_hash, "new": new_hash, "runs": runs, "table": rows},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
