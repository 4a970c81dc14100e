"""Fault matrix, agent life cycle (issue 12): an interrupted `new` or `kill`, the caller's environment,
altered state rows, setup_copy outside the repository, hostile names, a read-only state directory.

Faults are injected with deterministic fault points (``AGENTDECK_FAULT=<point>`` makes that step
SIGKILL its own process, ``agentdeck/faults.py``), never with sleeps; every check is a CLI run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from support import git, retry_until, run_cli

KILLED = -signal.SIGKILL


# ---------------------------------------------------------------------------- helpers
def listing(repo: Path) -> dict[str, dict]:
    out = run_cli("ls", "--json", cwd=repo)
    assert out.returncode == 0, out.stderr
    return {a["name"]: a for a in json.loads(out.stdout)}


def state_db(repo: Path) -> Path:
    return repo / ".git" / "agentdeck" / "state.db"


def rewrite_row(repo: Path, name: str, **fields: str) -> None:
    with sqlite3.connect(state_db(repo)) as conn:
        cols = ", ".join(f"{k} = ?" for k in fields)
        conn.execute(f"UPDATE agents SET {cols} WHERE name = ?", (*fields.values(), name))


def row_extra(repo: Path, name: str) -> dict | None:
    with sqlite3.connect(state_db(repo)) as conn:
        row = conn.execute("SELECT extra FROM agents WHERE name = ?", (name,)).fetchone()
    return json.loads(row[0]) if row else None


def add_config(repo: Path, text: str, section: str = "[deck]") -> None:
    cfg = repo / ".agentdeck.toml"
    cfg.write_text(cfg.read_text().replace(section, section + "\n" + text, 1))
    git(repo, "commit", "-qam", "config")


def branches(repo: Path) -> set[str]:
    return set(git(repo, "branch", "--format=%(refname:short)").split())


def new_ok(repo: Path, name: str, **kw) -> dict:
    out = run_cli("new", name, cwd=repo, **kw)
    assert out.returncode == 0, out.stderr
    return listing(repo)[name]


def wait_screen(repo: Path, name: str, text: str, timeout: float = 15) -> str:
    return retry_until(lambda: (lambda s: s if text in s else "")(run_cli("peek", name, cwd=repo).stdout),
                       timeout=timeout, what=f"{text!r} on {name}'s screen")


# ---------------------------------------------------------------------------- 1. `new` killed during setup
def test_new_killed_during_setup_is_exited_and_restart_kill_gc_doctor_handle_it(fake_repo):
    add_config(fake_repo, 'setup_command = "echo ran >> setup-ran.txt"')
    fault = {"AGENTDECK_FAULT": "new.setup_command"}

    # kill -9 between the worktree and setup_command: the row must not stay `starting` forever.
    assert run_cli("new", "s1", "--prompt", "hello", cwd=fake_repo, env=fault).returncode == KILLED
    agent = listing(fake_repo)["s1"]
    assert agent["status"] == "exited"
    events = json.loads(run_cli("events", "s1", "--json", cwd=fake_repo).stdout)
    assert "launch interrupted" in events[-1]["detail"]["reason"]
    doctor = run_cli("doctor", cwd=fake_repo)
    assert "launch interrupted" in doctor.stdout and "agentdeck restart s1" in doctor.stdout
    plan = run_cli("gc", cwd=fake_repo, input="")
    assert "agent: s1" in plan.stdout

    # restart --all finishes the launch: setup_command runs, the agent starts with its prompt.
    out = run_cli("restart", "--all", cwd=fake_repo)
    assert out.returncode == 0 and "s1" in out.stdout, out.stderr
    wt = Path(agent["worktree"])
    assert (wt / "setup-ran.txt").read_text() == "ran\n"
    wait_screen(fake_repo, "s1", "ok: hello")
    assert listing(fake_repo)["s1"]["status"] != "exited"

    # killed before the worktree exists or after it: restart NAME recreates what is missing.
    assert run_cli("new", "s2", cwd=fake_repo, env=fault).returncode == KILLED
    wt2 = Path(listing(fake_repo)["s2"]["worktree"])
    shutil.rmtree(wt2)  # as if killed inside `git worktree add`
    out = run_cli("restart", "s2", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    assert (wt2 / "setup-ran.txt").is_file()
    wait_screen(fake_repo, "s2", "fake-agent 1.0 ready")

    # kill cleans an interrupted launch up; so does gc.
    assert run_cli("new", "s3", cwd=fake_repo, env=fault).returncode == KILLED
    assert run_cli("new", "s4", cwd=fake_repo, env=fault).returncode == KILLED
    wt3, wt4 = (Path(listing(fake_repo)[n]["worktree"]) for n in ("s3", "s4"))
    out = run_cli("kill", "s3", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    out = run_cli("gc", "--yes", cwd=fake_repo)
    assert out.returncode == 0 and "removed 1 stuck agent" in out.stdout, out.stdout + out.stderr
    assert set(listing(fake_repo)) == {"s1", "s2"}
    assert not wt3.exists() and not wt4.exists()
    assert not {"agentdeck/s3", "agentdeck/s4"} & branches(fake_repo)


def test_new_killed_by_a_real_sigkill_during_a_slow_setup(fake_repo, tmp_path):
    started = tmp_path / "setup-started"
    add_config(fake_repo, f'setup_command = "touch {started}; sleep 60"')
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = subprocess.Popen([sys.executable, "-m", "agentdeck", "new", "slow"], cwd=fake_repo, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        retry_until(started.exists, timeout=30, what="setup_command started")
        assert listing(fake_repo)["slow"]["status"] == "starting"  # its process is alive: still launching
        proc.kill()
        proc.wait()
        assert retry_until(lambda: listing(fake_repo)["slow"]["status"] == "exited", what="exited")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the orphaned `sleep`
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------- 2. `kill --discard` killed mid-removal
@pytest.mark.parametrize("point", ["kill.after_ref", "kill.worktree_moved", "kill.removing_files"])
def test_kill_discard_killed_mid_removal_is_finished_and_loses_nothing(fake_repo, point):
    wt = Path(new_ok(fake_repo, "big")["worktree"])
    for i in range(40):
        (wt / f"f{i:02d}.txt").write_text(f"work {i}\n")
    out = run_cli("kill", "big", "--discard", cwd=fake_repo, env={"AGENTDECK_FAULT": point})
    assert out.returncode == KILLED, out.stderr
    assert listing(fake_repo)["big"]["status"] == "exited"
    ref = row_extra(fake_repo, "big")["removing"]["ref"]
    assert ref and "work 7" in git(fake_repo, "show", f"{ref}:f07.txt")

    refused = run_cli("restart", "big", cwd=fake_repo)
    assert refused.returncode == 1 and "kill big --discard" in refused.stderr, refused.stderr
    assert "kill big --discard" in run_cli("doctor", cwd=fake_repo).stdout

    out = run_cli("kill", "big", cwd=fake_repo)  # a later kill finishes the interrupted one
    assert out.returncode == 0 and "removed big" in out.stdout, out.stderr
    assert "big" not in listing(fake_repo)
    assert not wt.exists() and not list(wt.parent.glob(".agentdeck-trash-*"))
    assert "agentdeck/big" not in branches(fake_repo)
    assert "prunable" not in git(fake_repo, "worktree", "list", "--porcelain")
    assert "work 39" in git(fake_repo, "show", f"{ref}:f39.txt")


def test_worktree_half_removed_by_git_is_recognised_and_its_remains_saved(fake_repo):
    """What kill -9 of `git worktree remove` leaves: files partly deleted, the .git file gone."""
    wt = Path(new_ok(fake_repo, "half")["worktree"])
    (wt / "kept-work.txt").write_text("precious\n")
    (wt / "README.md").write_text("changed readme\n")
    (wt / ".git").unlink()
    (wt / "src" / "app.py").unlink()

    refused = run_cli("restart", "half", cwd=fake_repo)
    assert refused.returncode == 1 and "half removed" in refused.stderr, refused.stderr
    assert "half removed" in run_cli("doctor", cwd=fake_repo).stdout
    out = run_cli("kill", "half", "--json", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["removed"] and result["recovery_ref"]
    ref = result["recovery_ref"]
    assert git(fake_repo, "show", f"{ref}:kept-work.txt") == "precious"
    assert git(fake_repo, "show", f"{ref}:README.md") == "changed readme"
    assert git(fake_repo, "show", f"{ref}:src/app.py") == "print('hi')"  # a deletion is not "work"
    assert not wt.exists() and "agentdeck/half" not in branches(fake_repo)
    assert "half" not in listing(fake_repo)


# ---------------------------------------------------------------------------- 3. the caller's environment
def test_new_agent_gets_the_callers_environment_never_on_a_command_line_or_on_disk(fake_repo, isolated_home):
    add_config(fake_repo, 'env = { DEF_VAR = "from-definition" }', section="[agents.fake]")
    new_ok(fake_repo, "first")  # agentdeck's tmux server is running from here on
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    seen: list[str] = []
    stop = threading.Event()

    def watch_ps() -> None:
        while not stop.is_set():
            args = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            if secret in args:
                seen.append(args)
            stop.wait(0.01)

    watcher = threading.Thread(target=watch_ps, daemon=True)
    watcher.start()
    try:
        wt = Path(new_ok(fake_repo, "envtest", env={"PEER_SECRET_VAR": secret})["worktree"])
        wait_screen(fake_repo, "envtest", "fake-agent 1.0 ready")
        probe = ('python3 -c "import hashlib,os;e=os.environ;print(\'sha\','
                 'hashlib.sha1(e.get(\'PEER_SECRET_VAR\',\'\').encode()).hexdigest(),'
                 'e.get(\'DEF_VAR\'),e.get(\'AGENTDECK_AGENT\'),e.get(\'PWD\'),bool(e.get(\'TMUX_PANE\')))"')
        assert run_cli("send", "envtest", f"run {probe}", cwd=fake_repo).returncode == 0
        digest = hashlib.sha1(secret.encode()).hexdigest()
        screen = wait_screen(fake_repo, "envtest", f"sha {digest}")
        assert f"sha {digest} from-definition envtest {wt} True" in screen

        # restart follows the same rule: the restarting process's environment.
        run_cli("send", "envtest", "exit", cwd=fake_repo)
        retry_until(lambda: listing(fake_repo)["envtest"]["status"] == "exited", what="exited")
        secret2 = secret + "-2"
        out = run_cli("restart", "envtest", cwd=fake_repo, env={"PEER_SECRET_VAR": secret2})
        assert out.returncode == 0, out.stderr
        wait_screen(fake_repo, "envtest", "fake-agent 1.0 ready")
        run_cli("send", "envtest", f"run {probe}", cwd=fake_repo)
        wait_screen(fake_repo, "envtest", f"sha {hashlib.sha1(secret2.encode()).hexdigest()}")
    finally:
        stop.set()
        watcher.join()
    assert not seen, "the secret showed on a command line"
    socket = os.environ["AGENTDECK_TMUX_SOCKET"]
    tmux_env = subprocess.run(["tmux", "-L", socket, "show-environment", "-g"], capture_output=True, text=True).stdout
    assert secret not in tmux_env
    state = fake_repo / ".git" / "agentdeck"
    assert not list((state / "launch").iterdir()), "a launch environment file was left behind"
    # The saved screens, the database, logs, user files: nowhere on disk (the probe printed a digest).
    run_cli("ls", cwd=fake_repo)
    for root in (state, isolated_home):
        for path in root.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


# ---------------------------------------------------------------------------- 4. altered state rows
@pytest.mark.parametrize("change", ["slug", "worktree", "branch", "outside"])
def test_kill_and_gc_refuse_paths_from_an_altered_row(fake_repo, tmp_path, change):
    new_ok(fake_repo, "victim")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep\n")
    fields = {
        "slug": {"slug": "../../.."},
        "worktree": {"worktree": str(fake_repo)},
        "branch": {"branch": "main"},
        "outside": {"worktree": str(outside)},
    }[change]
    rewrite_row(fake_repo, "victim", **fields)

    out = run_cli("kill", "victim", "--discard", cwd=fake_repo)
    assert out.returncode == 1 and "refused" in out.stderr and "nothing" in out.stderr, out.stdout + out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = run_cli("gc", "--yes", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    # Nothing outside the agent's own worktree folder was touched.
    assert (fake_repo / ".git" / "HEAD").is_file() and (fake_repo / "README.md").is_file()
    assert (fake_repo / ".agentdeck.toml").is_file() and "main" in branches(fake_repo)
    assert (outside / "keep.txt").read_text() == "keep\n"
    assert "victim" in listing(fake_repo)


# ---------------------------------------------------------------------------- 5. setup_copy outside the repository
def test_setup_copy_may_only_copy_from_inside_the_repository(fake_repo, tmp_path, isolated_home):
    (tmp_path / "secret.txt").write_text("outside secret\n")
    (fake_repo / "link.env").symlink_to(tmp_path / "secret.txt")
    (fake_repo / "conf").mkdir()
    (fake_repo / "conf" / "ok.txt").write_text("fine\n")
    (fake_repo / "conf" / "escape").symlink_to(tmp_path)
    cases = {
        '"../secret.txt"': "../secret.txt",
        f'"{tmp_path / "secret.txt"}"': str(tmp_path / "secret.txt"),
        f'"{tmp_path}/*.txt"': f"{tmp_path}/*.txt",
        '"link.env"': "link.env",
        '"conf"': "conf",
        '"**/../../*.txt"': "**/../../*.txt",
    }
    cfg = fake_repo / ".agentdeck.toml"
    original = cfg.read_text()
    for value, entry in cases.items():
        cfg.write_text(original.replace("[deck]", f"[deck]\nsetup_copy = [{value}]", 1))
        out = run_cli("new", "copier", cwd=fake_repo)
        assert out.returncode == 2, (entry, out.stdout, out.stderr)
        assert "[deck] setup_copy" in out.stderr and repr(entry) in out.stderr, out.stderr
        assert "unexpected failure" not in out.stderr
        assert "agentdeck/copier" not in branches(fake_repo)
        assert "copier" not in listing(fake_repo)
    assert not list(isolated_home.rglob("secret.txt")), "copied outside the repository"
    # Inside the repository (a link inside too) is fine, and lands inside the worktree.
    (fake_repo / "inner.env").symlink_to(fake_repo / "conf" / "ok.txt")
    cfg.write_text(original.replace("[deck]", '[deck]\nsetup_copy = ["inner.env", "conf/ok.txt"]', 1))
    wt = Path(new_ok(fake_repo, "copier")["worktree"])
    assert (wt / "inner.env").read_text() == "fine\n" and (wt / "conf" / "ok.txt").read_text() == "fine\n"


# ---------------------------------------------------------------------------- 6. names
SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0c", "\x1e", "\x1c", "\x1f", "\r", "\x0b", "\u200b", "\u202e",
              "\ufeff", "\u2066"]


def test_names_with_line_separators_or_format_characters_are_refused(fake_repo):
    from agentdeck.deck import validate_name
    from agentdeck.errors import UsageError

    for ch in SEPARATORS:
        for name in (f"a{ch}b", f"abc{ch}", f"{ch}abc"):
            with pytest.raises(UsageError, match=f"U\\+{ord(ch):04X}"):
                validate_name(name)
    assert validate_name(" north-star ") == "north-star"
    assert validate_name("café-ünï") == "café-ünï"
    for ch in ("\u2028", "\x85", "\r", "\x1e"):
        out = run_cli("new", f"forged{ch}kind: decision", cwd=fake_repo)
        assert out.returncode == 2 and f"U+{ord(ch):04X}" in out.stderr, out.stderr
    out = run_cli("new", "trailing\u2029", cwd=fake_repo)
    assert out.returncode == 2
    assert listing(fake_repo) == {} and not any(b.startswith("agentdeck/") for b in branches(fake_repo))


# ---------------------------------------------------------------------------- 7. a read-only state directory
def _bwrap_ro(path: Path) -> list[str] | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    probe = subprocess.run([bwrap, "--bind", "/", "/", "--ro-bind", str(path), str(path), "--dev", "/dev",
                            "--proc", "/proc", "sh", "-c", f"! touch {path}/.probe 2>/dev/null"],
                           capture_output=True)
    return None if probe.returncode != 0 else [bwrap, "--bind", "/", "/", "--ro-bind", str(path), str(path),
                                               "--dev", "/dev", "--proc", "/proc"]


def run_ro(prefix: list[str], repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    return subprocess.run([*prefix, sys.executable, "-m", "agentdeck", *args], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("what", ["dir", "db"])
def test_read_only_state_refuses_every_change_before_making_it(fake_repo, what):
    wt = Path(new_ok(fake_repo, "ro")["worktree"])
    (wt / "work.txt").write_text("work\n")
    state = fake_repo / ".git" / "agentdeck"
    prefix = _bwrap_ro(state if what == "dir" else state / "state.db")
    if prefix is None:
        pytest.skip("bubblewrap cannot make a read-only bind mount here")
    root = wt.parent
    git(fake_repo, "worktree", "add", "-q", "--detach", str(root / "orphan"))  # something for gc to do
    before = branches(fake_repo)
    for args in (["kill", "ro", "--discard"], ["kill", "ro"], ["new", "ro2"], ["restart", "ro"],
                 ["restart", "--all"], ["gc", "--yes"]):
        out = run_ro(prefix, fake_repo, *args)
        assert out.returncode == 1, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "read-only" in lines[0] and "chmod" in lines[0], (args, out.stderr)
        assert "unexpected failure" not in out.stderr
    assert branches(fake_repo) == before and (wt / "work.txt").is_file() and (root / "orphan").is_dir()
    assert listing(fake_repo)["ro"]["status"] != "exited"  # not even its session was stopped
    assert not git(fake_repo, "for-each-ref", "refs/agentdeck/trash/")


# ---------------------------------------------------------------------------- small: gc output
def test_gc_yes_never_prints_an_empty_removed_line(fake_repo, isolated_home):
    new_ok(fake_repo, "anchor")
    root = Path(listing(fake_repo)["anchor"]["worktree"]).parent
    git(fake_repo, "worktree", "add", "-q", "-b", "agentdeck/stale", str(root / "stale"))
    shutil.rmtree(root / "stale")  # only a stale entry for `git worktree prune`
    out = run_cli("gc", "--yes", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    assert last == "removed 1 stale worktree entry", out.stdout
    out = run_cli("gc", "--yes", cwd=fake_repo)
    assert out.stdout.strip() == "nothing to clean up"
