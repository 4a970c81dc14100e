"""A watcher (watchdog) that keeps the index in step with edits made outside agentdeck.

The deck starts one while it runs: a note edited in an editor, a file copied
into ``notes/``, a journal growing because another agent wrote -- each shows up
in search within a fraction of a second, and ``on_change`` tells the deck which
ids changed (to refresh the Memory tab live).  Without a watcher the CLI stays
correct anyway: :meth:`MemoryStore.sync` reconciles by ``stat`` before a search.

Events are coalesced: a burst of writes leads to one :meth:`MemoryStore.sync`
after ``debounce`` seconds of quiet (at most ``max_delay`` after the first).
A slow periodic sync (``poll_interval``) covers events the OS dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from agentdeck.memory.store import MemoryStore

if TYPE_CHECKING:  # pragma: no cover
    from watchdog.observers.api import BaseObserver


def _relevant(path: str) -> bool:
    name = Path(path).name
    if not name.endswith(".md") or name.startswith("."):
        return False
    parts = Path(path).parts
    return ".locks" not in parts and ".cache" not in parts and name != "INDEX.md"


class MemoryWatcher:
    def __init__(self, store: MemoryStore, on_change: Callable[[set[str]], None] | None = None, *,
                 debounce: float = 0.15, max_delay: float = 1.0, poll_interval: float | None = 30.0):
        self.store = store
        self.on_change = on_change
        self.debounce = debounce
        self.max_delay = max_delay
        self.poll_interval = poll_interval
        self._dirty = threading.Event()
        self._paths: set[str] = set()
        self._paths_lock = threading.Lock()
        self._stopping = threading.Event()
        self._observer: BaseObserver | None = None  # watchdog's, started by start()
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MemoryWatcher:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                if event.is_directory:
                    return
                paths = [str(p) for p in (getattr(event, "src_path", ""), getattr(event, "dest_path", "")) if p]
                hits = [p for p in paths if _relevant(p)]
                if hits:
                    with watcher._paths_lock:
                        watcher._paths.update(hits)
                    watcher._dirty.set()

        self.store.root.mkdir(parents=True, exist_ok=True)
        self.store.sync()
        observer = Observer()
        observer.schedule(Handler(), str(self.store.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._thread = threading.Thread(target=self._run, name="agentdeck-memory-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MemoryWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        while not self._stopping.is_set():
            fired = self._dirty.wait(timeout=self.poll_interval)
            if self._stopping.is_set():
                break
            if fired:
                first = time.monotonic()
                # Wait for quiet: each new event restarts the debounce, up to max_delay.
                while True:
                    self._dirty.clear()
                    if self._stopping.wait(self.debounce):
                        return
                    if not self._dirty.is_set() or time.monotonic() - first >= self.max_delay:
                        break
                self._dirty.clear()
            with self._paths_lock:
                touched, self._paths = self._paths, set()
            try:
                changed = self.store.sync()
            except Exception as exc:  # keep watching; the deck can show self.errors
                self.errors.append(exc)
                continue
            # Writers through agentdeck index their own notes, so sync finds nothing to do
            # for them; the deck still wants to hear about every file that changed.
            for path in touched:
                doc_id = self.store.id_for_path(Path(path))
                if doc_id is not None:
                    changed.add(doc_id)
            if changed and self.on_change is not None:
                try:
                    self.on_change(changed)
                except Exception as exc:
                    self.errors.append(exc)
