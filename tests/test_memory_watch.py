"""The watchdog watcher: edits made outside agentdeck reach the index and the deck."""

from __future__ import annotations

import threading

from memory_support import _no_memory_env, store  # noqa: F401
from support import retry_until

from agentdeck.memory.store import MemoryStore
from agentdeck.memory.watch import MemoryWatcher


def test_watcher_indexes_outside_edits_and_reports_every_change(store):
    seen: set[str] = set()
    lock = threading.Lock()

    def on_change(ids: set[str]) -> None:
        with lock:
            seen.update(ids)

    note = store.add("Watched note", "before")
    with MemoryWatcher(store, on_change, debounce=0.05) as watcher:
        # 1. a file edited in place by an editor
        note.path.write_text(note.path.read_text().replace("before", "capybara"))
        retry_until(lambda: store.search("capybara", sync=False), what="the edited note in the index")
        retry_until(lambda: note.id in seen, what="on_change for the edit")
        # 2. a file dropped into notes/ by hand
        (store.root / "notes" / "dropped.md").write_text("# Dropped in\n\nokapi\n")
        retry_until(lambda: store.search("okapi", sync=False), what="the dropped note")
        # 3. another process's store (an agent's MCP server) writes: it indexes itself, the deck still hears
        other = MemoryStore(store.root, store.index_path, author="other-agent")
        written = other.add("Written elsewhere", "narwhal")
        retry_until(lambda: written.id in seen, what="on_change for another writer")
        other.append_journal("journal line")
        retry_until(lambda: "journal/other-agent" in seen, what="on_change for a journal")
        # 4. a deleted file leaves the index
        (store.root / "notes" / "dropped.md").unlink()
        retry_until(lambda: not store.search("okapi", sync=False), what="the deleted note gone")
        other.close()
        assert watcher.errors == []
    # Lock files, temp files and INDEX.md are not changes.
    assert not any(i.startswith(".") or i == "INDEX" for i in seen)
