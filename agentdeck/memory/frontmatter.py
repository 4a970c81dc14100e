"""A small, forgiving reader and a strict writer for the notes' YAML-ish frontmatter.

Only what notes need: ``key: value`` lines between two ``---`` lines, where a
value is a plain word, a double-quoted (YAML/JSON-escaped) or single-quoted
string, an integer, ``true``/``false``/``null``, or a list written either as a
flow list (``[a, "b c"]``) or as a block of ``- item`` lines.  The writer always
produces text a real YAML parser reads back to the same values; the reader
accepts what a person is likely to type by hand and never raises: a line it
cannot read is skipped and text without frontmatter is all body.

Nothing a value holds can forge another line: the writer escapes every control,
format, surrogate, private-use or unassigned character and every line or
paragraph separator (U+2028, U+0085, form feed, U+001E, a lone CR ...), and the
reader splits lines only on ``\n`` (never ``str.splitlines()``).  The body is
kept byte for byte: what :func:`dump` writes, :func:`parse` returns unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

_KEY_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)[ \t]*:(?:[ \t]+(.*)|[ \t]*)$")
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
# Characters always written as an escape: controls, format characters, line/paragraph separators,
# surrogates, private use and unassigned code points (none of them may reach the file raw).
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
# YAML's double-quoted escapes (a superset of JSON's), for the reader.
_SIMPLE_UNESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r",
    "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028",
    "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


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
    return quote(text)


def quote(text: str) -> str:
    """A double-quoted scalar that YAML and this reader decode to *text*, on one line, nothing raw but print."""
    out = ['"']
    for ch in text:
        short = _SHORT_ESCAPES.get(ch)
        if short is not None:
            out.append(short)
        elif unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


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
    text = raw.strip(" \t\r")
    if not text:
        return ""
    if text.startswith('"'):
        end = _closing_double_quote(text)
        return unescape(text[1:end] if end > 0 else text[1:])
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


def unescape(inner: str) -> str:
    """The inside of a double-quoted scalar, YAML (and so JSON) escapes decoded; never raises.

    An escape it does not know is kept as written; ``\\uD83D\\uDE00`` pairs combine.
    """
    out: list[str] = []
    i, n = 0, len(inner)
    while i < n:
        ch = inner[i]
        if ch != "\\" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        kind = inner[i + 1]
        if kind in _SIMPLE_UNESCAPES:
            out.append(_SIMPLE_UNESCAPES[kind])
            i += 2
            continue
        width = _HEX_ESCAPES.get(kind)
        digits = inner[i + 2: i + 2 + width] if width else ""
        if width and len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
            code = int(digits, 16)
            i += 2 + width
            if 0xD800 <= code < 0xDC00 and inner[i: i + 2] == "\\u":  # a JSON surrogate pair
                low = inner[i + 2: i + 6]
                if len(low) == 4 and all(c in "0123456789abcdefABCDEF" for c in low) and \
                        0xDC00 <= int(low, 16) < 0xE000:
                    code = 0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                    i += 6
            out.append(chr(code) if code <= 0x10FFFF else "\ufffd")
            continue
        out.append(ch)  # unknown escape: keep the backslash as written
        i += 1
    return "".join(out)


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


def _is_marker(line: str, *markers: str) -> bool:
    """A ``---`` line (trailing blanks and a CRLF's ``\\r`` allowed, nothing else)."""
    return line.rstrip(" \t\r") in markers


def parse(text: str) -> tuple[dict[str, Any], str, bool]:
    """``(meta, body, had_frontmatter)``; never raises.

    Lines are split on ``\\n`` only.  The body is the text after the closing
    ``---`` line and the empty lines right after it, unchanged.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    first_end = text.find("\n")
    if first_end < 0 or not _is_marker(text[:first_end], "---"):
        return {}, text, False
    lines: list[str] = []
    pos = first_end + 1
    body_start = None
    while pos < len(text):
        nl = text.find("\n", pos)
        line = text[pos:] if nl < 0 else text[pos:nl]
        pos = len(text) if nl < 0 else nl + 1
        if _is_marker(line, "---", "..."):
            body_start = pos
            break
        lines.append(line)
    if body_start is None:
        return {}, text, False
    meta: dict[str, Any] = {}
    list_key: str | None = None
    for line in lines:
        line = line.rstrip("\r")
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        if list_key is not None and (stripped.startswith("- ") or stripped == "-"):
            meta[list_key].append(parse_value(stripped[1:]))
            continue
        match = _KEY_RE.match(line.rstrip(" \t"))
        if not match:
            list_key = None
            continue
        key, raw = match.group(1), match.group(2)
        if raw is None or raw.strip(" \t") == "":
            meta[key] = []
            list_key = key
        else:
            meta[key] = parse_value(raw)
            list_key = None
    # Skip the empty lines between the frontmatter and the body (the writer puts one).
    while True:
        if text.startswith("\n", body_start):
            body_start += 1
        elif text.startswith("\r\n", body_start):
            body_start += 2
        else:
            break
    return meta, text[body_start:], True
