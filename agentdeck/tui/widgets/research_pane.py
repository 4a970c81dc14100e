"""The Research tab: the latest auto-research run, live.

- a summary line (tag, state, baseline and noise, best, proposals, message), and one line per
  other hardware class (its own baseline, best and branch);
- a leaderboard of every trial (running first, then best metric first): trial,
  kind, status (``⚠`` marks a suspect: a gain too large to believe), metric, delta vs the
  baseline, GPU/slot, seconds, description;
- a text plot of the metric over trials with the best-so-far line;
- one lane per GPU/slot: what runs there now and the outcomes of its last trials;
- the highlighted trial's log tail and diff.

One feed thread (:class:`~agentdeck.tui.live.research.ResearchFeed`, started the
first time the tab shows) reads a ``Deck.research_reader()`` while the tab is
visible, every ``interval`` seconds, and posts only what changed; nothing here
blocks the app's thread.  The text of each part comes from
:mod:`agentdeck.tui.widgets.research_text`.  ``p`` / ``S`` / ``P`` (pause or
resume, stop, promote) go through the screen's ``run_job`` and confirmations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from agentdeck.tui.context import deck_app
from agentdeck.tui.live.research import LOG_TAIL_LINES, ResearchFeed
from agentdeck.tui.messages import ActionDone, ResearchStatus, ShowText, TrialDetail
from agentdeck.tui.widgets.list_pane import ListPane
from agentdeck.tui.widgets.research_text import (
    delta_text,
    diff_text,
    fmt_metric,
    importance_text,
    lanes,
    leaderboard,
    plot,
    status_cell,
    summary,
)

# the pure helpers stay importable from here (tests, scripts)
__all__ = ["ResearchPane", "delta_text", "diff_text", "fmt_metric", "importance_text", "lanes", "leaderboard",
           "plot", "status_cell", "summary"]

ACTIVE = ("starting", "running", "paused")
TRIAL_COLUMNS = (("trial", "TRIAL"), ("kind", "KIND"), ("status", "STATUS"), ("metric", "METRIC"),
                 ("delta", "Δ BASE"), ("gpu", "GPU"), ("secs", "SECS"), ("desc", "DESCRIPTION"))


class ResearchPane(ListPane):
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
    TABLE = "trials"
    COLUMNS = TRIAL_COLUMNS

    def __init__(self, interval: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status: dict[str, Any] | None = None
        self.order: list[int] = []
        self.detail_for: tuple[str, int] | None = None
        self.log_text = ""
        self.diff = ""
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
        self._show_parts(False)  # the columns: ListPane

    def on_unmount(self) -> None:
        self._stop.set()
        self.feed.poke()

    def _open_research(self) -> Any:
        return deck_app(self).deck.research_reader()

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
        self.keep_cursor(self.order, keep)
        plot_w = max(24, self.query_one("#research-plot").size.width - 2)
        plot_h = max(4, self.query_one("#research-plot").size.height - 3)
        self.query_one("#research-plot", Static).update(plot(status, plot_w, min(plot_h, 14)))
        self.query_one("#research-lanes", Static).update(lanes(status, 40))
        self.show_highlighted()

    @property
    def selected_trial(self) -> int | None:
        return self.at_cursor(self.order)

    def show_highlighted(self) -> None:
        """The highlighted trial's log and diff: asked of the feed (shown by :meth:`on_trial_detail`)."""
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

    def _run_to(self, what: str) -> dict[str, Any] | None:
        """The run shown, or None after telling the user there is no run to *what*."""
        if self.status is None:
            self.app.notify(f"no research run to {what}", severity="warning")
        return self.status

    def _then_poke(self, act: Callable[[Any], str]) -> Callable[[Any], None]:
        """A worker job: *act* (given the worker's deck) returns the line to show; then the feed reads
        the run again."""

        def job(d: Any) -> None:
            self.post_message(ActionDone(act(d), poke=False))
            self.feed.poke()

        return job

    def pause_or_resume(self) -> None:
        screen: Any = self.screen
        status = self._run_to("pause")
        if status is None:
            return
        tag, state = status["tag"], status["state"]
        if state == "paused" or state == "interrupted":
            def resume(d: Any) -> str:
                result = d.research.resume(tag)
                extra = " (its loop restarted in the background)" if result.get("restarted") else ""
                return f"research {tag} resumed{extra}"

            screen.run_job(f"resume research {tag}", self._then_poke(resume))
        elif state in ("running", "starting"):
            def pause(d: Any) -> str:
                d.research.pause(tag)
                return f"research {tag} paused: running jobs finish, no new one starts (p resumes)"

            screen.run_job(f"pause research {tag}", self._then_poke(pause))
        else:
            self.app.notify(f"research {tag} is {state}; nothing to pause or resume", severity="warning")

    def ask_stop(self) -> None:
        status = self._run_to("stop")
        if status is None:
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

        def stop(d: Any) -> str:
            return f"research {tag} {d.research.stop(tag).get('state', 'stopped')}"

        self.post_message(ShowText(f"Stop research {tag}", lines, confirm=self._then_poke(stop)))

    def ask_promote(self) -> None:
        status = self._run_to("promote from")
        if status is None:
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
            lines += ["", f"⚠ trial #{trial_id} is SUSPECT: its gain was too large to believe "
                          f"({trial['reason'][:160]}).",
                      "Check its log and diff; confirming promotes it anyway (research promote --accept-suspect)."]
        if self.diff and self.detail_for == (tag, trial_id):
            lines += ["", *self.diff.splitlines()[:40]]

        def promote(d: Any) -> None:
            result = d.research.promote(trial_id, tag, accept_suspect=suspect)
            self.post_message(ActionDone(f"promoted trial #{trial_id} into {result['into']} "
                                         f"({str(result.get('merge_commit') or '')[:10]})"))

        self.post_message(ShowText(f"Promote research {tag} #{trial_id}", lines, confirm=promote))
