"""The main screen: the agent list, the selected agent's tabs; it lays out and routes.

What each key does lives in :mod:`agentdeck.tui.actions` (keyed by binding id) and
in the panes that own it; this screen keeps the state they read (the rows, the
selection, the marks, the filter, the active tab: the ``actions.MainView``
protocol), starts the feeds of :mod:`agentdeck.tui.live` and routes their
messages.  The dialogs it opens are under :mod:`agentdeck.tui.screens`.  Everything that talks to
tmux or git runs in a thread worker (``run_job`` or the feeds); results come back
as messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Input, TabbedContent, TabPane, Tabs

from agentdeck.tui import actions
from agentdeck.tui import messages as msg
from agentdeck.tui.bindings import screen_bindings
from agentdeck.tui.context import deck_app
from agentdeck.tui.live import DiffFeed, PreviewFeed, StatusFeed
from agentdeck.tui.model import AgentRow, Counts
from agentdeck.tui.screens.text import TextScreen
from agentdeck.tui.usage_feed import UsageFeed, UsageUpdated
from agentdeck.tui.widgets.agent_list import AgentList
from agentdeck.tui.widgets.diff_view import DiffView
from agentdeck.tui.widgets.header import HeaderBar
from agentdeck.tui.widgets.key_bar import KeyBar
from agentdeck.tui.widgets.memory_pane import MemoryPane
from agentdeck.tui.widgets.preview import PanePreview
from agentdeck.tui.widgets.research_pane import ResearchPane

TABS = ("preview", "diff", "memory", "research")


class MainScreen(Screen):
    BINDINGS: ClassVar[list[BindingType]] = [
        *screen_bindings(),
        Binding("escape", "close_filter", "close filter", show=False),
    ]

    def __init__(self, live: bool = True) -> None:
        super().__init__(id="main")
        self.live = live
        self.rows: list[AgentRow] = []
        self.by_name: dict[str, AgentRow] = {}
        self.sizes: dict[str, tuple[int, int] | None] = {}
        self.marked: set[str] = set()
        self.filter_text = ""
        self.selected: str | None = None
        self.active_tab = "preview"
        self.loaded = False  # the first list from the store arrived
        self._bindings_key: tuple = ()
        self._stop = threading.Event()
        app = deck_app(self)
        self.status_feed = StatusFeed(app.pool, interval=app.feeds.poll_interval)
        self.preview_feed = PreviewFeed(app.pool, self._preview_target, interval=app.feeds.preview_interval)
        self.diff_feed = DiffFeed(app.pool, size_fn=app.feeds.size_fn, watch=app.feeds.watch_worktrees)
        self.usage_feed: UsageFeed | None = None

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        deck = deck_app(self).deck
        yield HeaderBar(deck.title(), id="header")
        with Vertical(id="top"):
            yield Input(placeholder="filter: name, definition, status, branch (enter keeps, esc clears)",
                        id="filter")
            yield AgentList(id="agents")
        with TabbedContent(initial="preview", id="tabs"):
            with TabPane("1 Preview", id="preview"):
                yield PanePreview(id="pane")
            with TabPane("2 Diff", id="diff"):
                yield DiffView(id="diffview")
            with TabPane("3 Memory", id="memory"):
                yield MemoryPane(id="memory-pane")
            with TabPane("4 Research", id="research"):
                yield ResearchPane(id="research-pane")
        yield KeyBar(id="keys")

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        for tabs in self.query(Tabs):
            tabs.can_focus = False
        self.query_one(AgentList).focus()
        self.query_one(AgentList).grouped = deck_app(self).deck.multi  # several repositories: grouped by repository
        if self.live:
            self.start_feeds()
            app = deck_app(self)
            self.usage_feed = UsageFeed(app.pool, interval=app.feeds.usage_interval)
            self._feed(self.usage_feed, "usage")
        self.set_interval(5.0, self._tick_ages)

    def on_unmount(self) -> None:
        self.stop_feeds()

    # ------------------------------------------------------------------ feeds and workers
    def start_feeds(self) -> None:
        self._stop.clear()
        self._feed(self.status_feed, "status")
        self._feed(self.preview_feed, "preview")
        self._feed(self.diff_feed, "diffsize")

    def stop_feeds(self) -> None:
        self._stop.set()
        if self.usage_feed is not None:
            self.usage_feed.poke()
        for feed in (self.status_feed, self.preview_feed, self.diff_feed):
            feed.poke()

    def _feed(self, feed: Any, group: str) -> None:
        self.run_worker(lambda: feed.run(self.post_message, self._stop), thread=True, exclusive=True,
                        exit_on_error=False, group=group, name=f"{group} feed")

    def _preview_target(self) -> str | None:
        """Read from the preview thread: the agent to capture now (None: the Preview tab is hidden)."""
        if self.app.screen is not self and not self.app.screen.is_modal:
            return None
        if self.active_tab != "preview":
            return None
        return self.selected

    def poke(self) -> None:
        """Something changed on purpose (an action): poll the store and the pane now."""
        self.status_feed.poke()
        self.preview_feed.poke()

    def run_job(self, label: str, fn: Callable[[Any], Any], group: str = "action") -> None:
        """Run ``fn(deck)`` in a thread worker with that thread's Deck; errors become notifications."""
        pool = deck_app(self).pool

        def job() -> Any:
            return fn(pool.get())

        self.run_worker(job, thread=True, exclusive=False, exit_on_error=False, group=group, name=label)

    def on_worker_state_changed(self, event: Any) -> None:
        """Worker messages do not bubble: failed actions go to the app's one error handler."""
        deck_app(self).on_worker_state_changed(event)

    # ------------------------------------------------------------------ messages from the feeds
    def on_agents_changed(self, message: msg.AgentsChanged) -> None:
        before = self.by_name
        first = not self.loaded
        self.loaded = True
        self.rows = message.rows
        self.by_name = {r.name: r for r in message.rows}
        self.marked &= set(self.by_name)
        for name in list(self.sizes):
            if name not in self.by_name:
                del self.sizes[name]
        self.diff_feed.track(self.rows)
        if self.usage_feed is not None:
            self.usage_feed.poke()  # tokens move with the agents (it sleeps while none works)
        if not first:
            started_waiting = [r.name for r in self.rows
                               if r.waiting and (r.name not in before or not before[r.name].waiting)]
            if started_waiting:
                deck_app(self).agent_started_waiting(started_waiting)
        self.repaint()
        self._bindings_may_have_changed()

    def on_diff_sizes(self, message: msg.DiffSizes) -> None:
        changed = False
        for name, size in message.sizes.items():
            if name in self.by_name and size is not None and self.sizes.get(name) != size:
                self.sizes[name] = size
                changed = True
        if changed:
            self.repaint()
            if self.selected in message.sizes and self.active_tab == "diff":
                self._load_diff()

    def on_conflict_marks(self, message: msg.ConflictMarks) -> None:
        self.query_one(AgentList).set_radar(message.marks)
        self.repaint()

    def on_preview_captured(self, message: msg.PreviewCaptured) -> None:
        if message.name == self.selected:
            self.query_one(PanePreview).show_capture(message.name, message.text)

    def on_usage_updated(self, message: UsageUpdated) -> None:
        summary = message.summary
        self.query_one(HeaderBar).set_usage(summary.tokens_per_minute, summary.cost_usd)
        self.query_one(AgentList).set_tokens(summary.tokens)
        self.repaint()

    def on_feed_problem(self, message: msg.FeedProblem) -> None:
        self.notify(f"{message.feed}: {message.error}", severity="warning", timeout=6)

    # ------------------------------------------------------------------ messages from the actions' workers
    def on_action_done(self, message: msg.ActionDone) -> None:
        if message.text:
            self.notify(message.text, severity=message.severity)  # type: ignore[arg-type]
        if message.poke:
            self.poke()

    def on_attach_ready(self, message: msg.AttachReady) -> None:
        actions.attach_ready(self, message)

    def on_kill_plan(self, message: msg.KillPlan) -> None:
        actions.kill_plan(self, message)

    def on_show_text(self, message: msg.ShowText) -> None:
        def decided(ok: bool | None) -> None:
            if ok and message.confirm is not None:
                self.run_job(message.title, message.confirm)

        self.app.push_screen(TextScreen(message.title, message.lines, confirm=message.confirm is not None),
                             decided)

    # ------------------------------------------------------------------ painting and selection
    def visible_rows(self) -> list[AgentRow]:
        return [r for r in self.rows if r.matches(self.filter_text)]

    def repaint(self) -> None:
        table = self.query_one(AgentList)
        table.show_rows(self.visible_rows(), self.sizes, self.marked, deck_app(self).clock())
        self.query_one(HeaderBar).set_counts(
            Counts.of(self.rows), note=f"filter: {self.filter_text}" if self.filter_text else "")
        self._selection_changed(table.selected)

    def _tick_ages(self) -> None:
        if self.rows:
            self.repaint()

    def row(self) -> AgentRow | None:
        """The selected agent's row (None: nothing selected)."""
        return self.by_name.get(self.selected or "")

    def target(self) -> str | None:
        """The selected agent, for a key that acts on one (a warning when there is none)."""
        if self.selected is None:
            self.notify("no agent selected", severity="warning")
        return self.selected

    def _selection_changed(self, name: str | None) -> None:
        if name == self.selected:
            return
        self.selected = name
        if name:
            deck_app(self).deck.focus_on(name)  # new agents go to the selected agent's repository
        pane = self.query_one(PanePreview)
        if name is None:
            pane.show_message("no agents — press n to create one" if not self.rows else "no agent matches the filter")
        else:
            pane.show_message(f"capturing {name}…")
            self.preview_feed.forget()
            self.preview_feed.poke()
            if self.diff_feed.needs_touch_on_select(name):
                self.diff_feed.touch(name)
        if self.active_tab == "diff":
            self._load_diff()
        self._bindings_may_have_changed()

    @on(DataTable.RowHighlighted, "#agents")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._selection_changed(event.row_key.value if event.row_key is not None else None)

    def select_agent(self, name: str) -> bool:
        """Move the cursor to *name* (clearing a filter that hides it)."""
        table = self.query_one(AgentList)
        if name not in table.names and name in self.by_name:
            self.action_close_filter()
        ok = table.select(name)
        if ok:
            self._selection_changed(name)
        return ok

    def select_when_listed(self, name: str, tries: int = 40) -> None:
        """Select *name* once the status feed lists it (a new agent, a fork)."""
        if self.select_agent(name) or tries <= 0:
            return
        self.set_timer(0.05, lambda: self.select_when_listed(name, tries - 1))

    # ------------------------------------------------------------------ tabs
    def show_tab(self, tab: str) -> None:
        if tab in TABS:
            self.query_one(TabbedContent).active = tab

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.active_tab = event.pane.id or "preview"
        if self.active_tab == "preview":
            self.preview_feed.forget()
            self.preview_feed.poke()
        elif self.active_tab == "diff":
            self._load_diff()
        elif self.active_tab == "memory":
            self.query_one(MemoryPane).activate()  # it searches, loads and watches on its own
        if self.active_tab != "memory":
            self.query_one(MemoryPane).deactivate()
        research = self.active_tab == "research"
        if self.live or not research:  # the Research pane reads the ledger only while its tab shows
            self.query_one(ResearchPane).set_visible(research)
        self._bindings_may_have_changed()

    def _load_diff(self) -> None:
        self.query_one(DiffView).load(self.selected, self.sizes.get(self.selected or ""))

    # ------------------------------------------------------------------ the filter box
    def open_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()
        self._bindings_may_have_changed()

    def action_close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.filter_text = ""
        self.query_one(AgentList).focus()
        self.repaint()
        self._bindings_may_have_changed()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.repaint()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.action_close_filter()
            return
        self.query_one(AgentList).focus()

    # ------------------------------------------------------------------ keys (agentdeck.tui.actions)
    def action_key(self, binding_id: str) -> None:
        """Every deck key: its handler in :mod:`agentdeck.tui.actions`."""
        actions.run(self, binding_id)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "key":
            return actions.available(self, str(parameters[0]))
        if action == "close_filter":
            return self.query_one("#filter", Input).display
        return True

    def _bindings_may_have_changed(self) -> None:
        """Refresh the footer only when what ``check_action`` looks at changed (a refresh rebuilds it)."""
        row = self.row()
        key = (
            row is not None, bool(row and row.waiting), bool(row and row.exited), bool(self.rows),
            any(r.waiting for r in self.rows), self.active_tab, self.query_one("#filter", Input).display,
        )
        if key != self._bindings_key:
            self._bindings_key = key
            self.refresh_bindings()

    def run_palette_action(self, binding_id: str, name: str | None) -> None:
        """Run a command chosen in the palette: select the agent, then the same handler as its key."""
        if name is not None and not self.select_agent(name):
            self.notify(f"{name} is gone", severity="warning")
            return
        actions.run(self, binding_id)
