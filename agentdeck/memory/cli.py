"""``agentdeck memory ...`` and ``agentdeck mcp``.

Kept import-light (no mcp, no Textual, no watchdog): agents call these from
their shells, often.  The author of what is written is ``$AGENTDECK_AGENT``
(set in every agent pane) or ``user``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from agentdeck.cli_util import print_json, respond, show_help

HELP = "the shared memory: Markdown notes every agent and you read and write"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("memory", help=HELP, description=HELP + ". The store lives under the "
                              "repository's git common dir (or [memory] dir); see memory/README.md.")
    p.set_defaults(func=lambda args: show_help(p))
    sub = p.add_subparsers(dest="memory_command", metavar="ACTION")

    def cmd(name: str, help_: str, func) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_, description=help_)
        q.set_defaults(func=func)
        return q

    q = cmd("add", "write a new note (body from --body or stdin)", cmd_add)
    q.add_argument("title")
    q.add_argument("--body", help="the note's Markdown body (default: read stdin when it is not a terminal)")
    q.add_argument("--tag", action="append", default=[], dest="tags", help="a tag (repeat for several)")
    q.add_argument("--kind", default="note",
                   help="note, decision, gotcha, finding, experiment, handoff, core-proposal ... (default: note)")
    q.add_argument("--json", action="store_true")

    q = cmd("search", "full-text search, best match first (superseded and forgotten notes are hidden)", cmd_search)
    q.add_argument("query")
    q.add_argument("--limit", type=int, default=10)
    q.add_argument("--kind", action="append", dest="kinds", help="only notes of this kind (repeatable)")
    q.add_argument("--json", action="store_true")

    q = cmd("show", "print a note (also CORE and journal/<agent>)", cmd_show)
    q.add_argument("id")
    q.add_argument("--json", action="store_true")

    q = cmd("edit", "edit a note in $EDITOR (refused if it changed meanwhile)", cmd_edit)
    q.add_argument("id")
    q.add_argument("--json", action="store_true")

    q = cmd("supersede", "mark a note superseded by a newer one (hidden from search, kept on disk)", cmd_supersede)
    q.add_argument("id")
    q.add_argument("--by", required=True, metavar="ID", help="the newer note")
    q.add_argument("--json", action="store_true")

    q = cmd("forget", "hide a wrong note from search (kept on disk; `memory edit` can restore it)", cmd_forget)
    q.add_argument("id")
    q.add_argument("--json", action="store_true")

    q = cmd("recent", "notes by last change, newest first", cmd_recent)
    q.add_argument("--limit", type=int, default=20)
    q.add_argument("--all", action="store_true", help="include superseded and forgotten notes")
    q.add_argument("--json", action="store_true")

    q = cmd("reindex", "rebuild the search index from the files", cmd_reindex)
    q.add_argument("--json", action="store_true")

    q = cmd("journal", "append an entry to your journal (text from the argument or stdin)", cmd_journal)
    q.add_argument("text", nargs="?")
    q.add_argument("--json", action="store_true")

    q = cmd("brief", "print the memory brief agents are given at launch", cmd_brief)
    q.add_argument("--agent", help="agent name (default: $AGENTDECK_AGENT)")

    m = subparsers.add_parser("mcp", help="run the stdio MCP server named agentdeck (for your own agent configs)",
                              description="Run the stdio MCP server named agentdeck: the shared memory tools "
                              "(and, when enabled, research and deck tools). Agents launched by agentdeck "
                              "reach the repository's HTTP server instead (those without HTTP support start "
                              "this one themselves); add this command to your own agent's MCP configuration.")
    m.set_defaults(func=cmd_mcp)


# ----------------------------------------------------------------------------- helpers


def _store(args: Any):
    from agentdeck.memory.store import MemoryStore

    repo = getattr(args, "repo", None)
    if repo:
        from agentdeck.paths import find_repo

        return MemoryStore.open(repo=find_repo(repo))
    return MemoryStore.open()


def _saved(args: Any, note: Any, data: dict[str, Any], line: str) -> int:
    """A write's answer: *data* with ``--json`` (plus ``warning``), else *line*.

    A write that saved its file but not the search index says so on stderr too (the note's
    ``warning``); the exit status stays 0.
    """
    warning = getattr(note, "warning", "")
    if warning:
        print(f"agentdeck: warning: {warning}", file=sys.stderr)
        data["warning"] = warning
    return respond(args, data, line)


STDIN_WAIT_S = 5.0


def _read_stdin() -> str:
    """stdin when it is a file or a pipe (not a terminal).

    A pipe nobody writes to or closes (some agent shells leave one open) would
    block forever: wait at most STDIN_WAIT_S for its first byte or its end.
    """
    import select
    import stat

    if sys.stdin is None or sys.stdin.closed:
        return ""
    try:
        if sys.stdin.isatty():
            return ""
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (ValueError, OSError):
        return ""
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        ready, _, _ = select.select([sys.stdin], [], [], STDIN_WAIT_S)
        if not ready:
            print(f"agentdeck: nothing on stdin after {STDIN_WAIT_S:.0f}s; writing an empty body "
                  "(use --body TEXT)", file=sys.stderr)
            return ""
    return sys.stdin.read()


# ----------------------------------------------------------------------------- handlers


def cmd_add(args: Any) -> int:
    body = args.body if args.body is not None else _read_stdin()
    store = _store(args)
    note = store.add(args.title, body, tags=args.tags, kind=args.kind)
    return _saved(args, note, {"id": note.id, "path": str(note.path), "version": note.version, "title": note.title},
                  f"added {note.id}  ({note.path})")


def cmd_search(args: Any) -> int:
    from agentdeck.errors import UsageError

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    store = _store(args)
    hits = store.search(args.query, args.limit, sync=True, kinds=args.kinds)
    if args.json:
        keys = ("id", "title", "kind", "tags", "path", "snippet", "author", "updated", "score")
        print_json([{k: h[k] for k in keys if k in h} for h in hits])
        return 0
    if not hits:
        print(f"no notes match {args.query!r}")
        return 0
    for hit in hits:
        tags = " ".join(f"#{t}" for t in hit["tags"])
        print(f"{hit['id']}  [{hit['kind']}] {hit['title']}" + (f"  {tags}" if tags else ""))
        if hit["snippet"]:
            print(f"    {hit['snippet']}")
    return 0


def cmd_show(args: Any) -> int:
    store = _store(args)
    note = store.get(args.id)
    if args.json:
        print_json(note.to_json())
        return 0
    text = store.read_text(note.id) if note.path else note.render()  # never through a link
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_edit(args: Any) -> int:
    import shlex
    import subprocess
    import tempfile

    from agentdeck.errors import Refused, UsageError
    from agentdeck.memory.store import CORE_ID, JOURNAL_PREFIX, validate_id

    doc_id = validate_id(args.id)
    if doc_id == CORE_ID or doc_id.startswith(JOURNAL_PREFIX):
        store = _store(args)
        raise UsageError(f"{doc_id} is not a note; open {store.path_of(doc_id)} in your editor directly")
    store = _store(args)
    original = store.read_text(doc_id)  # never through a link
    note = store.get(doc_id)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, tmp = tempfile.mkstemp(prefix=f"agentdeck-{doc_id}-", suffix=".md")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(original)
    try:
        rc = subprocess.call([*shlex.split(editor), tmp])
    except FileNotFoundError:
        os.unlink(tmp)
        raise UsageError(f"editor {editor!r} not found; set $EDITOR to your editor") from None
    if rc != 0:
        os.unlink(tmp)
        raise Refused(f"the editor exited with status {rc}; note {doc_id} is unchanged")
    with open(tmp, encoding="utf-8") as fh:
        edited = fh.read()
    if edited == original:
        os.unlink(tmp)
        return respond(args, {"id": doc_id, "version": note.version, "changed": False}, f"no change to {doc_id}")
    try:
        updated = store.edit_text(doc_id, edited, expected_version=note.version)
    except Refused as err:
        raise Refused(f"{err} (your edited text is kept in {tmp})") from None
    except UsageError as err:
        raise UsageError(f"{err} (your edited text is kept in {tmp})") from None
    os.unlink(tmp)
    return _saved(args, updated, {"id": updated.id, "version": updated.version, "changed": True,
                                  "path": str(updated.path)}, f"updated {updated.id} to version {updated.version}")


def cmd_supersede(args: Any) -> int:
    store = _store(args)
    old, new = store.supersede(args.id, args.by)
    return _saved(args, old, {"id": old.id, "status": old.status, "superseded_by": new.id, "version": old.version},
                  f"{old.id} is superseded by {new.id} (hidden from search, kept on disk)")


def cmd_forget(args: Any) -> int:
    store = _store(args)
    note = store.forget(args.id)
    return _saved(args, note, {"id": note.id, "status": note.status, "version": note.version},
                  f"forgot {note.id} (hidden from search, kept at {note.path})")


def cmd_recent(args: Any) -> int:
    from agentdeck.errors import UsageError

    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    store = _store(args)
    rows = store.recent(args.limit, sync=True, include_hidden=args.all)
    if args.json:
        keys = ("id", "title", "kind", "tags", "path", "author", "updated", "status", "version", "summary")
        print_json([{k: r[k] for k in keys if k in r} for r in rows])
        return 0
    if not rows:
        print("no notes yet; add one with `agentdeck memory add TITLE --body TEXT`")
        return 0
    width = max(len(r["author"]) for r in rows)
    for r in rows:
        status = "" if r["status"] == "active" else f" ({r['status']})"
        print(f"{r['updated'][:16].replace('T', ' ')}  {r['author']:<{width}}  {r['kind']:<10} {r['id']}  "
              f"{r['title']}{status}")
    return 0


def cmd_reindex(args: Any) -> int:
    import time

    store = _store(args)
    start = time.perf_counter()
    count = store.reindex()
    seconds = time.perf_counter() - start
    return respond(args, {"documents": count, "seconds": round(seconds, 3), "index": str(store.index_path)},
                   f"reindexed {count} document(s) from {store.root} in {seconds:.2f}s")


def cmd_journal(args: Any) -> int:
    text = args.text if args.text is not None else _read_stdin()
    store = _store(args)
    note = store.append_journal(text)
    return _saved(args, note, {"id": note.id, "path": str(note.path)}, f"appended to {note.id}  ({note.path})")


def cmd_brief(args: Any) -> int:
    from agentdeck.memory.inject import brief_text
    from agentdeck.memory.store import locate

    repo = getattr(args, "repo", None)
    if repo:
        from agentdeck.paths import find_repo

        where = locate(repo=find_repo(repo))
    else:
        where = locate()
    sys.stdout.write(brief_text(where, args.agent))
    return 0


def cmd_mcp(args: Any) -> int:
    from agentdeck.mcp.server import serve

    return serve(getattr(args, "repo", None))


# ----------------------------------------------------------------------------- standalone


def main(argv: list[str] | None = None) -> int:
    """``python -m agentdeck.memory.cli ...`` (same commands, without the rest of agentdeck's CLI)."""
    from agentdeck.errors import AgentdeckError

    parser = argparse.ArgumentParser(prog="agentdeck")
    parser.add_argument("--repo")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        return show_help(parser)
    try:
        return int(args.func(args) or 0)
    except AgentdeckError as err:
        print(f"agentdeck: error: {err}", file=sys.stderr)
        if getattr(args, "json", False):
            print_json({"error": str(err)})
        return err.exit_code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
