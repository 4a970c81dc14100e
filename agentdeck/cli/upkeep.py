"""Keeping the deck healthy: ``recover``, ``gc``, ``doctor``, and the internal ``_watch`` (the status
watcher process) and ``hook`` (answered by :mod:`agentdeck.hooks` before any parser is built)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from agentdeck.cli_util import open_deck, print_json, respond
from agentdeck.doctor import run_checks


def add(sub: Any, name: str) -> None:
    """Add command *name*'s parser to *sub* (the dispatcher's subparsers)."""
    if name == "recover":
        p = _command(sub, "recover", "list recovery refs, or restore one as a branch", cmd_recover)
        p.add_argument("ref", nargs="?")
        p.add_argument("--json", action="store_true")
    elif name == "gc":
        p = _command(sub, "gc", "remove orphaned worktrees, panes and expired recovery refs", cmd_gc)
        p.add_argument("--yes", "-y", action="store_true", help="do it without asking")
        p.add_argument("--json", action="store_true")
    elif name == "doctor":
        p = _command(sub, "doctor", "check git, tmux, agent binaries, settings and agentdeck's own state", cmd_doctor)
        p.add_argument("--json", action="store_true")
        p.add_argument("--fix", action="store_true",
                       help="repair what is safe to repair: a corrupt state database (moved aside, agents "
                            "re-adopted from disk), agents on disk missing from it, an interrupted merge")
    elif name == "_watch":
        p = sub.add_parser("_watch", help=argparse.SUPPRESS)
        p.set_defaults(func=cmd_watch)
    elif name == "hook":
        p = sub.add_parser("hook", help="internal: called by agent hooks")
        p.set_defaults(func=lambda a: 0)


def _command(sub: Any, name: str, help_: str, func: Callable[[Any], int]) -> Any:
    p = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=func)
    return p


def cmd_recover(args: Any) -> int:
    deck = open_deck(args)
    if args.ref:
        branch = deck.recover(args.ref)
        return respond(args, {"ref": args.ref, "branch": branch}, f"restored {args.ref} as branch {branch}")
    refs = deck.recovery_refs()
    lines = [f"{r['ref'].removeprefix('refs/agentdeck/trash/')}  {r['commit'][:10]}  {r['date']}  {r['subject']}"
             for r in refs]
    return respond(args, refs, *(lines or ["no recovery refs"]))


def cmd_gc(args: Any) -> int:
    deck = open_deck(args)
    plan = deck.gc_plan()
    total = plan.total()
    if not args.json:
        if total == 0:
            print("nothing to clean up")
            return 0
        for kind, items in plan.to_json().items():
            for item in items:
                print(f"{kind[:-1] if kind.endswith('s') else kind}: {item}")
    if total and not args.yes:
        if not sys.stdin.isatty():
            if args.json:
                print_json({"plan": plan.to_json(), "done": None})
            else:
                print("run `agentdeck gc --yes` to remove these (worktrees with work get a recovery ref first)")
            return 0
        answer = input(f"remove these {total} item(s)? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing removed")
            return 0
    done = deck.gc(plan).to_json()
    if args.json:
        print_json({"plan": plan.to_json(), "done": done})
    else:
        words = {"agents": "stuck agent", "worktrees": "worktree", "sessions": "tmux session",
                 "trash": "leftover folder", "pruned": "stale worktree entry", "refs": "expired recovery ref"}
        parts = [f"{len(done[k])} {w}" + ("" if len(done[k]) == 1 else "s" if not w.endswith("y") else "")
                 for k, w in words.items() if done.get(k)]
        parts = [p[:-1] + "ies" if p.endswith("entry") and not p.startswith("1 ") else p for p in parts]
        line = "removed " + ", ".join(parts) if parts else "nothing removed"
        if done.get("saved"):
            line += "; work kept in " + ", ".join(done["saved"])
        print(line)
    return 0


def cmd_doctor(args: Any) -> int:
    checks = run_checks(getattr(args, "repo", None), fix=getattr(args, "fix", False))
    failed = [c for c in checks if c["level"] == "error"]
    if args.json:
        print_json({"ok": not failed, "checks": checks})
    else:
        marks = {"ok": "ok ", "warn": "!  ", "error": "ERR"}
        for c in checks:
            line = f"{'fix' if c.get('fixed') else marks[c['level']]} {c['name']}: {c['detail']}"
            if c.get("fixed"):
                line += f" — fixed: {c['fixed']}"
            elif c.get("fix") and c["level"] != "ok":
                line += f" — {c['fix']}"
            print(line)
    return 1 if failed else 0


def cmd_watch(args: Any) -> int:
    from agentdeck.status import run_watcher  # the watcher process's own modules, for _watch alone

    return run_watcher(open_deck(args))
