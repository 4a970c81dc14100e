"""The engine end to end through the real CLI: real git, a real tmux server, the fake agent."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support import git, retry_until, run_cli


def ls(repo: Path) -> dict[str, dict]:
    out = run_cli("ls", "--json", cwd=repo)
    assert out.returncode == 0, out.stderr
    return {a["name"]: a for a in json.loads(out.stdout)}


def status_of(repo: Path, name: str) -> str | None:
    return ls(repo).get(name, {}).get("status")


def wait_status(repo: Path, name: str, *want: str, timeout: float = 15) -> str:
    return retry_until(lambda: status_of(repo, name) in want and status_of(repo, name),
                       timeout=timeout, interval=0.1, what=f"{name} in {want}")


def test_new_creates_branch_worktree_pane_and_lists_contract_fields(fake_repo):
    out = run_cli("new", "north-star", "--prompt", "hello there", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    agents = ls(fake_repo)
    a = agents["north-star"]
    for key in ("name", "agent", "kind", "status", "branch", "base", "worktree", "created_at", "kept"):
        assert key in a
    assert a["agent"] == "fake" and a["kind"] == "generic"
    assert a["branch"] == "agentdeck/north-star" and a["base"] == "main" and a["kept"] is False
    assert a["created_at"].endswith("Z")
    wt = Path(a["worktree"])
    assert wt.is_dir() and (wt / "README.md").is_file()
    assert not str(wt).startswith(str(fake_repo))  # outside the main checkout
    assert git(fake_repo, "rev-parse", "agentdeck/north-star") == git(fake_repo, "rev-parse", "main")
    screen = retry_until(lambda: "ok: hello there" in run_cli("peek", "north-star", cwd=fake_repo).stdout,
                         what="initial prompt on screen")
    assert screen
    # The pane carries agentdeck's environment.
    run_cli("send", "north-star", "write env.txt marker", cwd=fake_repo)
    retry_until(lambda: (wt / "env.txt").exists(), what="file written in worktree")
    # A command run inside the worktree acts on the same state.
    inside = run_cli("ls", "--json", cwd=wt)
    assert [x["name"] for x in json.loads(inside.stdout)] == ["north-star"]


def test_status_lifecycle_working_idle_waiting_approve_deny(fake_repo):
    assert run_cli("new", "w1", "--prompt", "work 5", cwd=fake_repo).returncode == 0
    wait_status(fake_repo, "w1", "working")
    wait_status(fake_repo, "w1", "idle")
    assert run_cli("send", "w1", "ask yes.txt", cwd=fake_repo).returncode == 0
    wait_status(fake_repo, "w1", "waiting")
    refused = run_cli("send", "w1", "something", cwd=fake_repo)
    assert refused.returncode == 1 and "waiting" in refused.stderr
    assert run_cli("approve", "w1", cwd=fake_repo).returncode == 0
    wt = Path(ls(fake_repo)["w1"]["worktree"])
    retry_until(lambda: (wt / "yes.txt").exists(), what="approved file")
    wait_status(fake_repo, "w1", "idle")
    nothing = run_cli("approve", "w1", cwd=fake_repo)
    assert nothing.returncode == 1 and "no pending" in nothing.stderr
    assert run_cli("send", "w1", "ask no.txt", cwd=fake_repo).returncode == 0
    wait_status(fake_repo, "w1", "waiting")
    assert run_cli("deny", "w1", cwd=fake_repo).returncode == 0
    retry_until(lambda: "denied" in run_cli("peek", "w1", cwd=fake_repo).stdout, what="denied on screen")
    assert not (wt / "no.txt").exists()
    events = json.loads(run_cli("events", "w1", "--json", cwd=fake_repo).stdout)
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses[0] == "starting" and "working" in statuses and "waiting" in statuses
    assert {e["source"] for e in events if e["type"] == "status"} >= {"launch", "screen"}
    # wait: reached and timeout
    assert run_cli("wait", "w1", "--until", "idle,exited", "--timeout", "10", cwd=fake_repo).returncode == 0
    timeout = run_cli("wait", "w1", "--until", "waiting", "--timeout", "0.5", cwd=fake_repo)
    assert timeout.returncode == 1
    bad = run_cli("wait", "w1", "--until", "sleeping", cwd=fake_repo)
    assert bad.returncode == 2


def test_exit_keeps_last_screen_and_restart(fake_repo):
    assert run_cli("new", "crashy", cwd=fake_repo).returncode == 0
    wait_status(fake_repo, "crashy", "idle")
    run_cli("send", "crashy", "crash", cwd=fake_repo)
    wait_status(fake_repo, "crashy", "exited")
    assert "fatal: crashing" in run_cli("peek", "crashy", cwd=fake_repo).stdout
    refused = run_cli("send", "crashy", "hello", cwd=fake_repo)
    assert refused.returncode == 1 and "exited" in refused.stderr
    assert run_cli("restart", "crashy", cwd=fake_repo).returncode == 0
    wait_status(fake_repo, "crashy", "idle")
    assert "fake-agent 1.0 ready" in run_cli("peek", "crashy", cwd=fake_repo).stdout


def test_dead_tmux_server_shows_exited_and_restart_all(fake_repo, isolated_home):
    import os

    for n in ("a1", "a2"):
        assert run_cli("new", n, cwd=fake_repo).returncode == 0
    wait_status(fake_repo, "a1", "idle")
    subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "kill-server"], check=True)
    agents = ls(fake_repo)
    assert {a["status"] for a in agents.values()} == {"exited"}
    assert "fake-agent" in run_cli("peek", "a1", cwd=fake_repo).stdout  # last screen kept on disk
    out = run_cli("restart", "--all", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    wait_status(fake_repo, "a1", "idle")
    wait_status(fake_repo, "a2", "idle")


def test_kill_keep_discard_and_recover(fake_repo):
    for n in ("clean", "dirty", "gone"):
        assert run_cli("new", n, cwd=fake_repo).returncode == 0
    agents = ls(fake_repo)
    # clean: removed with its branch
    out = run_cli("kill", "clean", "--json", cwd=fake_repo)
    assert json.loads(out.stdout)["removed"] is True
    assert not Path(agents["clean"]["worktree"]).exists()
    assert not git(fake_repo, "branch", "--list", "agentdeck/clean")
    # dirty: kept, listed exited+kept
    dirty_wt = Path(agents["dirty"]["worktree"])
    (dirty_wt / "work.txt").write_text("precious\n")
    out = run_cli("kill", "dirty", "--json", cwd=fake_repo)
    assert json.loads(out.stdout)["kept"] is True
    after = ls(fake_repo)["dirty"]
    assert after["status"] == "exited" and after["kept"] is True
    assert (dirty_wt / "work.txt").read_text() == "precious\n"
    # discard: recovery ref first, holding the uncommitted file
    out = run_cli("kill", "dirty", "--discard", "--json", cwd=fake_repo)
    result = json.loads(out.stdout)
    assert result["removed"] and result["recovery_ref"].startswith("refs/agentdeck/trash/dirty/")
    assert not dirty_wt.exists() and "dirty" not in ls(fake_repo)
    assert git(fake_repo, "show", f"{result['recovery_ref']}:work.txt") == "precious"
    refs = json.loads(run_cli("recover", "--json", cwd=fake_repo).stdout)
    assert [r["ref"] for r in refs] == [result["recovery_ref"]]
    restored = json.loads(run_cli("recover", result["recovery_ref"], "--json", cwd=fake_repo).stdout)
    assert git(fake_repo, "show", f"{restored['branch']}:work.txt") == "precious"
    # committed work also keeps the agent
    gone_wt = Path(agents["gone"]["worktree"])
    (gone_wt / "c.txt").write_text("c\n")
    git(gone_wt, "add", "c.txt")
    git(gone_wt, "commit", "-q", "-m", "agent work")
    assert json.loads(run_cli("kill", "gone", "--json", cwd=fake_repo).stdout)["kept"] is True
    assert git(fake_repo, "branch", "--list", "agentdeck/gone")


def test_hostile_names_become_safe_slugs_and_never_reuse_user_branches(fake_repo):
    git(fake_repo, "branch", "agentdeck/taken")
    user_tip = git(fake_repo, "rev-parse", "agentdeck/taken")
    names = ["../../etc passwd", "héllo wörld; rm -rf /", "$(touch pwned)", "taken", "名前"]
    for n in names:
        out = run_cli("new", n, cwd=fake_repo)
        assert out.returncode == 0, (n, out.stderr)
    agents = ls(fake_repo)
    branches = {a["branch"] for a in agents.values()}
    assert "agentdeck/taken-2" in branches
    assert git(fake_repo, "rev-parse", "agentdeck/taken") == user_tip
    for a in agents.values():
        slug = a["branch"].removeprefix("agentdeck/")
        assert slug and all(c.isalnum() or c == "-" for c in slug), slug
        assert Path(a["worktree"]).name == slug
    assert not (fake_repo / "pwned").exists() and not Path("pwned").exists()
    assert agents["héllo wörld; rm -rf /"]["branch"] == "agentdeck/hello-world-rm-rf"


def test_cwd_subdir(fake_repo):
    out = run_cli("new", "mono", "--cwd", "src", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    a = ls(fake_repo)["mono"]
    assert a["cwd"] == str(Path(a["worktree"]) / "src")
    run_cli("send", "mono", "write here.txt x", cwd=fake_repo)
    retry_until(lambda: (Path(a["worktree"]) / "src" / "here.txt").exists(), what="file in subdir")
    for bad in ("../x", "/etc", "nope"):
        out = run_cli("new", "bad-" + bad.strip("./"), "--cwd", bad, cwd=fake_repo)
        assert out.returncode == 2 and "--cwd" in out.stderr


def test_setup_copy_files_never_count_as_changes(fake_repo):
    cfg = fake_repo / ".agentdeck.toml"
    cfg.write_text(cfg.read_text().replace('[deck]\n', '[deck]\nsetup_copy = [".env", "secrets/*.key"]\n'
                                             'setup_command = "touch .setup-ran-$AGENTDECK_AGENT"\n'))
    git(fake_repo, "commit", "-qam", "config")
    (fake_repo / ".env").write_text("TOKEN=1\n")
    (fake_repo / "secrets").mkdir()
    (fake_repo / "secrets" / "a.key").write_text("k\n")
    assert run_cli("new", "envy", cwd=fake_repo).returncode == 0
    a = ls(fake_repo)["envy"]
    wt = Path(a["worktree"])
    assert (wt / ".env").read_text() == "TOKEN=1\n" and (wt / "secrets/a.key").exists()
    assert (wt / ".setup-ran-envy").exists()
    (wt / ".setup-ran-envy").unlink()
    out = json.loads(run_cli("kill", "envy", "--json", cwd=fake_repo).stdout)
    assert out["removed"] is True, out  # only copied files: a clean agent


def test_setup_command_failure_leaves_nothing(fake_repo):
    cfg = fake_repo / ".agentdeck.toml"
    cfg.write_text(cfg.read_text().replace('[deck]\n', '[deck]\nsetup_command = "echo broken >&2; exit 4"\n'))
    out = run_cli("new", "setupfail", cwd=fake_repo)
    assert out.returncode == 1 and "setup_command" in out.stderr and "broken" in out.stderr
    assert_nothing_left(fake_repo, "setupfail")


def assert_nothing_left(repo: Path, slug: str) -> None:
    assert not git(repo, "branch", "--list", f"agentdeck/{slug}*")
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert slug not in ls(repo)


def test_bad_input_clear_messages_and_nothing_half_done(fake_repo, tmp_path):
    # name in use
    assert run_cli("new", "dup", cwd=fake_repo).returncode == 0
    again = run_cli("new", "dup", cwd=fake_repo)
    assert again.returncode == 2 and "already exists" in again.stderr
    # unknown definition
    out = run_cli("new", "x1", "--agent", "nosuch", cwd=fake_repo)
    assert out.returncode == 2 and "nosuch" in out.stderr
    # binary not installed
    cfg = fake_repo / ".agentdeck.toml"
    cfg.write_text(cfg.read_text() + '\n[agents.ghost]\ncommand = "definitely-not-installed-xyz"\n')
    out = run_cli("new", "x2", "--agent", "ghost", "--json", cwd=fake_repo)
    assert out.returncode == 2 and "not installed" in out.stderr
    assert "not installed" in json.loads(out.stdout)["error"]
    assert_nothing_left_except(fake_repo, {"dup"})
    # unknown agent name
    out = run_cli("peek", "nobody", cwd=fake_repo)
    assert out.returncode == 2 and "no agent named" in out.stderr
    # bad base
    out = run_cli("new", "x3", "--base", "no-such-branch", cwd=fake_repo)
    assert out.returncode == 2 and "no-such-branch" in out.stderr
    # outside a git repository
    plain = tmp_path / "plain"
    plain.mkdir()
    out = run_cli("ls", cwd=plain)
    assert out.returncode == 2 and "not inside a git repository" in out.stderr
    # a repository without commits
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    (empty / ".agentdeck.toml").write_text((fake_repo / ".agentdeck.toml").read_text())
    out = run_cli("new", "x4", "--agent", "fake", cwd=empty)
    assert out.returncode == 2 and "no commits" in out.stderr
    # empty / control-character names
    assert run_cli("new", "  ", cwd=fake_repo).returncode == 2
    assert run_cli("new", "a\x07b", cwd=fake_repo).returncode == 2
    assert_nothing_left_except(fake_repo, {"dup"})


def assert_nothing_left_except(repo: Path, names: set[str]) -> None:
    agents = ls(repo)
    assert set(agents) == names
    branches = git(repo, "branch", "--format=%(refname:short)", "--list", "agentdeck/*").split()
    assert set(branches) == {agents[n]["branch"] for n in names}
    assert len(git(repo, "worktree", "list").splitlines()) == 1 + len(names)


def test_broken_config_names_file_key_line(fake_repo):
    cfg = fake_repo / ".agentdeck.toml"
    original = cfg.read_text()
    cfg.write_text(original + "\n[deck2]\nx = 1\n")
    out = run_cli("ls", cwd=fake_repo)
    assert out.returncode == 2 and ".agentdeck.toml" in out.stderr and "deck2" in out.stderr
    cfg.write_text(original.replace('default_agent = "fake"', 'default_agent = "fake"\nbranch_prefx = "x/"'))
    out = run_cli("new", "cfg1", cwd=fake_repo)
    assert out.returncode == 2 and "deck.branch_prefx" in out.stderr and "line 4" in out.stderr
    cfg.write_text(original.replace("quiet_s = 1.0", 'quiet_s = "slow"'))
    out = run_cli("new", "cfg2", "--json", cwd=fake_repo)
    assert out.returncode == 2 and "agents.fake.quiet_s" in out.stderr and "expected a number" in out.stderr
    cfg.write_text(original + "\n[deck\n")
    out = run_cli("ls", cwd=fake_repo)
    assert out.returncode == 2 and "TOML syntax error" in out.stderr and "line" in out.stderr
    cfg.write_text(original)
    assert ls(fake_repo) == {}
    assert not git(fake_repo, "branch", "--list", "agentdeck/*")


def test_concurrent_processes_create_and_list(fake_repo):
    import os
    import sys

    from support import ROOT

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, "-m", "agentdeck", "new", f"agent-{i}"], cwd=fake_repo, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(6)
    ]
    # The same slug from two names at once, and readers in between.
    procs += [
        subprocess.Popen([sys.executable, "-m", "agentdeck", "new", name], cwd=fake_repo, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("same slug", "same-slug")
    ]
    readers = [
        subprocess.Popen([sys.executable, "-m", "agentdeck", "ls", "--json"], cwd=fake_repo, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for p in procs + readers:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    agents = ls(fake_repo)
    assert set(agents) == {f"agent-{i}" for i in range(6)} | {"same slug", "same-slug"}
    assert {agents["same slug"]["branch"], agents["same-slug"]["branch"]} == {
        "agentdeck/same-slug", "agentdeck/same-slug-2"}
    assert len(git(fake_repo, "worktree", "list").splitlines()) == 9


def test_gc_adopts_a_live_agent_whose_row_was_lost(fake_repo, isolated_home):
    """A live session is someone's work: a lost row is written back, never offered for removal."""
    assert run_cli("new", "orphan", cwd=fake_repo).returncode == 0
    a = ls(fake_repo)["orphan"]
    import sqlite3

    db = fake_repo / ".git" / "agentdeck" / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM agents WHERE name = 'orphan'")
    plan = run_cli("gc", "--json", cwd=fake_repo, input="")
    assert plan.returncode == 0, plan.stderr
    offered = json.loads(plan.stdout)
    assert a["worktree"] not in json.dumps(offered) and a["tmux_session"] not in json.dumps(offered)
    again = ls(fake_repo)["orphan"]
    assert again["worktree"] == a["worktree"] and again["branch"] == a["branch"]
    assert Path(a["worktree"]).exists()


def test_gc_removes_orphans_after_asking(fake_repo, isolated_home):
    import os

    assert run_cli("new", "orphan", cwd=fake_repo).returncode == 0
    a = ls(fake_repo)["orphan"]
    # Simulate a crash that lost the row and the pane: the worktree stays behind.
    import sqlite3

    db = fake_repo / ".git" / "agentdeck" / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM agents WHERE name = 'orphan'")
    subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "kill-session", "-t", a["tmux_session"]],
                   check=True)
    Path(a["worktree"], "unsaved.txt").write_text("keep me\n")
    plan = run_cli("gc", cwd=fake_repo, input="")
    assert plan.returncode == 0 and "orphan" in plan.stdout and "--yes" in plan.stdout
    assert Path(a["worktree"]).exists()  # asked, not done
    done = run_cli("gc", "--yes", "--json", cwd=fake_repo)
    result = json.loads(done.stdout)
    assert result["done"]["worktrees"] == [a["worktree"]]
    ref = result["done"]["saved"][0]
    assert git(fake_repo, "show", f"{ref}:unsaved.txt") == "keep me"
    assert not Path(a["worktree"]).exists()


def test_doctor_and_help(fake_repo):
    out = run_cli("doctor", "--json", cwd=fake_repo)
    data = json.loads(out.stdout)
    names = {c["name"] for c in data["checks"]}
    assert {"git", "tmux", "python", "config", "agent fake"} <= names
    assert out.returncode == 0, out.stdout
    helped = run_cli("--help", cwd=fake_repo)
    assert helped.returncode == 0 and "new" in helped.stdout and "doctor" in helped.stdout


def test_engine_never_imports_textual():
    import sys

    from support import ROOT

    code = (
        "import sys; import agentdeck.deck, agentdeck.cli, agentdeck.status, agentdeck.store, agentdeck.tmux, "
        "agentdeck.git, agentdeck.config, agentdeck.agents.generic; "
        "from agentdeck.cli import build_parser; build_parser(); "
        "bad = [m for m in sys.modules if m == 'textual' or m.startswith('textual.')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
