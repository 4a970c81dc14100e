"""The ``bwrap`` sandbox for agents (agentdeck/sandbox/agent_bwrap.py), attacked for real.

Real bubblewrap, real git (a repository with two agents' worktrees), real tmux on the
test's own socket; the "agent" is a shell running the attack inside the sandbox.  Each
attack checks the host afterwards (the file, ref or marker is unchanged or absent), and
where an attack needs a live target a control shows it would work unsandboxed.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import git, make_repo, retry_until

from agentdeck.paths import find_repo
from agentdeck.sandbox import agent_bwrap as ab
from agentdeck.sandbox import probe
from agentdeck.sandbox.agent_wrap import bridge_dir

pytestmark = pytest.mark.skipif(not probe().works, reason=f"bubblewrap does not work here: {probe().reason}")


class Lab:
    def __init__(self, tmp: Path, home: Path):
        self.tmp = tmp
        self.home = home
        self.repo_dir = make_repo(tmp / "repo", {"README.md": "# main\n", "src/app.py": "print('hi')\n"})
        git(self.repo_dir, "worktree", "add", "-q", "-b", "agent/a", str(tmp / "wts" / "a"))
        git(self.repo_dir, "worktree", "add", "-q", "-b", "agent/b", str(tmp / "wts" / "b"))
        self.repo = find_repo(self.repo_dir)
        self.repo.ensure_state_dir()
        self.db = self.repo.db_path
        conn = sqlite3.connect(self.db)
        conn.execute("create table t (x)")
        conn.commit()
        conn.close()
        self.wt_a = tmp / "wts" / "a"
        self.wt_b = tmp / "wts" / "b"
        self.sb = ab.prepare(self.repo, "a", self.wt_a, "agent/a", "generic", False, source_home=home)

    def run(self, script: str, ports=(), sb: ab.AgentSandbox | None = None) -> subprocess.CompletedProcess:
        argv = ab.wrap(sb or self.sb, ["bash", "-c", script], dict(os.environ), ports=ports)
        return subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ), timeout=60)

    def tip(self, branch: str) -> str:
        return git(self.repo_dir, "rev-parse", f"refs/heads/{branch}")


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Lab:
    home = tmp_path / "userhome"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("SECRET-KEY\n")
    (home / ".claude").mkdir()
    (home / ".claude" / ".credentials.json").write_text('{"token": "t"}\n')
    (home / ".claude.json").write_text('{"hasCompletedOnboarding": true}\n')
    monkeypatch.setenv("HOME", str(home))
    return Lab(tmp_path, home)


def test_uid_inside_is_not_root_and_home_is_private(lab):
    out = lab.run("id -u; echo HOME=$HOME; echo TMUX=${TMUX-unset}; echo SOCK=${SSH_AUTH_SOCK-unset}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert lines[0] != "0"
    assert f"HOME={lab.sb.home}" in lines
    assert "TMUX=unset" in lines and "SOCK=unset" in lines


def test_commit_inside_reaches_the_branch_on_the_host(lab):
    before = lab.tip("agent/a")
    out = lab.run("echo change >> README.md && echo new > new.txt && git add -A && git commit -qm 'agent work' "
                  "&& git rev-parse HEAD")
    assert out.returncode == 0, out.stderr
    inside_tip = out.stdout.strip()
    assert lab.tip("agent/a") == before  # not on the host until it is brought back
    assert ab.sync_back(lab.sb) == "fast-forward"
    assert lab.tip("agent/a") == inside_tip
    assert git(lab.repo_dir, "show", "agent/a:new.txt") == "new"
    git(lab.repo_dir, "fsck", "--connectivity-only", "--no-dangling")  # every object really copied
    assert ab.sync_back(lab.sb) == "same"
    # The host's view of the worktree follows: clean, nothing staged backwards.
    assert ab.host_git(lab.sb, "status", "--porcelain") == ""
    # A second commit (its parent now on the host) comes back too.
    out = lab.run("echo more >> new.txt && git commit -qam second && git rev-parse HEAD")
    assert ab.sync_back(lab.sb) == "fast-forward" and lab.tip("agent/a") == out.stdout.strip()
    # After a gc inside (refs packed, objects in a pack of its own store) it still comes back.
    out = lab.run("echo third >> new.txt && git commit -qam third && git gc -q --prune=now && "
                  "test ! -e $(git rev-parse --git-dir)/refs/heads/agent/a && git rev-parse HEAD")
    assert out.returncode == 0, out.stderr
    assert ab.sync_back(lab.sb) == "fast-forward" and lab.tip("agent/a") == out.stdout.strip()
    git(lab.repo_dir, "fsck", "--connectivity-only", "--no-dangling")


def test_writes_outside_the_worktree_fail_and_change_nothing(lab):
    main_readme = (lab.repo_dir / "README.md").read_text()
    b_readme = (lab.wt_b / "README.md").read_text()
    tip_b, tip_main = lab.tip("agent/b"), lab.tip("main")
    db_bytes = lab.db.read_bytes()
    attempts = {
        "main": f"echo x >> {lab.repo_dir}/README.md",
        "other-worktree": f"echo x >> {lab.wt_b}/README.md",
        "other-branch-ref": f"echo 0000000000000000000000000000000000000000 > {lab.repo.common_dir}/refs/heads/agent/b",
        "state-db": f"echo x >> {lab.db}",
        "ssh": f"echo x >> {lab.home}/.ssh/id_ed25519",
        "ssh-new": f"mkdir -p {lab.home}/.ssh && echo x > {lab.home}/.ssh/authorized_keys",
        "main-objects": f"touch {lab.repo.common_dir}/objects/planted",
        "dotgit": "echo 'gitdir: /tmp/evil' > .git",
        "alternates": f"echo /tmp > {lab.sb.objects_dir}/info/alternates",
        "objects-info-moved": f"mv {lab.sb.objects_dir}/info {lab.sb.objects_dir}/info2",
        "alternates-removed": f"rm -f {lab.sb.objects_dir}/info/alternates",
        "sandbox-folder": f"mv {lab.sb.objects_dir} {lab.sb.root}/objects2",
        "push": f"git push -q {lab.repo.common_dir} HEAD:refs/heads/agent/b",
        "push-main": f"git push -q {lab.repo_dir} HEAD:refs/heads/main",
    }
    for what, cmd in attempts.items():
        out = lab.run(cmd)
        assert out.returncode != 0, f"{what}: the write succeeded"
    # git inside can move branches in its own repository only.
    out = lab.run("git branch -f agent/b HEAD~0 && git commit -q --allow-empty -m x && git branch -f main HEAD")
    assert out.returncode == 0, out.stderr
    assert ab.sync_back(lab.sb) == "fast-forward"
    assert (lab.repo_dir / "README.md").read_text() == main_readme
    assert (lab.wt_b / "README.md").read_text() == b_readme
    assert lab.tip("agent/b") == tip_b and lab.tip("main") == tip_main
    assert lab.db.read_bytes() == db_bytes
    assert (lab.home / ".ssh" / "id_ed25519").read_text() == "SECRET-KEY\n"
    assert not (lab.home / ".ssh" / "authorized_keys").exists()
    assert not (lab.repo.common_dir / "objects" / "planted").exists()
    assert (lab.sb.objects_dir / "info" / "alternates").read_text() == f"{lab.repo.common_dir}/objects\n"
    assert (lab.wt_a / ".git").read_text().startswith(f"gitdir: {lab.repo.common_dir}/worktrees/")


def test_secrets_and_state_cannot_be_read(lab):
    real_home = os.path.expanduser("~")
    out = lab.run(f"cat {lab.home}/.ssh/id_ed25519; cat {lab.home}/.claude/.credentials.json; "
                  f"ls -A {lab.repo.state_dir}; ls -A {lab.repo_dir}; ls -A {real_home}; ls -A /root /home")
    assert "SECRET-KEY" not in out.stdout
    assert '"token"' not in out.stdout
    assert "state.db" not in out.stdout
    assert "README.md" not in out.stdout
    # The CLI's state was copied into the agent's own home (not linked).
    creds = lab.sb.home / ".claude" / ".credentials.json"
    assert not creds.exists()  # kind generic needs none
    sb = ab.prepare(lab.repo, "c", lab.wt_b, "agent/b", "claude", False, source_home=lab.home)
    creds = sb.home / ".claude" / ".credentials.json"
    assert creds.read_text() == '{"token": "t"}\n' and not creds.is_symlink()
    out = lab.run("cat $HOME/.claude/.credentials.json; cat $HOME/.claude.json", sb=sb)
    assert '"token"' in out.stdout and "hasCompletedOnboarding" in out.stdout


@pytest.mark.parametrize("network", [False, True])
def test_host_tmux_sockets_are_out_of_reach(lab, tmp_path, network):
    sb = ab.prepare(lab.repo, "a", lab.wt_a, "agent/a", "generic", network, source_home=lab.home)
    sock = os.environ["AGENTDECK_TMUX_SOCKET"]
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "host", "sleep 300"], check=True)
    path = subprocess.run(["tmux", "-L", sock, "display", "-p", "#{socket_path}"], capture_output=True,
                          text=True, check=True).stdout.strip()
    mark = tmp_path / "tmux-escaped"
    control = subprocess.run(["tmux", "-S", path, "display", "-p", "ok"], capture_output=True, text=True)
    assert control.stdout.strip() == "ok"  # the socket works from the host
    out = lab.run(f"tmux -L {sock} new-window 'touch {mark}'; tmux -S {path} new-window 'touch {mark}'; "
                  f"ls -A {os.path.dirname(path)}; "
                  "find /tmp /var/tmp /run /var/run /root /home -type s 2>/dev/null; "
                  "cat /proc/net/unix | tail -n +2 | wc -l", sb=sb)
    lines = out.stdout.split()
    assert sock not in lines and not any(line.endswith(sock) for line in lines)
    if not network:  # no unix socket at all in the sandbox's own namespace (abstract ones included)
        assert lines[-1] == "0"
    assert not mark.exists()
    windows = subprocess.run(["tmux", "-L", sock, "list-windows", "-a"], capture_output=True, text=True).stdout
    assert len(windows.strip().splitlines()) == 1


def test_planted_git_config_runs_nothing_on_the_host(lab, tmp_path):
    mark = tmp_path / "ran-on-host"
    control_mark = tmp_path / "control-ran"
    script = f"""
set -e
git config core.fsmonitor 'touch {mark}; false'
git config core.hooksPath /tmp
mkdir -p nested && cd nested && git init -q && git config core.fsmonitor 'touch {mark}; false'
echo x > f && git add f && git -c user.name=a -c user.email=a@b commit -qm n && cd ..
git add nested 2>/dev/null || true
mkdir -p sub && echo 'gitdir: {tmp_path}/evil' > sub/.git
printf '[core]\\n\\tfsmonitor = touch {mark}\\n' > sub/config
echo edit >> README.md
git commit -qam 'plant'
echo dirty >> README.md
"""
    out = lab.run(script)
    assert out.returncode == 0, out.stderr
    assert ab.sync_back(lab.sb) == "fast-forward"
    ab.host_git(lab.sb, "status", "--porcelain")
    ab.host_git(lab.sb, "diff")
    ab.host_git(lab.sb, "diff", "--stat", "main")
    ab.host_git(lab.sb, "log", "--oneline", "-3")
    subprocess.run([*ab.host_git_argv(lab.sb), "status"], cwd=lab.wt_a / "sub", env=ab.host_git_env(),
                   capture_output=True)
    prefix = ab.host_git_for(lab.repo, lab.wt_a)
    assert prefix is not None and subprocess.run([*prefix, "status"], capture_output=True,
                                                 env=ab.host_git_env()).returncode == 0
    assert not mark.exists()
    # Control: the planted nested repository is live for a careless host git.
    nested = (lab.wt_a / "nested" / ".git" / "config").read_text().replace(str(mark), str(control_mark))
    (lab.wt_a / "nested" / ".git" / "config").write_text(nested)
    (lab.wt_a / "nested" / "f").write_text("changed\n")
    subprocess.run(["git", "-C", str(lab.wt_a / "nested"), "status"], capture_output=True)
    assert control_mark.exists()


@pytest.mark.parametrize("bridged", [False, True])
def test_background_process_dies_with_the_pane(lab, bridged):
    sock = os.environ["AGENTDECK_TMUX_SOCKET"]
    mark = f"4321.{os.getpid()}"
    argv = ab.wrap(lab.sb, ["bash", "-c", f"setsid nohup sleep {mark}1 >/dev/null 2>&1 & "
                            f"(sleep {mark}2 &) ; echo started; sleep 1000"], dict(os.environ),
                   ports=[47123] if bridged else [])  # with the loopback bridge: host and inside halves
    assert ("agent_bridge.py" in " ".join(argv)) == bridged
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "agent", "--", *argv], check=True)

    def sleepers() -> list[int]:
        pids = []
        for pid in os.listdir("/proc"):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if pid.isdigit() and f"sleep\0{mark}".encode() in cmd:
                pids.append(int(pid))
        return pids

    retry_until(lambda: len(sleepers()) == 2, timeout=20, what="the agent's background processes")
    subprocess.run(["tmux", "-L", sock, "kill-session", "-t", "agent"], check=True)
    retry_until(lambda: not sleepers(), timeout=10, what="background processes gone with the pane")
    bridge = str(bridge_dir(lab.sb, create=False))
    retry_until(lambda: not [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, bridge)],
                timeout=10, what="the loopback bridge gone with the pane")


def _cmdline_has(pid: str, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_loopback_only_network_reaches_the_bridged_port(lab):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen(8)
    other_port = other.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.recv(100)
            conn.sendall(b"pong")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    probe_py = ("import socket,sys\n"
                "for p in sys.argv[1:]:\n"
                "  try:\n"
                "    s=socket.create_connection(('127.0.0.1',int(p)),timeout=3); s.sendall(b'ping')\n"
                "    print(p, s.recv(10).decode() or 'empty')\n"
                "  except OSError as e: print(p, 'refused')\n")
    try:
        out = lab.run(f"{sys.executable} -c \"$PROBE\" {port} {other_port}".replace(
            "$PROBE", probe_py.replace('"', '\\"')), ports=[port])
    finally:
        server.close()
        other.close()
    assert out.returncode == 0, out.stderr
    assert f"{port} pong" in out.stdout
    assert f"{other_port} refused" in out.stdout


def test_restart_keeps_commits_and_copies_state_without_following_symlinks(lab, tmp_path):
    out = lab.run("git commit -q --allow-empty -m one && git rev-parse HEAD")
    one = out.stdout.strip()
    target = tmp_path / "outside"
    target.mkdir()
    # The agent plants a symlink where the next prepare writes the CLI's credentials.
    sb = ab.prepare(lab.repo, "a", lab.wt_a, "agent/a", "claude", False, source_home=lab.home)
    assert lab.tip("agent/a") == one  # restart brought the commit back first
    shutil.rmtree(sb.home / ".claude")
    os.symlink(target, sb.home / ".claude")
    sb = ab.prepare(lab.repo, "a", lab.wt_a, "agent/a", "claude", False, source_home=lab.home)
    assert list(target.iterdir()) == []
    out = lab.run("git log -1 --format=%H", sb=sb)
    assert out.stdout.strip() == one
    # The host moves the branch ahead (e.g. a merge done by agentdeck): the agent follows on restart.
    ab.host_git(sb, "commit", "-q", "--allow-empty", "-m", "host")
    host_tip = lab.tip("agent/a")
    sb = ab.prepare(lab.repo, "a", lab.wt_a, "agent/a", "claude", False, source_home=lab.home)
    assert lab.run("git rev-parse HEAD", sb=sb).stdout.strip() == host_tip
    # Diverged: the host's branch is left alone.
    ab.host_git(sb, "commit", "-q", "--allow-empty", "-m", "host2")
    lab.run("git commit -q --allow-empty -m agent2", sb=sb)
    before = lab.tip("agent/a")
    assert ab.sync_back(sb) == "diverged" and lab.tip("agent/a") == before
    agent_tip = lab.run("git rev-parse HEAD", sb=sb).stdout.strip()
    assert ab.keep_tip(sb, "refs/agentdeck/trash/a-own") == agent_tip
    assert git(lab.repo_dir, "log", "-1", "--format=%s", "refs/agentdeck/trash/a-own") == "agent2"
    git(lab.repo_dir, "fsck", "--connectivity-only", "--no-dangling")
    ab.remove(sb)
    assert not sb.root.exists() and ab.load(lab.repo, "a") is None


def test_guard_and_sync_branch_cover_plain_engine_git_calls(lab, tmp_path):
    from agentdeck import git as engine_git
    from agentdeck import snapshots

    assert ab.guard(lab.repo_dir) == [] and ab.guard(lab.wt_b) == []
    opts = ab.guard(lab.wt_a / "src")
    assert opts[:2] == [f"--git-dir={lab.sb.admin_dir}", f"--work-tree={lab.wt_a}"]
    assert "core.fsmonitor=" in opts and "diff.ignoreSubmodules=all" in opts
    out = lab.run("git commit -q --allow-empty -m via-name && git rev-parse HEAD")
    assert ab.sync_branch(lab.repo_dir, "agent/b") is None
    assert ab.sync_branch(lab.repo_dir, "agent/a") == "fast-forward"
    assert engine_git.run(lab.repo_dir, "rev-parse", "refs/heads/agent/a") == out.stdout.strip()
    # A nested repository planted as a gitlink, with core.fsmonitor: git with the guard runs nothing.
    mark = tmp_path / "guard-ran"
    lab.run(f"mkdir nested && cd nested && git init -q && git config core.fsmonitor 'touch {mark}; false' && "
            "echo x > f && git add f && git commit -qm n && cd .. && git add nested && git commit -qm gl "
            "&& echo y > nested/f")
    ab.sync_back(lab.sb)
    for args in (["status", "--porcelain"], ["diff"], ["diff", "HEAD"]):
        subprocess.run(["git", *ab.guard(lab.wt_a), *args], cwd=lab.wt_a, capture_output=True, check=True)
    # The engine's own git calls (agentdeck.git) take the guard by themselves.
    engine_git.status_porcelain(lab.wt_a)
    engine_git.run(lab.wt_a, "diff")
    snapshots.snapshot(lab.wt_a)
    assert not mark.exists()
    ab.remove(lab.sb)
    assert ab.guard(lab.wt_a) == []


# ---------------------------------------------------------------------- the real CLIs, inside
def _pane_until(sock: str, session: str, done, answer=None, timeout: float = 90) -> str:
    """Poll the pane's screen until done(screen); answer(screen) may return keys to send once."""
    sent: set[str] = set()

    def check():
        screen = subprocess.run(["tmux", "-L", sock, "capture-pane", "-p", "-t", f"={session}:"],
                                capture_output=True, text=True).stdout
        keys = answer(screen) if answer else None
        if keys and keys not in sent:
            sent.add(keys)
            subprocess.run(["tmux", "-L", sock, "send-keys", "-t", f"={session}:", keys])
        return screen if done(screen) else None

    return retry_until(check, timeout=timeout, interval=0.3, what=f"{session}'s screen")


ATTACK = ("id -u > uid.txt; git add uid.txt; git commit -qm from-cli; "
          "cat {home}/.ssh/id_ed25519 > leaked.txt; echo x >> {db}; echo x >> {main}/README.md")


def _check_cli_run(lab: Lab, before_db: bytes) -> None:
    assert (lab.wt_a / "uid.txt").read_text().strip() not in ("", "0")
    assert "SECRET-KEY" not in (lab.wt_a / "leaked.txt").read_text()
    assert lab.db.read_bytes() == before_db
    assert (lab.repo_dir / "README.md").read_text() == "# main\n"
    assert ab.sync_back(lab.sb) == "fast-forward"
    assert git(lab.repo_dir, "log", "-1", "--format=%s", "agent/a") == "from-cli"


@pytest.mark.slow
@pytest.mark.realcli
@pytest.mark.timeout(240)
def test_real_claude_code_in_bwrap_without_network(lab):
    import json

    from realcli_support import claude_env, require_cli, seed_claude_home
    from stubs.anthropic_stub import AnthropicStub, Reply

    claude = require_cli("claude")
    seed_claude_home(lab.home)
    state = json.loads((lab.home / ".claude.json").read_text())
    state["projects"] = {str(lab.wt_a): {"hasTrustDialogAccepted": True}}
    (lab.home / ".claude.json").write_text(json.dumps(state))
    sb = ab.prepare(lab.repo, "a", lab.wt_a, "agent/a", "claude", False, source_home=lab.home)
    before_db = lab.db.read_bytes()
    with AnthropicStub() as stub:
        cmd = ATTACK.format(home=lab.home, db=lab.db, main=lab.repo_dir)
        stub.when("do it", Reply.tool("Bash", {"command": cmd, "description": "attack"}))
        stub.when(lambda r: r.is_tool_turn, Reply.text("Finished."))
        env = {**os.environ, **claude_env(lab.home, stub.url)}
        port = int(stub.url.rsplit(":", 1)[1].split("/")[0])
        argv = ab.wrap(sb, [claude, "--dangerously-skip-permissions", "do it"], env, ports=[port])
        sock = os.environ["AGENTDECK_TMUX_SOCKET"]
        subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "claude", "-x", "120", "-y", "40", "--",
                        *argv], check=True, env=env)
        _pane_until(sock, "claude", lambda s: "Finished." in s and (lab.wt_a / "leaked.txt").exists(),
                    answer=lambda s: "2" if "Yes, I accept" in s else None)
    _check_cli_run(lab, before_db)


@pytest.mark.slow
@pytest.mark.realcli
@pytest.mark.timeout(240)
def test_real_codex_in_bwrap_without_network(lab):
    from realcli_support import codex_env, require_cli, seed_codex_home
    from stubs.openai_stub import OpenAIStub, Reply

    codex = require_cli("codex")
    before_db = lab.db.read_bytes()
    with OpenAIStub() as stub:
        seed_codex_home(lab.home, stub.url)
        with open(lab.home / ".codex" / "config.toml", "a") as fh:
            fh.write(f'\n[projects."{lab.wt_a}"]\ntrust_level = "trusted"\n')
        sb = ab.prepare(lab.repo, "a", lab.wt_a, "agent/a", "codex", False, source_home=lab.home,
                        source_env=codex_env(lab.home))
        cmd = ATTACK.format(home=lab.home, db=lab.db, main=lab.repo_dir)
        stub.when("do it", Reply.tool("exec_command", {"cmd": cmd}))
        stub.when(lambda r: r.is_tool_turn, Reply.text("Finished."))
        env = {**os.environ, **codex_env(lab.home)}
        port = int(stub.url.rsplit(":", 1)[1].split("/")[0])
        # bwrap is the sandbox: Codex's own one cannot nest in it (no user namespaces inside).
        argv = ab.wrap(sb, [codex, "-a", "never", "-s", "danger-full-access", "do it"], env, ports=[port])
        sock = os.environ["AGENTDECK_TMUX_SOCKET"]
        subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "codex", "-x", "120", "-y", "40", "--",
                        *argv], check=True, env=env)
        _pane_until(sock, "codex", lambda s: "Finished." in s and (lab.wt_a / "leaked.txt").exists())
    _check_cli_run(lab, before_db)


def test_host_commit_then_follow_host_keeps_the_agent_in_line(lab):
    lab.run("echo work > work.txt")  # the agent leaves work uncommitted; agentdeck commits it on the host
    assert ab.sync_back(lab.sb) == "same"
    ab.host_git(lab.sb, "add", "-A")
    ab.host_git(lab.sb, "commit", "-q", "-m", "committed by agentdeck")
    host_tip = lab.tip("agent/a")
    assert ab.follow_host(lab.sb) is True and ab.follow_host(lab.sb) is False
    out = lab.run("git rev-parse HEAD && git status --porcelain && echo more >> work.txt && git commit -qam next "
                  "&& git rev-parse HEAD")
    lines = out.stdout.split()
    assert lines[0] == host_tip and len(lines) == 2, out.stdout  # clean status: the index followed too
    assert ab.sync_back(lab.sb) == "fast-forward" and lab.tip("agent/a") == lines[1]


def test_a_command_on_the_agents_files_runs_in_its_sandbox(lab):
    # compare's test_command: run where the agent's worktree is, but inside its sandbox.
    assert ab.command_in_worktree(lab.wt_b, ["true"], dict(os.environ)) is None
    argv = ab.command_in_worktree(lab.wt_a / "src", ["sh", "-c", f"pwd; id -u; echo x >> {lab.db}"],
                                  dict(os.environ))
    assert argv is not None
    out = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ), timeout=60)
    lines = out.stdout.split()
    assert lines[:2] == [str(lab.wt_a / "src"), lines[1]] and lines[1] != "0"
    assert out.returncode != 0  # state.db is out of reach


def test_a_new_agent_with_an_old_name_starts_afresh(lab):
    lab.run("git commit -q --allow-empty -m 'old agent, never brought back'")
    git(lab.repo_dir, "worktree", "remove", "--force", str(lab.wt_a))
    git(lab.repo_dir, "branch", "-D", "agent/a")
    git(lab.repo_dir, "worktree", "add", "-q", "-b", "agent/a", str(lab.wt_a))
    main = lab.tip("main")
    sb = ab.prepare(lab.repo, "a", lab.wt_a, "agent/a", "generic", False, source_home=lab.home)
    assert sb.token != lab.sb.token
    assert lab.tip("agent/a") == main
    assert lab.run("git rev-parse HEAD", sb=sb).stdout.strip() == main
    # A restart of the same agent keeps its sandbox.
    assert ab.prepare(lab.repo, "a", lab.wt_a, "agent/a", "generic", False, source_home=lab.home).token == sb.token


def test_no_set_id_file_and_no_terminal_injection(lab):
    # Run as root, the agent's files are root's on the host: a set-uid bit would make a root program.
    out = lab.run(f"cp /bin/true sut && chmod 755 sut && echo plain-ok; chmod u+s sut; chmod 2755 sut; "
                  f"{sys.executable} -c \"import os; os.open('sut2', os.O_CREAT | os.O_WRONLY, 0o4755)\"")
    assert "plain-ok" in out.stdout
    assert (lab.wt_a / "sut").stat().st_mode & 0o6000 == 0
    assert not (lab.wt_a / "sut2").exists()
    # TIOCSTI (typing into the pane's terminal) is refused inside.
    sock = os.environ["AGENTDECK_TMUX_SOCKET"]
    script = ("import fcntl, termios\n"
              "try:\n    fcntl.ioctl(0, termios.TIOCSTI, b'x'); r = 'injected'\n"
              "except OSError as e:\n    r = 'refused %d' % e.errno\n"
              "open('tiocsti.txt', 'w').write(r)\n")
    argv = ab.wrap(lab.sb, [sys.executable, "-c", script], dict(os.environ))
    subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-s", "inj", "--", *argv], check=True)
    result = retry_until(lambda: (lab.wt_a / "tiocsti.txt").exists() and (lab.wt_a / "tiocsti.txt").read_text(),
                         timeout=20, what="the TIOCSTI attempt")
    assert result == "refused 1"


def test_compare_test_command_runs_in_the_agents_sandbox(lab):
    from agentdeck.review.compare import run_test

    cmd = f"id -u; echo x >> {lab.db} || echo db-refused; cat {lab.home}/.ssh/id_ed25519 || echo ssh-hidden"
    inside = run_test(cmd, lab.wt_a, timeout=60)
    assert inside.output_tail.split()[0] != "0"
    assert "db-refused" in inside.output_tail and "ssh-hidden" in inside.output_tail
    outside = run_test(cmd, lab.wt_b, timeout=60)  # not sandboxed: as before (the control)
    assert outside.output_tail.split()[0] == str(os.getuid()) and "SECRET-KEY" in outside.output_tail


def test_deck_new_bwrap_commit_reaches_review_and_engine_git_is_guarded(tmp_path):
    from agentdeck.deck import Deck

    repo_dir = make_repo(tmp_path / "deckrepo", {
        "README.md": "# r\n",
        ".agentdeck.toml": '[deck]\ndefault_agent = "sh"\n\n[agents.sh]\nkind = "generic"\n'
                           'command = "bash --norc --noprofile -i"\n'})
    deck = Deck.open(repo_dir)
    try:
        rec = deck.new("w1", sandbox="bwrap")
        wt = Path(rec.worktree)
        assert ab.guard(wt)  # registered: every engine git call on it takes the safe options
        deck.send("w1", "id -u > uid.txt; git add uid.txt && git commit -qm from-deck && echo DONE-$((6*7))",
                  force=True)
        retry_until(lambda: "DONE-42" in deck.peek("w1"), timeout=30, what="the agent's commit")
        assert (wt / "uid.txt").read_text().strip() != "0"
        assert git(repo_dir, "log", "-1", "--format=%s", rec.branch) != "from-deck"  # not yet on the host
        result = deck.review.diff("w1")
        assert any(f.path == "uid.txt" for f in result.files)
        assert git(repo_dir, "log", "-1", "--format=%s", rec.branch) == "from-deck"  # read = brought back
    finally:
        deck.close()
