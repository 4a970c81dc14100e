"""Memory benchmarks: search over 10,000 notes, CLI start-up, 8 concurrent writers, full reindex.

    python bench/bench_memory.py                 # the issue's figures (10,000 notes)
    python bench/bench_memory.py --notes 2000 --json

Notes are synthetic but shaped like real ones: a Zipf-distributed vocabulary,
4-8 word titles, 80-300 word bodies, two tags each.  Everything runs in a
temporary git repository; nothing outside it is touched.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentdeck.memory.store import MemoryStore, Note

SYLLABLES = "ka lo mi nu pe ra si to vu ze an el in or us ba de fi go hu".split()
TAGS = ["build", "ci", "gpu", "api", "db", "ui", "perf", "tests", "deploy", "docs"]


def vocabulary(size: int, rng: random.Random) -> tuple[list[str], list[float]]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    weights = [1.0 / (rank + 1) for rank in range(len(ordered))]
    return ordered, weights


def make_notes(store: MemoryStore, count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words, weights = vocabulary(20_000, rng)
    store.ensure_layout()
    stamp = "2026-11-26T00:00:00Z"
    for i in range(count):
        title = " ".join(rng.choices(words, weights, k=rng.randint(4, 8))).capitalize()
        body = " ".join(rng.choices(words, weights, k=rng.randint(80, 300)))
        note = Note(id=f"bench-{i:05d}", title=title, kind=rng.choice(["note", "gotcha", "finding", "decision"]),
                    tags=rng.sample(TAGS, 2), author=f"agent-{i % 8}", created=stamp, updated=stamp, body=body)
        (store.notes_dir / f"{note.id}.md").write_text(note.render(), encoding="utf-8")
    return words


def queries(words: list[str], n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    # Mid-frequency words: what people search for (not the top stop-word-like ones).
    pool = words[50:5000]
    return [" ".join(rng.sample(pool, rng.randint(1, 3))) for _ in range(n)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def time_cli(args: list[str], cwd: Path, runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _writer(root: str, index_path: str, writer: int, count: int, start_at: float, out: mp.Queue) -> None:
    store = MemoryStore(root, index_path, author=f"writer-{writer}", branch="bench")
    _ = store.index  # open before the clock starts
    while time.time() < start_at:
        time.sleep(0.001)
    latencies = []
    for i in range(count):
        t = time.perf_counter()
        store.add(f"Concurrent note {i} from writer {writer}", f"body {writer} {i} " * 20, tags=["bench"])
        latencies.append(time.perf_counter() - t)
    store.close()
    out.put(latencies)


def concurrent_writes(root: Path, index_path: Path, writers: int, per_writer: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    start_at = time.time() + 2.0 + 0.3 * writers
    procs = [ctx.Process(target=_writer, args=(str(root), str(index_path), w, per_writer, start_at, out))
             for w in range(writers)]
    for p in procs:
        p.start()
    latencies: list[float] = []
    for _ in procs:
        latencies.extend(out.get(timeout=600))
    for p in procs:
        p.join()
    elapsed = time.time() - start_at
    total = writers * per_writer
    return {"writers": writers, "notes": total, "seconds": round(elapsed, 2),
            "notes_per_s": round(total / elapsed, 1),
            "write_p50_ms": round(percentile(latencies, 50) * 1e3, 1),
            "write_p95_ms": round(percentile(latencies, 95) * 1e3, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--per-writer", type=int, default=50)
    parser.add_argument("--cli-runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    results: dict[str, object] = {"notes": args.notes, "python": sys.version.split()[0],
                                  "cpus": os.cpu_count()}
    tmp = Path(tempfile.mkdtemp(prefix="agentdeck-bench-"))
    try:
        repo = tmp / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "--allow-empty",
                        "-m", "init"], cwd=repo, check=True)
        store = MemoryStore.open(cwd=repo)

        start = time.perf_counter()
        words = make_notes(store, args.notes)
        results["generate_s"] = round(time.perf_counter() - start, 2)

        start = time.perf_counter()
        count = store.reindex()
        results["reindex_s"] = round(time.perf_counter() - start, 2)
        results["reindex_docs"] = count
        start = time.perf_counter()
        store.reindex()
        results["reindex_again_s"] = round(time.perf_counter() - start, 2)

        qs = queries(words, args.queries)
        for q in qs[:20]:  # warm the page cache
            store.search(q, 10, sync=False)
        lat = []
        found = 0
        for q in qs:
            t = time.perf_counter()
            hits = store.search(q, 10, sync=False)
            lat.append(time.perf_counter() - t)
            found += bool(hits)
        results["search_p50_ms"] = round(percentile(lat, 50) * 1e3, 2)
        results["search_p95_ms"] = round(percentile(lat, 95) * 1e3, 2)
        results["search_max_ms"] = round(max(lat) * 1e3, 2)
        results["queries_with_hits"] = f"{found}/{len(qs)}"

        sync_lat = []
        for _ in range(10):
            t = time.perf_counter()
            store.sync()
            sync_lat.append(time.perf_counter() - t)
        results["sync_stat_p50_ms"] = round(percentile(sync_lat, 50) * 1e3, 1)

        t = time.perf_counter()
        store._write_index_md()
        results["index_md_ms"] = round((time.perf_counter() - t) * 1e3, 1)

        results["cli_python_bare_s"] = round(time_cli(["-c", "pass"], repo, args.cli_runs), 3)
        results["cli_version_s"] = round(time_cli(["-m", "agentdeck", "--version"], repo, args.cli_runs), 3)
        results["cli_memory_search_s"] = round(
            time_cli(["-m", "agentdeck", "memory", "search", qs[0], "--limit", "5"], repo, args.cli_runs), 3)
        store.close()

        empty_root = tmp / "writes-empty"
        results["writes_empty_store"] = concurrent_writes(
            empty_root, tmp / "writes-empty.db", args.writers, args.per_writer)
        results["writes_full_store"] = concurrent_writes(
            store.root, store.index_path, args.writers, args.per_writer)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        print(json.dumps(results, indent=2))
    else:
        width = max(len(k) for k in results)
        for key, value in results.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
