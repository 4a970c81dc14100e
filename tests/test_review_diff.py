"""diff: branch + uncommitted work vs the merge-base, on real repositories."""

from __future__ import annotations

from pathlib import Path

from review_support import add_agent, commit_all, rev, state_of, write
from support import git, make_repo

from agentdeck.review.diff import Side, compute_diff, diff_size, rich_renderable, stat_lines


def _repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {
        "README.md": "# test\n",
        "src/app.py": "def main():\n    return 1\n\n\nprint(main())\n",
        "docs/long.txt": "".join(f"line {i}\n" for i in range(1, 41)),
        "logo.bin": "placeholder\n",
    })


def test_diff_covers_commits_uncommitted_and_untracked_but_not_copied_files(tmp_path):
    root = _repo(tmp_path)
    side = add_agent(root, "one", ignore=frozenset({".env", "config/local.toml"}))
    wt = side.worktree
    write(wt / "src/app.py", "def main():\n    return 2\n\n\nprint(main())\n")
    commit_all(wt, "change return")
    write(wt / "README.md", "# test\nmore\n")  # tracked, unstaged
    write(wt / "notes/new.md", "a\nb\n")  # untracked
    git(wt, "add", "notes/new.md")  # ... and one staged
    write(wt / "scratch.txt", "x\n")  # untracked, not staged
    write(wt / ".env", "SECRET=1\n")  # copied setup files: never part of the diff
    write(wt / "config/local.toml", "k = 1\n")
    # The base moves on after the fork: its change is not the agent's.
    write(root / "docs/base-only.md", "base\n")
    commit_all(root, "base work")

    result = compute_diff(side)
    by_path = {f.path: f for f in result.files}
    assert sorted(by_path) == ["README.md", "notes/new.md", "scratch.txt", "src/app.py"]
    assert by_path["src/app.py"].status == "modified"
    assert (by_path["src/app.py"].added, by_path["src/app.py"].removed) == (1, 1)
    assert by_path["notes/new.md"].status == "added" and by_path["notes/new.md"].added == 2
    assert by_path["scratch.txt"].status == "added"
    assert result.uncommitted is True
    assert result.merge_base == side.base_commit
    assert result.head == rev(wt, "HEAD")
    assert (result.added, result.removed) == (1 + 1 + 2 + 1, 1)
    assert diff_size(side) == (result.added, result.removed)
    assert ".env" not in result.patch_text() and "SECRET" not in result.patch_text()


def test_hunks_have_line_numbers_and_patch_text(tmp_path):
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    lines = [f"line {i}\n" for i in range(1, 41)]
    lines[4] = "line five changed\n"
    lines.insert(30, "inserted\n")
    write(side.worktree / "docs/long.txt", "".join(lines))
    result = compute_diff(side)
    (f,) = result.files
    assert [h.old_start for h in f.hunks] == [2, 28]
    first = f.hunks[0]
    removed = [ln for ln in first.lines if ln.kind == "-"]
    added = [ln for ln in first.lines if ln.kind == "+"]
    assert [(ln.text, ln.old, ln.new) for ln in removed] == [("line 5", 5, None)]
    assert [(ln.text, ln.old, ln.new) for ln in added] == [("line five changed", None, 5)]
    context = [ln for ln in first.lines if ln.kind == " "]
    assert context[0].old == context[0].new == 2
    second_added = [ln for ln in f.hunks[1].lines if ln.kind == "+"]
    assert [(ln.text, ln.new) for ln in second_added] == [("inserted", 31)]
    assert f.patch.startswith("diff --git a/docs/long.txt b/docs/long.txt")
    assert "+inserted" in result.patch_text()
    assert f.to_json()["hunks"][0]["lines"][0].keys() == {"kind", "text", "old", "new"}


def test_binary_files_are_flagged_without_hunks(tmp_path):
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    write(side.worktree / "logo.bin", b"\x89PNG\x00\x01\x02\x03" * 10)  # text -> binary
    write(side.worktree / "assets/new.dat", b"\x00\xff" * 100)  # new binary, untracked
    result = compute_diff(side)
    by_path = {f.path: f for f in result.files}
    assert by_path["logo.bin"].binary and by_path["logo.bin"].status == "modified"
    assert by_path["assets/new.dat"].binary and by_path["assets/new.dat"].status == "added"
    new_dat = by_path["assets/new.dat"]
    assert new_dat.hunks == [] and (new_dat.added, new_dat.removed) == (0, 0)
    assert "Binary files" in by_path["assets/new.dat"].patch
    assert any("binary" in line for line in stat_lines(result))


def test_renames_committed_staged_and_plain_mv(tmp_path):
    root = make_repo(tmp_path / "repo", {
        "a.txt": "".join(f"alpha {i}\n" for i in range(20)),
        "b.txt": "".join(f"beta {i}\n" for i in range(20)),
        "c.txt": "".join(f"gamma {i}\n" for i in range(20)),
    })
    side = add_agent(root, "one")
    wt = side.worktree
    (wt / "moved").mkdir()
    git(wt, "mv", "a.txt", "moved/a.txt")
    commit_all(wt, "move a")
    git(wt, "mv", "b.txt", "b2.txt")  # staged rename
    (wt / "c.txt").rename(wt / "c-renamed.txt")  # plain mv: a deletion plus an untracked file
    write(wt / "c-renamed.txt", (wt / "c-renamed.txt").read_text() + "one more\n")
    result = compute_diff(side)
    renames = {f.old_path: (f.path, f.status, f.added, f.removed) for f in result.files}
    assert renames == {
        "a.txt": ("moved/a.txt", "renamed", 0, 0),
        "b.txt": ("b2.txt", "renamed", 0, 0),
        "c.txt": ("c-renamed.txt", "renamed", 1, 0),
    }
    assert result.file("c.txt").similarity is not None
    assert "rename from c.txt" in result.file("c-renamed.txt").patch


def test_unicode_and_space_names(tmp_path):
    root = make_repo(tmp_path / "repo", {"données/été.txt": "un\n", "README.md": "x\n"})
    side = add_agent(root, "one")
    write(side.worktree / "données/été.txt", "un\ndeux\n")
    write(side.worktree / "日本 語/ファイル名.md", "こんにちは\n")
    result = compute_diff(side)
    by_path = {f.path: f for f in result.files}
    assert set(by_path) == {"données/été.txt", "日本 語/ファイル名.md"}
    assert by_path["日本 語/ファイル名.md"].hunks[0].lines[0].text == "こんにちは"
    assert by_path["données/été.txt"].hunks[0].lines[-1].text == "deux"
    assert "données/été.txt" in by_path["données/été.txt"].patch
    # one file's hunks only (what the Diff tab loads)
    only = compute_diff(side, paths=["日本 語/ファイル名.md"])
    assert only.file("日本 語/ファイル名.md").hunks and not only.file("données/été.txt").hunks


def test_deleted_file_and_mode_change(tmp_path):
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    (side.worktree / "README.md").unlink()
    (side.worktree / "src/app.py").chmod(0o755)
    result = compute_diff(side)
    by_path = {f.path: f for f in result.files}
    assert by_path["README.md"].status == "deleted" and by_path["README.md"].removed == 1
    assert by_path["src/app.py"].new_mode == "100755" and by_path["src/app.py"].added == 0


def test_diff_touches_nothing_in_the_worktree(tmp_path):
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    write(side.worktree / "README.md", "changed\n")
    write(side.worktree / "new.txt", "n\n")
    git(side.worktree, "add", "new.txt")
    before = state_of(root, side.worktree)
    compute_diff(side)
    diff_size(side)
    assert state_of(root, side.worktree) == before
    leftovers = [p.name for p in Path(git(side.worktree, "rev-parse", "--absolute-git-dir")).iterdir()
                 if "agentdeck" in p.name]
    assert len(leftovers) == 1 and leftovers[0].startswith("agentdeck-review-idx-")  # the private stat cache


def test_diff_size_follows_every_change(tmp_path):
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    assert diff_size(side) == (0, 0)
    write(side.worktree / "new.txt", "a\nb\nc\n")
    assert diff_size(side) == (3, 0)
    write(side.worktree / "new.txt", "a\n")
    assert diff_size(side) == (1, 0)
    commit_all(side.worktree)
    write(side.worktree / "README.md", "")
    assert diff_size(side) == (1, 1)


def test_missing_worktree_falls_back_to_the_branch(tmp_path):
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    write(side.worktree / "x.txt", "x\n")
    commit_all(side.worktree)
    gone = Side(root=root, worktree=tmp_path / "nowhere", branch=side.branch,
                base_branch="main", base_commit=side.base_commit)
    result = compute_diff(gone)
    assert result.paths == ["x.txt"] and result.uncommitted is False


def test_empty_diff_and_rich_view(tmp_path):
    from rich.console import Console

    root = _repo(tmp_path)
    side = add_agent(root, "one")
    assert compute_diff(side).files == []
    write(side.worktree / "src/app.py", "def main():\n    return 42\n\n\nprint(main())\n")
    f = compute_diff(side).files[0]
    assert f.language == "python"
    console = Console(width=100, record=True, color_system=None)
    console.print(rich_renderable(f))
    text = console.export_text()
    assert "return 42" in text and "src/app.py" in text and "@@" in text


def test_same_size_rewrites_in_quick_succession_are_seen(tmp_path):
    """The private index is reused between snapshots: git's racy-clean check must still see edits."""
    root = _repo(tmp_path)
    side = add_agent(root, "one")
    seen = set()
    for i in range(6):
        write(side.worktree / "README.md", f"# v{i}\n")  # same size every time, same second
        result = compute_diff(side)
        assert result.file("README.md").hunks[0].lines[-1].text == f"# v{i}"
        seen.add(result.tree)
    assert len(seen) == 6
    git(side.worktree, "add", "README.md")  # the agent's own index changes: the cache is rebuilt
    write(side.worktree / "README.md", "# test\n")
    assert compute_diff(side).files == []
