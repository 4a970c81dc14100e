"""Aider, for real, against the local OpenAI chat stub (optional: aider is a large install).

Runs when `aider` is found in .ci/.cache/aider-venv (``python -m venv .ci/.cache/aider-venv &&
.ci/.cache/aider-venv/bin/pip install aider-chat==0.86.2``) or on PATH; skipped otherwise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from realcli_support import ROOT
from stubs.openai_stub import OpenAIStub, Reply
from support import retry_until, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.realcli, pytest.mark.timeout(240)]


def find_aider() -> str | None:
    local = ROOT / ".ci" / ".cache" / "aider-venv" / "bin" / "aider"
    return str(local) if local.exists() else shutil.which("aider")


def status_of(repo: Path, name: str) -> dict:
    proc = run_cli("ls", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a for a in json.loads(proc.stdout)}[name]


def test_aider_answers_asks_and_is_approved(git_repo, isolated_home, tmp_path):
    aider = find_aider()
    if aider is None:
        pytest.skip("aider is not installed (optional: see this file's docstring)")
    home = tmp_path / "aider-home"
    home.mkdir()
    with OpenAIStub() as stub:
        stub.when("hello there", Reply.text("Hello from the stub model!"))
        # Aider's "whole" edit format: a file name, then its full content in a fence.
        stub.when("makefile", Reply.text("made.txt\n```\nhello from aider\n```\n"))
        args = ["--model", "openai/stub-model", "--openai-api-base", f"{stub.url}/v1", "--openai-api-key", "sk-stub",
                "--no-show-model-warnings"]
        env = {"HOME": str(home), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        (isolated_home / "config.toml").write_text(
            "[agents.aider]\n"
            f"command = {json.dumps(aider)}\n"
            f"args = {json.dumps(args)}\n"
            "[agents.aider.env]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in env.items())
        )
        proc = run_cli("new", "delta", "--agent", "aider", "--prompt", "hello there", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        retry_until(lambda: "Hello from the stub model!" in run_cli("peek", "delta", cwd=git_repo).stdout,
                    timeout=90, what="aider's answer")
        retry_until(lambda: status_of(git_repo, "delta")["status"] == "idle", timeout=30, what="idle")

        assert run_cli("send", "delta", "makefile please", cwd=git_repo).returncode == 0
        waiting = retry_until(lambda: (lambda a: a if a["status"] == "waiting" else None)(status_of(git_repo, "delta")),
                              timeout=60, what="aider's question")
        assert "Create new file?" in run_cli("peek", "delta", cwd=git_repo).stdout
        assert run_cli("approve", "delta", cwd=git_repo).returncode == 0
        retry_until(lambda: status_of(git_repo, "delta")["status"] == "idle", timeout=60, what="idle again")
        assert (Path(waiting["worktree"]) / "made.txt").read_text() == "hello from aider\n"
