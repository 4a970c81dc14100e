"""Fault matrix, state area (issue 12): the state database deleted under a running watcher, a corrupt
state database, a read-only state folder, a merge killed half way through a checkout, a closed
stdout pipe.  Each ends with the agents usable (or cleanly gone) and `doctor` naming what it found
and the fix; `doctor --fix` repairs what is safe.  Faults are deterministic: a fault point
(`AGENTDECK_FAULT`) or a process blocked at a known step, never a sleep race.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, git, retry_until, run_cli

FAULT = "AGENTDECK_FAULT"


# ---------------------------------------------------------------------- helpers


def _ls(repo: Path) -> dict[str, dict]:
    out = run_cli("ls", "--json", cwd=repo)
    assert out.returncode == 0, out.stderr
    return {a["name"]: a for a in json.loads(out.stdout)}


def _state(repo: Path) -> Path:
    return repo / ".git" / "agentdeck"


def _tmux(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], *args], capture_output=True, text=True)


def _sessions() -> set[str]:
    return set(_tmux("list-sessions", "-F", "#{session_name}").stdout.split())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr and "unexpected failure" not in out.stderr, out.stderr
    return lines[0]


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---------------------------------------------------------------------- 1. the state database deleted

ALPHA = "Alpha 1"  # slug alpha-1: adoption must find the name itself (the agent's environment)


@pytest.mark.slow
def test_deleted_state_db_watcher_hands_over_and_agents_are_readopted(fake_repo):
    assert run_cli("new", ALPHA, cwd=fake_repo).returncode == 0
    assert run_cli("new", "gamma", cwd=fake_repo).returncode == 0
    before = _ls(fake_repo)
    gamma_wt = Path(before["gamma"]["worktree"])
    (gamma_wt / "work.txt").write_text("gamma's committed work\n")
    git(gamma_wt, "add", "work.txt")
    git(gamma_wt, "commit", "-q", "-m", "gamma work")
    _tmux("kill-session", "-t", f"={before['gamma']['tmux_session']}")  # gamma: worktree only, no pane
    assert run_cli("wait", ALPHA, "--until", "idle", "--timeout", "20", cwd=fake_repo).returncode == 0
    old_watcher = int((_state(fake_repo) / "watcher.lock").read_text())
    assert not _gone(old_watcher)

    (_state(fake_repo) / "state.db").unlink()  # what a user's `rm` does, -wal/-shm left behind

    agents = _ls(fake_repo)
    assert set(agents) == {ALPHA, "gamma"}, agents  # the name, not only the slug, comes back
    alpha, gamma = agents[ALPHA], agents["gamma"]
    assert alpha["status"] != "exited" and alpha["tmux_session"] == before[ALPHA]["tmux_session"]
    assert alpha["worktree"] == before[ALPHA]["worktree"] and alpha["branch"] == "agentdeck/alpha-1"
    assert alpha["agent"] == "fake" and alpha["base"] == "main"
    assert alpha["base_commit"] == before[ALPHA]["base_commit"]
    assert gamma["status"] == "exited" and gamma["worktree"] == str(gamma_wt)
    events = json.loads(run_cli("events", ALPHA, "--json", cwd=fake_repo).stdout)
    assert any(e["type"] == "adopt" for e in events), events
    # The old watcher noticed the file changed under it, left, and a fresh one took over.
    retry_until(lambda: _gone(old_watcher), timeout=10, what="the old watcher to exit")
    assert run_cli("new", "beta", cwd=fake_repo).returncode == 0
    # While a watcher holds the lock `wait` only reads the database: idle proves a live watcher samples it.
    assert run_cli("wait", "beta", "--until", "idle", "--timeout", "20", cwd=fake_repo).returncode == 0
    assert int((_state(fake_repo) / "watcher.lock").read_text()) != old_watcher
    # gc never offers live work: not alpha's session, not gamma's worktree with its commit.
    plan = json.loads(run_cli("gc", "--json", cwd=fake_repo).stdout)["plan"]
    assert not plan["sessions"] and not plan["worktrees"], plan
    assert before[ALPHA]["tmux_session"] in _sessions() and (gamma_wt / "work.txt").is_file()
    # The adopted agents are usable: alpha takes input, gamma is kept by kill (it has a commit).
    assert run_cli("send", ALPHA, "hello again", cwd=fake_repo).returncode == 0
    killed = json.loads(run_cli("kill", "gamma", "--json", cwd=fake_repo).stdout)
    assert killed["kept"] and gamma_wt.is_dir() and git(fake_repo, "rev-parse", "agentdeck/gamma")


def test_doctor_fix_adopts_a_live_agent_missing_from_an_existing_database(fake_repo):
    assert run_cli("new", "alpha", cwd=fake_repo).returncode == 0
    assert run_cli("wait", "alpha", "--until", "idle", "--timeout", "20", cwd=fake_repo).returncode == 0
    with sqlite3.connect(_state(fake_repo) / "state.db") as conn:  # a row lost, the file itself fine
        conn.execute("DELETE FROM agents WHERE name = 'alpha'")
    conn.close()
    doctor = run_cli("doctor", cwd=fake_repo)
    line = next(x for x in doctor.stdout.splitlines() if "agents on disk" in x)
    assert line.startswith("!") and "alpha" in line and "running" in line and "doctor --fix" in line, line
    fixed = run_cli("doctor", "--fix", cwd=fake_repo)
    line = next(x for x in fixed.stdout.splitlines() if "agents on disk" in x)
    assert line.startswith("fix") and "adopted 1: alpha" in line, fixed.stdout
    assert _ls(fake_repo)["alpha"]["status"] != "exited"
    plan = json.loads(run_cli("gc", "--json", cwd=fake_repo).stdout)["plan"]
    assert not plan["sessions"] and not plan["worktrees"], plan


def test_store_reconnects_to_a_replaced_file_and_never_shares_a_stale_wal(tmp_path):
    from agentdeck.store import Store

    db = tmp_path / "state.db"
    old = Store(db)  # a long-running process (the watcher) with the file open
    for i in range(30):
        old.set_meta(f"k{i}", "old")
    db.unlink()  # -wal and -shm stay, still open by `old`
    new = Store(db)
    assert new.get_meta("adopt_pending") == "1" and new.get_meta("k1") is None
    for i in range(30):
        new.set_meta(f"n{i}", "new")
    assert old.file_changed() and not new.file_changed()
    assert old.get_meta("n3") == "new"  # `old` reconnected to the file now at the path
    assert new.quick_check() == [] and old.quick_check() == []
    old.close()
    new.close()


# ---------------------------------------------------------------------- 2. a corrupt state database


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["header", "pages"])
def test_corrupt_state_db_one_line_then_doctor_fix_rebuilds_from_disk(fake_repo, damage):
    env = {"AGENTDECK_NO_WATCHER": "1"}  # no long-lived connection: the damage is what every reader sees
    assert run_cli("new", "alpha", cwd=fake_repo, env=env).returncode == 0
    db = _state(fake_repo) / "state.db"
    assert not Path(f"{db}-wal").exists()  # the last connection checkpointed and closed it
    size = db.stat().st_size
    with open(db, "r+b") as fh:
        start = 0 if damage == "header" else 4096  # the whole file, or every page after the first
        fh.seek(start)
        fh.write(os.urandom(size - start))
    expected = f"agentdeck: error: state database {db} is corrupt; run `agentdeck doctor --fix`"
    for args in (["ls"], ["new", "beta"], ["kill", "alpha"]):
        out = run_cli(*args, cwd=fake_repo, env=env)
        assert out.returncode == 1 and _one_line_error(out) == expected, (args, out.stderr)
    doctor = run_cli("doctor", cwd=fake_repo, env=env)
    assert doctor.returncode == 1
    line = next(x for x in doctor.stdout.splitlines() if x.startswith("ERR state database"))
    assert str(db) in line and "corrupt" in line and "doctor --fix" in line, line
    report = json.loads(run_cli("doctor", "--json", cwd=fake_repo, env=env).stdout)
    assert not report["ok"] and any(c["name"] == "state database" and c["level"] == "error" for c in report["checks"])

    fixed = run_cli("doctor", "--fix", cwd=fake_repo, env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert any(x.startswith("fix state database") for x in fixed.stdout.splitlines()), fixed.stdout
    aside = [p for p in _state(fake_repo).glob("state.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1 and aside[0].stat().st_size == size and db.is_file(), aside
    agents = _ls(fake_repo)
    assert set(agents) == {"alpha"} and agents["alpha"]["status"] != "exited", agents
    assert run_cli("send", "alpha", "still here?", cwd=fake_repo, env=env).returncode == 0
    assert run_cli("doctor", cwd=fake_repo, env=env).returncode == 0


# ---------------------------------------------------------------------- 3. a read-only state folder


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap for a read-only mount")
def test_doctor_names_a_read_only_state_folder_and_the_fix(fake_repo):
    assert run_cli("ls", cwd=fake_repo).returncode == 0  # the state folder exists
    state = _state(fake_repo)
    # A real read-only mount of the state folder (root ignores permission bits, not a mount).
    argv = ["bwrap", "--bind", "/", "/", "--ro-bind", str(state), str(state), "--dev", "/dev", "--proc", "/proc",
            sys.executable, "-m", "agentdeck"]
    out = subprocess.run([*argv, "doctor"], cwd=fake_repo, env=_cli_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith(("ok  state:", "ERR state:")))
    assert line.startswith("ERR state:") and str(state) in line and "not writable" in line, line
    assert "Read-only file system" in line and "remount" in line, line
    report = subprocess.run([*argv, "doctor", "--json"], cwd=fake_repo, env=_cli_env(), capture_output=True,
                            text=True, timeout=60)
    check = next(c for c in json.loads(report.stdout)["checks"] if c["name"] == "state")
    assert check["level"] == "error" and "chmod" in check["fix"]


# ---------------------------------------------------------------------- 4. a merge killed half way


FILES = 300  # the mechanism does not depend on the count; each file costs time on a loaded disk


def _agent_with_many_files(repo: Path, name: str = "big") -> tuple[Path, str, str]:
    """An agent whose branch adds FILES files in a/ and z/ (and changes README.md); (worktree, old, new)."""
    assert run_cli("new", name, cwd=repo, env={"AGENTDECK_NO_WATCHER": "1"}).returncode == 0
    wt = Path(_ls(repo)[name]["worktree"])
    for folder in ("a", "z"):
        (wt / folder).mkdir()
        for i in range(FILES // 2):
            (wt / folder / f"{i:04}.txt").write_text(f"{folder} file {i}\n")
    (wt / "README.md").write_text("# test, changed by the agent\n")
    (wt / "m-slow.txt").write_text("the file git is writing when it is killed\n")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "many files")
    return wt, git(repo, "rev-parse", "main"), git(wt, "rev-parse", "HEAD")


def _user_work(repo: Path) -> None:
    """The user's own work in the target checkout, which no repair may touch."""
    (repo / "src" / "app.py").write_text("print('my uncommitted edit')\n")
    (repo / "mine.txt").write_text("my untracked notes\n")


def _assert_finished(repo: Path, new: str) -> None:
    assert git(repo, "rev-parse", "main") == new and git(repo, "rev-parse", "HEAD") == new
    assert not (repo / ".git" / "index.lock").exists()
    status = git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(x.strip() for x in status) == ["?? mine.txt", "M src/app.py"], status  # the user's own work
    assert subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=repo).returncode == 0  # nothing staged
    assert (repo / "src" / "app.py").read_text() == "print('my uncommitted edit')\n"
    assert (repo / "mine.txt").read_text() == "my untracked notes\n"
    assert len(list((repo / "z").iterdir())) == FILES // 2 and (repo / "m-slow.txt").is_file()
    assert not list((repo / ".git" / "agentdeck" / "merges").glob("*.json"))


@pytest.mark.parametrize("fault", ["merge.journal", "merge.checkout"])
def test_merge_killed_at_a_fault_point_doctor_names_it_and_fix_finishes(fake_repo, fault):
    _wt, old, new = _agent_with_many_files(fake_repo)
    killed = run_cli("merge", "big", cwd=fake_repo, env={FAULT: fault})
    assert killed.returncode == -signal.SIGKILL
    assert git(fake_repo, "rev-parse", "main") == old  # the branch did not move
    _user_work(fake_repo)  # the user goes on working in the checkout meanwhile
    doctor = run_cli("doctor", cwd=fake_repo)
    assert doctor.returncode == 1
    line = next(x for x in doctor.stdout.splitlines() if x.startswith("ERR merge:"))
    assert "agentdeck/big into main was interrupted" in line and "doctor --fix" in line, line
    assert "uncommitted changes are kept" in line
    fixed = run_cli("doctor", "--fix", cwd=fake_repo)
    assert fixed.returncode == 0, fixed.stdout
    assert any(x.startswith("fix merge:") and "finished" in x for x in fixed.stdout.splitlines()), fixed.stdout
    _assert_finished(fake_repo, new)
    again = run_cli("merge", "big", cwd=fake_repo)
    assert again.returncode == 0 and "up to date" in again.stdout + again.stderr, again.stdout + again.stderr


def test_merge_killed_while_git_rewrites_the_checkout_is_finished_by_the_retry(fake_repo, tmp_path):
    """The realistic repro: git itself killed in the middle of writing the files, holding index.lock.
    A smudge filter on one file (m-slow.txt, in the middle of the index order) signals and blocks,
    so the kill lands after every a/ file is written and before any z/ file: no timing involved."""
    _wt, old, new = _agent_with_many_files(fake_repo)
    ready = tmp_path / "git-is-writing"
    git(fake_repo, "config", "filter.slow.smudge", f"sh -c 'touch {ready}; exec sleep 120'")
    attributes = fake_repo / ".git" / "info" / "attributes"
    attributes.parent.mkdir(exist_ok=True)
    attributes.write_text("m-slow.txt filter=slow\n")
    merging = subprocess.Popen([sys.executable, "-m", "agentdeck", "merge", "big"], cwd=fake_repo, env=_cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        retry_until(ready.exists, timeout=60, interval=0.01, what="git to reach m-slow.txt")
        # While it runs, a second merge and doctor see a merge in progress and touch nothing.
        busy = run_cli("merge", "big", cwd=fake_repo)
        assert busy.returncode == 1 and "is running" in _one_line_error(busy), busy.stderr
        running = run_cli("doctor", cwd=fake_repo)
        assert any(x.startswith("ok  merge:") and "is running" in x for x in running.stdout.splitlines())
    finally:
        os.killpg(merging.pid, signal.SIGKILL)  # kill -9 of agentdeck, git and the filter together
        merging.wait()
    git(fake_repo, "config", "--remove-section", "filter.slow")
    attributes.unlink()
    _user_work(fake_repo)
    assert (fake_repo / ".git" / "index.lock").exists() and (fake_repo / "a" / "0000.txt").is_file()
    assert not (fake_repo / "z").exists() and git(fake_repo, "rev-parse", "main") == old
    doctor = run_cli("doctor", cwd=fake_repo)
    line = next(x for x in doctor.stdout.splitlines() if x.startswith("ERR merge:"))
    assert "index.lock" in line and "half updated" in line and f"{FILES // 2 + 1} of {FILES + 2}" in line, line
    retry = run_cli("merge", "big", cwd=fake_repo)  # the retry finishes the interrupted merge first
    assert retry.returncode == 0, retry.stderr
    _assert_finished(fake_repo, new)


# ---------------------------------------------------------------------- 5. a closed stdout pipe


@pytest.mark.parametrize("args", [["doctor"], ["research", "status", "--json"]])
def test_a_closed_stdout_pipe_is_a_quiet_exit(fake_repo, args):
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has already gone: every write fails with EPIPE
    try:
        out = subprocess.run([sys.executable, "-m", "agentdeck", *args], cwd=fake_repo, env=_cli_env(),
                             stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert "BrokenPipe" not in out.stderr and "unexpected failure" not in out.stderr, out.stderr
    assert "Exception ignored" not in out.stderr, out.stderr
    assert out.returncode in (141, 2), out.returncode


def test_doctor_names_a_stray_index_lock_without_removing_it(fake_repo):
    lock = fake_repo / ".git" / "index.lock"
    lock.write_text("")
    os.utime(lock, (lock.stat().st_mtime - 120,) * 2)  # left by a git command killed two minutes ago
    doctor = run_cli("doctor", cwd=fake_repo)
    line = next(x for x in doctor.stdout.splitlines() if "git lock" in x)
    assert line.startswith("!") and str(lock) in line and f"rm {lock}" in line, line
    assert run_cli("doctor", "--fix", cwd=fake_repo).returncode == 0 and lock.exists()  # only the user knows
