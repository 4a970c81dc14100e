"""The Research tab: the latest auto-research run, live.

- a summary line (tag, state, baseline and noise, best, proposals, message), and one line per
  other hardware class (its own baseline, best and branch);
- a leaderboard of every trial (running first, then best metric first): trial,
  kind, status (``⚠`` marks a suspect: a gain too large to believe), metric, delta vs the
  baseline, GPU/slot, seconds, description;
- a text plot of the metric over trials with the best-so-far line;
- one lane per GPU/slot: what runs there now and the outcomes of its last trials;
- the highlighted trial's log tail and diff.

One feed thread (started the first time the tab shows) reads ``deck.research``
while the tab is visible, every ``interval`` seconds, and posts only what
changed; nothing here blocks the app's thread.  ``p`` / ``S`` / ``P`` (pause or
resume, stop, promote) go through the screen's ``run_job`` and confirmations.
"""

from __future__ import annotations

import math
import threading
import types
from typing import Any, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

LOG_TAIL_LINES = 40
DIFF_MAX_LINES = 400
ACTIVE = ("starting", "running", "paused")

STATUS_STYLE = {"keep": "bold green", "discard": "red", "crash": "bold red", "running": "bold yellow",
                "queued": "dim", "suspect": "bold magenta"}
LANE_MARK = {"keep": ("█", "green"), "discard": ("▄", "red"), "crash": ("✗", "bold red"),
             "running": ("▸", "bold yellow"), "suspect": ("?", "bold magenta")}


# ---------------------------------------------------------------------- pure helpers (tested directly)


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
    for (tid, value, st), x in zip(points, xs):
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
    params = (importances or {}).get("params") or {}
    if not params:
        return out
    out.append(f"\nimportance ({importances.get('trials', '?')} trials): ", style="dim")
    shown = sorted(params.items(), key=lambda kv: -float(kv[1]))[:top]
    for i, (name, value) in enumerate(shown):
        out.append(" · " if i else "")
        out.append(name, style="bold")
        out.append(f" {float(value):.2f}")
    return out


def class_bests(status: dict[str, Any]) -> Text:
    """One line per hardware class other than the run's primary one: its baseline, best and branch."""
    out = Text()
    others = status.get("bests") or {}
    if not others:
        return out
    for cls, entry in others.items():
        base, best = entry.get("baseline") or {}, entry.get("best") or {}
        out.append(f"\n{cls}: ", style="bold cyan")
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
    base = status.get("baseline") or {}
    best = status.get("best")
    state = status.get("state", "?")
    style = {"running": "bold green", "paused": "bold yellow", "done": "bold", "stopped": "bold magenta",
             "failed": "bold red", "interrupted": "bold red"}.get(state, "bold")
    out = Text()
    out.append(f"research {status['tag']} ", style="bold")
    out.append(f"[{state}]", style=style)
    out.append(f"  {status.get('metric', '')} ({status.get('direction', 'min')})  baseline ")
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


# ---------------------------------------------------------------------- messages (feed -> pane)


class ResearchStatus(Message):
    """The latest run's status (None: no run yet), or why it could not be read."""

    def __init__(self, status: dict[str, Any] | None, error: str = "") -> None:
        super().__init__()
        self.status = status
        self.error = error


class TrialDetail(Message):
    def __init__(self, tag: str, trial: int, log: str, diff: str) -> None:
        super().__init__()
        self.tag = tag
        self.trial = trial
        self.log = log
        self.diff = diff


# ---------------------------------------------------------------------- the feed (a thread)


class ResearchFeed:
    """Reads the research ledger while the tab shows; posts what changed."""

    def __init__(self, open_research: Callable[[], Any], interval: float = 0.5):
        self.open_research = open_research
        self.interval = interval
        self.visible = threading.Event()
        self.wake = threading.Event()
        self.want: tuple[str, int] | None = None  # (tag, trial) whose log/diff the pane wants
        self.polls = 0
        self._last_status: Any = object()
        self._last_detail: tuple[Any, ...] | None = None

    def poke(self) -> None:
        self.wake.set()

    def forget(self) -> None:
        self._last_status = object()
        self._last_detail = None
        self.wake.set()

    def run(self, post: Callable[[Any], Any], stop: threading.Event) -> None:
        research = self.open_research()
        try:
            while not stop.is_set():
                if not self.visible.is_set():
                    self.wake.wait(0.5)
                    self.wake.clear()
                    continue
                self.polls += 1
                status = self._status(research, post)
                if status is not None:
                    self._detail(research, status, post)
                self.wake.wait(self.interval)
                self.wake.clear()
        finally:
            try:
                research.close()
            except Exception:
                pass

    def _status(self, research: Any, post: Callable[[Any], Any]) -> dict[str, Any] | None:
        try:
            tag = research.latest_tag()
            status = research.status(tag) if tag else None
        except Exception as exc:
            post(ResearchStatus(None, error=f"cannot read the research ledger: {exc}"))
            self._last_status = object()
            return None
        if status != self._last_status:
            self._last_status = status
            post(ResearchStatus(status))
        return status

    def _detail(self, research: Any, status: dict[str, Any], post: Callable[[Any], Any]) -> None:
        want = self.want
        if want is None or want[0] != status["tag"]:
            return
        tag, trial_id = want
        trial = next((t for t in status["trials"] if t["id"] == trial_id), None)
        if trial is None:
            return
        key = (tag, trial_id, trial["status"], trial["commit"])
        if key == self._last_detail and trial["status"] not in ("running",):
            return
        try:
            log = research.log(trial_id, tag)
            log = "\n".join(log.splitlines()[-LOG_TAIL_LINES:])
        except Exception as exc:
            log = str(exc)
        try:
            diff = research.diff(trial_id, tag) if trial["commit"] else ""
        except Exception as exc:
            diff = f"cannot show the diff: {exc}"
        self._last_detail = key
        post(TrialDetail(tag, trial_id, log, diff))


# ---------------------------------------------------------------------- the pane


class ResearchPane(Vertical):
    DEFAULT_CSS = """
    ResearchPane { height: 1fr; }
    ResearchPane #research-summary { height: auto; padding: 0 1; }
    ResearchPane #research-top { height: 2fr; }
    ResearchPane #trials { width: 3fr; height: 1fr; }
    ResearchPane #research-plot { width: 2fr; height: 1fr; padding: 0 1; border-left: solid $panel; }
    ResearchPane #research-lanes { height: auto; max-height: 6; padding: 0 1; border-top: solid $panel; }
    ResearchPane #research-detail { height: 1fr; border-top: solid $panel; }
    ResearchPane #research-log-scroll { width: 1fr; }
    ResearchPane #research-diff-scroll { width: 1fr; border-left: solid $panel; }
    ResearchPane #research-log, ResearchPane #research-diff { padding: 0 1; }
    """

    def __init__(self, interval: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status: dict[str, Any] | None = None
        self.order: list[int] = []
        self.detail_for: tuple[str, int] | None = None
        self.log_text = ""
        self.diff = ""
        self.updates = 0
        self.feed = ResearchFeed(self._open_research, interval=interval)
        self._stop = threading.Event()
        self._started = False

    def compose(self) -> ComposeResult:
        yield Static(Text("Research: auto-research runs and trials", style="bold"), id="research-summary")
        with Horizontal(id="research-top"):
            yield DataTable(cursor_type="row", id="trials")
            yield Static("", id="research-plot")
        yield Static("", id="research-lanes")
        with Horizontal(id="research-detail"):
            with VerticalScroll(id="research-log-scroll"):
                yield Static("", id="research-log")
            with VerticalScroll(id="research-diff-scroll"):
                yield Static("", id="research-diff")

    def on_mount(self) -> None:
        table = self.query_one("#trials", DataTable)
        for key, label in (("trial", "TRIAL"), ("kind", "KIND"), ("status", "STATUS"), ("metric", "METRIC"),
                           ("delta", "Δ BASE"), ("gpu", "GPU"), ("secs", "SECS"), ("desc", "DESCRIPTION")):
            table.add_column(label, key=key)
        self._show_parts(False)

    def on_unmount(self) -> None:
        self._stop.set()
        self.feed.poke()

    def _open_research(self) -> Any:
        from agentdeck.research import Research

        deck = self.app.deck
        return Research(types.SimpleNamespace(repo=deck.repo, config=deck.config, is_light=True))

    # ------------------------------------------------------------------ visibility
    def set_visible(self, visible: bool) -> None:
        if visible:
            self.feed.visible.set()
            if not self._started:
                self._started = True
                self.run_worker(lambda: self.feed.run(self.post_message, self._stop), thread=True,
                                exit_on_error=False, group="research-feed", name="research feed")
            self.feed.poke()
        else:
            self.feed.visible.clear()

    def poke(self) -> None:
        self.feed.poke()

    # ------------------------------------------------------------------ messages
    def on_research_status(self, message: ResearchStatus) -> None:
        message.stop()
        self.updates += 1
        if message.error:
            self._message(message.error)
            return
        self.status = message.status
        if message.status is None:
            self._message("no research run yet in this repository: start one with `agentdeck research run` "
                          "(the lab's [research] section says what to train and measure)")
            return
        self._paint(message.status)

    def on_trial_detail(self, message: TrialDetail) -> None:
        message.stop()
        if (message.tag, message.trial) != self.detail_for:
            return
        self.log_text = message.log
        self.diff = message.diff
        head = Text(f"log of #{message.trial} (last {LOG_TAIL_LINES} lines)\n", style="bold")
        self.query_one("#research-log", Static).update(head + Text(message.log or "(empty)"))
        dhead = Text(f"diff of #{message.trial}\n", style="bold")
        self.query_one("#research-diff", Static).update(
            dhead + (diff_text(message.diff) if message.diff.strip() else Text("(no change: the baseline)",
                                                                              style="dim italic")))

    # ------------------------------------------------------------------ painting
    def _message(self, text: str) -> None:
        self.query_one("#research-summary", Static).update(Text(text, style="italic"))
        self._show_parts(False)

    def _show_parts(self, shown: bool) -> None:
        for wid in ("#research-top", "#research-lanes", "#research-detail"):
            self.query_one(wid).display = shown

    def _paint(self, status: dict[str, Any]) -> None:
        self._show_parts(True)
        self.query_one("#research-summary", Static).update(summary(status))
        table = self.query_one("#trials", DataTable)
        keep = self.selected_trial
        rows = leaderboard(status)
        baseline = (status.get("baseline") or {}).get("metric")
        direction = status.get("direction", "min")
        table.clear()
        for t in rows:
            best = status.get("best") and status["best"].get("id") == t["id"]
            table.add_row(
                Text(f"#{t['id']}" + (" ★" if best else ""), style="bold" if best else ""),
                t["kind"], status_cell(t), fmt_metric(t["metric"]),
                delta_text(t["metric"], baseline, direction) if t["kind"] != "baseline" else Text("—", style="dim"),
                "" if t["gpu"] is None else str(t["gpu"]),
                "" if t["seconds"] is None else f"{t['seconds']:.1f}",
                Text(t["description"][:80] + (f" ({t['reason'][:40]})" if t["reason"] else "")),
                key=str(t["id"]),
            )
        self.order = [t["id"] for t in rows]
        if keep in self.order:
            table.move_cursor(row=self.order.index(keep))
        plot_w = max(24, self.query_one("#research-plot").size.width - 2)
        plot_h = max(4, self.query_one("#research-plot").size.height - 3)
        self.query_one("#research-plot", Static).update(plot(status, plot_w, min(plot_h, 14)))
        self.query_one("#research-lanes", Static).update(lanes(status, 40))
        self._want_detail()

    @property
    def selected_trial(self) -> int | None:
        table = self.query_one("#trials", DataTable)
        if not self.order or table.cursor_row < 0 or table.cursor_row >= len(self.order):
            return None
        return self.order[table.cursor_row]

    @on(DataTable.RowHighlighted, "#trials")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._want_detail()

    def _want_detail(self) -> None:
        trial = self.selected_trial
        if self.status is None or trial is None:
            return
        want = (self.status["tag"], trial)
        if want != self.detail_for:
            self.detail_for = want
            self.feed.want = want
            self.query_one("#research-log", Static).update(Text(f"loading the log of #{trial}…", style="dim"))
            self.query_one("#research-diff", Static).update("")
            self.feed.poke()

    # ------------------------------------------------------------------ actions (from the screen's keys)
    @property
    def tag(self) -> str | None:
        return self.status["tag"] if self.status else None

    def pause_or_resume(self) -> None:
        screen: Any = self.screen
        status = self.status
        if status is None:
            self.app.notify("no research run to pause", severity="warning")
            return
        tag, state = status["tag"], status["state"]
        if state == "paused" or state == "interrupted":
            def job(d: Any) -> None:
                from agentdeck.tui.messages import ActionDone

                result = d.research.resume(tag)
                extra = " (its loop restarted in the background)" if result.get("restarted") else ""
                self.post_message(ActionDone(f"research {tag} resumed{extra}", poke=False))
                self.feed.poke()

            screen.run_job(f"resume research {tag}", job)
        elif state in ("running", "starting"):
            def job(d: Any) -> None:
                from agentdeck.tui.messages import ActionDone

                d.research.pause(tag)
                self.post_message(ActionDone(f"research {tag} paused: running jobs finish, no new one starts "
                                             "(p resumes)", poke=False))
                self.feed.poke()

            screen.run_job(f"pause research {tag}", job)
        else:
            self.app.notify(f"research {tag} is {state}; nothing to pause or resume", severity="warning")

    def ask_stop(self) -> None:
        from agentdeck.tui.messages import ActionDone, ShowText

        status = self.status
        if status is None:
            self.app.notify("no research run to stop", severity="warning")
            return
        tag = status["tag"]
        if status["state"] not in ACTIVE and status["state"] != "interrupted":
            self.app.notify(f"research {tag} is {status['state']}; nothing to stop", severity="warning")
            return
        running = [t for t in status["trials"] if t["status"] == "running"]
        queued = [t for t in status["trials"] if t["status"] == "queued"]
        lines = [f"Stop research run {tag}?", "",
                 f"{len(running)} running job(s) are cancelled and recorded as crashes;",
                 f"{len(queued)} queued trial(s) are recorded as never run.",
                 "Kept trials stay on the branch " + status["branch"] + "."]

        def stop(d: Any) -> None:
            result = d.research.stop(tag)
            self.post_message(ActionDone(f"research {tag} {result.get('state', 'stopped')}", poke=False))
            self.feed.poke()

        self.post_message(ShowText(f"Stop research {tag}", lines, confirm=stop))

    def ask_promote(self) -> None:
        from agentdeck.tui.messages import ActionDone, ShowText

        status = self.status
        if status is None:
            self.app.notify("no research run to promote from", severity="warning")
            return
        tag = status["tag"]
        best = status.get("best")
        chosen = self.selected_trial
        trial = next((t for t in status["trials"] if t["id"] == chosen), None)
        if trial is None or trial["status"] != "keep" or trial["kind"] == "baseline":
            trial = next((t for t in status["trials"] if best and t["id"] == best.get("id")), None)
        if trial is None or trial["kind"] == "baseline":
            self.app.notify(f"nothing to promote: no trial of {tag} beat the baseline yet", severity="warning")
            return
        trial_id = trial["id"]
        lines = [f"Promote trial #{trial_id} of {tag} into the run's base branch (a git merge)?", "",
                 f"{status.get('metric')}: {fmt_metric(trial['metric'])} (baseline "
                 f"{fmt_metric((status.get('baseline') or {}).get('metric'))})",
                 f"{trial['description']}", f"commit {str(trial['commit'] or '')[:12]}"]
        suspect = bool(trial.get("suspect"))
        if suspect:
            lines += ["", f"⚠ trial #{trial_id} is SUSPECT: its gain was too large to believe ({trial['reason'][:160]}).",
                      "Check its log and diff; confirming promotes it anyway (research promote --accept-suspect)."]
        if self.diff and self.detail_for == (tag, trial_id):
            lines += ["", *self.diff.splitlines()[:40]]

        def promote(d: Any) -> None:
            result = d.research.promote(trial_id, tag, accept_suspect=suspect)
            self.post_message(ActionDone(f"promoted trial #{trial_id} into {result['into']} "
                                         f"({str(result.get('merge_commit') or '')[:10]})"))

        self.post_message(ShowText(f"Promote research {tag} #{trial_id}", lines, confirm=promote))
