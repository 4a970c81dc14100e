"""What the ``search`` proposer reads from and writes to the ledger, without Optuna.

:func:`observations` turns the run's trials into points with one noise-aware value each (the
study is told these); :func:`save_importances` / :func:`latest_importances` keep the search's
parameter importances in the ledger's ``importances`` table, so ``research status`` and the
deck's Research tab show them without importing Optuna.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from agentdeck.store import transaction

log = logging.getLogger("agentdeck.research")

FINISHED = ("keep", "discard", "crash")


# ---------------------------------------------------------------------- importances in the ledger


def save_importances(ledger: Any, tag: str, data: dict[str, Any]) -> None:
    """Append the importances *data* of run *tag* to the ledger's ``importances`` table."""
    try:
        with transaction(ledger.conn) as c:
            c.execute("INSERT INTO importances (tag, computed_at, json) VALUES (?, ?, ?)",
                      (tag, float(data.get("computed_at") or time.time()), json.dumps(data)))
    except sqlite3.OperationalError as exc:  # a ledger from before the importances table
        log.warning("could not store the search's importances: %s", exc)


def latest_importances(ledger: Any, tag: str) -> dict[str, Any] | None:
    """The last importances stored for run *tag* (None when there are none): ``{"trials", "computed_at",
    "study", "sampler", "hardware", "params": {NAME: importance}}``, most important first."""
    try:
        row = ledger.conn.execute(
            "SELECT json FROM importances WHERE tag = ? ORDER BY computed_at DESC, rowid DESC LIMIT 1", (tag,)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    return json.loads(row[0]) if row else None


# ---------------------------------------------------------------------- observations


@dataclass
class Obs:
    """What the ledger says about one point: a proposal (with its confirmation), or a baseline commit."""

    key: tuple
    commit: str
    first_id: int
    pending: bool = False
    failed: bool = False
    skip: bool = False  # never evaluated: never told
    value: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    hardware: str | None = None


def _finished(t: dict[str, Any]) -> bool:
    return t.get("state", "final") == "final" and t.get("status") in FINISHED


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def observations(trials: list[dict[str, Any]]) -> list[Obs]:
    """The ledger's trials as points with one (noise-aware) value each, in trial order."""
    confirms: dict[int, list[dict[str, Any]]] = {}
    for t in trials:
        if t.get("kind") == "confirm" and t.get("confirm_of") is not None:
            confirms.setdefault(int(t["confirm_of"]), []).append(t)
    out: list[Obs] = []
    baselines: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in trials:  # one point per commit and hardware class (each class measures its own baseline)
        if t.get("kind") == "baseline" and t.get("commit"):
            baselines.setdefault((t["commit"], t.get("hardware") or ""), []).append(t)
    for (commit, hardware), group in baselines.items():
        o = Obs(("b", commit, hardware), commit, min(t["id"] for t in group), hardware=hardware or None)
        live = [t for t in group if not (_finished(t) and t["status"] == "discard" and t.get("metric") is None)]
        values = [float(t["metric"]) for t in live
                  if _finished(t) and t["status"] != "crash" and t.get("metric") is not None]
        if any(not _finished(t) for t in live):
            o.pending = True
        elif values:
            o.value = _mean(values)
        elif live:
            o.failed = True
        else:
            o.skip = True
        out.append(o)
    for t in trials:
        if t.get("kind") != "proposal" or not t.get("commit"):
            continue
        o = Obs(("t", t["id"]), t["commit"], t["id"], meta=t.get("meta") or {}, hardware=t.get("hardware"))
        if not _finished(t):
            o.pending = True
        elif t["status"] == "crash":
            o.failed = True
        elif t.get("metric") is None:
            o.skip = True
        elif t["status"] == "keep" and isinstance(o.meta.get("kept_value"), (int, float)):
            o.value = float(o.meta["kept_value"])
        else:
            values = [float(t["metric"])] + [float(c["metric"]) for c in confirms.get(t["id"], [])
                                             if _finished(c) and c["status"] != "crash" and c.get("metric") is not None]
            o.value = _mean(values)
        out.append(o)
    out.sort(key=lambda o: o.first_id)
    return out
