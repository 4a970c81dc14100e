"""End to end with the real Codex CLI (pinned, see tests/install_clis.sh) against the local
OpenAI Responses stub (a custom `model_providers` entry), through agentdeck's CLI only.

Skipped when the CLI is not installed, unless AGENTDECK_REQUIRE_REAL_CLIS=1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from realcli_support import codex_env, require_cli, seed_codex_home, write_agent_config
from stubs.openai_stub import OpenAIStub, Reply
from support import retry_until, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.realcli, pytest.mark.timeout(240)]


def agent(repo: Path, name: str) -> dict:
    proc = run_cli("ls", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a for a in json.loads(proc.stdout)}[name]


def until(repo: Path, name: str, seen: list[str], *wanted: str, timeout: float = 60) -> dict:
    def check():
        a = agent(repo, name)
        if not seen or seen[-1] != a["status"]:
            seen.append(a["status"])
        return a if a["status"] in wanted else None

    try:
        return retry_until(check, timeout=timeout, interval=0.2, what=f"{name} {wanted} (seen {seen})")
    except AssertionError as exc:
        screen = run_cli("peek", name, cwd=repo).stdout
        events = run_cli("events", name, "--json", cwd=repo).stdout
        raise AssertionError(f"{exc}\n--- screen:\n{screen}\n--- events:\n{events}") from None


def history(repo: Path, name: str, after: int = 0) -> list[dict]:
    """Status changes recorded after event id *after* (what `agentdeck events` shows)."""
    events = json.loads(run_cli("events", name, "--json", cwd=repo).stdout)
    return [e for e in events if e["id"] > after and e["type"] == "status"]


def last_event_id(repo: Path, name: str) -> int:
    return max(e["id"] for e in json.loads(run_cli("events", name, "--json", cwd=repo).stdout))


def test_prompt_answer_idle_then_send_and_restart(git_repo, isolated_home, tmp_path):
    codex = require_cli("codex")
    home = tmp_path / "codex-home"
    with OpenAIStub() as stub:
        seed_codex_home(home, stub.url)
        write_agent_config(isolated_home, "codex", codex, codex_env(home))
        stub.when("first question", Reply.text("First answer from the stub.", delay=3.0))
        stub.when("second question", Reply.text("Second answer from the stub.", delay=3.0))
        stub.when("third question", Reply.text("Third answer from the stub."))

        proc = run_cli("new", "gamma", "--agent", "codex", "--prompt", "first question", "--json", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        seen: list[str] = []
        idle = until(git_repo, "gamma", seen, "idle", timeout=90)
        # A poll can miss a short state on a loaded machine; the recorded history cannot.
        statuses = [e["status"] for e in history(git_repo, "gamma")]
        assert "working" in statuses and statuses[-1] == "idle", statuses
        assert "First answer from the stub." in run_cli("peek", "gamma", cwd=git_repo).stdout
        # The turn-complete notify came back into agentdeck, and taught it the conversation id.
        events = json.loads(run_cli("events", "gamma", "--json", cwd=git_repo).stdout)
        assert any(e["type"] == "status" and e["status"] == "idle" and e["source"] == "hook" for e in events)
        session_id = retry_until(lambda: agent(git_repo, "gamma")["session_id"], timeout=10, what="session id")
        rollouts = list((home / ".codex" / "sessions").glob(f"*/*/*/rollout-*{session_id}.jsonl"))
        assert len(rollouts) == 1
        assert json.loads(rollouts[0].read_text().splitlines()[0])["payload"]["cwd"] == idle["cwd"]

        seen = []
        mark = last_event_id(git_repo, "gamma")
        assert run_cli("send", "gamma", "second question", cwd=git_repo).returncode == 0
        retry_until(lambda: any(e["status"] == "working" for e in history(git_repo, "gamma", mark)), timeout=60,
                    what="working after the second send")
        until(git_repo, "gamma", seen, "idle", timeout=60)
        assert [e["status"] for e in history(git_repo, "gamma", mark)][-1] == "idle"
        assert "Second answer from the stub." in run_cli("peek", "gamma", cwd=git_repo).stdout

        # Restart resumes this agent's conversation, by its id.
        assert run_cli("restart", "gamma", cwd=git_repo).returncode == 0
        seen = []
        until(git_repo, "gamma", seen, "idle", timeout=60)
        assert agent(git_repo, "gamma")["session_id"] == session_id
        before = len(stub.main_requests())
        assert run_cli("send", "gamma", "third question", cwd=git_repo).returncode == 0
        retry_until(lambda: len(stub.main_requests()) > before, timeout=30, what="the next model request")
        sent = json.dumps(stub.main_requests()[-1].body["input"])
        assert "first question" in sent and "second question" in sent
        until(git_repo, "gamma", seen, "idle", timeout=60)
