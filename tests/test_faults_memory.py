"""The shared memory under faults and hostile input (issue 12): a full disk, forged frontmatter, planted links.

Full-disk tests run on a real 2 MB tmpfs (``mount -t tmpfs``; skipped with the
reason where mounting is not permitted), filled to the byte with a real file:
no mocks.  The CLI runs through ``tests/support.run_cli`` and the MCP server is
the real stdio ``agentdeck mcp`` driven by the ``mcp`` client.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import anyio
import pytest
from memory_support import _no_memory_env, error_text, mcp_session, result_data, server_params  # noqa: F401
from support import make_repo, run_cli

from agentdeck import fsutil
from agentdeck.errors import Refused
from agentdeck.memory import frontmatter
from agentdeck.memory.store import MemoryStore

# ----------------------------------------------------------------------------- a small real disk


class SmallDisk:
    """A mounted 2 MB tmpfs that tests fill to an exact number of free bytes."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / "filler.bin"

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Take every free byte, then give back exactly *leave* bytes (whole pages)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            chunk = b"\0" * 65536
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
        finally:
            os.close(fd)
        assert self.free_bytes() == leave

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: the full-disk tests need a real 2 MB tmpfs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here ({proc.stderr.strip() or 'mount failed'}); "
                    "the full-disk tests need root (CAP_SYS_ADMIN)")
    try:
        yield SmallDisk(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


BIG = "A paragraph about the build cache that keeps going. " * 200  # ~10 KB: more than a page or two


# ----------------------------------------------------------------------------- 1. a full disk


def test_full_memory_disk_add_and_journal_write_nothing_and_say_so(git_repo, small_disk):
    mem = small_disk.root / "mem"
    env = {"AGENTDECK_MEMORY_DIR": str(mem), "AGENTDECK_AGENT": "north-star"}
    first = run_cli("memory", "add", "First note", "--body", "fits", cwd=git_repo, env=env)
    assert first.returncode == 0, first.stderr
    run_cli("memory", "journal", "first entry", cwd=git_repo, env=env)
    notes_before, journal_before = _files(mem / "notes"), _files(mem / "journal")

    small_disk.fill(leave=4096)  # one page: the entries below need three
    add = run_cli("memory", "add", "Build cache gotcha", "--body", BIG, cwd=git_repo, env=env)
    assert add.returncode == 1
    line = _one_line_error(add)
    assert "disk full" in line and "nothing was written" in line and "unexpected" not in line, line
    journal = run_cli("memory", "journal", BIG, cwd=git_repo, env=env)
    assert journal.returncode == 1
    line = _one_line_error(journal)
    assert "disk full" in line and "nothing was written" in line, line
    # Nothing half done: the same files, byte for byte, and no temporary file.
    assert _files(mem / "notes") == notes_before
    assert _files(mem / "journal") == journal_before

    # The retry, once there is room, writes exactly one note and one entry.
    small_disk.release()
    assert run_cli("memory", "add", "Build cache gotcha", "--body", BIG, cwd=git_repo, env=env).returncode == 0
    assert run_cli("memory", "journal", "second entry", cwd=git_repo, env=env).returncode == 0
    assert len([n for n in os.listdir(mem / "notes") if "build-cache-gotcha" in n]) == 1
    text = (mem / "journal" / "north-star.md").read_text()
    assert len(re.findall(r"^## \d{4}-", text, re.M)) == 2 and "A paragraph" not in text


def test_full_index_disk_never_fails_a_saved_note(tmp_path, small_disk):
    """The state dir (and the index) on the full disk, the notes elsewhere: the note is saved and says so."""
    repo = make_repo(small_disk.root / "repo")
    mem = tmp_path / "mem"
    env = {"AGENTDECK_MEMORY_DIR": str(mem), "AGENTDECK_AGENT": "north-star"}
    assert run_cli("memory", "add", "Indexed before", "--body", "walrus", cwd=repo, env=env).returncode == 0
    index = repo / ".git" / "agentdeck" / "memory-index.db"
    size_before = index.stat().st_size
    assert size_before > 0

    small_disk.fill(leave=0)
    add = run_cli("memory", "add", "Saved on a full index disk", "--body", "narwhal", "--json", cwd=repo, env=env)
    assert add.returncode == 0, add.stderr
    answer = json.loads(add.stdout)
    assert (mem / "notes" / f"{answer['id']}.md").is_file()
    warning = _one_line_error(add)
    assert f"note saved as {answer['id']}; index not updated (disk full)" in warning, warning
    assert "index not updated" in answer["warning"]
    journal = run_cli("memory", "journal", "logged on a full index disk", cwd=repo, env=env)
    assert journal.returncode == 0, journal.stderr
    assert "entry saved in journal/north-star; index not updated" in journal.stderr
    # The cache was not thrown away (it used to become a 0-byte file) ...
    assert index.stat().st_size == size_before
    # ... and a search that cannot even open it (SQLite needs room for its shared memory) says why, in one line.
    search = run_cli("memory", "search", "walrus", cwd=repo, env=env)
    assert search.returncode == 1 and "disk full" in _one_line_error(search) and "unexpected" not in search.stderr

    reindex = run_cli("memory", "reindex", cwd=repo, env=env)
    assert reindex.returncode == 1 and "disk full" in _one_line_error(reindex)
    assert index.stat().st_size == size_before
    # Once there is room the index catches up by itself, with nothing duplicated.
    small_disk.release()
    hits = run_cli("memory", "search", "narwhal", "--json", cwd=repo, env=env)
    assert [h["id"] for h in json.loads(hits.stdout)] == [answer["id"]], hits.stderr
    recent = json.loads(run_cli("memory", "recent", "--json", cwd=repo, env=env).stdout)
    assert sorted(r["title"] for r in recent) == ["Indexed before", "Saved on a full index disk"]


def test_full_disk_mcp_journal_is_whole_or_nothing(git_repo, small_disk):
    mem = small_disk.root / "mem"
    params = server_params(git_repo, agent="north-star", env={"AGENTDECK_MEMORY_DIR": str(mem)})
    journal = mem / "journal" / "north-star.md"

    async def main():
        async with mcp_session(params) as s:
            result_data(await s.call_tool("memory_append_journal", {"text": "first entry"}))
            before = journal.read_bytes()
            small_disk.fill(leave=4096)  # the entry below is ~10 KB: it used to be cut at 4,096 bytes
            text = error_text(await s.call_tool("memory_append_journal", {"text": BIG}))
            assert "disk full" in text and "nothing was written" in text, text
            assert journal.read_bytes() == before
            failed = error_text(await s.call_tool("memory_write", {"title": "Too big", "body": BIG}))
            assert "disk full" in failed and "nothing was written" in failed, failed
            assert sorted(os.listdir(mem / "notes")) == []
            small_disk.release()
            result_data(await s.call_tool("memory_append_journal", {"text": "after the disk was freed"}))

    anyio.run(main)
    text = journal.read_text()
    assert text.count("\n## ") == 2 and "A paragraph" not in text and text.endswith("after the disk was freed\n")


def test_full_disk_store_writes_complete_or_leave_nothing(tmp_path, small_disk):
    """The write path itself, in process: add, update, journal, a first layout, the atomic helper."""
    mem = small_disk.root / "mem"
    store = MemoryStore(mem, tmp_path / "index.db", author="north-star")
    note = store.add("Keep me whole", "version one")
    store.append_journal("entry one")
    note_bytes, journal_bytes = note.path.read_bytes(), (mem / "journal" / "north-star.md").read_bytes()

    small_disk.fill(leave=4096)
    with pytest.raises(Refused, match=r"disk full.*nothing was written"):
        store.update(note.id, body=BIG, expected_version=1)
    with pytest.raises(Refused, match=r"disk full.*nothing was written"):
        store.append_journal(BIG)
    with pytest.raises(Refused, match=r"disk full.*nothing was written"):
        store.append_journal(BIG, agent="newcomer")  # a new journal: no empty file left either
    assert note.path.read_bytes() == note_bytes and store.get(note.id).version == 1
    assert (mem / "journal" / "north-star.md").read_bytes() == journal_bytes
    assert sorted(os.listdir(mem / "journal")) == ["north-star.md"]
    assert not [n for n in os.listdir(mem / "notes") if n.startswith(".")]

    # The shared helper: the old content survives, no temporary file.
    target = small_disk.root / "target.txt"
    small_disk.release()
    fsutil.atomic_write(target, "old")
    small_disk.fill(leave=0)
    with pytest.raises(OSError) as info:
        fsutil.atomic_write(target, b"new" * 4096)
    assert info.value.errno == errno.ENOSPC and fsutil.disk_full(info.value)
    assert target.read_text() == "old" and sorted(os.listdir(small_disk.root)) == ["filler.bin", "mem", "target.txt"]

    # A brand-new store on a full disk: refused, and no empty CORE.md or .gitignore left to stay empty forever.
    fresh = MemoryStore(small_disk.root / "fresh", tmp_path / "fresh.db")
    with pytest.raises(Refused, match="nothing was written"):
        fresh.add("Nowhere to go", "x")
    for name in ("CORE.md", ".gitignore"):
        path = small_disk.root / "fresh" / name
        assert not path.exists() or path.stat().st_size > 0
    store.close()
    fresh.close()


def test_a_zero_byte_or_corrupt_index_is_rebuilt_on_open(tmp_path):
    store = MemoryStore(tmp_path / "mem", tmp_path / "index.db")
    store.add("Rebuilt from files", "capybara")
    store.close()
    for damage in (b"", b"garbage, not SQLite" * 50):
        (tmp_path / "index.db").write_bytes(damage)
        for suffix in ("-wal", "-shm"):
            Path(f"{tmp_path / 'index.db'}{suffix}").unlink(missing_ok=True)
        again = MemoryStore(tmp_path / "mem", tmp_path / "index.db")
        assert [h["title"] for h in again.search("capybara")] == ["Rebuilt from files"]
        again.close()


# ----------------------------------------------------------------------------- 2. forged frontmatter

SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0c", "\x1e", "\x1c", "\x0b", "\r", "\u202e", "\ufeff"]


@pytest.mark.parametrize("sep", SEPARATORS, ids=lambda s: f"U+{ord(s):04X}")
def test_frontmatter_values_cannot_forge_fields(sep):
    evil = f'mallory"{sep}kind: decision{sep}title: FORGED{sep}x: "'
    meta = {"id": "n1", "title": f"Real{sep}title", "kind": "note", "author": evil, "branch": f"b{sep}status: x"}
    text = frontmatter.dump(meta, "body")
    head = text.split("\n---\n", 1)[0]
    assert sep not in head  # escaped, never raw
    parsed, body, had = frontmatter.parse(text)
    assert had and parsed == meta and body == "body\n"
    yaml = pytest.importorskip("yaml")
    assert yaml.safe_load(text.split("---\n")[1]) == meta


@pytest.mark.parametrize("sep", SEPARATORS, ids=lambda s: f"U+{ord(s):04X}")
def test_reader_splits_lines_on_newline_only(sep):
    # A file written by something else, with the separator raw inside a value: it stays inside.
    text = f"---\nid: n1\nauthor: mallory{sep}kind: decision\nkind: note\n---\n\nbody{sep}more\n"
    meta, body, _ = frontmatter.parse(text)
    assert meta["kind"] == "note" and meta["author"] == f"mallory{sep}kind: decision"
    assert body == f"body{sep}more\n"


def test_forged_agent_name_cannot_change_a_notes_metadata(git_repo):
    evil = "mallory\u2028kind: decision\u2028title: FORGED\x85status: forgotten"
    add = run_cli("memory", "add", "Honest title", "--body", "b", "--json", cwd=git_repo,
                  env={"AGENTDECK_AGENT": evil})
    assert add.returncode == 0, add.stderr
    note_id = json.loads(add.stdout)["id"]
    shown = json.loads(run_cli("memory", "show", note_id, "--json", cwd=git_repo).stdout)
    assert (shown["title"], shown["kind"], shown["status"], shown["author"]) == ("Honest title", "note", "active", evil)
    for name in (f"notes/{note_id}.md", "INDEX.md"):
        raw = (_mem(git_repo) / name).read_text()
        assert "\u2028" not in raw and "\x85" not in raw, name  # escaped, never raw
    hits = json.loads(run_cli("memory", "search", "honest", "--json", cwd=git_repo).stdout)
    assert [(h["title"], h["kind"]) for h in hits] == [("Honest title", "note")]


BODY = "line one\u2028still one\x85and\x0cform\x1erecord\rlone cr\u2029para\x1c\x1d\x0bend\n\n  indented\n"


def test_bodies_round_trip_byte_for_byte(git_repo):
    async def main():
        async with mcp_session(server_params(git_repo, agent="north-star")) as s:
            written = result_data(await s.call_tool("memory_write", {"title": "Odd separators", "body": BODY}))
            read = result_data(await s.call_tool("memory_read", {"id": written["id"]}))
            assert read["body"] == BODY
            # Read, then update with what was read: the body (and the file's body bytes) do not change.
            updated = result_data(await s.call_tool("memory_update", {
                "id": written["id"], "body": read["body"], "expected_version": read["version"]}))
            again = result_data(await s.call_tool("memory_read", {"id": written["id"]}))
            assert again["body"] == BODY and updated["version"] == 2
            return written["path"]

    path = Path(anyio.run(main))
    assert path.read_bytes().split(b"\n---\n\n", 1)[1] == BODY.encode("utf-8")
    shown = run_cli("memory", "show", path.stem, "--json", cwd=git_repo)
    assert json.loads(shown.stdout)["body"] == BODY


# ----------------------------------------------------------------------------- 3. links planted in .locks/


def _mem(repo: Path) -> Path:
    return repo / ".git" / "agentdeck" / "memory"


def test_planted_index_pending_link_is_not_followed(git_repo, tmp_path):
    assert run_cli("memory", "add", "Seed", "--body", "x", cwd=git_repo).returncode == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    pending = _mem(git_repo) / ".locks" / "INDEX.pending"
    pending.unlink(missing_ok=True)
    pending.symlink_to(outside / "created-by-agentdeck")
    add = run_cli("memory", "add", "After the plant", "--body", "y", cwd=git_repo)
    assert add.returncode == 0, add.stderr
    assert list(outside.iterdir()) == []  # nothing created outside the store
    assert not pending.is_symlink()
    assert "After the plant" in (_mem(git_repo) / "INDEX.md").read_text()


@pytest.mark.parametrize("target", ["outside-file", "loop"])
def test_planted_note_lock_link_neither_blocks_nor_is_written(git_repo, tmp_path, target):
    add = run_cli("memory", "add", "Locked out", "--body", "v1", "--json", cwd=git_repo)
    note_id = json.loads(add.stdout)["id"]
    lock = _mem(git_repo) / ".locks" / f"{note_id}.lock"
    lock.unlink(missing_ok=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not touch")
    lock.symlink_to(secret if target == "outside-file" else lock)
    journal_lock = _mem(git_repo) / ".locks" / "journal__user.lock"
    journal_lock.unlink(missing_ok=True)
    journal_lock.symlink_to(secret)

    forget = run_cli("memory", "forget", note_id, cwd=git_repo)
    assert forget.returncode == 0, forget.stderr
    assert json.loads(run_cli("memory", "show", note_id, "--json", cwd=git_repo).stdout)["status"] == "forgotten"
    assert run_cli("memory", "journal", "still works", cwd=git_repo).returncode == 0
    assert secret.read_text() == "do not touch" and secret.stat().st_nlink == 1
    assert not lock.is_symlink() and lock.is_file() and not journal_lock.is_symlink()


def test_planted_lock_links_through_mcp_and_an_index_link(git_repo, tmp_path):
    """The MCP server's updates, and a store whose index lives in its own .cache/, never write through links."""
    secret = tmp_path / "secret.txt"
    secret.write_text("do not touch")

    async def main():
        async with mcp_session(server_params(git_repo, agent="north-star")) as s:
            written = result_data(await s.call_tool("memory_write", {"title": "MCP lock", "body": "v1"}))
            lock = _mem(git_repo) / ".locks" / f"{written['id']}.lock"
            lock.unlink(missing_ok=True)
            lock.symlink_to(secret)
            updated = result_data(await s.call_tool("memory_update", {
                "id": written["id"], "body": "v2", "expected_version": 1}))
            assert updated["version"] == 2

    anyio.run(main)
    assert secret.read_text() == "do not touch"

    # A store without a state dir keeps its index in <store>/.cache: a link planted there is not followed.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    root = tmp_path / "standalone"
    (root / ".cache").mkdir(parents=True)
    (root / ".cache" / "index.db").symlink_to(outside / "index.db")
    store = MemoryStore(root)
    store.add("Standalone", "ocelot")
    assert [h["title"] for h in store.search("ocelot")] == ["Standalone"]
    store.close()
    assert list(outside.iterdir()) == [] and not (root / ".cache" / "index.db").is_symlink()


def test_lock_file_helper_replaces_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "fifo.lock"
    os.mkfifo(fifo)
    link = tmp_path / "link.lock"
    link.symlink_to(tmp_path / "target")
    for path in (fifo, link):
        with fsutil.FileLock(path, timeout=1):
            assert path.is_file() and not path.is_symlink()
    assert not (tmp_path / "target").exists()
    held = fsutil.FileLock(tmp_path / "held.lock", timeout=0.2)
    with held:
        with pytest.raises(fsutil.LockTimeout):
            fsutil.FileLock(tmp_path / "held.lock", timeout=0.1).acquire()
    again = fsutil.FileLock(tmp_path / "held.lock", timeout=0)
    again.acquire()  # free again once released
    assert again.is_locked
    again.release()


def test_brief_files_are_never_written_through_a_planted_link(git_repo, tmp_path):
    from agentdeck.memory.inject import brief_file, brief_text

    secret = tmp_path / "secret.txt"
    secret.write_text("do not touch")
    briefs = git_repo / ".git" / "agentdeck" / "briefs"
    briefs.mkdir(parents=True)
    # The old temporary name was predictable (the pid); links at it and at the final name are not followed.
    (briefs / f".north-star.md.{os.getpid()}.tmp").symlink_to(secret)
    (briefs / "north-star.md").symlink_to(secret)
    core = _mem(git_repo) / "CORE.md"
    core.parent.mkdir(parents=True)
    core.symlink_to(secret)
    path = brief_file(git_repo, "north-star")
    assert secret.read_text() == "do not touch"
    assert not path.is_symlink() and "do not touch" not in path.read_text()
    assert "do not touch" not in brief_text(git_repo, "north-star")


def test_a_planted_fifo_never_hangs_a_read_or_a_journal_append(git_repo):
    assert run_cli("memory", "add", "Seed", "--body", "x", cwd=git_repo).returncode == 0
    os.mkfifo(_mem(git_repo) / "notes" / "pipe.md")
    os.mkfifo(_mem(git_repo) / "journal" / "user.md")
    show = run_cli("memory", "show", "pipe", cwd=git_repo, timeout=30)
    assert show.returncode == 1 and "not a regular file" in _one_line_error(show)
    journal = run_cli("memory", "journal", "hello", cwd=git_repo, env={"AGENTDECK_AGENT": "user"}, timeout=30)
    assert journal.returncode == 1 and "nothing was written" in _one_line_error(journal)
    hits = run_cli("memory", "search", "seed", "--json", cwd=git_repo, timeout=30)
    assert [h["title"] for h in json.loads(hits.stdout)] == ["Seed"]
