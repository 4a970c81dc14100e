"""Small helpers shared by every CLI module (kept import-light)."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def open_deck(args: Any = None):
    """The Deck for the repository of the current directory (or ``--repo``)."""
    from agentdeck.deck import Deck

    repo = getattr(args, "repo", None) if args is not None else None
    return Deck.open(repo)
