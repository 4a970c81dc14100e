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
  ``stat`` (:meth:`MemoryStore.sync`) for edits made outside agentdeck.

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
"""

from __future__ import annotations

import errno
import json
import os
import re
import sqlite3
import threading
import time
import unicodedata
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from agentdeck import fsutil
from agentdeck.errors import Refused, UsageError
from agentdeck.memory import frontmatter
from agentdeck.memory.index import IndexDoc, MemoryIndex

ENV_MEMORY_DIR = "AGENTDECK_MEMORY_DIR"
ENV_MEMORY_BRIEF = "AGENTDECK_MEMORY_BRIEF"

STATUSES = ("active", "superseded", "forgotten")
KINDS = ("note", "decision", "gotcha", "finding", "experiment", "handoff", "todo", "core-proposal")
RESERVED_KINDS = ("journal", "core")
CORE_ID = "CORE"
JOURNAL_PREFIX = "journal/"

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
TAG_RE = re.compile(r"^[\w][\w.+-]{0,39}$")
MAX_TITLE = 200
MAX_TAGS = 20
MAX_BODY = 256 * 1024
MAX_JOURNAL_ENTRY = 64 * 1024
LOCK_TIMEOUT_S = 30.0
SYNC_INTERVAL_S = 1.0

# Frontmatter keys in the order they are written; unknown keys are kept after them.
FIELD_ORDER = (
    "id", "title", "kind", "tags", "author", "branch", "created", "updated", "status",
    "supersedes", "superseded_by", "updated_by", "version",
)

GITIGNORE = ".locks/\n.cache/\n*.tmp\n"
CORE_TEMPLATE = """# Core

<!-- The short, pinned summary every agent is given when it starts (keep it under a page).
     You own this file: edit it freely. Agents propose changes as notes of kind `core-proposal`. -->
"""


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# ----------------------------------------------------------------------------- validation


def validate_id(note_id: Any) -> str:
    """A note id, a ``journal/<agent>`` id or ``CORE``; UsageError otherwise."""
    if not isinstance(note_id, str):
        raise UsageError("a note id must be a string such as 20261126-build-cache-gotcha")
    text = note_id.strip()
    if text.endswith(".md"):
        text = text[:-3]
    if text.startswith("notes/"):
        text = text[len("notes/"):]
    if text.upper() == CORE_ID:
        return CORE_ID
    if text.startswith(JOURNAL_PREFIX):
        name = text[len(JOURNAL_PREFIX):]
        if ID_RE.match(name):
            return JOURNAL_PREFIX + name
    elif ID_RE.match(text):
        return text
    raise UsageError(
        f"bad note id {note_id!r}: ids are letters, digits, '-' and '_' (no paths); "
        "find ids with `agentdeck memory search` or `memory recent`"
    )


def validate_title(title: Any) -> str:
    if not isinstance(title, str) or not title.strip():
        raise UsageError("a note needs a title: one short line saying what it is about")
    clean = " ".join(title.split())
    if any(unicodedata.category(ch) == "Cc" for ch in clean):
        raise UsageError("the title contains control characters; use plain text")
    if len(clean) > MAX_TITLE:
        raise UsageError(f"the title is longer than {MAX_TITLE} characters; shorten it and put details in the body")
    return clean


def validate_kind(kind: Any) -> str:
    if kind is None or kind == "":
        return "note"
    if not isinstance(kind, str) or not KIND_RE.match(kind.strip().lower()):
        raise UsageError(
            f"bad kind {kind!r}: use a lower-case word such as {', '.join(KINDS)}"
        )
    if kind.strip().lower() in RESERVED_KINDS:
        raise UsageError(
            f"kind {kind!r} is reserved for journals and CORE.md; use memory_append_journal for your journal, "
            "or kind core-proposal to propose a change to CORE.md"
        )
    return kind.strip().lower()


def validate_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,\s]+", tags) if t]
    if not isinstance(tags, (list, tuple)):
        raise UsageError("tags must be a list of short words")
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise UsageError("tags must be a list of short words")
        clean = tag.strip().lstrip("#")
        if not TAG_RE.match(clean):
            raise UsageError(f"bad tag {tag!r}: use a short word (letters, digits, '-', '_', '.', '+')")
        if clean not in out:
            out.append(clean)
    if len(out) > MAX_TAGS:
        raise UsageError(f"too many tags ({len(out)}); use at most {MAX_TAGS}")
    return out


def validate_body(body: Any, limit: int = MAX_BODY) -> str:
    if body is None:
        return ""
    if not isinstance(body, str):
        raise UsageError("the body must be text (Markdown)")
    if "\x00" in body:
        raise UsageError("the body contains NUL characters; send plain text")
    if len(body.encode("utf-8", "surrogatepass")) > limit:
        raise UsageError(f"the text is larger than {limit // 1024} KiB; split it into several notes")
    return body.replace("\r\n", "\n")


def note_slug(title: str, max_len: int = 48) -> str:
    ascii_only = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")[:max_len].strip("-")
    return slug or "note"


# ----------------------------------------------------------------------------- the note


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None and str(v) != ""]
    return [str(value)]


def _as_str(value: Any) -> str:
    if value is None or value == []:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


@dataclass
class Note:
    """One document of the store: a note, a journal (``journal/<agent>``) or ``CORE``."""

    id: str
    title: str
    kind: str = "note"
    tags: list[str] = field(default_factory=list)
    author: str = "user"
    branch: str = ""
    created: str = ""
    updated: str = ""
    status: str = "active"
    supersedes: list[str] = field(default_factory=list)
    superseded_by: str = ""
    updated_by: str = ""
    version: int = 1
    body: str = ""
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Set by a write that saved the file but could not update the search index (never written to the file).
    warning: str = ""

    def meta(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id, "title": self.title, "kind": self.kind, "tags": list(self.tags),
            "author": self.author, "branch": self.branch, "created": self.created, "updated": self.updated,
            "status": self.status, "supersedes": list(self.supersedes),
        }
        if self.superseded_by:
            data["superseded_by"] = self.superseded_by
        if self.updated_by:
            data["updated_by"] = self.updated_by
        data["version"] = self.version
        for key, value in self.extra.items():
            if key not in data:
                data[key] = value
        return data

    def render(self) -> str:
        return frontmatter.dump(self.meta(), self.body)

    @classmethod
    def from_text(cls, note_id: str, text: str, path: Path | None = None, mtime: float | None = None) -> "Note":
        """Parse a note file; a file without frontmatter is all body (title from its heading)."""
        meta, body, _ = frontmatter.parse(text)
        title = _as_str(meta.get("title")).strip()
        if not title:
            heading = re.search(r"^#\s+(.+)$", body, re.MULTILINE)
            title = heading.group(1).strip() if heading else note_id
        stamp = _iso(mtime) if mtime is not None else ""
        status = _as_str(meta.get("status")).strip().lower() or "active"
        if status not in STATUSES:
            status = "active"
        try:
            version = int(meta.get("version") or 1)
        except (TypeError, ValueError):
            version = 1
        kind = _as_str(meta.get("kind")).strip().lower() or "note"
        extra = {k: v for k, v in meta.items() if k not in FIELD_ORDER}
        return cls(
            id=note_id, title=" ".join(title.split())[:MAX_TITLE], kind=kind,
            tags=_as_list(meta.get("tags")), author=_as_str(meta.get("author")) or "user",
            branch=_as_str(meta.get("branch")), created=_as_str(meta.get("created")) or stamp,
            updated=_as_str(meta.get("updated")) or _as_str(meta.get("created")) or stamp,
            status=status, supersedes=_as_list(meta.get("supersedes")),
            superseded_by=_as_str(meta.get("superseded_by")), updated_by=_as_str(meta.get("updated_by")),
            version=max(version, 1), body=body, path=path, extra=extra,
        )

    def to_json(self, body: bool = True) -> dict[str, Any]:
        data = self.meta()
        for key in list(self.extra):
            data.pop(key, None)
        data["path"] = str(self.path) if self.path else ""
        if body:
            data["body"] = self.body
        return data


# ----------------------------------------------------------------------------- locations


@dataclass(frozen=True)
class Locations:
    memory_dir: Path
    state_dir: Path | None
    repo_root: Path | None

    @property
    def index_path(self) -> Path:
        if self.state_dir is not None:
            return self.state_dir / "memory-index.db"
        return self.memory_dir / ".cache" / "index.db"


def memory_dir_for(repo_root: Path | None, state_dir: Path, configured: str) -> Path:
    """``[memory] dir`` (relative = from the repository root) or ``<state dir>/memory``."""
    if configured:
        path = Path(configured).expanduser()
        if not path.is_absolute():
            if repo_root is None:
                raise UsageError(
                    f"[memory] dir {configured!r} is relative but the repository root is unknown; "
                    "use an absolute path or run inside the repository"
                )
            path = repo_root / path
        return path.absolute()
    return state_dir / "memory"


def locate(cwd: str | os.PathLike[str] | None = None, repo: Any = None, config: Any = None) -> Locations:
    """Where the memory of a repository lives.

    An explicit *repo* (RepoPaths: the deck, ``--repo``) decides alone.  Otherwise
    the agent's environment comes first, so every process an agent starts finds
    the same store wherever its cwd is: ``AGENTDECK_MEMORY_DIR``, then
    ``AGENTDECK_STATE_DIR`` (both set for agents by their launch); then the
    repository containing *cwd*.
    """
    from agentdeck import paths

    state_dir: Path | None = None
    root: Path | None = None
    env_memory = "" if repo is not None else os.environ.get(ENV_MEMORY_DIR, "").strip()
    env_state = "" if repo is not None else os.environ.get(paths.ENV_STATE_DIR, "").strip()
    if repo is not None:
        state_dir, root = Path(repo.state_dir), Path(repo.root)
    elif env_state:
        state_dir = Path(env_state).expanduser().absolute()
        env_root = os.environ.get(paths.ENV_REPO, "").strip()
        if env_root:
            root = Path(env_root)
        elif state_dir.parent.name == ".git":
            root = state_dir.parent.parent
    else:
        try:
            found = paths.find_repo(cwd)
        except UsageError:
            if not env_memory:
                raise
        else:
            state_dir, root = found.state_dir, found.root
    if env_memory:
        return Locations(Path(env_memory).expanduser().absolute(), state_dir, root)
    assert state_dir is not None
    if config is None:
        from agentdeck.config import load_config

        config = load_config(root)
    return Locations(memory_dir_for(root, state_dir, config.memory.dir), state_dir, root)


# ----------------------------------------------------------------------------- the store


class MemoryStore:
    """The memory of one repository: notes, journals, CORE, and their search index."""

    def __init__(self, root: Path | str, index_path: Path | str | None = None, *,
                 author: str | None = None, branch: str | None = None,
                 worktree: Path | str | None = None):
        from agentdeck import paths

        self.root = Path(root).expanduser().absolute()
        self.notes_dir = self.root / "notes"
        self.journal_dir = self.root / "journal"
        self.core_path = self.root / "CORE.md"
        self.index_md_path = self.root / "INDEX.md"
        self.locks_dir = self.root / ".locks"
        self.index_path = Path(index_path) if index_path else self.root / ".cache" / "index.db"
        self.author = (author or os.environ.get(paths.ENV_AGENT) or "user").strip() or "user"
        self._branch = branch
        self._worktree = Path(worktree) if worktree else None
        self._index: MemoryIndex | None = None
        self._index_lock = threading.Lock()
        self._last_sync = 0.0

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, cwd: str | os.PathLike[str] | None = None, repo: Any = None, config: Any = None,
             author: str | None = None) -> "MemoryStore":
        loc = locate(cwd, repo, config)
        return cls(loc.memory_dir, loc.index_path, author=author, worktree=Path(cwd) if cwd else None)

    @classmethod
    def for_deck(cls, deck: Any) -> "MemoryStore":
        """The store of a :class:`agentdeck.deck.Deck` (``deck.memory``)."""
        return cls.open(repo=deck.repo, config=deck.config)

    @classmethod
    def from_env(cls, cwd: str | os.PathLike[str] | None = None) -> "MemoryStore":
        """For processes started inside an agent pane (the MCP server, hooks)."""
        return cls.open(cwd=cwd)

    def close(self) -> None:
        if self._index is not None:
            self._index.close()

    def __enter__(self) -> "MemoryStore":
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
                from agentdeck import git

                self._branch = git.current_branch(where) or ""
            except Exception:  # not a repository, git missing: the branch is optional
                self._branch = ""
        return self._branch

    @property
    def index(self) -> MemoryIndex:
        """The search index, built from the files on first use."""
        return self._get_index(build=True)

    def _get_index(self, build: bool) -> MemoryIndex:
        with self._index_lock:
            if self._index is None:
                cache = self.index_path.parent
                if cache.parent == self.root and cache.is_symlink():
                    _unlink(cache)  # a link planted as .cache/ inside the store: the index stays inside
                index = MemoryIndex(self.index_path, str(self.root))
                if build:
                    try:
                        index.ensure_built(self._load_all)
                    except BaseException:
                        index.close()
                        raise
                self._index = index
            return self._index

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

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

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
                _create_if_missing(gitignore, GITIGNORE)
            if not os.path.lexists(self.core_path):
                _create_if_missing(self.core_path, CORE_TEMPLATE)

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """Turn a failed write into one truthful line: what failed, why, and that nothing was written.

        Only for steps that leave nothing behind when they fail (temp file + rename, whole appends).
        """
        try:
            yield
        except OSError as exc:
            raise Refused(_write_failure(exc, what, self.root)) from exc

    def _lock(self, name: str) -> fsutil.FileLock:
        """The lock file ``.locks/<name>.lock``: opened without following links (a planted link is replaced)."""
        self._check_dir(self.locks_dir)
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return fsutil.FileLock(self.locks_dir / f"{name.replace('/', '__')}.lock", timeout=LOCK_TIMEOUT_S)

    def read_text(self, doc_id: str) -> str:
        """The raw text of a document's file (read without following a link), e.g. for ``memory show``."""
        path = self.path_of(doc_id)
        try:
            return self._read_file(path)[0]
        except FileNotFoundError:
            raise UsageError(
                f"no note {doc_id!r} in {self.root}; find ids with `agentdeck memory search` or `memory recent`"
            ) from None

    # ------------------------------------------------------------------ reading
    def _read_file(self, path: Path) -> tuple[str, tuple[int, int, int], float]:
        """Text, fingerprint and mtime of a regular file, refusing symlinks (and FIFOs, devices: no hang)."""
        import stat as stat_mod

        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Refused(f"{path} is a symlink; the memory store never follows links (remove it)") from exc
            raise
        try:
            st = os.fstat(fd)
            if stat_mod.S_ISDIR(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
            if not stat_mod.S_ISREG(st.st_mode):
                raise Refused(f"{path} is not a regular file; the memory store reads only plain files (remove it)")
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(fd)
        text = b"".join(chunks).decode("utf-8", errors="replace")
        return text, (st.st_ino, st.st_mtime_ns, st.st_size), st.st_mtime

    def _load(self, doc_id: str) -> tuple[Note, tuple[int, int, int]]:
        path = self.path_of(doc_id)
        try:
            text, fp, mtime = self._read_file(path)
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
                        created=_iso(mtime), updated=_iso(mtime), path=path)
        if doc_id.startswith(JOURNAL_PREFIX):
            agent = doc_id[len(JOURNAL_PREFIX):]
            return Note(id=doc_id, title=f"Journal of {agent}", kind="journal", author=agent, body=text,
                        created=_iso(mtime), updated=_iso(mtime), path=path)
        note = Note.from_text(doc_id, text, path, mtime)
        note.id = doc_id  # the file name is the id
        return note

    def get(self, doc_id: str) -> Note:
        """A note (or ``journal/<agent>``, ``CORE``) read from its file."""
        return self._load(validate_id(doc_id))[0]

    def exists(self, doc_id: str) -> bool:
        """True when the document is a regular file (a link at its name does not count)."""
        import stat as stat_mod

        try:
            return stat_mod.S_ISREG(os.lstat(self.path_of(doc_id)).st_mode)
        except FileNotFoundError:
            return False

    def core_text(self) -> str:
        try:
            return self._read_file(self.core_path)[0]
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
        status = _as_str(meta.get("status")).strip().lower() or None
        return self.update(
            doc_id, body=body, expected_version=expected_version,
            title=_as_str(meta.get("title")) or None,
            tags=_as_list(meta.get("tags")) if "tags" in meta else None,
            kind=_as_str(meta.get("kind")) or None,
            status=status,
            supersedes=_as_list(meta.get("supersedes")) if "supersedes" in meta else None,
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

    # ------------------------------------------------------------------ index upkeep
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
            reason = _reason(problem, self.index_path.parent)
            note.warning = (
                f"{what} {note.id}; index not updated ({reason}): it catches up on the next search, "
                "or run `agentdeck memory reindex`"
            )

    def _doc_for(self, path: Path) -> IndexDoc | None:
        doc_id = self.id_for_path(path)
        return None if doc_id is None else self._doc(doc_id, path, self._rel(path))

    def _doc(self, doc_id: str, path: Path, rel: str) -> IndexDoc | None:
        try:
            text, fp, mtime = self._read_file(path)
        except (FileNotFoundError, Refused, IsADirectoryError):
            return None
        note = self._note_from(doc_id, text, path, mtime)
        return IndexDoc(
            id=note.id, path=rel, title=note.title, kind=note.kind, tags=note.tags,
            author=note.author, branch=note.branch, created=note.created, updated=note.updated,
            status=note.status, version=note.version, body=note.body, fingerprint=fp,
        )

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
        import stat as stat_mod

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
                _unlink(pending)
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


# ----------------------------------------------------------------------------- file helpers


def _create_if_missing(path: Path, text: str) -> None:
    """Create *path* whole with *text* unless something is already there (never half a file)."""
    try:
        fsutil.atomic_write(path, text.encode("utf-8"), exclusive=True)
    except FileExistsError:
        pass


def _reason(exc: BaseException, where: Path | None = None) -> str:
    if fsutil.disk_full(exc, where):
        return "disk full"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _write_failure(exc: OSError, what: str, root: Path) -> str:
    if fsutil.disk_full(exc):
        return (f"disk full: could not write {what} in {root}; nothing was written "
                "(free some space and try again)")
    where = exc.filename or root
    return f"could not write {what} ({exc.strerror or exc}: {where}); nothing was written"


def one_line(text: str) -> str:
    """*text* with every control, format and line/paragraph separator character shown as an escape."""
    return "".join(
        ch if ch == " " or unicodedata.category(ch) not in _UNSAFE_CATEGORIES else _escape_char(ch)
        for ch in text
    )


_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape_char(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _unlink(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
