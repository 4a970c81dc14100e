"""Cost of one agent event through ``agentdeck hook`` (interpreter start included).

Runs the hook command exactly as the agents run it (``Deck.agentdeck_argv("hook")``:
``[env PYTHONPATH=...] python -m agentdeck hook KIND EVENT``) against a real state
database in a temp dir, N times per event, and prints p50/p95 wall milliseconds
beside a baseline measured in the same run: ``python -c pass`` (the floor any
Python hook pays).

    python bench/bench_hooks.py [-n 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agentdeck.store import AgentRecord, Store, utc_iso

SESSION = "0b5e2c1e-1111-4222-8333-944455556666"
THREAD = "01a2166a-0000-7000-8000-000000000001"

CLAUDE_EVENTS = [
    ("UserPromptSubmit", {"prompt": "make the file"}),
    ("PreToolUse", {"tool_name": "Bash", "tool_input": {"command": "touch x"}}),
    ("PermissionRequest", {"tool_name": "Bash"}),
    ("PostToolUse", {"tool_name": "Bash", "tool_response": {"stdout": ""}}),
    ("Notification", {"notification_type": "permission_prompt", "message": "Claude needs your permission"}),
    ("Stop", {"stop_hook_active": False}),
]


def hook_argv() -> list[str]:
    try:
        from agentdeck.deck import Deck

        return Deck.agentdeck_argv("hook")
    except Exception:  # the facade is not importable: the same shape by hand
        return ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "agentdeck", "hook"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def timed(argv: list[str], env: dict[str, str], stdin: str | None, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        proc = subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True)
        out.append((time.perf_counter() - start) * 1000)
        if proc.returncode != 0 or proc.stdout or proc.stderr:
            raise SystemExit(f"{argv} misbehaved: rc={proc.returncode} out={proc.stdout!r} err={proc.stderr!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="runs per event (default 40)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="agentdeck-bench-hooks-") as tmp:
        state_dir = Path(tmp) / "state"
        codex_home = Path(tmp) / "codex"
        session_dir = codex_home / "sessions" / "2026" / "01" / "01"
        session_dir.mkdir(parents=True)
        (session_dir / f"rollout-2026-01-01T00-00-00-{THREAD}.jsonl").write_text("{}\n")
        store = Store(state_dir / "state.db")
        for name, sid in (("bench-claude", SESSION), ("bench-codex", "")):
            store.insert_agent(AgentRecord(
                name=name, slug=name, definition=name.split("-")[1], kind=name.split("-")[1], branch=f"b/{name}",
                base_branch="main", base_commit="0" * 40, worktree=tmp, session=f"ad-{name}",
                created_at=utc_iso(), session_id=sid,
            ))
        store.close()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTDECK_")}
        base_env.update({"AGENTDECK_STATE_DIR": str(state_dir), "CODEX_HOME": str(codex_home)})

        claude_env = {**base_env, "AGENTDECK_AGENT": "bench-claude"}
        codex_env = {**base_env, "AGENTDECK_AGENT": "bench-codex"}
        rows: list[tuple[str, list[str], dict[str, str], str | None]] = [
            ("baseline: python -c pass", [sys.executable, "-c", "pass"], base_env, None),
        ]
        for event, extra in CLAUDE_EVENTS:
            payload = json.dumps({"session_id": SESSION, "hook_event_name": event, "cwd": tmp, **extra})
            rows.append((f"claude {event}", hook_argv() + ["claude", event], claude_env, payload))
        notify = json.dumps({"type": "agent-turn-complete", "thread-id": THREAD, "turn-id": "t1", "cwd": tmp,
                             "input-messages": ["hi"], "last-assistant-message": "hello"})
        rows.append(("codex notify", hook_argv() + ["codex", "notify", notify], codex_env, None))
        # What skipping `site` would save (a proposal: python -S on the hook path).
        s_argv = list(hook_argv())
        if sys.executable in s_argv:
            s_argv.insert(s_argv.index(sys.executable) + 1, "-S")
            payload = json.dumps({"session_id": SESSION, "hook_event_name": "Stop", "cwd": tmp})
            rows.append(("claude Stop, python -S", s_argv + ["claude", "Stop"], claude_env, payload))
            rows.append(("baseline: python -S -c pass", [sys.executable, "-S", "-c", "pass"], base_env, None))

        # Warm the page and byte-code caches, then interleave the rows so that a change
        # of machine load hits them all alike.
        for _, row_argv, env, stdin in rows:
            timed(row_argv, env, stdin, 2)
        samples: dict[str, list[float]] = {label: [] for label, *_ in rows}
        for _ in range(args.n):
            for label, row_argv, env, stdin in rows:
                samples[label] += timed(row_argv, env, stdin, 1)
        results: dict[str, dict[str, float]] = {
            label: {"p50_ms": statistics.median(xs), "p95_ms": percentile(xs, 0.95), "n": len(xs)}
            for label, xs in samples.items()
        }

        check = Store(state_dir / "state.db")
        hook_events = len(check.events("bench-claude", types=("hook",)))
        check.close()
        if hook_events < args.n:
            raise SystemExit(f"the hook recorded only {hook_events} events: it is not doing its work")

    base = results["baseline: python -c pass"]["p50_ms"]
    for row in results.values():
        row["ratio_p50"] = row["p50_ms"] / base if base else 0.0
    if args.json:
        print(json.dumps({"python": sys.version.split()[0], "hook_argv": hook_argv(), "results": results}, indent=2))
        return 0
    print(f"agentdeck hook latency (python {sys.version.split()[0]}, n={args.n} per row, wall ms incl. start)")
    print(f"{'event':34} {'p50':>8} {'p95':>8} {'x base':>7}")
    for label, row in results.items():
        print(f"{label:34} {row['p50_ms']:8.1f} {row['p95_ms']:8.1f} {row['ratio_p50']:7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
