"""The memory store: files, frontmatter, versions, supersede/forget, journals, index, locations."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from memory_support import _no_memory_env, store  # noqa: F401  (fixtures)

from agentdeck.errors import Refused, UsageError
from agentdeck.memory import frontmatter
from agentdeck.memory.store import MemoryStore, validate_id

# ----------------------------------------------------------------------------- frontmatter

TRICKY = [
    "plain words", "Build cache: ninja", 'quote " inside', "it's", "# not a comment", "true", "null", "123",
    "1.5", "2026-11-26", "  padded  ", "tab\there", "ünïcödé — dash", "[bracket]", "a, b", "{brace}", "-dash",
    "@at", "C++", "back\\slash", "", "x #y", "line\\nnot-newline", "*star", "&amp", "!bang", "%pct", "`tick`",
]


@pytest.mark.parametrize("value", TRICKY)
def test_frontmatter_round_trips_tricky_strings(value):
    meta = {"title": value, "tags": [value, "ok"] if value else ["ok"], "version": 3}
    text = frontmatter.dump(meta, "body")
    parsed, body, had = frontmatter.parse(text)
    assert had and body == "body\n"
    assert parsed == meta


@pytest.mark.parametrize("value", TRICKY)
def test_frontmatter_is_real_yaml(value):
    yaml = pytest.importorskip("yaml")
    meta = {"id": "20261126-x", "title": value, "tags": [value, "ok"] if value else ["ok"], "version": 2,
            "created": "2026-11-26T05:47:41Z", "supersedes": []}
    text = frontmatter.dump(meta, "")
    loaded = yaml.safe_load(text.split("---\n")[1])
    assert loaded == meta


def test_frontmatter_reads_hand_written_yaml():
    text = (
        "---\n"
        "title: 'It''s hand written'   \n"
        "# a comment line\n"
        "tags:\n"
        "  - build\n"
        "  - \"ci tools\"\n"
        "kind: gotcha # trailing comment\n"
        "version: 4\n"
        "status:\n"
        "bogus line without colon\n"
        "---\n"
        "\n"
        "Body line\n"
    )
    meta, body, had = frontmatter.parse(text)
    assert had
    assert meta["title"] == "It's hand written"
    assert meta["tags"] == ["build", "ci tools"]
    assert meta["kind"] == "gotcha"
    assert meta["version"] == 4
    assert body == "Body line\n"


def test_frontmatter_absent_or_unterminated_is_all_body():
    assert frontmatter.parse("# Title\n\ntext\n") == ({}, "# Title\n\ntext\n", False)
    text = "---\ntitle: x\nno end\n"
    assert frontmatter.parse(text) == ({}, text, False)


# ----------------------------------------------------------------------------- writing notes


def test_add_writes_one_markdown_file_with_frontmatter(store, git_repo, monkeypatch):
    monkeypatch.setenv("AGENTDECK_AGENT", "north-star")
    s = MemoryStore.open(cwd=git_repo)
    note = s.add("Build cache: ninja breaks", "Set CCACHE_DIR.\n", tags=["build", "#ci"], kind="gotcha")
    assert re.fullmatch(r"\d{8}-build-cache-ninja-breaks", note.id)
    assert note.path == s.root / "notes" / f"{note.id}.md"
    assert s.root == git_repo / ".git" / "agentdeck" / "memory"
    meta, body, _ = frontmatter.parse(note.path.read_text())
    assert meta["id"] == note.id and meta["title"] == "Build cache: ninja breaks"
    assert meta["kind"] == "gotcha" and meta["tags"] == ["build", "ci"]
    assert meta["author"] == "north-star" and meta["branch"] == "main"
    assert meta["status"] == "active" and meta["version"] == 1 and meta["supersedes"] == []
    assert meta["created"] == meta["updated"]
    assert body == "Set CCACHE_DIR.\n"
    assert f"`{note.id}`" in (s.root / "INDEX.md").read_text()
    assert (s.root / "CORE.md").is_file() and (s.root / ".gitignore").read_text().startswith(".locks/")
    # Nothing left behind: no temp files.
    assert not [p for p in (s.root / "notes").iterdir() if p.name.startswith(".")]


def test_same_title_gets_distinct_ids(store):
    ids = [store.add("Same title", f"body {i}").id for i in range(3)]
    assert len(set(ids)) == 3
    assert ids[1] == ids[0] + "-2" and ids[2] == ids[0] + "-3"
    assert [store.get(i).body for i in ids] == ["body 0\n", "body 1\n", "body 2\n"]


def test_update_checks_the_expected_version(store):
    note = store.add("Decision", "use sqlite")
    updated = store.update(note.id, body="use sqlite with WAL", expected_version=1)
    assert updated.version == 2
    before = note.path.read_text()
    with pytest.raises(Refused, match=r"at version 2, not 1"):
        store.update(note.id, body="lost mongoose", expected_version=1)
    assert note.path.read_text() == before
    assert store.get(note.id).body == "use sqlite with WAL\n"
    assert store.search("WAL")[0]["id"] == note.id
    assert not store.search("mongoose")


def test_supersede_and_forget_hide_notes_but_keep_files(store):
    old = store.add("Old advice about flaky tests", "retry them")
    new = store.add("Better advice about flaky tests", "fix the race")
    store.supersede(old.id, new.id)
    hits = [h["id"] for h in store.search("flaky tests")]
    assert hits == [new.id]
    old_now = store.get(old.id)
    assert old_now.status == "superseded" and old_now.superseded_by == new.id and old.path.is_file()
    assert store.get(new.id).supersedes == [old.id]
    with pytest.raises(UsageError, match="itself"):
        store.supersede(new.id, new.id)

    store.forget(new.id)
    assert store.search("flaky") == []
    assert new.path.is_file() and store.get(new.id).status == "forgotten"
    assert [r["id"] for r in store.recent(10)] == []
    assert {r["id"] for r in store.recent(10, include_hidden=True)} == {old.id, new.id}
    index_md = (store.root / "INDEX.md").read_text()
    assert "## Superseded or forgotten" in index_md and f"`{new.id}`" in index_md

    # A forgotten note comes back through an edit of its status.
    text = new.path.read_text().replace("status: forgotten", "status: active")
    store.edit_text(new.id, text, expected_version=store.get(new.id).version)
    assert [h["id"] for h in store.search("race")] == [new.id]


def test_journal_is_append_only_and_searchable(store):
    store.append_journal("started on the parser", agent="north-star")
    store.append_journal("parser done; found a tokenizer gotcha", agent="north-star")
    journal = store.get("journal/north-star")
    assert journal.kind == "journal"
    text = journal.path.read_text()
    assert text.startswith("# Journal of north-star\n")
    assert text.index("started on the parser") < text.index("tokenizer gotcha")
    assert len(re.findall(r"^## \d{4}-\d\d-\d\dT", text, re.M)) == 2
    assert store.search("tokenizer")[0]["id"] == "journal/north-star"
    with pytest.raises(UsageError, match="append-only"):
        store.update("journal/north-star", body="rewrite history", expected_version=1)
    with pytest.raises(UsageError, match="empty"):
        store.append_journal("   ")


# ----------------------------------------------------------------------------- search


def test_search_ranks_titles_first_and_accepts_any_text(store):
    body_hit = store.add("Unrelated title", "mentions the tokenizer once in the body")
    title_hit = store.add("Tokenizer gotcha", "see details")
    hits = store.search("tokenizer")
    assert [h["id"] for h in hits] == [title_hit.id, body_hit.id]
    assert set(hits[0]) >= {"id", "title", "kind", "tags", "path", "snippet"}
    assert Path(hits[0]["path"]).is_file()
    assert "**tokenizer**" in hits[1]["snippet"]
    assert store.search("toke")[0]["id"] == title_hit.id  # the last word is a prefix (of the stem)
    assert store.search("how do I fix the tokenizer?")[0]["id"] == title_hit.id  # stopwords dropped
    for nasty in ['"', "AND OR NOT", "NEAR(a b)", "title:x", "*", "a'b", "((", "-", "^x"]:
        store.search(nasty)  # never raises
    assert store.search("") == [] and store.search("   ") == []
    assert len(store.search("tokenizer", limit=1)) == 1


def test_sync_reconciles_edits_made_outside_agentdeck(store):
    note = store.add("External edit target", "original words")
    store.search("original")  # index built
    # Edit in place (an editor), add a file by hand, delete one: sync by mtime sees all three.
    note.path.write_text(note.path.read_text().replace("original words", "rewritten zebra"))
    by_hand = store.root / "notes" / "hand-made.md"
    by_hand.write_text("# Written by hand\n\nNo frontmatter at all, mentions giraffe.\n")
    doomed = store.add("Doomed note", "elephant")
    doomed.path.unlink()
    changed = store.sync()
    assert changed == {note.id, "hand-made", doomed.id}
    assert [h["id"] for h in store.search("zebra", sync=False)] == [note.id]
    assert store.search("original", sync=False) == []
    hand = store.search("giraffe", sync=False)[0]
    assert hand["id"] == "hand-made" and hand["title"] == "Written by hand"
    assert store.search("elephant", sync=False) == []
    assert store.sync() == set()  # nothing new


def test_index_is_a_rebuildable_cache(store):
    store.add("Cache me", "quokka")
    store.close()
    # Corrupt the index file: the next store rebuilds it from the files.
    store.index_path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{store.index_path}{suffix}").unlink(missing_ok=True)
    again = MemoryStore(store.root, store.index_path)
    assert [h["title"] for h in again.search("quokka")] == ["Cache me"]
    again.index_path.unlink()
    again.close()
    third = MemoryStore(store.root, store.index_path)
    assert third.reindex() == 2  # the note and CORE.md
    assert [h["title"] for h in third.search("quokka", sync=False)] == ["Cache me"]
    third.close()


def test_recent_lists_newest_first(store):
    a = store.add("First", "1")
    b = store.add("Second", "2")
    store.update(a.id, body="1 again", expected_version=1)
    rows = store.recent(10)
    assert [r["id"] for r in rows][:2] in ([a.id, b.id], [b.id, a.id])  # same second: either order
    assert all(r["kind"] not in ("journal", "core") for r in rows)
    assert len(store.recent(1)) == 1


# ----------------------------------------------------------------------------- safety


@pytest.mark.parametrize("bad", ["", "..", "../x", "/etc/passwd", "a/b", "notes/../x", "x.md/..", "a b", "~root",
                                 "journal/../x", "journal/", "x" * 200, None, 3])
def test_ids_never_name_a_path_outside_the_store(store, bad):
    with pytest.raises(UsageError):
        store.get(bad)


def test_valid_id_forms():
    assert validate_id("notes/20261126-x.md") == "20261126-x"
    assert validate_id("core") == "CORE"
    assert validate_id("journal/north-star") == "journal/north-star"


def test_symlinks_are_refused(store, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    store.ensure_layout()
    (store.root / "notes" / "evil.md").symlink_to(secret)
    with pytest.raises(Refused, match="symlink"):
        store.get("evil")
    with pytest.raises(Refused, match="symlink"):
        store.update("evil", body="x", expected_version=1)
    assert secret.read_text() == "top secret"
    assert store.search("secret") == []  # the scan skips links
    (store.root / "journal" / "mallory.md").symlink_to(secret)
    with pytest.raises(Refused, match="symlink"):
        store.append_journal("hello", agent="mallory")
    assert secret.read_text() == "top secret"


@pytest.mark.parametrize("kwargs,message", [
    ({"title": ""}, "title"),
    ({"title": "two\nlines\x07"}, "control"),
    ({"title": "x" * 201}, "longer"),
    ({"title": "ok", "tags": ["has space"]}, "bad tag"),
    ({"title": "ok", "tags": [f"t{i}" for i in range(21)]}, "too many"),
    ({"title": "ok", "kind": "Not A Kind!"}, "bad kind"),
    ({"title": "ok", "kind": "journal"}, "reserved"),
    ({"title": "ok", "body": "nul\x00"}, "NUL"),
    ({"title": "ok", "body": "x" * (256 * 1024 + 1)}, "KiB"),
])
def test_bad_input_is_refused_and_nothing_is_written(store, kwargs, message):
    args = {"body": "", **kwargs}
    with pytest.raises(UsageError, match=message):
        store.add(args.pop("title"), **args)
    assert not (store.root / "notes").exists() or not list((store.root / "notes").glob("*.md"))


# ----------------------------------------------------------------------------- locations


def test_memory_dir_from_config_is_relative_to_the_repo_root(git_repo):
    (git_repo / ".agentdeck.toml").write_text('[memory]\ndir = "team-memory"\n')
    s = MemoryStore.open(cwd=git_repo / ".")
    assert s.root == git_repo / "team-memory"
    s.add("Tracked note", "x")
    assert (git_repo / "team-memory" / "notes").is_dir()
    assert s.index_path == git_repo / ".git" / "agentdeck" / "memory-index.db"
    s.close()


def test_worktrees_and_env_find_the_same_store(git_repo, tmp_path, monkeypatch):
    main = MemoryStore.open(cwd=git_repo)
    note = main.add("Shared across worktrees", "walrus")
    wt = tmp_path / "wt"
    subprocess.run(["git", "worktree", "add", "-q", "-b", "feature", str(wt)], cwd=git_repo, check=True)
    in_wt = MemoryStore.open(cwd=wt)
    assert in_wt.root == main.root
    assert in_wt.search("walrus")[0]["id"] == note.id
    assert in_wt.branch == "feature"
    # Outside any repository, AGENTDECK_STATE_DIR (set in agent panes) finds it.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.setenv("AGENTDECK_STATE_DIR", str(git_repo / ".git" / "agentdeck"))
    assert MemoryStore.open(cwd=outside).root == main.root
    monkeypatch.setenv("AGENTDECK_MEMORY_DIR", str(tmp_path / "override"))
    assert MemoryStore.open(cwd=outside).root == tmp_path / "override"
    main.close()
    in_wt.close()


def test_outside_a_repository_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="git repository"):
        MemoryStore.open(cwd=tmp_path)


def test_deck_memory_is_the_repository_store(git_repo):
    from agentdeck.deck import Deck

    deck = Deck.open(git_repo)
    try:
        assert deck.memory.root == git_repo / ".git" / "agentdeck" / "memory"
    finally:
        deck.close()


def test_no_stray_files_outside_the_store(store, git_repo):
    before = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=git_repo, capture_output=True,
                            text=True).stdout
    store.add("Quiet", "nothing in the checkout")
    store.append_journal("log")
    after = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=git_repo, capture_output=True,
                           text=True).stdout
    assert before == after
    assert os.listdir(store.root / "notes")


def test_frontmatter_round_trips_random_strings():
    import random

    rng = random.Random(1234)
    alphabet = "aZ09 _-.:#'\"[]{},&*!|>%@`\\/\t~?=+()é😀"
    yaml = None
    try:
        import yaml  # type: ignore[no-redef]
    except ImportError:
        pass
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        meta = {"title": value, "tags": [value, "x"]}
        text = frontmatter.dump(meta, "")
        assert frontmatter.parse(text)[0] == meta, repr(value)
        if yaml is not None:
            assert yaml.safe_load(text.split("---\n")[1]) == meta, repr(value)
