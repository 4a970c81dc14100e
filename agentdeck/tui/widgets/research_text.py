"""A research run's status as text: the summary, leaderboard order, plot, lanes and diff (pure functions).

The Research tab (:mod:`agentdeck.tui.widgets.research_pane`) paints these; they take the
``status`` dict of ``Research.status`` and return rich ``Text``, so they are tested directly.
"""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text

DIFF_MAX_LINES = 400

STATUS_STYLE = {"keep": "bold green", "discard": "red", "crash": "bold red", "running": "bold yellow",
                "queued": "dim", "suspect": "bold magenta"}
LANE_MARK = {"keep": ("█", "green"), "discard": ("▄", "red"), "crash": ("✗", "bold red"),
             "running": ("▸", "bold yellow"), "suspect": ("?", "bold magenta")}


def better(delta: float, direction: str) -> bool:
    return delta < 0 if direction == "min" else delta > 0


def fmt_metric(value: Any) -> str:
    if value is None:
        return "—"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"


def delta_text(metric: Any, baseline: Any, direction: str) -> Text:
    if metric is None or baseline is None:
        return Text("—", style="dim")
    delta = float(metric) - float(baseline)
    if delta == 0:
        return Text("±0", style="dim")
    return Text(f"{delta:+.4g}", style="green" if better(delta, direction) else "red")


def leaderboard(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Trials in board order: running and queued first, then best metric first, then the rest newest first."""
    direction = status.get("direction", "min")
    live = [t for t in status["trials"] if t["status"] in ("running", "queued", "suspect")]
    scored = [t for t in status["trials"] if t not in live and t["metric"] is not None and t["status"] != "crash"]
    rest = [t for t in status["trials"] if t not in live and t not in scored]
    scored.sort(key=lambda t: (float(t["metric"]) if direction == "min" else -float(t["metric"]), t["id"]))
    return (sorted(live, key=lambda t: (t["status"] != "running", t["id"])) + scored
            + sorted(rest, key=lambda t: -t["id"]))


def series(status: dict[str, Any]) -> tuple[list[tuple[int, float, str]], list[float]]:
    """(trial id, metric, status) of every measured trial in id order, and the best-so-far after each."""
    direction = status.get("direction", "min")
    points = [(t["id"], float(t["metric"]), t["status"]) for t in sorted(status["trials"], key=lambda t: t["id"])
              if t["metric"] is not None and t["status"] in ("keep", "discard")
              and math.isfinite(float(t["metric"]))]
    best: list[float] = []
    current: float | None = None
    for _id, value, st in points:
        if st == "keep" or current is None:
            if current is None or (value < current if direction == "min" else value > current):
                current = value
        best.append(current)
    return points, best


def plot(status: dict[str, Any], width: int = 48, height: int = 10) -> Text:
    """The metric over trials (● keep, ○ discard) with the best-so-far line (─), as text."""
    points, best = series(status)
    metric = status.get("metric", "metric")
    out = Text()
    out.append(f"{metric} over trials", style="bold")
    out.append("  ● keep ○ discard ", style="dim")
    out.append("─ best so far\n", style="yellow")
    if not points:
        out.append("no measured trial yet", style="italic dim")
        return out
    label_w = max(len(fmt_metric(v)) for v in (min(p[1] for p in points), max(p[1] for p in points)))
    cols = max(8, width - label_w - 2)
    rows = max(3, height)
    lo = min(min(p[1] for p in points), min(best))
    hi = max(max(p[1] for p in points), max(best))
    span = hi - lo or 1.0

    def y_of(v: float) -> int:
        return rows - 1 - int(round((v - lo) / span * (rows - 1)))

    n = len(points)
    xs = [0 if n == 1 else int(round(i * (cols - 1) / (n - 1))) for i in range(n)]
    grid: list[list[tuple[str, str]]] = [[(" ", "")] * cols for _ in range(rows)]
    # best-so-far: a step line across every column
    j = 0
    for x in range(cols):
        while j + 1 < n and xs[j + 1] <= x:
            j += 1
        grid[y_of(best[j])][x] = ("─", "yellow")
    for (_tid, value, st), x in zip(points, xs):
        grid[y_of(value)][x] = ("●", "bold green") if st == "keep" else ("○", "red")
    for r, line in enumerate(grid):
        label = fmt_metric(hi) if r == 0 else fmt_metric(lo) if r == rows - 1 else ""
        out.append(f"{label:>{label_w}} ┤", style="dim")
        for ch, style in line:
            out.append(ch, style=style)
        out.append("\n")
    first, last = points[0][0], points[-1][0]
    axis = f"#{first}" + " " * max(1, cols - len(f"#{first}") - len(f"#{last}")) + f"#{last}"
    out.append(" " * (label_w + 2) + axis, style="dim")
    return out


def lanes(status: dict[str, Any], width: int = 40) -> Text:
    """One line per GPU/slot: what runs there now, then its latest outcomes (newest right)."""
    slots = [str(s) for s in status.get("slots") or []]
    trials = sorted(status["trials"], key=lambda t: t["id"])
    for t in trials:  # trials on a slot the settings no longer name still get a lane
        if t["gpu"] not in (None, "") and str(t["gpu"]) not in slots:
            slots.append(str(t["gpu"]))
    out = Text()
    if not slots:
        out.append("no GPU/slot assigned yet", style="italic dim")
        return out
    classes = status.get("slot_classes") or {}
    several = len(set(classes.values())) > 1
    for slot in slots:
        mine = [t for t in trials if str(t["gpu"]) == slot]
        running = [t for t in mine if t["status"] == "running"]
        out.append(f"GPU {slot:<4}", style="bold")
        if several:
            out.append(f" {classes.get(slot, '?')[:12]:<12}", style="cyan")
        if running:
            t = running[-1]
            out.append(f" ▶ #{t['id']:<4} ", style="bold yellow")
            out.append(f"{t['kind']:<9} {t['description'][:width]:<{width}}")
        else:
            out.append(" · idle ", style="dim")
            out.append(" " * (width + 11))
        out.append("  ")
        for t in mine[-24:]:
            ch, style = LANE_MARK.get(t["status"], ("·", "dim"))
            if t["kind"] == "baseline" and t["status"] != "crash":
                ch, style = "B", "blue"
            out.append(ch, style=style)
        out.append("\n")
    out.rstrip()
    return out


def importance_text(importances: dict[str, Any] | None, top: int = 6) -> Text:
    """The search proposer's parameter importances (stored in the ledger), most important first."""
    out = Text()
    importances = importances or {}
    params = importances.get("params") or {}
    if not params:
        return out
    out.append(f"\nimportance ({importances.get('trials', '?')} trials): ", style="dim")
    shown = sorted(params.items(), key=lambda kv: -float(kv[1]))[:top]
    for i, (name, value) in enumerate(shown):
        out.append(" · " if i else "")
        out.append(name, style="bold")
        out.append(f" {float(value):.2f}")
    return out


def _baseline_and_best(out: Text, base: dict[str, Any], best: dict[str, Any] | None) -> None:
    """Append ``baseline M ×runs ±noise  best M (#id) ⚠ suspect`` (``—`` while nothing beat it)."""
    out.append("baseline ")
    out.append(fmt_metric(base.get("metric")), style="blue")
    if base.get("runs"):
        out.append(f" ×{base['runs']} ±{fmt_metric(base.get('noise'))}", style="dim")
    out.append("  best ")
    if best:
        out.append(f"{fmt_metric(best.get('metric'))} (#{best.get('id')})", style="green")
        if best.get("suspect"):
            out.append(" ⚠ suspect", style="bold magenta")
    else:
        out.append("—", style="dim")


def class_bests(status: dict[str, Any]) -> Text:
    """One line per hardware class other than the run's primary one: its baseline, best and branch."""
    out = Text()
    others = status.get("bests") or {}
    if not others:
        return out
    for cls, entry in others.items():
        out.append(f"\n{cls}: ", style="bold cyan")
        _baseline_and_best(out, entry.get("baseline") or {}, entry.get("best"))
        out.append(f"  {entry.get('branch', '')}", style="dim")
    return out


def status_cell(trial: dict[str, Any]) -> Text:
    """A trial's status, ``⚠`` added when it was flagged suspect (its gain was too large to believe)."""
    status = trial["status"]
    text = Text(status, style=STATUS_STYLE.get(status, ""))
    if trial.get("suspect") and status != "suspect":
        text.append(" ⚠", style="bold magenta")
    return text


def summary(status: dict[str, Any]) -> Text:
    """The run's head: tag, state, baseline and noise, best, proposals, message, the other hardware
    classes, the search's parameter importances and the keys that apply."""
    state = status.get("state", "?")
    style = {"running": "bold green", "paused": "bold yellow", "done": "bold", "stopped": "bold magenta",
             "failed": "bold red", "interrupted": "bold red"}.get(state, "bold")
    out = Text()
    out.append(f"research {status['tag']} ", style="bold")
    out.append(f"[{state}]", style=style)
    out.append(f"  {status.get('metric', '')} ({status.get('direction', 'min')})  ")
    _baseline_and_best(out, status.get("baseline") or {}, status.get("best"))
    if status.get("bests"):  # several hardware classes: the line above is the primary one's
        out.append(f" on {status.get('hardware', '?')}", style="cyan")
    limit = status.get("trials_limit")
    out.append(f"  proposals {status.get('proposals', 0)}/{limit if limit is not None else '∞'}")
    if status.get("message"):
        out.append(f"  {status['message'][:120]}", style="italic")
    out.append_text(class_bests(status))
    out.append_text(importance_text(status.get("importances")))
    hint = {"running": "p pause · S stop · P promote", "paused": "p resume · S stop · P promote"}.get(
        state, "P promote the best trial")
    out.append(f"\n{hint}", style="dim italic")
    return out


def diff_text(diff: str) -> Text:
    out = Text()
    lines = diff.splitlines()
    for line in lines[:DIFF_MAX_LINES]:
        style = ("green" if line.startswith("+") and not line.startswith("+++") else
                 "red" if line.startswith("-") and not line.startswith("---") else
                 "cyan" if line.startswith("@@") else "bold" if line.startswith(("diff ", "+++", "---")) else "")
        out.append(line + "\n", style=style)
    if len(lines) > DIFF_MAX_LINES:
        out.append(f"… {len(lines) - DIFF_MAX_LINES} more lines (agentdeck research diff)\n", style="dim")
    return out
