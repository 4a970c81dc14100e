"""The memory's documents: a note's fields, what each accepts, and the note as a file.

A note is one Markdown file with front matter (:mod:`agentdeck.memory.frontmatter` writes and
reads it, escaping every value so nothing forges another field); :class:`Note` is its parsed form.
The ``validate_*`` functions hold every value an agent or a user sends to the limits here, each
error one line naming the fix.  Pure: no file is read or written in this module.
"""

from __future__ import annotations

import re
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentdeck.errors import UsageError
from agentdeck.memory import frontmatter

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

# Frontmatter keys in the order they are written; unknown keys are kept after them.
FIELD_ORDER = (
    "id", "title", "kind", "tags", "author", "branch", "created", "updated", "status",
    "supersedes", "superseded_by", "updated_by", "version",
)

def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def iso_time(ts: float) -> str:
    """*ts* (seconds since the epoch) as ``YYYY-MM-DDTHH:MM:SSZ``."""
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


def as_list(value: Any) -> list[str]:
    """A front-matter value as a list of strings (one value is a list of one)."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v is not None and str(v) != ""]
    return [str(value)]


def as_str(value: Any) -> str:
    """A front-matter value as one string (a list joined with commas)."""
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
    def from_text(cls, note_id: str, text: str, path: Path | None = None, mtime: float | None = None) -> Note:
        """Parse a note file; a file without frontmatter is all body (title from its heading)."""
        meta, body, _ = frontmatter.parse(text)
        title = as_str(meta.get("title")).strip()
        if not title:
            heading = re.search(r"^#\s+(.+)$", body, re.MULTILINE)
            title = heading.group(1).strip() if heading else note_id
        stamp = iso_time(mtime) if mtime is not None else ""
        status = as_str(meta.get("status")).strip().lower() or "active"
        if status not in STATUSES:
            status = "active"
        try:
            version = int(meta.get("version") or 1)
        except (TypeError, ValueError):
            version = 1
        kind = as_str(meta.get("kind")).strip().lower() or "note"
        extra = {k: v for k, v in meta.items() if k not in FIELD_ORDER}
        return cls(
            id=note_id, title=" ".join(title.split())[:MAX_TITLE], kind=kind,
            tags=as_list(meta.get("tags")), author=as_str(meta.get("author")) or "user",
            branch=as_str(meta.get("branch")), created=as_str(meta.get("created")) or stamp,
            updated=as_str(meta.get("updated")) or as_str(meta.get("created")) or stamp,
            status=status, supersedes=as_list(meta.get("supersedes")),
            superseded_by=as_str(meta.get("superseded_by")), updated_by=as_str(meta.get("updated_by")),
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
