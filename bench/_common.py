"""Shared set-up for the benchmark scripts (isolated home, tmux socket, repositories)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def isolate() -> Path:
    """Point agentdeck at a throw-away home and tmux socket; returns the temp dir."""
    tmp = Path(tempfile.mkdtemp(prefix="adbench-"))
    os.environ["AGENTDECK_HOME"] = str(tmp / "home")
    os.environ["AGENTDECK_TMUX_SOCKET"] = f"adbench-{uuid.uuid4().hex[:8]}"
    os.environ["PYTHONPATH"] = str(ROOT)
    for k, v in {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
                 "GIT_COMMITTER_EMAIL": "b@x"}.items():
        os.environ[k] = v
    return tmp


def cleanup() -> None:
    subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "kill-server"], capture_output=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.0f} ms, p95 {pct(values, 95) * 1000:.0f} ms (n={len(values)})"
