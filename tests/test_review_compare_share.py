"""compare (files, lines, test command per worktree) and push / pr."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from review_support import FakeDeck, add_agent, commit_all, write
from support import git, make_repo

from agentdeck.errors import Refused, UsageError
from agentdeck.review import Review
from agentdeck.review.compare import compare, run_test, table
from agentdeck.review.share import open_pr, pick_tool, pr_command, push


def test_compare_counts_and_runs_the_tests_in_each_worktree(tmp_path):
    root = make_repo(tmp_path / "repo", {"calc.py": "def add(a, b):\n    return a - b\n"})
    good = add_agent(root, "good")
    bad = add_agent(root, "bad")
    write(good.worktree / "calc.py", "def add(a, b):\n    return a + b\n")
    commit_all(good.worktree)
    write(bad.worktree / "calc.py", "def add(a, b):\n    return a * b\n")
    write(bad.worktree / "notes.md", "tried\nmultiplying\n")
    cmd = f'{sys.executable} -c "import calc, os; print(os.environ[\'AGENTDECK_AGENT\']); assert calc.add(2, 3) == 5"'
    rows = compare([("good", good), ("bad", bad)], cmd)
    g, b = rows
    assert (g.agent, g.files, g.added, g.removed, g.uncommitted) == ("good", 1, 1, 1, False)
    assert (b.agent, b.files, b.added, b.removed, b.uncommitted) == ("bad", 2, 3, 1, True)
    assert g.test.passed and g.test.returncode == 0 and g.test.output_tail == "good"
    assert not b.test.passed and b.test.returncode == 1 and "AssertionError" in b.test.output_tail
    assert g.test.seconds > 0
    text = "\n".join(table(rows))
    assert "good" in text and "pass" in text and "fail (1)" in text and "bad *" in text
    assert rows[1].to_json()["test"]["passed"] is False and rows[1].to_json()["paths"] == ["calc.py", "notes.md"]


def test_test_timeout_kills_the_whole_command(tmp_path):
    marker = tmp_path / "late"
    result = run_test(f"sleep 5; touch {marker}", tmp_path, timeout=0.5)
    assert result.timed_out and not result.passed and result.returncode is None and result.seconds < 4
    assert not marker.exists()


def test_review_compare_uses_the_configured_command(tmp_path):
    root = make_repo(tmp_path / "repo", {"README.md": "r\n"})
    write(root / ".agentdeck.toml", '[review]\ntest_command = "test -f ok"\n')
    commit_all(root, "config")
    deck = FakeDeck(root, tmp_path)
    a, b = add_agent(root, "a"), add_agent(root, "b")
    deck.add("a", a)
    deck.add("b", b)
    write(a.worktree / "ok", "")
    rows = Review(deck).compare(["a", "b"])
    assert [r.test.passed for r in rows] == [True, False]
    assert [r.test for r in Review(deck).compare(["a"], run_tests=False)] == [None]
    with pytest.raises(UsageError):
        Review(deck).compare(["a", "ghost"])


def _with_origin(tmp_path: Path):
    root = make_repo(tmp_path / "repo")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(root, "remote", "add", "origin", str(origin))
    side = add_agent(root, "one")
    write(side.worktree / "x.txt", "x\n")
    commit_all(side.worktree)
    return root, origin, side


def test_push_sets_upstream(tmp_path):
    root, origin, side = _with_origin(tmp_path)
    assert "pushed agentdeck/one to origin" in push(root, side.branch)
    assert git(origin, "rev-parse", "refs/heads/agentdeck/one") == git(root, "rev-parse", side.branch)
    assert git(root, "rev-parse", "--abbrev-ref", "agentdeck/one@{upstream}") == "origin/agentdeck/one"


def test_push_without_remote_or_failing(tmp_path):
    root = make_repo(tmp_path / "repo")
    side = add_agent(root, "one")
    with pytest.raises(UsageError, match=r"no remote 'origin'.*git remote add origin URL"):
        push(root, side.branch)
    git(root, "remote", "add", "origin", str(tmp_path / "missing.git"))
    with pytest.raises(Refused, match="git push of agentdeck/one to origin failed"):
        push(root, side.branch)


def _fake_tool(bin_dir: Path, name: str, log: Path, exit_code: int = 0) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(
        f'#!/bin/sh\necho "{name} $*" >> "{log}"\necho "https://example.test/{name}/pull/7"\n'
        + (f'echo "boom: not authenticated" >&2\nexit {exit_code}\n' if exit_code else "")
    )
    script.chmod(0o755)


def test_pr_with_gh_or_glab_and_neither(tmp_path, monkeypatch):
    root, origin, side = _with_origin(tmp_path)
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    with pytest.raises(UsageError, match=r"`gh`.*`glab`"):
        open_pr(root, side.worktree, side.branch, "main")
    _fake_tool(bin_dir, "gh", log)
    tool, out = open_pr(root, side.worktree, side.branch, "main", draft=True)
    assert (tool, out) == ("gh", "https://example.test/gh/pull/7")
    assert log.read_text().splitlines() == ["gh pr create --head agentdeck/one --base main --fill --draft"]
    assert git(origin, "rev-parse", "refs/heads/agentdeck/one")  # pushed first
    _fake_tool(bin_dir, "glab", log)
    assert pick_tool("git@github.com:me/x.git") == "gh"
    assert pick_tool("https://gitlab.com/me/x.git") == "glab"
    assert pick_tool("", which=lambda t: t == "glab") == "glab"
    assert pr_command("glab", "b", "main", "T", "B") == [
        "glab", "mr", "create", "--source-branch", "b", "--target-branch", "main", "--yes",
        "--title", "T", "--description", "B",
    ]
    _fake_tool(bin_dir, "gh", log, exit_code=1)
    with pytest.raises(Refused, match=r"gh could not open the request: .*not authenticated"):
        open_pr(root, side.worktree, side.branch, "main")


def test_review_pr_without_tools_is_a_usage_error(tmp_path, monkeypatch):
    root, _origin, side = _with_origin(tmp_path)
    deck = FakeDeck(root, tmp_path)
    deck.add("one", side)
    monkeypatch.setenv("PATH", f"{tmp_path / 'empty'}{os.pathsep}/usr/bin:/bin")
    if any(Path(d, t).exists() for d in ("/usr/bin", "/bin") for t in ("gh", "glab")):
        pytest.skip("gh or glab is installed system-wide")
    with pytest.raises(UsageError, match=r"gh.*glab"):
        Review(deck).pr("one")
    assert "pushed" in Review(deck).push("one")
