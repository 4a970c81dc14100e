"""Small helpers shared by every CLI module (kept import-light)."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def respond(args: Any, data: Any, *lines: str) -> int:
    """A command's answer: *data* as JSON with ``--json``, else *lines*, one a line; exit status 0."""
    if getattr(args, "json", False):
        print_json(data)
    else:
        for line in lines:
            print(line)
    return 0


def open_deck(args: Any = None):
    """The Deck for the repository of the current directory (or ``--repo``)."""
    from agentdeck.deck import Deck

    repo = getattr(args, "repo", None) if args is not None else None
    return Deck.open(repo)


def show_help(parser: Any) -> int:
    """A command group run without its action: the group's help, exit status 2."""
    parser.print_help()
    return 2
