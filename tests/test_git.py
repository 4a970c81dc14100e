"""agentdeck.git, agentdeck.snapshots and agentdeck.paths on real repositories: locating a repository (paths builds its
locations from what git.locate says), the one temporary-index snapshot, recovery commits."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import git as sh

from agentdeck import git, paths, snapshots
from agentdeck.errors import NotARepository


def test_find_repo_from_a_linked_worktree_names_the_main_checkout(git_repo, tmp_path):
    wt = tmp_path / "wt"
    sh(git_repo, "worktree", "add", "-q", "-b", "side", str(wt))
    (wt / "sub").mkdir()
    found = paths.find_repo(wt / "sub")
    assert found.root == git_repo.resolve()
    assert found.common_dir == (git_repo / ".git").resolve()
    assert found.state_dir == found.common_dir / "agentdeck"
    assert git.locate(wt) == git.Location(root=found.root, common_dir=found.common_dir)


def test_find_repo_refuses_a_bare_repository_and_a_plain_folder(git_repo, tmp_path):
    bare = tmp_path / "bare.git"
    sh(tmp_path, "clone", "-q", "--bare", str(git_repo), str(bare))
    with pytest.raises(NotARepository, match="bare git repository"):
        paths.find_repo(bare)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(NotARepository, match="not inside a git repository"):
        paths.find_repo(plain)


def test_head_commit_resolves_names_and_refuses_options(git_repo):
    head = sh(git_repo, "rev-parse", "HEAD")
    assert git.head_commit(git_repo) == head
    assert git.head_commit(git_repo, sh(git_repo, "symbolic-ref", "--short", "HEAD")) == head
    assert git.head_commit(git_repo, "no-such-branch") is None
    assert git.head_commit(git_repo, "--all") is None  # never read as an option


def test_snapshot_sees_untracked_and_changed_files_and_touches_nothing(git_repo):
    head = sh(git_repo, "rev-parse", "HEAD")
    clean = snapshots.snapshot(git_repo)
    assert not clean.dirty and clean.head == head and clean.tree == git.tree_of(git_repo, head)
    index_before = (git_repo / ".git" / "index").read_bytes()
    (git_repo / "README.md").write_text("changed\n")
    (git_repo / "new.txt").write_text("new\n")
    snap = snapshots.snapshot(git_repo)
    assert snap.dirty and snap.head == head
    assert sorted(git.changed_paths(git_repo, head, snap.tree)) == ["README.md", "new.txt"]
    assert (git_repo / ".git" / "index").read_bytes() == index_before  # the worktree's index is untouched
    assert sh(git_repo, "diff", "--cached", "--name-only") == ""  # nothing staged
    assert sh(git_repo, "status", "--porcelain").splitlines()[-1] == "?? new.txt"


def test_snapshot_commit_keeps_excluded_files_as_committed(git_repo):
    (git_repo / ".env").write_text("committed\n")
    sh(git_repo, "add", ".env")
    sh(git_repo, "commit", "-q", "-m", "env")
    head = sh(git_repo, "rev-parse", "HEAD")
    (git_repo / ".env").write_text("a copied secret\n")
    assert snapshots.snapshot_commit(git_repo, head, exclude={".env"}) == head  # nothing but the copied file
    (git_repo / "work.txt").write_text("the agent's work\n")
    commit = snapshots.snapshot_commit(git_repo, head, exclude={".env"})
    assert commit != head and sh(git_repo, "rev-parse", f"{commit}^") == head
    assert git.changed_paths(git_repo, head, commit) == ["work.txt"]
    assert sh(git_repo, "show", f"{commit}:.env") == "committed"


def test_save_recovery_ref_keeps_uncommitted_work_and_apply_snapshot_restores_it(git_repo, tmp_path):
    base = sh(git_repo, "rev-parse", "HEAD")
    wt = tmp_path / "agent"
    git.add_worktree(git_repo, wt, "agent/a", base)
    assert git.find_checkout(git_repo, "agent/a") == wt.resolve()
    (wt / "draft.txt").write_text("unsaved\n")
    ref = snapshots.save_recovery_ref(git_repo, "a", wt, "agent/a")
    assert ref.startswith(git.TRASH_PREFIX + "a/")
    assert [r["ref"] for r in git.list_recovery_refs(git_repo)] == [ref]
    snap = sh(git_repo, "rev-parse", ref)
    other = tmp_path / "other"
    git.add_worktree(git_repo, other, "agent/b", base)
    git.apply_snapshot(other, base, snap)
    assert (other / "draft.txt").read_text() == "unsaved\n"
    assert git.head_commit(other) == base  # restored as uncommitted work


def test_list_worktrees_and_health(git_repo, tmp_path):
    wt = tmp_path / "wt"
    git.add_worktree(git_repo, wt, "agent/w", sh(git_repo, "rev-parse", "HEAD"))
    infos = git.list_worktrees(git_repo)
    assert [i.path for i in infos] == [git_repo.resolve(), wt.resolve()]
    assert infos[1].branch == "agent/w"
    common = (git_repo / ".git").resolve()
    assert git.worktree_health(wt, common) == "ok"
    (wt / ".git").unlink()
    assert git.worktree_health(wt, common) == "broken"
    assert git.worktree_health(Path(tmp_path / "gone"), common) == "missing"
