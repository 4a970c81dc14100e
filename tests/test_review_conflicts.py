"""Conflict radar: overlapping agents, real merge checks only where files overlap, agent vs base."""

from __future__ import annotations

from pathlib import Path

from review_support import FakeDeck, add_agent, commit_all, state_of, write
from support import git, make_repo

from agentdeck.review import BASE, Review, _git
from agentdeck.review.conflicts import marks, radar

LINES = "".join(f"line {i}\n" for i in range(1, 31))


def _repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"shared.txt": LINES, "other.txt": "o\n", "README.md": "r\n"})


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def test_radar_pairs_and_base(tmp_path, monkeypatch):
    root = _repo(tmp_path)
    a = add_agent(root, "a")
    b = add_agent(root, "b")
    c = add_agent(root, "c")
    d = add_agent(root, "d", ignore=frozenset({".env"}))
    _edit(a.worktree / "shared.txt", "line 2\n", "line 2 by a\n")
    commit_all(a.worktree)
    _edit(b.worktree / "shared.txt", "line 2\n", "line 2 by b\n")  # uncommitted: still counts
    _edit(c.worktree / "shared.txt", "line 25\n", "line 25 by c\n")  # same file, far away: merges cleanly
    write(d.worktree / "other.txt", "d\n")
    write(d.worktree / ".env", "x\n")  # copied file: never an overlap
    write(a.worktree / ".env", "y\n")
    # the base moves: touches line 25 (conflicts with c) and README.md (nobody else)
    _edit(root / "shared.txt", "line 25\n", "line 25 on main\n")
    write(root / "README.md", "main\n")
    commit_all(root, "main moves")

    calls = []
    real = _git.merge_tree
    monkeypatch.setattr(_git, "merge_tree", lambda *args, **kw: calls.append(args[1:]) or real(*args, **kw))
    before = state_of(root, a.worktree, b.worktree, c.worktree, d.worktree)
    entries = radar([("a", a), ("b", b), ("c", c), ("d", d)])
    assert state_of(root, a.worktree, b.worktree, c.worktree, d.worktree) == before
    got = [(e.agents, e.files, e.conflict) for e in entries]
    assert got == [
        (("a", "b"), ["shared.txt"], True),
        (("a", "c"), ["shared.txt"], False),
        (("a", BASE), ["shared.txt"], False),
        (("b", "c"), ["shared.txt"], False),
        (("b", BASE), ["shared.txt"], False),
        (("c", BASE), ["shared.txt"], True),
    ]
    assert entries[0].conflict_files == ["shared.txt"]
    assert len(calls) == 6  # d overlaps nobody: never merge-checked
    assert entries[0].to_json() == {"agents": ["a", "b"], "files": ["shared.txt"], "conflict": True}
    m = marks(entries)
    assert m["a"] == {"overlaps": ["b", "c", BASE], "conflicts": ["b"]}
    assert m["c"]["conflicts"] == [BASE] and "d" not in m


def test_renames_and_deletions_count_as_touching(tmp_path):
    root = _repo(tmp_path)
    a = add_agent(root, "a")
    b = add_agent(root, "b")
    git(a.worktree, "mv", "other.txt", "moved.txt")
    _edit(b.worktree / "other.txt", "o\n", "o changed\n")
    (entry,) = radar([("a", a), ("b", b)])
    assert entry.agents == ("a", "b") and entry.files == ["other.txt"] and entry.conflict is False
    (a.worktree / "moved.txt").unlink()  # now a deletes the file b modifies: modify/delete
    (entry,) = radar([("a", a), ("b", b)])
    assert entry.conflict is True


def test_no_overlap_and_empty(tmp_path):
    root = _repo(tmp_path)
    a = add_agent(root, "a")
    b = add_agent(root, "b")
    write(a.worktree / "x.txt", "x\n")
    write(b.worktree / "y.txt", "y\n")
    assert radar([("a", a), ("b", b)]) == []
    assert radar([]) == []


def test_review_conflicts_uses_live_agents_and_copied_files(tmp_path):
    root = _repo(tmp_path)
    deck = FakeDeck(root, tmp_path)
    a = add_agent(root, "a")
    b = add_agent(root, "b")
    k = add_agent(root, "k")
    deck.add("a", a, copied={"cfg.local"})
    deck.add("b", b, copied={"cfg.local"})
    deck.add("k", k)
    deck.store.update_agent("k", kept=True)  # killed but kept: not live
    for side, who in ((a, "a"), (b, "b"), (k, "k")):
        write(side.worktree / "cfg.local", who)
        _edit(side.worktree / "shared.txt", "line 9\n", f"line 9 by {who}\n")
    entries = Review(deck).conflicts()
    assert [e.to_json() for e in entries] == [{"agents": ["a", "b"], "files": ["shared.txt"], "conflict": True}]
    assert Review(deck).conflict_marks(entries) == {
        "a": {"overlaps": ["b"], "conflicts": ["b"]}, "b": {"overlaps": ["a"], "conflicts": ["a"]},
    }
    sizes = Review(deck).diff_sizes()
    assert sizes == {"a": (1, 1), "b": (1, 1)}
