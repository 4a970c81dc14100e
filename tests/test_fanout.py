"""Fan-out (--count, --foreach), broadcast and fork with the fake agent."""

from __future__ import annotations

import json
from pathlib import Path

from support import git, retry_until, run_cli
from test_deck import ls, wait_status


def test_count_creates_n_attempts(fake_repo):
    out = run_cli("new", "try", "--count", "3", "--prompt", "hello", "--json", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    assert [a["name"] for a in made] == ["try-1", "try-2", "try-3"]
    assert len({a["worktree"] for a in made}) == 3
    for a in made:
        retry_until(lambda a=a: "ok: hello" in run_cli("peek", a["name"], cwd=fake_repo).stdout)


def test_foreach_templates_prompt_and_is_all_or_nothing(fake_repo, tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("alpha\n\nbeta\n")
    out = run_cli("new", "each", "--foreach", str(items), "--prompt", "fix {item} now", "--json", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    assert [a["name"] for a in json.loads(out.stdout)] == ["each-1", "each-2"]
    retry_until(lambda: "ok: fix beta now" in run_cli("peek", "each-2", cwd=fake_repo).stdout)
    # A clash on the second name: nothing of the fan-out is created.
    out = run_cli("new", "each", "--count", "2", cwd=fake_repo)
    assert out.returncode == 2 and "already exist" in out.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert run_cli("new", "z", "--foreach", str(empty), cwd=fake_repo).returncode == 2
    assert run_cli("new", "z", "--foreach", str(tmp_path / "missing"), cwd=fake_repo).returncode == 2
    assert set(ls(fake_repo)) == {"each-1", "each-2"}


def test_broadcast_skips_waiting_unless_forced(fake_repo):
    for n in ("b1", "b2"):
        assert run_cli("new", n, cwd=fake_repo).returncode == 0
    wait_status(fake_repo, "b1", "idle")
    wait_status(fake_repo, "b2", "idle")
    run_cli("send", "b2", "ask x.txt", cwd=fake_repo)
    wait_status(fake_repo, "b2", "waiting")
    out = run_cli("broadcast", "status report", "--all", "--json", cwd=fake_repo)
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert result["b1"] == "sent" and "waiting" in result["b2"]
    retry_until(lambda: "ok: status report" in run_cli("peek", "b1", cwd=fake_repo).stdout)
    assert run_cli("broadcast", "x", "--to", "b1,nobody", cwd=fake_repo).returncode == 2


def test_fork_copies_uncommitted_work_and_commits(fake_repo):
    assert run_cli("new", "src", cwd=fake_repo).returncode == 0
    src = ls(fake_repo)["src"]
    wt = Path(src["worktree"])
    (wt / "committed.txt").write_text("c\n")
    git(wt, "add", "committed.txt")
    git(wt, "commit", "-qm", "work")
    (wt / "README.md").write_text("changed, not committed\n")
    (wt / "new-untracked.txt").write_text("u\n")
    out = run_cli("fork", "src", "copy", "--json", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    fork = json.loads(out.stdout)
    fwt = Path(fork["worktree"])
    assert (fwt / "committed.txt").read_text() == "c\n"
    assert (fwt / "README.md").read_text() == "changed, not committed\n"
    assert (fwt / "new-untracked.txt").read_text() == "u\n"
    assert fork["base"] == src["base"] and fork["base_commit"] == src["base_commit"]
    assert git(fwt, "status", "--porcelain")  # still uncommitted in the fork
    assert (wt / "README.md").read_text() == "changed, not committed\n"  # source untouched
    assert git(wt, "status", "--porcelain")
    wait_status(fake_repo, "copy", "idle")
    assert run_cli("fork", "src", "copy", cwd=fake_repo).returncode == 2
    assert run_cli("fork", "nobody", "x", cwd=fake_repo).returncode == 2
