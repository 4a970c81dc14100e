"""``ls``, ``peek``, ``wait`` and ``events``: the read commands, which scripts and agents call often.

Each has two paths.  :func:`light` answers the plain forms through :mod:`agentdeck.quick` (the
state database, no deck) and returns None when it cannot; the dispatcher then parses the arguments
and runs the ``cmd_*`` handler through the deck.  Both print with the same functions, so the two
paths say exactly the same.  This module is on the light path: it imports nothing heavy at the top.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from agentdeck import quick
from agentdeck.cli_util import open_deck, print_json
from agentdeck.store import utc_iso
from agentdeck.views import sandbox_label


def add(sub: Any, name: str) -> None:
    """Add command *name*'s parser to *sub* (the dispatcher's subparsers)."""
    if name == "ls":
        p = _command(sub, "ls", "list agents and their status", cmd_ls)
        p.add_argument("--json", action="store_true")
        p.add_argument("--all", action="store_true", help="agents of every repository served by agentdeck's tmux")
    elif name == "peek":
        p = _command(sub, "peek", "print an agent's current screen (the last one if it exited)", cmd_peek)
        p.add_argument("name")
    elif name == "wait":
        p = _command(sub, "wait", "block until an agent reaches a status", cmd_wait)
        p.add_argument("name")
        p.add_argument("--until", required=True, help="status[,status]: starting, working, waiting, idle, exited")
        p.add_argument("--timeout", type=float, default=None, help="seconds (exit 1 when reached)")
        p.add_argument("--json", action="store_true")
    elif name == "events":
        p = _command(sub, "events", "an agent's recorded status history", cmd_events)
        p.add_argument("name")
        p.add_argument("--json", action="store_true")


def _command(sub: Any, name: str, help_: str, func: Callable[[Any], int]) -> Any:
    p = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=func)
    return p


# ---------------------------------------------------------------------- the light path


def light(repo: str | None, command: str, opts: list[str]) -> int | None:
    """Run ``COMMAND OPTS`` (``ls``, ``peek``, ``wait`` or ``events``) through :mod:`agentdeck.quick`; None when the
    arguments are anything but the plain forms, or the light path cannot answer (the full path
    then runs, with argparse's own errors and help).  Errors propagate: the dispatcher reports them."""
    flags = {o for o in opts if o.startswith("-")}
    as_json = "--json" in flags
    if command == "ls":
        if flags - {"--json"} or len(opts) != len(flags):
            return None
        rows = quick.ls(repo)
        if rows is None or not (rows or as_json):
            return None
        return print_ls(rows, as_json, lambda: True)
    if command in ("peek", "events"):
        allowed = {"--json"} if command == "events" else set()
        names = [o for o in opts if not o.startswith("-")]
        if flags - allowed or len(names) != 1:
            return None
        if command == "peek":
            text = quick.peek(repo, names[0])
            if text is None:
                return None
            sys.stdout.write(text.rstrip("\n") + "\n")
            return 0
        events = quick.events(repo, names[0])
        return None if events is None else print_events(events, as_json)
    return _light_wait(repo, opts)


def _light_wait(repo: str | None, opts: list[str]) -> int | None:
    name = until = timeout = None
    as_json = False
    i = 0
    while i < len(opts):
        opt = opts[i]
        if opt in ("--until", "--timeout") and i + 1 < len(opts):
            value, i = opts[i + 1], i + 2
        elif opt.startswith(("--until=", "--timeout=")):
            opt, value = opt.split("=", 1)
            i += 1
        elif opt == "--json":
            as_json, i = True, i + 1
            continue
        elif not opt.startswith("-") and name is None:
            name, i = opt, i + 1
            continue
        else:
            return None
        if opt == "--until":
            until = value
        else:
            try:
                timeout = float(value)
            except ValueError:
                return None
    if name is None or until is None:
        return None
    wanted = {s.strip() for s in until.split(",") if s.strip()}
    started = time.monotonic()
    status = quick.wait(repo, name, wanted, timeout)
    if status is None:  # the deck's path, for what is left of the timeout
        deck = open_deck(type("Args", (), {"repo": repo})())
        status = deck.wait(name, wanted, quick.remaining(timeout, started))
    if as_json:
        print_json({"name": name, "status": status})
    else:
        print(status)
    return 0


# ---------------------------------------------------------------------- the deck's path


def cmd_ls(args: Any) -> int:
    decks = [open_deck(args)]
    if args.all:
        from agentdeck.deck import Deck
        from agentdeck.registry import known_repos

        seen = {decks[0].repo.root}
        for root in known_repos():
            if root not in seen:
                try:
                    decks.append(Deck.open(root))
                    seen.add(root)
                except Exception:
                    continue
    rows = []
    for deck in decks:
        for view in deck.agents():
            data = view.to_json()
            if args.all:
                data["repo"] = str(deck.repo.root)
            rows.append(data)
    return print_ls(rows, args.json, decks[0].tmux.is_alive)


def cmd_peek(args: Any) -> int:
    deck = open_deck(args)
    sys.stdout.write(deck.peek(args.name).rstrip("\n") + "\n")
    return 0


def cmd_wait(args: Any) -> int:
    deck = open_deck(args)
    until = {s.strip() for s in args.until.split(",") if s.strip()}
    status = deck.wait(args.name, until, args.timeout)
    if args.json:
        print_json({"name": args.name, "status": status})
    else:
        print(status)
    return 0


def cmd_events(args: Any) -> int:
    return print_events(open_deck(args).events(args.name), args.json)


# ---------------------------------------------------------------------- output, shared by both paths


def _age(created_at: str) -> str:
    from datetime import datetime, timezone  # here, not at the top: `ls --json` never needs it

    try:
        then = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "?"
    secs = int((datetime.now(timezone.utc) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def print_ls(rows: list[dict], as_json: bool, server_alive: Callable[[], bool]) -> int:
    if as_json:
        print_json(rows)
        return 0
    if not rows:
        live = server_alive()
        print("no agents" + ("" if live else " (agentdeck's tmux server is not running)")
              + "; create one with `agentdeck new NAME --prompt ...`")
        return 0
    header = ("NAME", "STATUS", "AGENT", "SANDBOX", "BRANCH", "AGE")
    table = [header] + [
        (r["name"], r["status"] + (" (kept)" if r["kept"] else ""), r["agent"], sandbox_label(r), r["branch"],
         _age(r["created_at"]))
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return 0


def print_events(events: list[dict], as_json: bool) -> int:
    for e in events:
        e["time"] = utc_iso(e["ts"])
    if as_json:
        print_json(events)
        return 0
    for e in events:
        what = e["status"] or ""
        detail = ", ".join(f"{k}={v}" for k, v in e["detail"].items())
        print(f"{e['time']}  {e['type']:<8} {what:<9} {e['source']:<9} {detail}".rstrip())
    return 0
