"""Keeping the search index and ``INDEX.md`` in step with the files, and the queries over them.

The files are the truth and the index (:mod:`agentdeck.memory.index`) a cache: each writer updates
it while it still holds the note's lock (:meth:`Indexing._after_write`), and every query first
reconciles it with the files by ``stat`` (:meth:`Indexing.sync`, at most every
:data:`SYNC_INTERVAL_S`) for edits made outside agentdeck.  ``INDEX.md`` is regenerated after each
change; concurrent writers coalesce (one regenerates for all).

:class:`Indexing` is a part of :class:`~agentdeck.memory.store.MemoryStore`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat as stat_mod
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from agentdeck import fsutil
from agentdeck.errors import Refused, UsageError
from agentdeck.memory.files import read_regular, reason
from agentdeck.memory.index import IndexDoc, MemoryIndex
from agentdeck.memory.notes import CORE_ID, ID_RE, JOURNAL_PREFIX, Note, one_line

SYNC_INTERVAL_S = 1.0


class Indexing:
    """The index half of the store (mixed into :class:`~agentdeck.memory.store.MemoryStore`)."""

    root: Path
    notes_dir: Path
    journal_dir: Path
    core_path: Path
    index_md_path: Path
    locks_dir: Path
    index_path: Path
    _index: MemoryIndex | None
    _index_lock: threading.Lock
    _last_sync: float

    def _check_dir(self, path: Path) -> None:
        raise NotImplementedError  # pragma: no cover - the store's

    def _lock(self, name: str) -> fsutil.FileLock:
        raise NotImplementedError  # pragma: no cover - the store's

    def _note_from(self, doc_id: str, text: str, path: Path, mtime: float) -> Note:
        raise NotImplementedError  # pragma: no cover - the store's

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    @property
    def index(self) -> MemoryIndex:
        """The search index, built from the files on first use."""
        return self._get_index(build=True)

    def _get_index(self, build: bool) -> MemoryIndex:
        with self._index_lock:
            if self._index is None:
                cache = self.index_path.parent
                if cache.parent == self.root and cache.is_symlink():
                    fsutil.unlink_quietly(cache)  # a link planted as .cache/ inside the store: the index stays inside
                index = MemoryIndex(self.index_path, str(self.root))
                if build:
                    try:
                        index.ensure_built(self._load_all)
                    except BaseException:
                        index.close()
                        raise
                self._index = index
            return self._index

    def _after_write(self, note: Note, paths: list[Path], index_md: bool = True) -> None:
        """Bring the index (and INDEX.md) up to date after a saved write; never fails the write.

        The files are the truth and the index a cache: when it cannot follow (a full
        disk, a locked or broken database), the note keeps a ``warning`` saying so and
        the next :meth:`sync` (every search does one) catches up.
        """
        problem: BaseException | None = None
        if paths:
            try:
                self._index_paths(paths)
            except (sqlite3.Error, OSError, Refused) as exc:
                self._last_sync = 0.0  # the next search reconciles by stat
                problem = exc
        if index_md and problem is None and not note.warning:
            try:
                self._refresh_index_md()
            except (sqlite3.Error, OSError, Refused) as exc:
                problem = exc
        if problem is not None and not note.warning:
            what = "entry saved in" if note.id.startswith(JOURNAL_PREFIX) else "note saved as"
            why = reason(problem, self.index_path.parent)
            note.warning = (
                f"{what} {note.id}; index not updated ({why}): it catches up on the next search, "
                "or run `agentdeck memory reindex`"
            )

    def _doc_for(self, path: Path) -> IndexDoc | None:
        doc_id = self.id_for_path(path)
        return None if doc_id is None else self._doc(doc_id, path, self._rel(path))

    def _doc(self, doc_id: str, path: Path, rel: str) -> IndexDoc | None:
        try:
            text, fp, mtime = read_regular(path)
        except (FileNotFoundError, Refused, IsADirectoryError):
            return None
        note = self._note_from(doc_id, text, path, mtime)
        return IndexDoc(note, rel, fp)

    def id_for_path(self, path: Path) -> str | None:
        if path.suffix != ".md" or path.name.startswith("."):
            return None
        if path == self.core_path:
            return CORE_ID
        stem = path.stem
        if not ID_RE.match(stem):
            return None
        if path.parent == self.notes_dir:
            return None if stem.upper() == CORE_ID else stem
        if path.parent == self.journal_dir:
            return JOURNAL_PREFIX + stem
        return None

    def _index_paths(self, paths: Iterable[Path]) -> None:
        docs = [d for d in (self._doc_for(p) for p in paths) if d is not None]
        if docs:
            self.index.upsert(docs)

    def _scan(self) -> Iterator[tuple[str, str, str, tuple[int, int, int]]]:
        """``(id, relative path, path, fingerprint)`` of every document file (regular files only)."""
        try:
            st = os.lstat(self.core_path)
        except FileNotFoundError:
            pass
        else:
            if stat_mod.S_ISREG(st.st_mode):
                yield CORE_ID, "CORE.md", str(self.core_path), (st.st_ino, st.st_mtime_ns, st.st_size)
        for folder, sub, prefix in ((self.notes_dir, "notes", ""), (self.journal_dir, "journal", JOURNAL_PREFIX)):
            if folder.is_symlink() or not folder.is_dir():
                continue
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.endswith(".md") or name.startswith("."):
                        continue
                    stem = name[:-3]
                    if not ID_RE.match(stem) or (not prefix and stem.upper() == CORE_ID):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat_mod.S_ISREG(st.st_mode):
                        yield prefix + stem, f"{sub}/{name}", entry.path, (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load_all(self) -> Iterator[IndexDoc]:
        for doc_id, rel, path, _fp in self._scan():
            doc = self._doc(doc_id, Path(path), rel)
            if doc is not None:
                yield doc

    def sync(self, max_age: float | None = None) -> set[str]:
        """Reconcile the index with the files by ``stat``; returns the ids changed or removed.

        With *max_age*, does nothing when this store synced less than that many seconds ago.
        """
        now = time.monotonic()
        if max_age is not None and now - self._last_sync < max_age:
            return set()
        index = self.index
        known = index.fingerprints()
        seen: set[str] = set()
        changed: list[tuple[str, str, str]] = []
        for doc_id, rel, path, fp in self._scan():
            seen.add(doc_id)
            if known.get(doc_id) != (rel, fp):
                changed.append((doc_id, rel, path))
        removed = set(known) - seen
        docs = [d for d in (self._doc(i, Path(p), rel) for i, rel, p in changed) if d is not None]
        if docs or removed:
            index.apply(docs, removed)
        self._last_sync = time.monotonic()
        ids = {d.id for d in docs} | removed
        if any(i != CORE_ID and not i.startswith(JOURNAL_PREFIX) for i in ids):
            self._refresh_index_md()
        return ids

    def reindex(self) -> int:
        """Rebuild the index from the files; returns the number of documents (on a full disk the old one stays)."""
        try:
            count = self._get_index(build=False).rebuild(self._load_all())
        except (sqlite3.Error, OSError) as exc:
            if not fsutil.disk_full(exc, self.index_path.parent):
                raise
            raise Refused(f"disk full: could not rebuild the search index {self.index_path}; the old index is "
                          "kept as it was (free some space and run `agentdeck memory reindex` again)") from exc
        self._last_sync = time.monotonic()
        self._refresh_index_md()
        return count

    def _refresh_index_md(self) -> None:
        """Regenerate INDEX.md; concurrent writers coalesce (one regenerates for all)."""
        if not self.root.is_dir():
            return
        pending = self.locks_dir / "INDEX.pending"
        self._check_dir(self.locks_dir)
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        fsutil.touch_regular(pending)  # a planted link is replaced, never followed
        lock = self._lock("INDEX")
        while True:
            try:
                lock.acquire(timeout=0)
            except fsutil.LockTimeout:
                return  # the holder sees our pending mark after it releases
            try:
                if not os.path.lexists(pending):
                    return
                fsutil.unlink_quietly(pending)
                self._write_index_md()
            finally:
                lock.release()
            if not os.path.lexists(pending):
                return

    def _write_index_md(self) -> None:
        active: list[str] = []
        hidden: list[str] = []
        for doc_id, rel, title, kind, tags_json, author, updated, status in self.index.index_rows():
            title, author = one_line(title), one_line(author)  # one note, one line: nothing forges another
            title = title.replace("[", "\\[").replace("]", "\\]")
            link = f"[{title}]({rel})"
            parts = [kind]
            if tags_json != "[]":
                parts.append(" ".join("#" + t for t in json.loads(tags_json)))
            parts.append(author)
            parts.append(updated[:10])
            tail = " · ".join(p for p in parts if p)
            if status == "active":
                active.append(f"- {link} — {tail} · `{doc_id}`")
            else:
                hidden.append(f"- ~~{link}~~ ({status}) — {tail} · `{doc_id}`")
        lines = [
            "# Memory index",
            "",
            "<!-- Generated by agentdeck from notes/: do not edit, it is rewritten on every change. -->",
            "",
            f"{len(active)} active note(s), {len(hidden)} superseded or forgotten.",
            "",
        ]
        if active:
            lines += ["## Notes", "", *active, ""]
        if hidden:
            lines += ["## Superseded or forgotten", "", *hidden, ""]
        fsutil.atomic_write(self.index_md_path, ("\n".join(lines).rstrip() + "\n").encode("utf-8"))

    # ------------------------------------------------------------------ queries
    def _sync_for_read(self, sync: bool | str) -> None:
        """Reconcile before a query; on a full disk, answer from the index as it is (it catches up later)."""
        try:
            if sync == "auto":
                self.sync(max_age=SYNC_INTERVAL_S)
            elif sync:
                self.sync()
        except (sqlite3.Error, OSError, Refused) as exc:
            if not fsutil.disk_full(exc, self.index_path.parent) or self._index is None:
                raise
            self._last_sync = 0.0  # answer from the index as it is; it catches up once there is room

    def search(self, query: str, limit: int = 10, *, sync: bool | str = "auto",
               kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Ranked hits: ``id, title, kind, tags, path (absolute), snippet`` and more."""
        if not isinstance(query, str):
            raise UsageError("the search query must be text")
        self._sync_for_read(sync)
        hits = self.index.search(query, max(0, min(int(limit), 1000)), kinds=kinds)
        for hit in hits:
            hit["path"] = str(self.root / hit["path"])
        return hits

    def recent(self, limit: int = 20, *, sync: bool | str = "auto", kinds: Iterable[str] | None = None,
               include_hidden: bool = False) -> list[dict[str, Any]]:
        """Notes by last update, newest first (journals and CORE only when asked by *kinds*)."""
        self._sync_for_read(sync)
        rows = self.index.recent(max(0, min(int(limit), 1000)), kinds=kinds, active_only=not include_hidden)
        for row in rows:
            row["path"] = str(self.root / row["path"])
        return rows
