"""A small, forgiving reader and a strict writer for the notes' YAML-ish frontmatter.

Only what notes need: ``key: value`` lines between two ``---`` lines, where a
value is a plain word, a double-quoted (JSON-escaped) or single-quoted string,
an integer, ``true``/``false``/``null``, or a list written either as a flow list
(``[a, "b c"]``) or as a block of ``- item`` lines.  The writer always produces
text a real YAML parser reads back to the same values; the reader accepts what a
person is likely to type by hand and never raises: a line it cannot read is
skipped and text without frontmatter is all body.
"""

from __future__ import annotations

import json
import re
from typing import Any

_KEY_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*:(?:\s+(.*)|\s*)$")
_INT_RE = re.compile(r"^[-+]?\d+$")
# Strings written without quotes: nothing YAML could read as another type or syntax.
_PLAIN_RE = re.compile(r"^[A-Za-z0-9_./][A-Za-z0-9 _./@+()-]*$")
# ...except what YAML would read as a number or a date.
_NUMBERISH_RE = re.compile(
    r"^[-+]?(\.?\d[\d_]*\.?[\d_]*([eE][-+]?\d+)?|0[xXoObB][0-9a-fA-F_]+|\.(inf|nan))$"  # numbers
    r"|^\d{4}-\d\d?-\d\d?",  # dates and timestamps
    re.I,
)
_SPECIAL_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "none", "~", "y", "n"}


# ----------------------------------------------------------------------------- writing


def dump_value(value: Any) -> str:
    """One value as YAML flow text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(dump_value(v) for v in value) + "]"
    text = str(value)
    if (text and _PLAIN_RE.match(text) and not text.endswith(" ") and text.lower() not in _SPECIAL_WORDS
            and not _NUMBERISH_RE.match(text)):
        return text
    return json.dumps(text, ensure_ascii=False)


def dump(meta: dict[str, Any], body: str) -> str:
    """The whole file: frontmatter, a blank line, the body (ending with one newline)."""
    lines = ["---"]
    for key, value in meta.items():
        lines.append(f"{key}: {dump_value(value)}")
    lines.append("---")
    text = "\n".join(lines) + "\n"
    body = body.strip("\n")
    if body:
        text += "\n" + body + "\n"
    return text


# ----------------------------------------------------------------------------- reading


def _split_flow(inner: str) -> list[str]:
    """Split the inside of ``[...]`` on commas outside quotes."""
    items: list[str] = []
    current: list[str] = []
    quote = ""
    escaped = False
    for ch in inner:
        if quote:
            current.append(ch)
            if quote == '"' and ch == "\\" and not escaped:
                escaped = True
                continue
            if ch == quote and not escaped:
                quote = ""
            escaped = False
            continue
        if ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch == ",":
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    tail = "".join(current).strip()
    if tail or items:
        items.append(tail)
    return [item for item in items if item != ""]


def parse_value(raw: str) -> Any:
    text = raw.strip()
    if not text:
        return ""
    if text.startswith('"'):
        end = _closing_double_quote(text)
        if end > 0:
            try:
                return json.loads(text[: end + 1])
            except ValueError:
                return text[1:end]
        return text[1:]
    if text.startswith("'"):
        end = text.rfind("'")
        if end > 0:
            return text[1:end].replace("''", "'")
        return text[1:]
    if text.startswith("["):
        end = text.rfind("]")
        inner = text[1:end] if end > 0 else text[1:]
        return [parse_value(item) for item in _split_flow(inner)]
    # A plain scalar: drop a trailing comment.
    comment = re.search(r"\s#", text)
    if comment:
        text = text[: comment.start()].rstrip()
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("null", "~"):
        return None
    if _INT_RE.match(text):
        try:
            return int(text)
        except ValueError:  # pragma: no cover - regex guarantees digits
            return text
    return text


def _closing_double_quote(text: str) -> int:
    escaped = False
    for i in range(1, len(text)):
        ch = text[i]
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return i
    return -1


def parse(text: str) -> tuple[dict[str, Any], str, bool]:
    """``(meta, body, had_frontmatter)``; never raises."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text, False
    end = None
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            end = i
            break
    if end is None:
        return {}, text, False
    meta: dict[str, Any] = {}
    list_key: str | None = None
    for line in lines[1:end]:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if list_key is not None and (stripped.startswith("- ") or stripped == "-"):
            meta[list_key].append(parse_value(stripped[1:]))
            continue
        match = _KEY_RE.match(line.rstrip())
        if not match:
            list_key = None
            continue
        key, raw = match.group(1), match.group(2)
        if raw is None or raw.strip() == "":
            meta[key] = []
            list_key = key
        else:
            meta[key] = parse_value(raw)
            list_key = None
    body_lines = lines[end + 1 :]
    while body_lines and not body_lines[0].strip():
        body_lines.pop(0)
    body = "\n".join(body_lines)
    if body and text.endswith("\n"):
        body += "\n"
    return meta, body, True
