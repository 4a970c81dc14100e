"""The research ``agent`` proposer end to end: a coding agent in a real deck pane (tmux, worktree)
edits the lab's editable file and calls the MCP tool ``research_submit``; agentdeck runs the job.

Two agents: the scripted fake agent (tests/fake_agent.py, which calls the tool through the real MCP
client) and the real Claude Code CLI against the local Anthropic stub (skipped when not installed,
unless AGENTDECK_REQUIRE_REAL_CLIS=1).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path

import pytest
from memory_support import _no_memory_env  # noqa: F401

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realcli_support import claude_env, require_cli, seed_claude_home, write_agent_config
from research_support import by_desc, make_lab, research_for
from stubs.anthropic_stub import AnthropicStub, Reply
from support import git, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

FAKE_AGENT = Path(__file__).resolve().parent / "fake_agent.py"


def fake_agent_config(script: Path) -> str:
    """``[research] agent = "fake"`` (appended to the lab's [research]) and the fake agent's definition."""
    return f'''agent = "fake"

[agents.fake]
kind = "generic"
command = "{sys.executable} {FAKE_AGENT}"
prompt_arg = "-"
idle_pattern = '^> *$'
quiet_s = 1.0

[agents.fake.env]
FAKE_AGENT_SCRIPT = "{script}"
'''


def agent_screens(repo: Path) -> str:
    listed = run_cli("ls", "--json", cwd=repo)
    names = [a["name"] for a in json.loads(listed.stdout)] if listed.returncode == 0 else []
    return "\n".join(f"--- {name}:\n{run_cli('peek', name, cwd=repo).stdout}" for name in names)


def run_in_thread(research, tag: str) -> dict:
    """research.run in a thread, so a hang fails the test with what the loop knew, not a timeout."""
    out: dict = {}

    def target():
        try:
            out["result"] = research.run(tag)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    if thread.is_alive():
        screens = agent_screens(research.repo.root)
        research.stop(tag, wait_s=20)
        thread.join(30)
        raise AssertionError(f"the run did not end: {research.status(tag)}\n{screens}")
    if "error" in out:
        raise out["error"]
    return out["result"]


def test_fake_agent_proposes_through_research_submit(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"on": "research_submit", "steps": [
        ["run sed -i 's/^X = .*/X = 5.0/' train.py", 'mcp research_submit {"description": "move X toward 7"}'],
        ["run sed -i 's/^Y = .*/Y = 2.0/' train.py", 'mcp research_submit {"description": "set Y to 2"}'],
    ]}))
    repo = make_lab(tmp_path / "repo", repeats=1, workers=1, proposer="agent", extra=fake_agent_config(script))
    research = research_for(repo)
    tag = research.start("agent1", trials=2)
    assert run_in_thread(research, tag)["state"] == "done"

    status = research.status(tag)
    first, second = by_desc(status, "move X toward 7"), by_desc(status, "set Y to 2")
    assert (first["status"], first["metric"]) == ("keep", 6.0)  # (5-7)^2 + (1-2)^2 + 1
    # The agent was reset to the new best before its second change: both edits are in it.
    assert (second["status"], second["metric"]) == ("keep", 5.0)
    assert status["best"]["id"] == second["id"]
    diff = research.diff(second["id"])
    assert "+Y = 2.0" in diff and " X = 5.0" in diff and "\n-X" not in diff and "\n+X" not in diff
    # One agent, kept for the run, asked twice: both requests submitted with its descriptions.
    rows = research.ledger.conn.execute("SELECT agent, state, description FROM agent_requests ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [("research-agent1-1", "submitted", "move X toward 7"),
                                        ("research-agent1-1", "submitted", "set Y to 2")]
    # The run's agents are gone at its end (their last work under a recovery ref); nothing left in git.
    listed = run_cli("ls", "--json", "--all", cwd=repo)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert "research-agent1" not in git(repo, "branch", "--list")
    assert git(repo, "status", "--porcelain") == ""
    research.close()


def test_fake_agent_touching_a_protected_file_is_rejected(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"on": "research_submit", "steps": [
        ["run sed -i 's/^X = .*/X = 7.0/' train.py", "run echo '# tuned' >> prepare.py",
         'mcp research_submit {"description": "perfect X, tune the eval"}'],
    ]}))
    repo = make_lab(tmp_path / "repo", repeats=1, workers=1, proposer="agent", extra=fake_agent_config(script))
    research = research_for(repo)
    tag = research.start("agent2", trials=1)
    assert run_in_thread(research, tag)["state"] == "done"
    trial = by_desc(research.status(tag), "perfect X, tune the eval")
    assert trial["status"] == "crash" and "prepare.py" in trial["reason"], trial
    assert research.status(tag)["best"]["metric"] == 18.0  # the baseline stays the best
    research.close()


# ---------------------------------------------------------------------- the real Claude Code CLI

SUBMIT = "mcp__agentdeck__research_submit"
WAIT = "WaitForMcpServers"


def _cwd(req) -> str:
    system = req.body.get("system")
    text = system if isinstance(system, str) else "\n".join(b.get("text", "") for b in system or [])
    match = re.search(r"Primary working directory: (.+)$", text, re.MULTILINE)
    assert match, "no working directory in the system prompt"
    return match.group(1).strip()


def _results(req) -> str:
    return "\n".join(req.tool_results)


@pytest.mark.realcli
def test_claude_edits_train_py_and_calls_research_submit(tmp_path, isolated_home):
    claude = require_cli("claude")
    home = tmp_path / "claude-home"
    seed_claude_home(home)
    repo = make_lab(tmp_path / "repo", repeats=1, workers=1, proposer="agent",
                    extra='agent = "claude"\n')
    with AnthropicStub() as stub:
        config = write_agent_config(isolated_home, "claude", claude, claude_env(home, stub.url))
        # Research agents work unattended: file edits accepted in their worktree (the MCP tools are
        # allowed by agentdeck itself).
        config.write_text(config.read_text().replace(
            "[agents.claude.env]", 'args = ["--permission-mode", "acceptEdits"]\n\n[agents.claude.env]'))
        instructed = lambda r: "research_submit" in r.prompt  # noqa: E731 - agentdeck's instruction
        # The model: wait for the agentdeck server if needed, read train.py, edit it, submit, close.
        stub.when(lambda r: r.is_tool_turn and '"submitted"' in _results(r), Reply.text("Submitted the change."))
        stub.when(lambda r: r.is_tool_turn and "has been updated" in _results(r),
                  Reply.tool(SUBMIT, {"description": "move X toward 7"}))
        stub.when(lambda r: r.is_tool_turn and "X = 3.0" in _results(r),
                  Reply.tool("Edit", {"file_path": "{cwd}/train.py", "old_string": "X = 3.0",
                                      "new_string": "X = 5.0", "replace_all": False}))
        stub.when(lambda r: SUBMIT in r.tool_names and (instructed(r) or r.is_tool_turn),
                  Reply.tool("Read", {"file_path": "{cwd}/train.py"}))
        stub.when(lambda r: WAIT in r.tool_names and (instructed(r) or r.is_tool_turn),
                  Reply.tool(WAIT, {"servers": ["agentdeck"]}), times=3)
        # File paths are absolute: fill in the agent's worktree, read from the request.
        original_pick = stub.pick

        def pick(req):
            reply = original_pick(req)
            if reply.tools and "{cwd}" in json.dumps(reply.tools[0].input):
                cwd = _cwd(req)
                filled = {k: v.replace("{cwd}", cwd) if isinstance(v, str) else v
                          for k, v in reply.tools[0].input.items()}
                return Reply.tool(reply.tools[0].name, filled)
            return reply

        stub.pick = pick  # type: ignore[method-assign]

        research = research_for(repo)
        tag = research.start("claude1", trials=1)
        try:
            result = run_in_thread(research, tag)
        except AssertionError as exc:
            answered = [(r.answered_by, r.prompt[:60], _results(r)[:120]) for r in stub.main_requests()]
            raise AssertionError(f"{exc}\n--- model turns: {answered}") from None

    assert result["state"] == "done"
    status = research.status(tag)
    trial = by_desc(status, "move X toward 7")
    assert (trial["status"], trial["metric"]) == ("keep", 6.0), (trial, status)
    assert "+X = 5.0" in research.diff(trial["id"])
    requests = stub.main_requests()
    assert any(SUBMIT in r.tool_names for r in requests)
    # agentdeck's instruction reached the model as the agent's prompt, naming the program in the
    # agent's own working directory (never a path in agentdeck's trial worktrees).
    instruction = next(r.prompt for r in requests if "research_submit" in r.prompt)
    assert "Read the lab's program first: program.md (in your working directory)" in instruction
    assert "/wt/" not in instruction and str(repo) not in instruction
    row = research.ledger.conn.execute("SELECT agent, state FROM agent_requests").fetchone()
    assert tuple(row) == ("research-claude1-1", "submitted")
    research.close()
