"""What an agent changed: its branch plus uncommitted work against the merge-base.

The worktree's current state (tracked changes and untracked files, minus the
copied setup files) is snapshotted into a tree with a private index, then
compared with the merge-base of the agent's HEAD and its base branch.  So
renames of untracked files are found, binary files are told apart by git's own
rules, and nothing the agent can see is touched.

Data for every face: :class:`DiffResult` → :class:`FileDiff` → :class:`Hunk` →
:class:`DiffLine` (line numbers included, ready for a syntax-highlighted view),
plus the raw patch text per file for plain output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentdeck import git, snapshots
from agentdeck.errors import Refused
from agentdeck.review import _git

STATUS_NAMES = {
    "A": "added",
    "M": "modified",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "T": "typechange",
    "U": "unmerged",
}

_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)$")


@dataclass
class DiffLine:
    kind: str  # "+" added, "-" removed, " " context, "\\" no-newline marker
    text: str
    old: int | None  # line number in the old file (None for added lines)
    new: int | None  # line number in the new file (None for removed lines)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "old": self.old, "new": self.new}


@dataclass
class Hunk:
    header: str
    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    section: str = ""
    lines: list[DiffLine] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header, "old_start": self.old_start, "old_lines": self.old_lines,
            "new_start": self.new_start, "new_lines": self.new_lines,
            "lines": [ln.to_json() for ln in self.lines],
        }


@dataclass
class FileDiff:
    path: str
    status: str  # added | modified | deleted | renamed | copied | typechange
    added: int = 0
    removed: int = 0
    binary: bool = False
    old_path: str | None = None  # set for renames and copies
    similarity: int | None = None  # rename/copy similarity in percent
    old_mode: str = ""
    new_mode: str = ""
    patch: str = ""  # git's patch text for this file (empty with stat-only diffs)
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def language(self) -> str:
        """A Pygments lexer name for syntax highlighting ("text" when unknown)."""
        return guess_language(self.path)

    @property
    def display_path(self) -> str:
        return f"{self.old_path} → {self.path}" if self.old_path and self.old_path != self.path else self.path

    def to_json(self, hunks: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path, "old_path": self.old_path, "status": self.status,
            "binary": self.binary, "added": self.added, "removed": self.removed,
        }
        if self.similarity is not None:
            out["similarity"] = self.similarity
        if hunks:
            out["hunks"] = [h.to_json() for h in self.hunks]
        return out


@dataclass
class DiffResult:
    merge_base: str
    head: str | None  # the branch commit of the worktree (None: empty branch)
    tree: str  # the snapshot tree compared with merge_base
    uncommitted: bool  # True when the worktree has changes beyond HEAD
    files: list[FileDiff] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def removed(self) -> int:
        return sum(f.removed for f in self.files)

    @property
    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    def file(self, path: str) -> FileDiff | None:
        for f in self.files:
            if f.path == path or f.old_path == path:
                return f
        return None

    def patch_text(self) -> str:
        return "".join(f.patch if f.patch.endswith("\n") or not f.patch else f.patch + "\n" for f in self.files)

    def to_json(self, hunks: bool = True) -> dict[str, Any]:
        return {
            "merge_base": self.merge_base, "head": self.head, "uncommitted": self.uncommitted,
            "files": [f.to_json(hunks) for f in self.files],
            "added": self.added, "removed": self.removed,
        }


# --------------------------------------------------------------------------- core


@dataclass
class Side:
    """Where one agent's work is: plain inputs for the core functions."""

    root: Path  # the repository's main checkout
    worktree: Path | None  # the agent's worktree (None or missing: committed branch only)
    branch: str
    base_branch: str
    base_commit: str
    ignore: frozenset[str] = frozenset()  # copied setup files, relative to the worktree


def side_state(side: Side, base: str) -> tuple[str, str | None, str]:
    """(state commit, head, merge_base with *base*) for *side*: a snapshot when the worktree exists."""
    snap = _snap(side, want_commit=True)
    state = snap.commit or snap.tree
    return state, snap.head, _merge_base(side, snap.head, base)


def _snap(side: Side, want_commit: bool = False) -> snapshots.Snapshot:
    if _git.worktree_ok(side.worktree):
        return _git.snapshot(side.worktree, side.ignore, want_commit=want_commit)  # type: ignore[arg-type]
    head = _git.branch_tip(side.root, side.branch)
    return snapshots.Snapshot(tree=_git.tree_of(side.root, head), head=head, dirty=False, commit=head)


def _merge_base(side: Side, head: str | None, base: str) -> str:
    return (_git.merge_base(side.root, head, base) if head else None) or side.base_commit or base


def _state_tree(side: Side) -> tuple[str, str | None, str, bool]:
    """(tree, head, merge_base, uncommitted)."""
    snap = _snap(side)
    base = _git.base_tip(side.root, side.base_branch, side.base_commit)
    return snap.tree, snap.head, _merge_base(side, snap.head, base), snap.dirty


def diff_size(side: Side) -> tuple[int, int]:
    """(lines added, lines removed) of the agent's work: the cheap call behind the deck's list."""
    tree, _head, mb, _dirty = _state_tree(side)
    out = git.run(side.root, "diff-tree", "-r", "-M", "--numstat", "-z", mb, tree)
    added = removed = 0
    for file in _parse(out, raw=False):
        added += file.added
        removed += file.removed
    return added, removed


def compute_diff(side: Side, patch: bool = True, paths: Iterable[str] | None = None) -> DiffResult:
    """The full diff of the agent's work (per-file stats; hunks and patch text with *patch*).

    *paths* limits the patch text (not the file list) to some files, so a view can
    load the hunks of the file being shown only.
    """
    tree, head, mb, dirty = _state_tree(side)
    out = git.run(side.root, "diff-tree", "-r", "-M", "--raw", "--numstat", "-z", mb, tree)
    files = _parse(out, raw=True)
    result = DiffResult(merge_base=mb, head=head, tree=tree, uncommitted=dirty, files=files)
    if patch and files:
        wanted = set(paths) if paths is not None else None
        chosen = [f for f in files if wanted is None or f.path in wanted or f.old_path in wanted]
        if chosen:
            _attach_patches(side.root, mb, tree, chosen, whole=wanted is None)
    return result


def _parse(out: str, raw: bool) -> list[FileDiff]:
    """Parse ``--raw --numstat -z`` (or ``--numstat -z`` alone) output of diff-tree."""
    tokens = out.split("\0")
    files: list[FileDiff] = []
    i = 0
    n = len(tokens)
    # Raw entries first: ":oldmode newmode oldsha newsha STATUS\0path[\0path2]\0"
    while raw and i < n and tokens[i].startswith(":"):
        meta = tokens[i][1:].split(" ")
        old_mode, new_mode, letter = meta[0], meta[1], meta[4]
        code, score = letter[0], letter[1:]
        if code in "RC":
            old_path, path = tokens[i + 1], tokens[i + 2]
            i += 3
        else:
            old_path, path = None, tokens[i + 1]
            i += 2
        files.append(
            FileDiff(
                path=path, old_path=old_path, status=STATUS_NAMES.get(code, "modified"),
                similarity=int(score) if score.isdigit() and code in "RC" else None,
                old_mode=old_mode, new_mode=new_mode,
            )
        )
    # Then numstat entries: "A\tR\tpath\0" or "A\tR\t\0old\0new\0" for renames.
    counts: list[tuple[int, int, bool, str, str | None]] = []
    while i < n:
        tok = tokens[i]
        if not tok:
            i += 1
            continue
        a, r, rest = tok.split("\t", 2)
        if rest:
            path, old = rest, None
            i += 1
        else:
            old, path = tokens[i + 1], tokens[i + 2]
            i += 3
        binary = a == "-"
        counts.append((0 if binary else int(a), 0 if binary else int(r), binary, path, old))
    if raw:
        for file, (added, removed, binary, _path, _old) in zip(files, counts):
            file.added, file.removed, file.binary = added, removed, binary
        return files
    return [
        FileDiff(path=p, old_path=o, status="renamed" if o else "modified", added=a, removed=r, binary=b)
        for a, r, b, p, o in counts
    ]


def _attach_patches(root: Path, mb: str, tree: str, files: list[FileDiff], whole: bool) -> None:
    args = ["-c", "core.quotepath=false", "diff-tree", "-r", "-M", "-p", "--no-color", "--no-ext-diff", mb, tree]
    order = files
    if not whole:
        # Limit to the chosen files; list them in git's own order to pair each patch chunk.
        spec = ["--"] + sorted({f":(literal){p}" for f in files for p in (f.path, f.old_path) if p})
        args += spec
        listed = _parse(git.run(root, "diff-tree", "-r", "-M", "-z", "--raw", mb, tree, *spec), raw=True)
        by_path = {f.path: f for f in files}
        order = [by_path.get(f.path) for f in listed]  # type: ignore[misc]
    proc = git.run_proc(root, *args)
    if proc.returncode != 0:
        raise Refused(f"git diff-tree failed: {proc.stderr.strip()}")
    chunks = _split_patch(proc.stdout)
    if len(chunks) != len(order):  # should not happen; never pair a patch with the wrong file
        return
    for file, chunk in zip(order, chunks):
        if file is not None:
            file.patch = chunk
            file.hunks = parse_hunks(chunk)


def _split_patch(text: str) -> list[str]:
    chunks: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.startswith("diff --git ") and current:
            chunks.append("\n".join(current) + "\n")
            current = []
        current.append(line)
    while current and current[-1] == "":
        current.pop()
    if current:
        chunks.append("\n".join(current) + "\n")
    return chunks


def parse_hunks(patch: str) -> list[Hunk]:
    """Hunks with numbered lines from one file's patch text."""
    hunks: list[Hunk] = []
    current: Hunk | None = None
    old_no = new_no = 0
    for line in patch.split("\n"):
        m = _HUNK_RE.match(line)
        if m:
            old_start, new_start = int(m.group(1)), int(m.group(3))
            current = Hunk(
                header=line, old_start=old_start,
                old_lines=int(m.group(2)) if m.group(2) is not None else 1,
                new_start=new_start,
                new_lines=int(m.group(4)) if m.group(4) is not None else 1,
                section=m.group(5) or "",
            )
            hunks.append(current)
            old_no, new_no = old_start, new_start
            continue
        if current is None or not line:
            continue
        kind, text = line[0], line[1:]
        if kind == "+":
            current.lines.append(DiffLine("+", text, None, new_no))
            new_no += 1
        elif kind == "-":
            current.lines.append(DiffLine("-", text, old_no, None))
            old_no += 1
        elif kind == " ":
            current.lines.append(DiffLine(" ", text, old_no, new_no))
            old_no += 1
            new_no += 1
        elif kind == "\\":
            current.lines.append(DiffLine("\\", text.strip(), None, None))
    return hunks


# --------------------------------------------------------------------------- presentation helpers


def guess_language(path: str) -> str:
    """The Pygments lexer alias for *path* (used with rich's ``Syntax``); "text" when unknown."""
    try:  # pygments and rich: only for a face that draws with rich; the CLI never loads them
        from pygments.lexers import get_lexer_for_filename
        from pygments.util import ClassNotFound
    except ImportError:  # pragma: no cover - pygments ships with rich
        return "text"
    try:
        lexer = get_lexer_for_filename(Path(path).name)
    except ClassNotFound:
        return "text"
    return lexer.aliases[0] if lexer.aliases else "text"


def stat_lines(result: DiffResult) -> list[str]:
    """``--stat`` text: one line per file, then a summary line."""
    lines = []
    width = max((len(f.display_path) for f in result.files), default=0)
    for f in result.files:
        counts = "binary" if f.binary else f"+{f.added} -{f.removed}"
        lines.append(f" {f.display_path.ljust(width)} | {counts:>12}  {f.status}")
    n = len(result.files)
    lines.append(f" {n} file{'s' if n != 1 else ''} changed, +{result.added} -{result.removed}")
    return lines


def rich_renderable(file: FileDiff, theme: str = "monokai"):
    """A rich renderable of one file's hunks: syntax-highlighted, +/- marked, line-numbered.

    Engine-side helper for any face that draws with rich (the deck's Diff tab).
    """
    from rich.console import Group
    from rich.syntax import Syntax
    from rich.text import Text

    if file.binary:
        return Text(f"{file.display_path}: binary file {file.status}", style="italic")
    parts: list[Any] = [Text(file.display_path + f"  ({file.status}, +{file.added} -{file.removed})", style="bold")]
    lexer = file.language
    for hunk in file.hunks:
        parts.append(Text(hunk.header, style="cyan"))
        code = "\n".join(ln.text for ln in hunk.lines)
        syntax = Syntax(code, lexer, theme=theme, line_numbers=False, word_wrap=False)
        highlighted = syntax.highlight(code)
        rows = highlighted.split("\n", allow_blank=True)
        for ln, row in zip(hunk.lines, rows):
            number = ln.new if ln.new is not None else ln.old
            prefix = Text(f"{number if number is not None else '':>5} {ln.kind} ", style="dim")
            style = {"+": "on #12361f", "-": "on #3d1416"}.get(ln.kind, "")
            line = Text.assemble(prefix, row)
            if style:
                line.stylize(style)
            parts.append(line)
    return Group(*parts)
