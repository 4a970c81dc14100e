"""``agentdeck usage [NAME...] [--json]``: token usage per agent and in total (see agentdeck.usage)."""

from __future__ import annotations

import argparse
from typing import Any

from agentdeck.cli_util import open_deck, print_json


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "usage",
        help="token usage per agent and in total (from the agents' own records; cost is an estimate)",
        description=(
            "Input, output and cache tokens, estimated cost and tokens per minute of each agent, read "
            "from Claude Code's transcripts and Codex's session files. Cost uses list prices per model "
            "family (an estimate); models without a price count tokens only. An agent whose records "
            "cannot be found shows '-' and the reason."
        ),
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these agents (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON: {\"agents\": [...], \"total\": {...}}")
    p.set_defaults(func=cmd_usage)


def cmd_usage(args: argparse.Namespace) -> int:
    from agentdeck.usage import usage_for

    deck = open_deck(args)
    try:
        report = usage_for(deck, args.names or None)
    finally:
        deck.close()
    if args.json:
        print_json(report)
        return 0
    print(format_table(report))
    return 0


def human(n: Any) -> str:
    """1234 -> 1.2k, 3456789 -> 3.5M; None -> '-'."""
    if n is None:
        return "-"
    n = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def money(value: Any) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


COLUMNS = ("AGENT", "MODEL", "INPUT", "OUTPUT", "CACHE READ", "CACHE WRITE", "COST (EST.)", "TOK/MIN 5M",
           "TOK/MIN ALL")


def _row(name: str, data: dict[str, Any]) -> list[str]:
    rates = data.get("tokens_per_minute") or {}
    return [
        name, data.get("model") or "-", human(data.get("input_tokens")), human(data.get("output_tokens")),
        human(data.get("cache_read_tokens")), human(data.get("cache_creation_tokens")), money(data.get("cost_usd")),
        human(rates.get("last_5m")) if rates else "-", human(rates.get("since_start")) if rates else "-",
    ]


def format_table(report: dict[str, Any]) -> str:
    agents = report.get("agents") or []
    if not agents:
        return "no agents; create one with `agentdeck new NAME --prompt ...`"
    rows = [list(COLUMNS)] + [_row(a["name"], a) for a in agents] + [_row("TOTAL", report["total"])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)]
        if index == len(rows) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(cells).rstrip())
    notes = [f"  {a['name']}: {a['reason']}" for a in agents if a.get("reason")]
    unpriced = sorted({m for a in agents for m in a.get("unpriced_models") or []})
    if unpriced:
        notes.append(f"  no price known for {', '.join(unpriced)}: tokens counted, cost left out")
    if notes:
        lines += ["", "notes:", *notes]
    return "\n".join(lines)
