"""Sharing an agent's branch: ``git push -u`` and a pull/merge request with ``gh`` or ``glab``.

This module is the only one that runs ``gh`` / ``glab``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from agentdeck import git
from agentdeck.errors import Refused, UsageError

PR_TOOLS = ("gh", "glab")


def remote_url(root: Path | str, remote: str = "origin") -> str | None:
    remotes = git.run(root, "remote").split()
    if remote not in remotes:
        return None
    return git.run(root, "remote", "get-url", remote, check=False) or ""


def push(root: Path | str, branch: str, remote: str = "origin") -> str:
    """``git push -u REMOTE BRANCH``; returns git's report (stderr) in one line."""
    if remote_url(root, remote) is None:
        raise UsageError(
            f"this repository has no remote {remote!r}; add one with `git remote add {remote} URL` and try again"
        )
    if not git.branch_exists(root, branch):
        raise UsageError(f"branch {branch!r} does not exist; nothing to push")
    proc = git.run_proc(root, "push", "--porcelain", "-u", remote, f"refs/heads/{branch}:refs/heads/{branch}")
    if proc.returncode != 0:
        detail = " / ".join(ln.strip() for ln in proc.stderr.strip().splitlines()[-3:]) or f"exit {proc.returncode}"
        raise Refused(f"git push of {branch} to {remote} failed: {detail}")
    return f"pushed {branch} to {remote}"


def pick_tool(url: str = "", which: Callable[[str], str | None] = shutil.which) -> str:
    """``gh`` or ``glab``: the one installed; both installed: by the remote's host."""
    found = [t for t in PR_TOOLS if which(t)]
    if not found:
        raise UsageError(
            "opening a pull request needs the GitHub CLI `gh` or the GitLab CLI `glab`; install one "
            "(https://cli.github.com or https://gitlab.com/gitlab-org/cli), or use `agentdeck push NAME`"
        )
    if len(found) == 2 and "gitlab" in url.lower():
        return "glab"
    return found[0]


def pr_command(tool: str, branch: str, base: str, title: str | None = None, body: str | None = None,
               draft: bool = False) -> list[str]:
    if tool == "gh":
        cmd = ["gh", "pr", "create", "--head", branch, "--base", base]
        cmd += ["--title", title, "--body", body or ""] if title else ["--fill"]
        if draft:
            cmd.append("--draft")
    else:
        cmd = ["glab", "mr", "create", "--source-branch", branch, "--target-branch", base, "--yes"]
        cmd += ["--title", title, "--description", body or ""] if title else ["--fill"]
        if draft:
            cmd.append("--draft")
    return cmd


def open_pr(root: Path | str, cwd: Path | str, branch: str, base: str, title: str | None = None,
            body: str | None = None, draft: bool = False, remote: str = "origin") -> tuple[str, str]:
    """Push *branch*, then open a PR/MR into *base*. Returns (tool, its output: usually the URL)."""
    url = remote_url(root, remote)
    tool = pick_tool(url or "")
    if url is None:
        raise UsageError(
            f"this repository has no remote {remote!r}; add one with `git remote add {remote} URL` and try again"
        )
    push(root, branch, remote)
    cmd = pr_command(tool, branch, base, title, body, draft)
    try:
        proc = subprocess.run(cmd, cwd=str(cwd), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:  # pragma: no cover - raced with an uninstall
        raise UsageError(f"{tool} disappeared; install gh or glab and try again") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise Refused(f"{tool} could not open the request: {' / '.join(lines[-3:]) or f'exit {proc.returncode}'}")
    return tool, proc.stdout.strip()
