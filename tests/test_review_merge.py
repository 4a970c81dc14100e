"""merge / squash / rebase into a target checked out or not; refusals that change nothing; cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_support import FakeDeck, add_agent, commit_all, rev, state_of, write
from support import git, make_repo

from agentdeck.errors import Refused, UsageError
from agentdeck.review import Review
from agentdeck.review import merge as M

LINES = "".join(f"line {i}\n" for i in range(1, 21))


def _repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# t\n", "f.txt": LINES, "g.txt": "g\n"})


def _merge(side, target="main", strategy="merge", **kw):
    return M.merge(side.root, agent=side.branch.split("/")[-1], branch=side.branch, worktree=side.worktree,
                   target=target, strategy=strategy, ignore=side.ignore, **kw)


def _check(side, target="main", strategy="merge", **kw):
    return M.check_merge(side.root, agent=side.branch.split("/")[-1], branch=side.branch, worktree=side.worktree,
                         target=target, strategy=strategy, ignore=side.ignore, **kw)


def _agent_with_work(root: Path, name: str = "one", ignore=frozenset()):
    side = add_agent(root, name, ignore=ignore)
    write(side.worktree / "f.txt", LINES.replace("line 3\n", "line three\n"))
    commit_all(side.worktree, "edit line 3")
    write(side.worktree / "new dir/nouveau é.txt", "neu\n")
    commit_all(side.worktree, "add a file")
    return side


def _advance_main(root: Path) -> str:
    write(root / "g.txt", "g changed on main\n")
    return commit_all(root, "main moves on")


@pytest.mark.parametrize("strategy", ["merge", "squash", "rebase"])
def test_every_strategy_into_the_checked_out_main(tmp_path, strategy):
    root = _repo(tmp_path)
    side = _agent_with_work(root)
    old = _advance_main(root)  # not a fast-forward
    tip = rev(root, side.branch)
    result = _merge(side, strategy=strategy)
    assert result.merged and result.check.checkout == str(root)
    new = rev(root, "main")
    assert new == result.commit != old
    # the main checkout follows the branch and is clean
    assert (root / "f.txt").read_text() == LINES.replace("line 3\n", "line three\n")
    assert (root / "new dir/nouveau é.txt").read_text() == "neu\n"
    assert (root / "g.txt").read_text() == "g changed on main\n"
    assert git(root, "status", "--porcelain") == ""
    parents = git(root, "rev-list", "--parents", "-n", "1", new).split()[1:]
    if strategy == "merge":
        assert parents == [old, tip]
    elif strategy == "squash":
        assert parents == [old]
        assert git(root, "rev-list", "--count", f"{old}..{new}") == "1"
    else:
        subjects = git(root, "log", "--format=%s", f"{old}..{new}").splitlines()
        assert subjects == ["add a file", "edit line 3"]
        assert git(root, "rev-list", "--merges", "--count", f"{old}..{new}") == "0"
        assert git(root, "log", "-1", "--format=%an <%ae>", new) == "Test <test@example.com>"
    assert rev(root, side.branch) == tip  # the agent's branch is never rewritten
    assert {f["path"] for f in result.check.files} == {"f.txt", "new dir/nouveau é.txt"}
    assert M.changes_in_target(root, side.branch, "main")


@pytest.mark.parametrize("strategy", ["merge", "squash", "rebase"])
def test_every_strategy_into_a_branch_not_checked_out(tmp_path, strategy):
    root = _repo(tmp_path)
    git(root, "branch", "release")
    side = _agent_with_work(root)
    write(root / "README.md", "# main only\n")
    commit_all(root, "main work")  # the main checkout is on main, which must stay as it is
    main_before = rev(root, "main")
    write(root / "scratch.txt", "untracked in the main checkout\n")
    result = _merge(side, target="release", strategy=strategy)
    assert result.merged and result.check.checkout is None
    assert rev(root, "main") == main_before
    assert git(root, "status", "--porcelain") == "?? scratch.txt"
    release = rev(root, "release")
    assert git(root, "show", f"{release}:f.txt") == LINES.replace("line 3\n", "line three\n").rstrip("\n")
    assert git(root, "show", f"{release}:new dir/nouveau é.txt") == "neu"
    if strategy in ("merge", "rebase"):
        assert release == rev(root, side.branch)  # release had not moved: a fast-forward
        assert result.check.fast_forward
    else:
        assert git(root, "rev-list", "--parents", "-n", "1", release).split()[1:] == [side.base_commit]
    assert "agentdeck" in git(root, "reflog", "-1", "--format=%gs", "refs/heads/release")


def test_merge_no_ff_and_message(tmp_path):
    root = _repo(tmp_path)
    side = _agent_with_work(root)
    result = _merge(side, no_ff=True, message="Take the good work")
    assert not result.check.fast_forward
    assert git(root, "log", "-1", "--format=%s", "main") == "Take the good work"
    assert len(git(root, "rev-list", "--parents", "-n", "1", "main").split()) == 3


def test_conflict_is_refused_naming_the_files_and_nothing_changes(tmp_path):
    root = _repo(tmp_path)
    side = _agent_with_work(root)
    write(root / "f.txt", LINES.replace("line 3\n", "line THREE on main\n"))
    commit_all(root, "main edits line 3")
    before = state_of(root, side.worktree)
    for strategy in ("merge", "squash", "rebase"):
        check = _check(side, strategy=strategy)
        assert check.conflicts == ["f.txt"] and not check.ok
        with pytest.raises(Refused, match=r"would conflict.* in: f\.txt"):
            _merge(side, strategy=strategy)
    assert state_of(root, side.worktree) == before


def test_rebase_refuses_when_one_commit_does_not_replay(tmp_path):
    """The whole branch merges cleanly, but its first commit alone conflicts: rebase says which."""
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    write(side.worktree / "f.txt", LINES.replace("line 3\n", "agent's line 3\n"))
    first = commit_all(side.worktree, "try line 3")
    write(side.worktree / "f.txt", LINES)
    commit_all(side.worktree, "undo")
    write(side.worktree / "h.txt", "h\n")
    commit_all(side.worktree, "add h")
    write(root / "f.txt", LINES.replace("line 3\n", "main's line 3\n"))
    commit_all(root, "main edits line 3")
    before = state_of(root, side.worktree)
    check = _check(side, strategy="rebase")
    assert check.conflict_commit == first and check.conflicts == ["f.txt"]
    with pytest.raises(Refused, match=r"replaying commit .*f\.txt.*--strategy merge"):
        _merge(side, strategy="rebase")
    assert state_of(root, side.worktree) == before
    assert _merge(side, strategy="merge").merged


def test_rebase_drops_commits_already_in_the_target(tmp_path):
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    write(side.worktree / "g.txt", "same change\n")
    commit_all(side.worktree, "agent's g")
    write(side.worktree / "h.txt", "h\n")
    commit_all(side.worktree, "agent's h")
    write(root / "g.txt", "same change\n")
    old = commit_all(root, "main made the same change")
    _merge(side, strategy="rebase")
    assert git(root, "log", "--format=%s", f"{old}..main").splitlines() == ["agent's h"]


def test_uncommitted_agent_work_is_refused_but_copied_files_do_not_count(tmp_path):
    root = _repo(tmp_path)
    side = _agent_with_work(root, ignore=frozenset({".env"}))
    write(side.worktree / ".env", "SECRET=1\n")  # copied setup file: never blocks
    assert _check(side).ok
    write(side.worktree / "g.txt", "unsaved\n")
    before = state_of(root, side.worktree)
    check = _check(side)
    assert check.uncommitted == ["g.txt"]
    with pytest.raises(Refused, match=r"uncommitted changes \(g\.txt\).*agentdeck commit one"):
        _merge(side)
    assert state_of(root, side.worktree) == before


def test_dirty_target_checkout_is_refused(tmp_path):
    root = _repo(tmp_path)
    side = _agent_with_work(root)
    write(root / "README.md", "half-done edit in the main checkout\n")
    before = state_of(root, side.worktree)
    with pytest.raises(Refused, match=r"checkout of main at .* has uncommitted changes \(README\.md\)"):
        _merge(side, strategy="squash")
    assert state_of(root, side.worktree) == before
    # an untracked file does not make it dirty ...
    git(root, "checkout", "--", "README.md")
    write(root / "notes.txt", "mine\n")
    assert _merge(side, strategy="squash").merged
    assert (root / "notes.txt").read_text() == "mine\n"


def test_untracked_file_in_target_checkout_that_would_be_overwritten(tmp_path):
    root = _repo(tmp_path)
    side = _agent_with_work(root)
    _advance_main(root)
    write(root / "new dir/nouveau é.txt", "the user's own file\n")
    before = state_of(root, side.worktree)
    with pytest.raises(Refused, match=r"could not update the checkout of main.*nothing changed"):
        _merge(side)
    assert state_of(root, side.worktree) == before
    assert (root / "new dir/nouveau é.txt").read_text() == "the user's own file\n"


def test_target_moving_after_the_check_is_refused(tmp_path):
    root = _repo(tmp_path)
    git(root, "branch", "release")
    side = _agent_with_work(root)
    check = _check(side, target="release", strategy="squash")
    write(root / "x.txt", "x\n")
    commit_all(root)
    git(root, "branch", "-f", "release", "main")
    moved = rev(root, "release")
    with pytest.raises(Refused, match="moved"):
        M.apply_merge(root, check)
    assert rev(root, "release") == moved


def test_up_to_date_and_bad_input(tmp_path):
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    result = _merge(side)
    assert not result.merged and result.check.up_to_date and result.commit == rev(root, "main")
    with pytest.raises(UsageError, match="does not exist"):
        _merge(side, target="nope")
    with pytest.raises(UsageError, match="strategy"):
        _merge(side, strategy="octopus")
    with pytest.raises(UsageError, match="itself"):
        _merge(side, target=side.branch)


def test_cleanup_after_squash_removes_worktree_and_branch_keeping_a_recovery_ref(tmp_path):
    root = _repo(tmp_path)
    side = _agent_with_work(root, ignore=frozenset({".env"}))
    write(side.worktree / ".env", "SECRET=1\n")
    _advance_main(root)
    tip = rev(root, side.branch)
    assert _merge(side, strategy="squash").merged
    assert M.changes_in_target(root, side.branch, "main")
    ref = M.cleanup(root, agent="one", branch=side.branch, worktree=side.worktree, target="main", ignore=side.ignore)
    assert not side.worktree.exists()
    assert git(root, "branch", "--list", side.branch) == ""
    assert ref.startswith("refs/agentdeck/trash/one/")
    assert git(root, "merge-base", "--is-ancestor", tip, ref) == ""  # the work stays reachable


def test_cleanup_never_deletes_a_branch_with_changes_not_in_the_target(tmp_path):
    root = _repo(tmp_path)
    git(root, "branch", "release")
    side = _agent_with_work(root)
    with pytest.raises(Refused, match="not in release"):
        M.cleanup(root, agent="one", branch=side.branch, worktree=side.worktree, target="release")
    _merge(side, target="release", strategy="squash")
    write(side.worktree / "later.txt", "more\n")
    commit_all(side.worktree, "more work after the merge")
    with pytest.raises(Refused, match="not in release"):
        M.cleanup(root, agent="one", branch=side.branch, worktree=side.worktree, target="release")
    assert side.worktree.exists() and git(root, "branch", "--list", side.branch)


# --------------------------------------------------------------------------- through Review(deck)


def test_review_merge_with_cleanup_after_squash(tmp_path):
    root = _repo(tmp_path)
    write(root / ".agentdeck.toml", '[review]\nmerge_strategy = "squash"\n')
    deck = FakeDeck(root, tmp_path)
    side = _agent_with_work(root, ignore=frozenset({".env"}))
    deck.add("one", side, copied={".env"})
    write(side.worktree / ".env", "SECRET=1\n")
    review = Review(deck)
    check = review.check_merge("one")
    assert check.strategy == "squash" and check.target == "main" and check.ok
    assert {f["path"] for f in check.files} == {"f.txt", "new dir/nouveau é.txt"}
    result = review.merge("one", cleanup=True)
    assert result.merged and result.cleaned_up and result.recovery_ref.startswith("refs/agentdeck/trash/one/")
    assert deck.killed == [("one", True)]
    assert len(git(root, "rev-list", "--parents", "-n", "1", "main").split()) == 2  # squash: one parent
    assert git(root, "branch", "--list", side.branch) == ""


def test_review_merge_cleanup_refused_leaves_agent(tmp_path):
    root = _repo(tmp_path)
    deck = FakeDeck(root, tmp_path)
    side = _agent_with_work(root)
    deck.add("one", side)
    write(side.worktree / "wip.txt", "wip\n")
    with pytest.raises(Refused, match="agentdeck commit one"):
        Review(deck).merge("one", cleanup=True)
    assert deck.killed == [] and side.worktree.exists()
    with pytest.raises(UsageError, match="does not exist"):
        Review(deck).merge("one", into="nope")
    with pytest.raises(UsageError, match="unknown agent"):
        Review(deck).merge("ghost")
