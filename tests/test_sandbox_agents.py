"""Agents in a sandbox (issue 17): the choice (`new --sandbox/--autonomy`, `[agents.X]`,
`[deck] sandbox`), its refusals, the launch plan of the `agent` mode, what `ls` shows, and
what `doctor` says.  The real Claude Code / Codex runs in `agent` mode are at the end
(slow, skipped without the pinned CLIs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support import retry_until, run_cli

from agentdeck.config import Config, load_config
from agentdeck.errors import MissingTool, UsageError
from agentdeck.sandbox import agent_mode
from agentdeck.sandbox.agent_mode import SandboxChoice, choose, launch_plan, recorded

BWRAP_WORKS = agent_mode.support("bwrap").works
needs_bwrap = pytest.mark.skipif(not BWRAP_WORKS, reason="bubblewrap cannot create a sandbox here")


def write_config(repo: Path, text: str) -> None:
    (repo / ".agentdeck.toml").write_text(text)


# ---------------------------------------------------------------------------- the choice
def test_default_is_none_and_ask():
    choice = choose(Config(), "claude", "claude")
    assert choice == SandboxChoice("none", "ask", True)
    assert choice.label == "none"


def test_config_then_flags_decide(git_repo):
    write_config(git_repo, '[deck]\nsandbox = "agent"\n\n[agents.cx]\nkind = "codex"\ncommand = "true"\n'
                           'autonomy = "auto"\nnetwork = false\n\n[agents.sh]\ncommand = "bash"\nsandbox = "none"\n')
    config = load_config(git_repo)
    assert choose(config, "cx", "codex") == SandboxChoice("agent", "auto", False)
    assert choose(config, "cx", "codex").label == "agent/auto/offline"
    assert choose(config, "sh", "generic").mode == "none"  # [agents.X] wins over [deck]
    if BWRAP_WORKS:
        assert choose(config, "cx", "codex", sandbox="bwrap", autonomy="ask").mode == "bwrap"


def test_bad_config_values_are_config_errors(git_repo):
    write_config(git_repo, '[agents.cx]\nkind = "codex"\nsandbox = "jail"\n')
    with pytest.raises(UsageError, match="sandbox"):
        load_config(git_repo)
    write_config(git_repo, '[deck]\nsandbox = "maybe"\n')
    with pytest.raises(UsageError, match="sandbox"):
        load_config(git_repo)


@pytest.mark.parametrize("kind", ["generic", "aider", "gemini", "opencode"])
def test_agent_mode_is_refused_for_kinds_without_one(kind):
    with pytest.raises(MissingTool) as err:
        choose(Config(), kind, kind, sandbox="agent")
    message = str(err.value)
    assert "\n" not in message and f"{kind} agent" in message
    assert ("--sandbox bwrap or none" if BWRAP_WORKS else "--sandbox none") in message


def test_unknown_and_docker_modes_are_refused():
    with pytest.raises(UsageError, match="unknown sandbox mode 'jail'"):
        choose(Config(), "claude", "claude", sandbox="jail")
    with pytest.raises(UsageError, match="docker"):
        choose(Config(), "claude", "claude", sandbox="docker")
    with pytest.raises(UsageError, match="unknown autonomy"):
        choose(Config(), "claude", "claude", autonomy="yolo")


def test_auto_without_a_sandbox_needs_the_flag():
    with pytest.raises(UsageError, match="--i-know-it-is-unsandboxed"):
        choose(Config(), "codex", "codex", autonomy="auto")
    choice = choose(Config(), "codex", "codex", autonomy="auto", unsandboxed_ok=True)
    assert choice.mode == "none" and choice.autonomy == "auto" and choice.unsandboxed_ok
    # No known no-prompt mode: refused whatever the sandbox.
    with pytest.raises(UsageError, match="args"):
        choose(Config(), "generic", "generic", autonomy="auto", unsandboxed_ok=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="Claude's root check only applies to root")
def test_unsandboxed_auto_claude_as_root_is_refused_not_faked():
    # Claude refuses --dangerously-skip-permissions as root; agentdeck says so instead of
    # setting IS_SANDBOX to get past it.
    with pytest.raises(UsageError, match="as root"):
        choose(Config(), "claude", "claude", autonomy="auto", unsandboxed_ok=True)


def test_missing_socat_refuses_claude_agent_mode(tmp_path, monkeypatch):
    if not BWRAP_WORKS:
        pytest.skip("bubblewrap does not work here")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bwrap", "tmux", "git"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(MissingTool, match="socat") as err:
        choose(Config(), "claude", "claude", sandbox="agent")
    assert "apt-get install socat" in str(err.value)
    # Codex's sandbox needs no socat.
    assert choose(Config(), "codex", "codex", sandbox="agent").mode == "agent"


def test_codex_agent_mode_keeps_commands_offline():
    # With network_access Codex 0.169 also lets commands reach host unix sockets (agentdeck's tmux
    # server ran a command outside, measured): its commands stay offline, and asking is refused.
    if not agent_mode.support("agent", "codex").works:
        pytest.skip(agent_mode.support("agent", "codex").detail)
    assert choose(Config(), "codex", "codex", sandbox="agent").network is False
    with pytest.raises(UsageError, match="unix sockets"):
        choose(Config(), "codex", "codex", sandbox="agent", network=True)


def test_recorded_round_trip():
    choice = SandboxChoice("agent", "auto", False)
    assert recorded({"sandbox": choice.to_json()}) == choice
    assert recorded({}) == SandboxChoice()
    assert recorded({"sandbox": {"mode": "weird"}}).mode == "none"


# ---------------------------------------------------------------------------- the launch plan
def test_codex_agent_mode_options_go_after_the_command_and_subcommand():
    plan = launch_plan("agent", "codex", ["codex", "--no-daemon", "--", "hi"], {}, autonomy="auto")
    assert plan.argv[:5] == ["codex", "-s", "workspace-write", "-a", "never"]
    assert plan.argv[-2:] == ["--", "hi"]
    assert not any("network_access" in a for a in plan.argv)  # see test_codex_agent_mode_keeps_commands_offline
    assert "sandbox_workspace_write.exclude_slash_tmp=true" in plan.argv
    resumed = launch_plan("agent", "codex", ["node", "codex.js", "resume", "--no-daemon", "ID"], {},
                          command_len=2, autonomy="ask", network=False)
    assert resumed.argv[:7] == ["node", "codex.js", "resume", "-s", "workspace-write", "-a", "on-request"]
    assert resumed.argv[-1] == "ID"


def test_claude_agent_mode_merges_its_sandbox_into_agentdecks_settings(tmp_path):
    settings = tmp_path / "claude-settings.json"
    settings.write_text(json.dumps({"hooks": {"Stop": [{"hooks": []}]}, "permissions": {"allow": ["mcp__x"]}}))
    env = {"HOME": str(tmp_path / "home"), "IS_SANDBOX": "1", "CLAUDE_CODE_BUBBLEWRAP": "1", "KEEP": "me"}
    plan = launch_plan("agent", "claude", ["claude", "--settings", str(settings)], env, autonomy="auto",
                       network=False, worktree="/w/t", settings_path=settings)
    assert plan.argv == ["claude", "--settings", str(settings)]  # no --dangerously-skip-permissions
    assert plan.env == {"HOME": str(tmp_path / "home"), "KEEP": "me"}  # never claims a sandbox itself
    data = json.loads(settings.read_text())
    assert data["hooks"] == {"Stop": [{"hooks": []}]}
    assert data["permissions"] == {"allow": ["mcp__x"], "defaultMode": "acceptEdits"}
    sandbox = data["sandbox"]
    assert sandbox["enabled"] and sandbox["failIfUnavailable"] and not sandbox["allowUnsandboxedCommands"]
    assert sandbox["autoAllowBashIfSandboxed"] is True
    assert sandbox["filesystem"]["allowWrite"] == ["/w/t"]
    assert str(tmp_path / "home" / ".ssh") in sandbox["filesystem"]["denyRead"]
    assert sandbox["network"]["allowedDomains"] == []
    # ask: sandboxed commands still ask, no permission mode.
    settings.write_text(json.dumps({"hooks": {}}))
    launch_plan("agent", "claude", ["claude"], env, autonomy="ask", worktree="/w/t", settings_path=settings)
    data = json.loads(settings.read_text())
    assert data["sandbox"]["autoAllowBashIfSandboxed"] is False and "permissions" not in data
    assert "network" not in data["sandbox"]


def test_none_mode_plans():
    plan = launch_plan("none", "claude", ["claude", "--settings", "s"], {"IS_SANDBOX": "1"})
    assert plan.argv == ["claude", "--settings", "s"] and plan.env == {}
    auto = launch_plan("none", "codex", ["codex", "resume", "ID"], {}, autonomy="auto")
    assert auto.argv == ["codex", "resume", "--dangerously-bypass-approvals-and-sandbox", "ID"]
    with pytest.raises(UsageError):
        launch_plan("agent", "generic", ["bash"], {})
    with pytest.raises(UsageError):
        launch_plan("docker", "claude", ["claude"], {})


def test_doctor_names_each_mode():
    checks = {c["name"]: c for c in agent_mode.doctor_checks()}
    assert set(checks) == {"sandbox agent (claude)", "sandbox agent (codex)", "sandbox bwrap"}
    for check in checks.values():
        assert check["level"] in ("ok", "warn") and check["detail"]
        assert check["level"] == "ok" or check["fix"]
    assert (checks["sandbox bwrap"]["level"] == "ok") == BWRAP_WORKS


# ---------------------------------------------------------------------------- real CLIs, `agent` mode
# One script, committed in the repository (so the agent's worktree has it and the model's command
# names no outside path: Claude asks before a command that names one, and the test is about what
# the sandbox itself stops).  Each line reports KEY=VALUE; the host checks the files as well.
ATTACK = """#!/bin/bash
say() {{ echo "$1=$2"; }}
if (echo pwned > {main}/PWNED.txt) 2>/dev/null; then say main_checkout WROTE; else say main_checkout blocked; fi
if (echo pwned > {other_wt}/PWNED.txt) 2>/dev/null; then say other_worktree WROTE; else say other_worktree blocked; fi
if (cat {home}/.ssh/id_test) 2>/dev/null | grep -q SECRET; then say ssh_read READ; else say ssh_read blocked; fi
if (echo x > {home}/.ssh/planted) 2>/dev/null; then say ssh_write WROTE; else say ssh_write blocked; fi
if tmux -S {socket} new-window "touch {marker}" 2>/dev/null; then say host_tmux REACHED; else say host_tmux blocked; fi
if (: >> {state_db}) 2>/dev/null; then say state_db WRITABLE; else say state_db blocked; fi
if git branch -f other HEAD 2>/dev/null; then say other_branch MOVED; else say other_branch blocked; fi
if git config core.fsmonitor "touch {marker}.fsmonitor" 2>/dev/null; then say git_config PLANTED; \
else say git_config blocked; fi
if (echo ok > inside.txt) 2>/dev/null; then say inside WROTE; else say inside blocked; fi
if git add inside.txt 2>/dev/null && git commit -qm inside 2>/dev/null; then say commit DONE; \
else say commit blocked; fi
say uid "$(id -u)"
"""

# What each CLI's own sandbox stops, as measured (Claude Code 2.1.197, Codex 0.169.0, as root, with
# the settings/flags agentdeck gives them).  docs/ARCHITECTURE.md carries the same table.  Not
# stopped: Claude moves another branch (it opens the worktree's git directory: refs included) and
# commits; Codex reads ~/.ssh (no read restriction) and cannot commit (its git directory is
# read-only).  Both run as uid 0 here (no user namespace of their own).
STOPPED = {
    "claude": {"main_checkout", "other_worktree", "ssh_read", "ssh_write", "host_tmux", "state_db", "git_config"},
    "codex": {"main_checkout", "other_worktree", "ssh_write", "host_tmux", "state_db", "other_branch",
              "git_config"},
}


def attack_repo(repo: Path, home: Path, tmp: Path) -> dict:
    """Commit the attack script in *repo*; make the targets (a second worktree, a branch, a key)."""
    from agentdeck.tmux import socket_path

    other_wt = tmp / "other-wt"
    subprocess.run(["git", "-C", str(repo), "branch", "other"], check=True)  # checked out nowhere
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", "-b", "other-wt", str(other_wt)], check=True)
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "id_test").write_text("SECRET KEY\n")
    marker = tmp / "tmux-marker"
    targets = {"main": repo, "other_wt": other_wt, "home": home, "marker": marker,
               "socket": socket_path(os.environ["AGENTDECK_TMUX_SOCKET"]),
               "state_db": repo / ".git" / "agentdeck" / "state.db"}
    (repo / "attack.sh").write_text(ATTACK.format(**targets))
    subprocess.run(["git", "-C", str(repo), "add", "attack.sh"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "attack script"], check=True)
    targets["other_tip"] = subprocess.run(["git", "-C", str(repo), "rev-parse", "other"], capture_output=True,
                                          text=True, check=True).stdout.strip()
    return targets


def attack_results(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.replace("_", "").isalpha():
            out[key] = value
    return out


def check_host(targets: dict, results: dict[str, str], kind: str) -> None:
    """The attacks the CLI's sandbox stops left the host unchanged (checked on the host too)."""
    stopped = STOPPED[kind]
    # A write may land in a throw-away layer inside (Claude hides ~/.ssh under an empty tmpfs): what
    # counts for a write is the host, checked below; for the rest, what the command saw.
    for key in stopped - {"main_checkout", "other_worktree", "ssh_write", "other_branch"}:
        assert results.get(key) == "blocked", (key, results)
    if "main_checkout" in stopped:
        assert not (targets["main"] / "PWNED.txt").exists()
    if "other_worktree" in stopped:
        assert not (targets["other_wt"] / "PWNED.txt").exists()
    if "ssh_write" in stopped:
        assert not (targets["home"] / ".ssh" / "planted").exists()
    assert not targets["marker"].exists()  # nothing ran on the host's tmux server
    if "other_branch" in stopped:
        tip = subprocess.run(["git", "-C", str(targets["main"]), "rev-parse", "other"], capture_output=True,
                             text=True).stdout.strip()
        assert tip == targets["other_tip"]
    assert results.get("inside") == "WROTE", results


def ls_agent(repo: Path, name: str) -> dict:
    proc = run_cli("ls", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a for a in json.loads(proc.stdout)}[name]


def statuses(repo: Path, name: str) -> list[str]:
    events = json.loads(run_cli("events", name, "--json", cwd=repo).stdout)
    return [e["status"] for e in events if e["type"] == "status"]


def diagnostics(repo: Path, name: str) -> str:
    return (f"--- screen:\n{run_cli('peek', name, cwd=repo).stdout}\n"
            f"--- events:\n{run_cli('events', name, '--json', cwd=repo).stdout}")


@pytest.mark.slow
@pytest.mark.realcli
@pytest.mark.timeout(240)
def test_claude_agent_mode_auto_runs_a_tool_unasked_and_its_sandbox_stops_the_attacks(git_repo, isolated_home,
                                                                                       tmp_path):
    from realcli_support import claude_env, require_cli, seed_claude_home, write_agent_config
    from stubs.anthropic_stub import AnthropicStub, Reply

    claude = require_cli("claude")
    if not agent_mode.support("agent", "claude").works:
        pytest.skip(agent_mode.support("agent", "claude").detail)
    home = tmp_path / "claude-home"
    seed_claude_home(home)
    targets = attack_repo(git_repo, home, tmp_path)
    with AnthropicStub() as stub:
        write_agent_config(isolated_home, "claude", claude, claude_env(home, stub.url))
        stub.when("run the attack script", Reply.tool("Bash", {"command": "bash attack.sh",
                                                              "description": "Run attack.sh"}))
        stub.when(lambda r: r.is_tool_turn, Reply.text("Attacks done."))
        proc = run_cli("new", "boxed", "--agent", "claude", "--sandbox", "agent", "--autonomy", "auto",
                       "--prompt", "please run the attack script", "--json", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        created = json.loads(proc.stdout)
        assert created["sandbox"] == "agent" and created["autonomy"] == "auto"
        try:
            result = retry_until(lambda: next((r for r in stub.requests if r.tool_results), None), timeout=120,
                                 interval=0.2, what="the tool result")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{diagnostics(git_repo, 'boxed')}") from None
        results = attack_results("\n".join(result.tool_results))
        check_host(targets, results, "claude")
        retry_until(lambda: ls_agent(git_repo, "boxed")["status"] == "idle", timeout=60, what="idle")
        # auto: the Bash call ran without a permission prompt.
        assert "waiting" not in statuses(git_repo, "boxed"), diagnostics(git_repo, "boxed")
        events = json.loads(run_cli("events", "boxed", "--json", cwd=git_repo).stdout)
        assert not any(e["type"] == "hook" and e["detail"].get("event") == "PermissionRequest" for e in events)
        print("claude agent mode:", results)


@pytest.mark.slow
@pytest.mark.realcli
@pytest.mark.timeout(240)
def test_codex_agent_mode_auto_runs_a_tool_unasked_and_its_sandbox_stops_the_attacks(git_repo, isolated_home,
                                                                                      tmp_path):
    import tempfile

    from realcli_support import codex_env, require_cli, seed_codex_home, write_agent_config
    from stubs.openai_stub import OpenAIStub, Reply

    codex = require_cli("codex")
    if not agent_mode.support("agent", "codex").works:
        pytest.skip(agent_mode.support("agent", "codex").detail)
    # Codex's sandbox helper lives in $CODEX_HOME, which must not be under /tmp (its sandbox hides
    # /tmp's contents from the helper's path): the home goes under /var/tmp.
    home = Path(tempfile.mkdtemp(prefix="adcodex-", dir="/var/tmp"))
    try:
        targets = attack_repo(git_repo, home, tmp_path)
        with OpenAIStub() as stub:
            seed_codex_home(home, stub.url)
            write_agent_config(isolated_home, "codex", codex, codex_env(home))
            stub.when("run the attack script", Reply.tool("exec_command", {"cmd": "bash attack.sh"}))
            stub.when(lambda r: r.is_tool_turn, Reply.text("Attacks done."))
            proc = run_cli("new", "boxed", "--agent", "codex", "--sandbox", "agent", "--autonomy", "auto",
                           "--prompt", "please run the attack script", "--json", cwd=git_repo)
            assert proc.returncode == 0, proc.stderr
            try:
                result = retry_until(lambda: next((r for r in stub.requests if r.tool_results), None),
                                     timeout=120, interval=0.2, what="the tool result")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{diagnostics(git_repo, 'boxed')}") from None
            results = attack_results("\n".join(result.tool_results))
            check_host(targets, results, "codex")
            retry_until(lambda: ls_agent(git_repo, "boxed")["status"] == "idle", timeout=60, what="idle")
            assert "waiting" not in statuses(git_repo, "boxed"), diagnostics(git_repo, "boxed")
            print("codex agent mode:", results)
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------------- through the CLI
# A stand-in CLI: it records its argv and whether it was told it is sandboxed, then runs the
# scripted fake agent (so the pane lives and shows a prompt).
RECORDER = """import json, os, sys
with open(os.environ["ARGV_FILE"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "claims": [k for k in ("IS_SANDBOX", "CLAUDE_CODE_BUBBLEWRAP")
                                                        if k in os.environ]}}) + "\\n")
os.execv(sys.executable, [sys.executable, {fake!r}])
"""


@pytest.fixture
def recorder_repo(git_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTDECK_MCP_HTTP", "0")  # not about the MCP server: no cold start to wait for
    fake = Path(__file__).resolve().parent / "fake_agent.py"
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER.format(fake=str(fake)))
    out = tmp_path / "argv.jsonl"
    command = f"{shutil.which('python3') or 'python3'} {script}"
    lines = []
    for name, kind in (("cx", "codex"), ("cl", "claude"), ("sh", "generic")):
        lines += [f"[agents.{name}]", f'kind = "{kind}"', f"command = {json.dumps(command)}",
                  "idle_pattern = '^> *$'", "", f"[agents.{name}.env]", f"ARGV_FILE = {json.dumps(str(out))}",
                  "IS_SANDBOX = \"1\"", ""]
    write_config(git_repo, "\n".join(lines))
    ARGV_FILES[str(git_repo)] = out
    yield git_repo
    ARGV_FILES.pop(str(git_repo), None)


ARGV_FILES: dict[str, Path] = {}


def launches(repo: Path) -> list[dict]:
    """The stand-in CLI's launches in *repo* (argv and sandbox claims), oldest first."""
    path = ARGV_FILES[str(repo)]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def nothing_left(repo: Path, name: str) -> None:
    assert json.loads(run_cli("ls", "--json", cwd=repo).stdout) == []
    branches = subprocess.run(["git", "-C", str(repo), "branch", "--list", f"*{name}*"], capture_output=True,
                              text=True).stdout
    assert branches.strip() == ""
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1
    sessions = subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "ls"], capture_output=True,
                              text=True).stdout
    assert name not in sessions


@pytest.mark.parametrize("args, words", [
    (["--agent", "sh", "--sandbox", "agent"], ["generic agent", "--sandbox"]),
    (["--agent", "cx", "--autonomy", "auto"], ["--i-know-it-is-unsandboxed"]),
    (["--agent", "cx", "--sandbox", "docker"], ["docker"]),
    (["--agent", "cx", "--sandbox", "jail"], ["unknown sandbox mode"]),
    (["--agent", "sh", "--sandbox", "none", "--autonomy", "auto", "--i-know-it-is-unsandboxed"], ["args"]),
])
def test_bad_sandbox_input_exits_2_with_one_line_and_leaves_nothing(recorder_repo, args, words):
    proc = run_cli("new", "bad", *args, cwd=recorder_repo)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, message
    nothing_left(recorder_repo, "bad")
    assert launches(recorder_repo) == []


def test_codex_agent_mode_is_launched_recorded_shown_and_reapplied_on_restart(recorder_repo):
    if not agent_mode.support("agent", "codex").works:
        pytest.skip(agent_mode.support("agent", "codex").detail)
    proc = run_cli("new", "boxed", "--agent", "cx", "--sandbox", "agent", "--autonomy", "auto", "--json",
                   cwd=recorder_repo)
    assert proc.returncode == 0, proc.stderr
    created = json.loads(proc.stdout)
    assert (created["sandbox"], created["autonomy"], created["network"]) == ("agent", "auto", False)
    first = retry_until(lambda: launches(recorder_repo), what="the agent's launch", timeout=30)[0]
    argv = first["argv"]
    assert argv[:4] == ["-s", "workspace-write", "-a", "never"], argv
    assert first["claims"] == []  # IS_SANDBOX from [agents.cx] env is not passed outside bwrap
    table = run_cli("ls", cwd=recorder_repo).stdout
    assert "SANDBOX" in table.splitlines()[0] and "agent/auto/offline" in table
    proc = run_cli("restart", "boxed", cwd=recorder_repo)
    assert proc.returncode == 0, proc.stderr
    again = retry_until(lambda: launches(recorder_repo)[1:], what="the relaunch", timeout=30)[0]["argv"]
    assert again[:2] in (["-s", "workspace-write"], ["resume", "-s"]), again
    assert "workspace-write" in again and "never" in again
    # A fork runs in its source's sandbox.
    proc = run_cli("fork", "boxed", "twin", "--json", cwd=recorder_repo)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sandbox"] == "agent"
    forked = retry_until(lambda: launches(recorder_repo)[2:], what="the fork's launch", timeout=30)[0]["argv"]
    assert "workspace-write" in forked and "never" in forked, forked


def test_claude_agent_mode_writes_the_sandbox_into_its_settings_file(recorder_repo):
    if not agent_mode.support("agent", "claude").works:
        pytest.skip(agent_mode.support("agent", "claude").detail)
    proc = run_cli("new", "boxed", "--agent", "cl", "--sandbox", "agent", "--json", cwd=recorder_repo)
    assert proc.returncode == 0, proc.stderr
    worktree = json.loads(proc.stdout)["worktree"]
    argv = retry_until(lambda: launches(recorder_repo), what="the agent's launch", timeout=30)[0]["argv"]
    assert "--dangerously-skip-permissions" not in argv
    settings = json.loads(Path(argv[argv.index("--settings") + 1]).read_text())
    assert settings["sandbox"]["enabled"] is True and settings["sandbox"]["autoAllowBashIfSandboxed"] is False
    assert settings["sandbox"]["filesystem"]["allowWrite"] == [worktree]
    assert settings["hooks"], "agentdeck's own hooks stay in the same file"
    assert not (Path(worktree) / ".claude").exists()  # nothing written in the user's or the repo's files


def test_unsandboxed_auto_with_the_flag_is_shown_as_such(recorder_repo):
    proc = run_cli("new", "free", "--agent", "cx", "--autonomy", "auto", "--i-know-it-is-unsandboxed", "--json",
                   cwd=recorder_repo)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sandbox"] == "none"
    argv = retry_until(lambda: launches(recorder_repo), what="the agent's launch", timeout=30)[0]["argv"]
    assert argv[0] == "--dangerously-bypass-approvals-and-sandbox"
    assert "none/auto" in run_cli("ls", cwd=recorder_repo).stdout


@needs_bwrap
def test_bwrap_mode_is_dispatched_for_any_agent_and_recorded(git_repo, monkeypatch):
    # The bubblewrap sandbox itself is tested in tests/test_sandbox_bwrap*.py; here: `new --sandbox
    # bwrap` reaches it for a generic agent, and the row and `ls` say so.
    monkeypatch.setenv("AGENTDECK_MCP_HTTP", "0")
    write_config(git_repo, '[agents.sh]\ncommand = "bash --norc --noprofile"\nnetwork = false\n')
    proc = run_cli("new", "jailed", "--agent", "sh", "--sandbox", "bwrap", "--json", cwd=git_repo)
    assert proc.returncode == 0, proc.stderr
    created = json.loads(proc.stdout)
    assert (created["sandbox"], created["network"]) == ("bwrap", False)
    assert "bwrap/offline" in run_cli("ls", cwd=git_repo).stdout
    assert run_cli("send", "jailed", f"echo uid=$(id -u); echo x > {git_repo}/PWNED.txt; echo end-$((6*7))",
                   cwd=git_repo).returncode == 0
    def finished() -> str | None:
        screen = run_cli("peek", "jailed", cwd=git_repo).stdout
        return screen if "end-42" in screen else None

    screen = retry_until(finished, timeout=20, what="the command's output")
    assert "uid=0" not in screen and "Read-only file system" in screen, screen
    assert not (git_repo / "PWNED.txt").exists()
