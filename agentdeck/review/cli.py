"""CLI: diff, commit, merge, conflicts, compare, push, pr."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentdeck.cli_util import open_deck, print_json
from agentdeck.review.compare import table
from agentdeck.review.diff import stat_lines


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("diff", help="show an agent's changes (branch + uncommitted) against its base")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--stat", action="store_true", help="files and line counts only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_diff)

    p = subparsers.add_parser("commit", help="commit everything in an agent's worktree (hooks run)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-m", "--message", metavar="MSG",
                   help="commit message (default: written by the [llm] model, else a summary of the files)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_commit)

    p = subparsers.add_parser("merge", help="merge an agent's branch into its base (or --into BRANCH)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--strategy", choices=["merge", "squash", "rebase"],
                   help="default: [review] merge_strategy (merge)")
    p.add_argument("--into", metavar="BRANCH", help="target branch (default: the agent's base branch)")
    p.add_argument("--cleanup", action="store_true",
                   help="afterwards remove the agent's worktree and branch (a recovery ref is kept)")
    p.add_argument("-m", "--message", metavar="MSG", help="message of the merge or squash commit")
    p.add_argument("--no-ff", action="store_true", help="merge strategy: always make a merge commit")
    p.add_argument("--dry-run", action="store_true",
                   help="only check: show what would change (exit 1 if the merge would be refused)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_merge)

    p = subparsers.add_parser("conflicts", help="conflict radar: agents touching the same files")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_conflicts)

    p = subparsers.add_parser("compare", help="compare agents: files, lines, [review] test_command results")
    p.add_argument("names", metavar="NAME", nargs="+")
    p.add_argument("--no-tests", action="store_true", help="do not run [review] test_command")
    p.add_argument("--timeout", type=float, metavar="S", help="time limit per test run, in seconds")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_compare)

    p = subparsers.add_parser("push", help="git push -u origin <the agent's branch>")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_push)

    p = subparsers.add_parser("pr", help="push and open a pull request (gh) or merge request (glab)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--title", help="title (default: filled from the commits)")
    p.add_argument("--body", help="description (with --title)")
    p.add_argument("--into", metavar="BRANCH", help="target branch (default: the agent's base branch)")
    p.add_argument("--draft", action="store_true", help="open it as a draft")
    p.set_defaults(func=cmd_pr)


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _warn(line: str) -> None:
    sys.stderr.write(line + "\n")


def cmd_diff(args: argparse.Namespace) -> int:
    deck = open_deck(args)
    rec = deck.get(args.name)
    result = deck.review.diff(args.name, patch=not args.stat)
    if args.json:
        print_json({"agent": rec.name, "branch": rec.branch, "base": rec.base_branch,
                    **result.to_json(hunks=not args.stat)})
        return 0
    if not result.files:
        _out(f"{rec.name}: no changes against {rec.base_branch}")
        return 0
    if args.stat:
        for line in stat_lines(result):
            _out(line)
    else:
        sys.stdout.write(result.patch_text())
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    deck = open_deck(args)
    result = deck.review.commit(args.name, args.message)
    if result.warning:
        _warn(f"warning: {result.warning}")
    if args.json:
        print_json(result.to_json())
    else:
        _out(f"{args.name}: committed {result.commit[:10]} {result.subject} ({len(result.files)} files)")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    deck = open_deck(args)
    if args.dry_run:
        check = deck.review.check_merge(args.name, args.strategy, args.into, args.message, args.no_ff)
        if args.json:
            print_json(check.to_json())
        else:
            _print_check(check)
        return 0 if check.ok else 1
    result = deck.review.merge(args.name, args.strategy, args.into, args.cleanup, args.message, args.no_ff)
    if args.json:
        print_json(result.to_json())
        return 0
    c = result.check
    if not result.merged:
        _out(f"{args.name}: already up to date: {c.branch}'s changes are in {c.target}")
    else:
        how = "fast-forward" if c.fast_forward else c.strategy
        _out(f"{args.name}: merged {c.branch} into {c.target} ({how}) -> {result.commit[:10]}, "
             f"{len(c.files)} files changed")
        if c.checkout:
            _out(f"  updated the checkout at {c.checkout}")
    if result.cleaned_up:
        _out(f"  removed the worktree and branch; recovery ref: {result.recovery_ref}")
    return 0


def _print_check(check: Any) -> None:
    _out(f"{check.agent}: {check.strategy} {check.branch} into {check.target}")
    if check.up_to_date:
        _out("  already up to date")
    for f in check.files:
        _out(f"  {f['status']:<9} {f.get('old_path', '') + ' -> ' if f.get('old_path') else ''}{f['path']}")
    for problem in check.problems:
        _out(f"  refused: {problem}")
    if check.ok and not check.up_to_date:
        _out("  ok: merges cleanly" + (" (fast-forward)" if check.fast_forward else ""))


def cmd_conflicts(args: argparse.Namespace) -> int:
    deck = open_deck(args)
    entries = deck.review.conflicts()
    if args.json:
        print_json([e.to_json() for e in entries])
        return 0
    if not entries:
        _out("no overlaps: no two agents touch the same file")
        return 0
    for e in entries:
        a, b = e.agents
        verdict = f"CONFLICT in {', '.join(e.conflict_files)}" if e.conflict else "merges cleanly"
        _out(f"{a} <-> {b}: {len(e.files)} shared file{'s' if len(e.files) != 1 else ''} "
             f"({', '.join(e.files[:5])}{' ...' if len(e.files) > 5 else ''}) - {verdict}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    deck = open_deck(args)
    rows = deck.review.compare(args.names, run_tests=not args.no_tests, timeout=args.timeout)
    if args.json:
        print_json([r.to_json() for r in rows])
        return 0
    for line in table(rows):
        _out(line)
    if not deck.config.review.test_command and not args.no_tests:
        _out("(no [review] test_command configured: tests not run)")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    deck = open_deck(args)
    _out(f"{args.name}: {deck.review.push(args.name)}")
    return 0


def cmd_pr(args: argparse.Namespace) -> int:
    deck = open_deck(args)
    tool, output = deck.review.pr(args.name, args.title, args.body, args.draft, args.into)
    _out(output or f"{args.name}: request opened with {tool}")
    return 0
