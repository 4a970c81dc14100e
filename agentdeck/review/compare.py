"""Compare several attempts at one task: files changed, lines, and the test command's verdict.

``[review] test_command`` runs in each worktree one after the other (never at
the same time: parallel runs would share CPUs and ports and skew the times).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentdeck.review.diff import Side, compute_diff


@dataclass
class SuiteRun:
    command: str
    passed: bool
    returncode: int | None  # None when killed by the timeout
    seconds: float
    output_tail: str = ""
    timed_out: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command, "passed": self.passed, "returncode": self.returncode,
            "seconds": round(self.seconds, 3), "timed_out": self.timed_out, "output_tail": self.output_tail,
        }


@dataclass
class CompareRow:
    agent: str
    branch: str
    files: int
    added: int
    removed: int
    paths: list[str] = field(default_factory=list)
    uncommitted: bool = False
    test: SuiteRun | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "branch": self.branch, "files": self.files, "added": self.added,
            "removed": self.removed, "paths": self.paths, "uncommitted": self.uncommitted,
            "test": self.test.to_json() if self.test else None,
        }


def run_test(command: str, cwd: Path | str, timeout: float | None = None, tail_lines: int = 20,
             env: dict[str, str] | None = None) -> SuiteRun:
    """Run *command* with the shell in *cwd*; pass = exit 0 within *timeout*.  In a sandboxed
    agent's worktree it runs inside that agent's sandbox (its files are the agent's)."""
    from agentdeck.sandbox.agent_bwrap import command_in_worktree

    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    sandboxed = command_in_worktree(cwd, ["/bin/sh", "-c", command], full_env)
    start = time.monotonic()
    proc = subprocess.Popen(
        sandboxed if sandboxed is not None else command, shell=sandboxed is None, cwd=str(cwd),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True, errors="replace", env=full_env, start_new_session=True,
    )
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the shell and what it started
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
    seconds = time.monotonic() - start
    tail = "\n".join((out or "").rstrip("\n").splitlines()[-tail_lines:])
    rc = None if timed_out else proc.returncode
    return SuiteRun(command, passed=rc == 0, returncode=rc, seconds=seconds, output_tail=tail, timed_out=timed_out)


def compare_one(agent: str, side: Side, test_command: str = "", timeout: float | None = None,
                env: dict[str, str] | None = None) -> CompareRow:
    result = compute_diff(side, patch=False)
    row = CompareRow(
        agent=agent, branch=side.branch, files=len(result.files), added=result.added,
        removed=result.removed, paths=result.paths, uncommitted=result.uncommitted,
    )
    if test_command and side.worktree is not None and Path(side.worktree).is_dir():
        row.test = run_test(test_command, side.worktree, timeout=timeout, env=env)
    return row


def compare(items: list[tuple[str, Side]], test_command: str = "", timeout: float | None = None) -> list[CompareRow]:
    rows = []
    for agent, side in items:
        env = {"AGENTDECK_AGENT": agent, "AGENTDECK_WORKTREE": str(side.worktree or "")}
        rows.append(compare_one(agent, side, test_command, timeout, env))
    return rows


def table(rows: list[CompareRow]) -> list[str]:
    """Plain-text table for the CLI."""
    header = ["agent", "files", "+", "-", "tests", "time"]
    body = []
    for r in rows:
        if r.test is None:
            verdict, secs = "-", "-"
        else:
            verdict = "timeout" if r.test.timed_out else ("pass" if r.test.passed else f"fail ({r.test.returncode})")
            secs = f"{r.test.seconds:.1f}s"
        name = r.agent + (" *" if r.uncommitted else "")
        body.append([name, str(r.files), f"+{r.added}", f"-{r.removed}", verdict, secs])
    widths = [max(len(row[i]) for row in [header] + body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)).rstrip()]
    lines += ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in body]
    if any(r.uncommitted for r in rows):
        lines.append("* includes uncommitted work")
    return lines
