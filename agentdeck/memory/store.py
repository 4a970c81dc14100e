"""The shared memory store: one Markdown file per note, safe with many writers at once.

Layout of a memory directory (documented for users in ``memory/README.md``)::

    CORE.md               the short pinned summary the user owns (agents get it in their brief)
    INDEX.md              generated: one line per note
    notes/<id>.md         one note per file, YAML-ish frontmatter + Markdown body
    journal/<agent>.md    one append-only journal per agent (one writer each)
    .locks/               lock files (ignored by .gitignore)
    .cache/               the index when no agentdeck state dir is known (ignored)

Concurrency, across processes (every agent runs its own MCP server):

* a new note is a new file: written to a temporary file, fsynced, then
  hard-linked to its final name, which fails if the name exists (an exclusive
  create that never shows a half-written file; ``O_EXCL`` where links are not
  supported); a taken name moves on to the next free id;
* a journal has one writer; an entry is appended whole under a lock, or the file
  is truncated back to its old size (:func:`agentdeck.fsutil.append_whole`);
* a change to a note happens under a file lock (``flock``): read, compare the
  expected version, write a temporary file, ``os.replace`` -- so two edits
  never silently overwrite each other;
* the search index (:mod:`agentdeck.memory.index`) is updated by each writer
  while it still holds the note's lock, and reconciled with the files by
  ``stat`` (:meth:`MemoryStore.sync`) for edits made outside agentdeck
  (:mod:`agentdeck.memory.indexing`).

Faults: a write either completes or leaves nothing, and says which.  A full
disk (or any failed write) is a :class:`Refused` "... nothing was written"; the
index is a cache, so a note that was saved is never reported as failed because
the index could not follow -- the returned note's ``warning`` says so, and the
next search catches up.

Every path is built from a validated id (letters, digits, ``-``, ``_``): no
``..``, no absolute paths, and files are opened with ``O_NOFOLLOW`` so a
planted symlink cannot lead a read or write outside the store; lock files and
marks under ``.locks/`` that are not regular files are replaced, never followed.
Frontmatter values are escaped on write (:mod:`agentdeck.memory.frontmatter`),
so no title, author or branch can forge another field.

The parts: :mod:`~agentdeck.memory.notes` (the document model and its validation),
:mod:`~agentdeck.memory.locations` (where a repository's store lives),
:mod:`~agentdeck.memory.files` (safe reads and whole writes),
:mod:`~agentdeck.memory.indexing` (the index and ``INDEX.md`` in step with the files; queries),
and this module: :class:`MemoryStore`, opening a store and writing its documents.  The names of
the parts are importable from here too.
"""

from __future__ import annotations

import errno
import os
import re
import stat as stat_mod
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentdeck import fsutil, git
from agentdeck import paths as _paths
from agentdeck.errors import Refused, UsageError
from agentdeck.memory import frontmatter
from agentdeck.memory.files import create_if_missing, read_regular, write_failure
from agentdeck.memory.index import MemoryIndex
from agentdeck.memory.indexing import SYNC_INTERVAL_S, Indexing
from agentdeck.memory.locations import Locations, locate, memory_dir_for
from agentdeck.memory.notes import (
    CORE_ID,
    ENV_MEMORY_BRIEF,
    ENV_MEMORY_DIR,
    FIELD_ORDER,
    ID_RE,
    JOURNAL_PREFIX,
    KINDS,
    MAX_BODY,
    MAX_JOURNAL_ENTRY,
    MAX_TAGS,
    MAX_TITLE,
    STATUSES,
    Note,
    as_list,
    as_str,
    iso_time,
    note_slug,
    one_line,
    utc_now,
    validate_body,
    validate_id,
    validate_kind,
    validate_tags,
    validate_title,
)

__all__ = [
    "CORE_ID", "ENV_MEMORY_BRIEF", "ENV_MEMORY_DIR", "FIELD_ORDER", "ID_RE", "JOURNAL_PREFIX", "KINDS",
    "LOCK_TIMEOUT_S", "MAX_BODY", "MAX_JOURNAL_ENTRY", "MAX_TAGS", "MAX_TITLE", "STATUSES", "SYNC_INTERVAL_S",
    "Locations", "MemoryStore", "Note", "locate", "memory_dir_for", "note_slug", "one_line", "utc_now",
    "validate_body", "validate_id", "validate_kind", "validate_tags", "validate_title",
]

LOCK_TIMEOUT_S = 30.0

GITIGNORE = ".locks/\n.cache/\n*.tmp\n"
CORE_TEMPLATE = """# Core

<!-- The short, pinned summary every agent is given when it starts (keep it under a page).
     You own this file: edit it freely. Agents propose changes as notes of kind `core-proposal`. -->
"""


class MemoryStore(Indexing):
    """The memory of one repository: notes, journals, CORE, and their search index."""

    def __init__(self, root: Path | str, index_path: Path | str | None = None, *,
                 author: str | None = None, branch: str | None = None,
                 worktree: Path | str | None = None):
        self.root = Path(root).expanduser().absolute()
        self.notes_dir = self.root / "notes"
        self.journal_dir = self.root / "journal"
        self.core_path = self.root / "CORE.md"
        self.index_md_path = self.root / "INDEX.md"
        self.locks_dir = self.root / ".locks"
        self.index_path = Path(index_path) if index_path else self.root / ".cache" / "index.db"
        self.author = (author or os.environ.get(_paths.ENV_AGENT) or "user").strip() or "user"
        self._branch = branch
        self._worktree = Path(worktree) if worktree else None
        self._index: MemoryIndex | None = None
        self._index_lock = threading.Lock()
        self._last_sync = 0.0

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, cwd: str | os.PathLike[str] | None = None, repo: Any = None, config: Any = None,
             author: str | None = None) -> MemoryStore:
        loc = locate(cwd, repo, config)
        return cls(loc.memory_dir, loc.index_path, author=author, worktree=Path(cwd) if cwd else None)

    @classmethod
    def for_deck(cls, deck: Any) -> MemoryStore:
        """The store of a :class:`agentdeck.deck.Deck` (``deck.memory``)."""
        return cls.open(repo=deck.repo, config=deck.config)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ properties
    @property
    def branch(self) -> str:
        if self._branch is None:
            self._branch = ""
            where = self._worktree or Path(os.environ.get("AGENTDECK_WORKTREE") or os.getcwd())
            try:
                self._branch = git.current_branch(where) or ""
            except Exception:  # not a repository, git missing: the branch is optional
                self._branch = ""
        return self._branch
    # ------------------------------------------------------------------ paths
    def path_of(self, doc_id: str) -> Path:
        """The file of a validated id (never outside the store)."""
        doc_id = validate_id(doc_id)
        if doc_id == CORE_ID:
            return self.core_path
        if doc_id.startswith(JOURNAL_PREFIX):
            return self.journal_dir / f"{doc_id[len(JOURNAL_PREFIX):]}.md"
        return self.notes_dir / f"{doc_id}.md"

    def journal_id(self, agent: str | None = None) -> str:
        return JOURNAL_PREFIX + note_slug(agent or self.author, 64)

    def _check_dir(self, path: Path) -> None:
        if path.is_symlink():
            raise Refused(f"{path} is a symlink; the memory store refuses to follow it (remove the link)")

    def ensure_layout(self) -> None:
        with self._writing("the memory store's layout (folders, CORE.md, .gitignore)"):
            self.root.mkdir(parents=True, exist_ok=True)
            for sub in (self.notes_dir, self.journal_dir, self.locks_dir):
                self._check_dir(sub)
                sub.mkdir(exist_ok=True)
            gitignore = self.root / ".gitignore"
            if not os.path.lexists(gitignore):
                create_if_missing(gitignore, GITIGNORE)
            if not os.path.lexists(self.core_path):
                create_if_missing(self.core_path, CORE_TEMPLATE)

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn a failed write into one truthful line: what failed, why, and that nothing was written.

        Only for steps that leave nothing behind when they fail (temp file + rename, whole appends).
        """
        try:
            yield
        except OSError as exc:
            raise Refused(write_failure(exc, what, self.root)) from exc

    def _lock(self, name: str) -> fsutil.FileLock:
        """The lock file ``.locks/<name>.lock``: opened without following links (a planted link is replaced)."""
        self._check_dir(self.locks_dir)
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return fsutil.FileLock(self.locks_dir / f"{name.replace('/', '__')}.lock", timeout=LOCK_TIMEOUT_S)

    def read_text(self, doc_id: str) -> str:
        """The raw text of a document's file (read without following a link), e.g. for ``memory show``."""
        path = self.path_of(doc_id)
        try:
            return read_regular(path)[0]
        except FileNotFoundError:
            raise UsageError(
                f"no note {doc_id!r} in {self.root}; find ids with `agentdeck memory search` or `memory recent`"
            ) from None

    # ------------------------------------------------------------------ reading
    def _load(self, doc_id: str) -> tuple[Note, tuple[int, int, int]]:
        path = self.path_of(doc_id)
        try:
            text, fp, mtime = read_regular(path)
        except FileNotFoundError:
            raise UsageError(
                f"no note {doc_id!r} in {self.root}; find ids with `agentdeck memory search` or `memory recent`"
            ) from None
        return self._note_from(doc_id, text, path, mtime), fp

    def _note_from(self, doc_id: str, text: str, path: Path, mtime: float) -> Note:
        if doc_id == CORE_ID:
            # HTML comments (the template's guidance) are not part of what search should find.
            text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
            return Note(id=CORE_ID, title="Core summary", kind="core", author="user", body=text,
                        created=iso_time(mtime), updated=iso_time(mtime), path=path)
        if doc_id.startswith(JOURNAL_PREFIX):
            agent = doc_id[len(JOURNAL_PREFIX):]
            return Note(id=doc_id, title=f"Journal of {agent}", kind="journal", author=agent, body=text,
                        created=iso_time(mtime), updated=iso_time(mtime), path=path)
        note = Note.from_text(doc_id, text, path, mtime)
        note.id = doc_id  # the file name is the id
        return note

    def get(self, doc_id: str) -> Note:
        """A note (or ``journal/<agent>``, ``CORE``) read from its file."""
        return self._load(validate_id(doc_id))[0]

    def exists(self, doc_id: str) -> bool:
        """True when the document is a regular file (a link at its name does not count)."""
        try:
            return stat_mod.S_ISREG(os.lstat(self.path_of(doc_id)).st_mode)
        except FileNotFoundError:
            return False

    def core_text(self) -> str:
        try:
            return read_regular(self.core_path)[0]
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ writing
    def add(self, title: str, body: str = "", tags: Iterable[str] | None = None, kind: str = "note",
            author: str | None = None, supersedes: Iterable[str] | None = None) -> Note:
        """Always a new note (a new file); returns it with its id, path and version 1."""
        title = validate_title(title)
        body = validate_body(body)
        tag_list = validate_tags(list(tags) if tags is not None else [])
        kind = validate_kind(kind)
        superseded = [validate_id(s) for s in (supersedes or [])]
        self.ensure_layout()
        now = utc_now()
        note = Note(
            id="", title=title, kind=kind, tags=tag_list, author=author or self.author, branch=self.branch,
            created=now, updated=now, status="active", supersedes=superseded, version=1, body=body,
        )
        base = f"{time.strftime('%Y%m%d', time.gmtime())}-{note_slug(title)}"
        with self._writing(f"note {title!r}"):
            for n in range(1, 100_000):
                note.id = base if n == 1 else f"{base}-{n}"
                final = self.notes_dir / f"{note.id}.md"
                if os.path.lexists(final):
                    continue
                try:
                    fsutil.atomic_write(final, note.render().encode("utf-8"), exclusive=True)
                except FileExistsError:
                    continue  # taken meanwhile by another writer: the next free id
                break
            else:  # pragma: no cover - 100k notes with one title on one day
                raise Refused(f"too many notes titled {title!r} today; choose a more specific title")
        note.path = final
        self._after_write(note, [final])
        return note

    def update(self, doc_id: str, body: str | None = None, expected_version: int | None = None, *,
               title: str | None = None, tags: Iterable[str] | None = None, kind: str | None = None,
               status: str | None = None, supersedes: Iterable[str] | None = None,
               superseded_by: str | None = None) -> Note:
        """Change a note under its lock; refused when it is no longer at *expected_version*."""
        doc_id = validate_id(doc_id)
        if doc_id == CORE_ID or doc_id.startswith(JOURNAL_PREFIX):
            raise UsageError(
                f"{doc_id} cannot be updated this way: CORE.md belongs to the user (propose changes as a note "
                "of kind core-proposal) and journals are append-only"
            )
        bad_version = isinstance(expected_version, bool) or not isinstance(expected_version, int)
        if expected_version is not None and bad_version:
            raise UsageError("expected_version must be the note's integer version (see `memory show`)")
        changes: dict[str, Any] = {}
        if body is not None:
            changes["body"] = validate_body(body)
        if title is not None:
            changes["title"] = validate_title(title)
        if tags is not None:
            changes["tags"] = validate_tags(list(tags))
        if kind is not None:
            changes["kind"] = validate_kind(kind)
        if status is not None:
            if status not in STATUSES:
                raise UsageError(f"bad status {status!r}; use one of {', '.join(STATUSES)}")
            changes["status"] = status
        if supersedes is not None:
            changes["supersedes"] = [validate_id(s) for s in supersedes]
        if superseded_by is not None:
            changes["superseded_by"] = validate_id(superseded_by) if superseded_by else ""
        path = self.path_of(doc_id)
        self._check_dir(self.notes_dir)
        with self._locked(doc_id):
            note, _ = self._load(doc_id)
            if expected_version is not None and note.version != expected_version:
                raise Refused(
                    f"note {doc_id} is at version {note.version}, not {expected_version}: someone changed it "
                    f"meanwhile; read it again and redo your change on version {note.version}"
                )
            for key, value in changes.items():
                setattr(note, key, value)
            note.version += 1
            note.updated = utc_now()
            note.updated_by = self.author
            with self._writing(f"version {note.version} of note {doc_id}"):
                fsutil.atomic_write(path, note.render().encode("utf-8"))
            note.path = path
            self._after_write(note, [path], index_md=False)
        self._after_write(note, [], index_md=True)
        return note

    def edit_text(self, doc_id: str, text: str, expected_version: int) -> Note:
        """Apply a whole edited file (from ``$EDITOR``): title, kind, tags, status, supersedes, body.

        ``id``, ``author``, ``created`` and ``version`` are the store's, whatever the text says.
        """
        meta, body, had = frontmatter.parse(text)
        if not had:
            return self.update(doc_id, body=text, expected_version=expected_version)
        status = as_str(meta.get("status")).strip().lower() or None
        return self.update(
            doc_id, body=body, expected_version=expected_version,
            title=as_str(meta.get("title")) or None,
            tags=as_list(meta.get("tags")) if "tags" in meta else None,
            kind=as_str(meta.get("kind")) or None,
            status=status,
            supersedes=as_list(meta.get("supersedes")) if "supersedes" in meta else None,
        )

    def forget(self, doc_id: str) -> Note:
        """Hide a wrong note from search (the file stays, with status ``forgotten``)."""
        return self.update(doc_id, status="forgotten")

    def supersede(self, old_id: str, new_id: str) -> tuple[Note, Note]:
        """Mark *old_id* superseded by *new_id* (which records it in ``supersedes``)."""
        old_id, new_id = validate_id(old_id), validate_id(new_id)
        if old_id == new_id:
            raise UsageError("a note cannot supersede itself; give the id of the newer note with --by")
        for doc_id in (old_id, new_id):
            if doc_id == CORE_ID or doc_id.startswith(JOURNAL_PREFIX):
                raise UsageError(f"{doc_id} is not a note; supersede works between notes")
        old = self.get(old_id)
        new = self.get(new_id)
        if new.status != "active":
            raise Refused(f"note {new_id} is {new.status}; supersede with an active note")
        previous = list(new.supersedes)
        new = self.update(new_id, supersedes=[*[s for s in previous if s != old_id], old_id])
        try:
            old = self.update(old_id, status="superseded", superseded_by=new_id)
        except BaseException:
            self.update(new_id, supersedes=previous)  # nothing half done
            raise
        return old, new

    def append_journal(self, text: str, agent: str | None = None) -> Note:
        """Append a dated entry to the agent's journal (``journal/<agent>.md``)."""
        text = validate_body(text, MAX_JOURNAL_ENTRY).strip()
        if not text:
            raise UsageError("the journal entry is empty; write what you did or learned")
        doc_id = self.journal_id(agent)
        self.ensure_layout()
        path = self.path_of(doc_id)
        entry = f"\n## {utc_now()}\n\n{text}\n"
        header = f"# Journal of {one_line(agent or self.author)}\n"
        with self._locked(doc_id):
            try:
                with self._writing(f"the entry for {doc_id}"):
                    fsutil.append_whole(path, entry.encode("utf-8"), header=header.encode("utf-8"))
            except Refused as err:
                if isinstance(err.__cause__, OSError) and err.__cause__.errno == errno.ELOOP:
                    raise Refused(f"{path} is a symlink; the memory store never follows links (remove it)") from None
                raise
            journal = Note(id=doc_id, title=f"Journal of {doc_id[len(JOURNAL_PREFIX):]}", kind="journal", path=path)
            self._after_write(journal, [path], index_md=False)
        try:
            note = self.get(doc_id)
        except (OSError, Refused):  # saved; only reading it back failed
            return journal
        note.warning = journal.warning
        return note
    @contextmanager
    def _locked(self, doc_id: str) -> Iterator[fsutil.FileLock]:
        with self._writing(f"the lock of {doc_id}"):
            lock = self._lock(doc_id)
            try:
                lock.acquire()
            except fsutil.LockTimeout:
                raise Refused(
                    f"note {doc_id} stayed locked for {LOCK_TIMEOUT_S:.0f}s by another writer; try again"
                ) from None
        try:
            yield lock
        finally:
            lock.release()
