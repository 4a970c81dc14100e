"""The main screen: the agent list, the selected agent's tabs, and every deck key.

Everything that talks to tmux or git runs in a thread worker (``run_job`` or the
feeds in :mod:`agentdeck.tui.live`); results come back as messages.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Input, TabbedContent, TabPane, Tabs

from agentdeck.tui import messages as msg
from agentdeck.tui.bindings import screen_bindings
from agentdeck.tui.live import DiffFeed, PreviewFeed, StatusFeed, load_diff
from agentdeck.tui.model import AgentRow, Counts
from agentdeck.tui.widgets.agent_list import AgentList
from agentdeck.tui.widgets.diff_view import DiffView
from agentdeck.tui.widgets.header import HeaderBar
from agentdeck.tui.widgets.key_bar import KeyBar
from agentdeck.tui.widgets.memory_pane import MemoryPane
from agentdeck.tui.widgets.research_pane import ResearchPane
from agentdeck.tui.widgets.preview import PanePreview

PER_AGENT = {"attach", "send", "approve", "deny", "restart", "kill", "commit", "merge", "select", "fork"}
TABS = ("preview", "diff", "memory", "research")


def _worktree_root(deck: Any) -> Any:
    try:
        return deck.worktree_root
    except Exception:
        return None


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
        self.loaded = False  # the first list from the store arrived
        self._stop = threading.Event()
        pool = self.app.pool
        self.status_feed = StatusFeed(pool, interval=self.app.poll_interval)
        self.preview_feed = PreviewFeed(pool, self._preview_target, interval=self.app.preview_interval)
        self.diff_feed = DiffFeed(pool, size_fn=self.app.size_fn, watch=self.app.watch_worktrees,
                                  shared_root=_worktree_root(self.app.deck))

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        deck = self.app.deck
        yield HeaderBar(deck.title() if getattr(deck, "multi", False) else deck.repo.root.name, id="header")
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
        self.query_one(AgentList).grouped = bool(getattr(self.app.deck, "multi", False))  # several repositories
        if self.live:
            self.start_feeds()
            self._start_usage_feed()
        self.set_interval(5.0, self._tick_ages)

    def on_unmount(self) -> None:
        self.stop_feeds()

    # ------------------------------------------------------------------ feeds
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
        if self._active_tab != "preview":
            return None
        return self.selected

    _active_tab = "preview"

    def poke(self) -> None:
        """Something changed on purpose (an action): poll the store and the pane now."""
        self.status_feed.poke()
        self.preview_feed.poke()

    def run_job(self, label: str, fn: Callable[[Any], Any], group: str = "action") -> None:
        """Run ``fn(deck)`` in a thread worker with that thread's Deck; errors become notifications."""
        pool = self.app.pool

        def job() -> Any:
            return fn(pool.get())

        self.run_worker(job, thread=True, exclusive=False, exit_on_error=False, group=group, name=label)

    def on_worker_state_changed(self, event: Any) -> None:
        """Worker messages do not bubble: failed actions go to the app's one error handler."""
        self.app.on_worker_state_changed(event)

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
                self.app.agent_started_waiting(started_waiting)
        self._paint()
        self._bindings_may_have_changed()

    def _bindings_may_have_changed(self) -> None:
        """Refresh the footer only when what ``check_action`` looks at changed (a refresh rebuilds it)."""
        row = self.by_name.get(self.selected or "")
        key = (
            row is not None, bool(row and row.waiting), bool(row and row.exited), bool(self.rows),
            any(r.waiting for r in self.rows), self._active_tab, self.query_one("#filter", Input).display,
        )
        if key != self._bindings_key:
            self._bindings_key = key
            self.refresh_bindings()

    _bindings_key: tuple = ()

    def on_diff_sizes(self, message: msg.DiffSizes) -> None:
        changed = False
        for name, size in message.sizes.items():
            if name in self.by_name and size is not None and self.sizes.get(name) != size:
                self.sizes[name] = size
                changed = True
        if changed:
            self._paint()
            if self.selected in message.sizes and self._active_tab == "diff":
                self._load_diff()

    def on_conflict_marks(self, message: msg.ConflictMarks) -> None:
        self.query_one(AgentList).set_radar(message.marks)
        self._paint()

    def on_preview_captured(self, message: msg.PreviewCaptured) -> None:
        if message.name == self.selected:
            self.query_one(PanePreview).show_capture(message.name, message.text)

    def on_diff_loaded(self, message: msg.DiffLoaded) -> None:
        view = self.query_one(DiffView)
        if message.name != self.selected:
            return
        if message.error:
            view.show_message(message.error)
        else:
            view.show_diff(message.name, message.result)

    def on_feed_problem(self, message: msg.FeedProblem) -> None:
        self.notify(f"{message.feed}: {message.error}", severity="warning", timeout=6)

    def on_action_done(self, message: msg.ActionDone) -> None:
        if message.text:
            self.notify(message.text, severity=message.severity)  # type: ignore[arg-type]
        if message.poke:
            self.poke()

    def on_attach_ready(self, message: msg.AttachReady) -> None:
        try:
            self.app.attacher(self.app, message.argv)
        except Exception as exc:  # e.g. SuspendNotSupported
            self.notify(f"cannot attach to {message.name}: {exc}", severity="error")
        self.preview_feed.forget()
        self.poke()

    def on_kill_plan(self, message: msg.KillPlan) -> None:
        from agentdeck.tui.screens.kill import KillScreen

        def decided(choice: str | None) -> None:
            if choice in ("keep", "discard"):
                self._do_kill(message.name, discard=choice == "discard")

        self.app.push_screen(KillScreen(message), decided)

    def on_show_text(self, message: msg.ShowText) -> None:
        from agentdeck.tui.screens.text import TextScreen

        def decided(ok: bool | None) -> None:
            if ok and message.confirm is not None:
                self.run_job(message.title, message.confirm)

        self.app.push_screen(TextScreen(message.title, message.lines, confirm=message.confirm is not None),
                             decided)

    # ------------------------------------------------------------------ painting
    def visible_rows(self) -> list[AgentRow]:
        return [r for r in self.rows if r.matches(self.filter_text)]

    def _paint(self) -> None:
        table = self.query_one(AgentList)
        table.show_rows(self.visible_rows(), self.sizes, self.marked, self.app.clock())
        self.query_one(HeaderBar).set_counts(
            Counts.of(self.rows), note=f"filter: {self.filter_text}" if self.filter_text else "")
        self._selection_changed(table.selected)

    def _tick_ages(self) -> None:
        if self.rows:
            self._paint()

    def _selection_changed(self, name: str | None) -> None:
        if name == self.selected:
            return
        self.selected = name
        if name and getattr(self.app.deck, "multi", False):  # new agents go to the selected agent's repository
            self.app.deck.focus.label = name.partition("/")[0]
        pane = self.query_one(PanePreview)
        if name is None:
            pane.show_message("no agents — press n to create one" if not self.rows else "no agent matches the filter")
        else:
            pane.show_message(f"capturing {name}…")
            self.preview_feed.forget()
            self.preview_feed.poke()
            if self.diff_feed.needs_touch_on_select(name):
                self.diff_feed.touch(name)
        if self._active_tab == "diff":
            self._load_diff()
        self._bindings_may_have_changed()

    @on(DataTable.RowHighlighted, "#agents")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._selection_changed(event.row_key.value if event.row_key is not None else None)

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._active_tab = event.pane.id or "preview"
        if self._active_tab == "preview":
            self.preview_feed.forget()
            self.preview_feed.poke()
        elif self._active_tab == "diff":
            self._load_diff()
        elif self._active_tab == "memory":
            self._load_memory()
        if self._active_tab != "memory":
            self.query_one(MemoryPane).deactivate()
        self._research_visible(self._active_tab == "research")
        self._bindings_may_have_changed()

    # ------------------------------------------------------------------ diff tab
    def _load_diff(self) -> None:
        name = self.selected
        view = self.query_one(DiffView)
        if name is None:
            view.show_message("select an agent to see its diff")
            return
        key = (name, self.sizes.get(name))
        if view.loaded_for == key:
            return
        view.loaded_for = key
        view.show_loading(name)
        self._diff_worker(name)

    @work(thread=True, exclusive=True, exit_on_error=False, group="diff")
    def _diff_worker(self, name: str) -> None:
        try:
            result = load_diff(self.app.pool.get(), name)
            self.post_message(msg.DiffLoaded(name, result))
        except Exception as exc:
            self.post_message(msg.DiffLoaded(name, None, error=f"cannot show the diff of {name}: {exc}"))

    # ------------------------------------------------------------------ memory tab
    def _load_memory(self) -> None:
        """The Memory pane searches, loads and watches on its own (thread workers)."""
        self.query_one(MemoryPane).activate()

    # ------------------------------------------------------------------ key availability
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        row = self.by_name.get(self.selected or "")
        if action in PER_AGENT and row is None:
            return False
        if action in ("approve", "deny"):
            return bool(row and row.waiting)
        if action == "send":
            return bool(row and not row.exited)
        if action == "next_waiting":
            return any(r.waiting for r in self.rows)
        if action == "edit_note":
            return self._active_tab == "memory"
        if action in ("research_pause", "research_stop", "research_promote"):
            return self._active_tab == "research"
        if action in ("compare", "broadcast"):
            return bool(self.rows)
        if action == "close_filter":
            return self.query_one("#filter", Input).display
        return True

    # ------------------------------------------------------------------ actions: navigation
    def action_tab(self, tab: str) -> None:
        if tab in TABS:
            self.query_one(TabbedContent).active = tab

    def action_next_waiting(self) -> None:
        names = [r.name for r in self.visible_rows()]
        waiting = [n for n in names if self.by_name[n].waiting]
        if not waiting:
            if any(r.waiting for r in self.rows):
                self.notify("the waiting agents are hidden by the filter; esc clears it")
            return
        start = names.index(self.selected) if self.selected in names else -1
        after = [n for n in names[start + 1:] + names[: start + 1] if n in waiting]
        self.query_one(AgentList).select(after[0])

    def action_filter(self) -> None:
        if self._active_tab == "memory":  # on the Memory tab, / types a search
            self.query_one(MemoryPane).focus_search()
            return
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
        self._paint()
        self._bindings_may_have_changed()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self._paint()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.action_close_filter()
            return
        self.query_one(AgentList).focus()

    def action_select(self) -> None:
        name = self.selected
        if name is None:
            return
        self.marked.symmetric_difference_update({name})
        self._paint()

    def action_help(self) -> None:
        from agentdeck.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen())

    def action_quit(self) -> None:
        self.app.exit(0)  # agents keep running: they live in tmux, not in this process

    def run_palette_action(self, action: str, name: str | None) -> None:
        """Run a command chosen in the palette: select the agent, then the same action as its key."""
        if name is not None and not self.select_agent(name):
            self.notify(f"{name} is gone", severity="warning")
            return
        if action.startswith("tab("):
            self.action_tab(action[5:-2])
            return
        getattr(self, f"action_{action}")()

    def select_agent(self, name: str) -> bool:
        """Move the cursor to *name* (clearing a filter that hides it)."""
        table = self.query_one(AgentList)
        if name not in table.names and name in self.by_name:
            self.action_close_filter()
        ok = table.select(name)
        if ok:
            self._selection_changed(name)
        return ok

    # ------------------------------------------------------------------ actions: agents
    def _target(self) -> str | None:
        if self.selected is None:
            self.notify("no agent selected", severity="warning")
        return self.selected

    def action_new_agent(self) -> None:
        from agentdeck.tui.screens.new_agent import NewAgentScreen

        def created(name: str | None) -> None:
            if name:
                self.notify(f"created {name}")
                self._select_when_listed(name)
                self.poke()

        self.app.push_screen(NewAgentScreen(known=set(self.by_name)), created)

    def _select_when_listed(self, name: str, tries: int = 40) -> None:
        if self.select_agent(name) or tries <= 0:
            return
        self.set_timer(0.05, lambda: self._select_when_listed(name, tries - 1))

    def action_attach(self) -> None:
        name = self._target()
        if name:
            self.run_job(f"attach {name}", lambda d: self.post_message(msg.AttachReady(name, d.attach_argv(name))))

    def action_send(self) -> None:
        name = self._target()
        if not name:
            return
        from agentdeck.tui.screens.send import SendScreen

        row = self.by_name[name]

        def send(result: tuple[str, bool] | None) -> None:
            if result:
                text, force = result
                self.run_job(f"send {name}", lambda d: (d.send(name, text, force=force),
                                                        self.post_message(msg.ActionDone(f"sent to {name}"))))

        self.app.push_screen(SendScreen([name], waiting=row.waiting), send)

    def action_approve(self) -> None:
        self._answer(True)

    def action_deny(self) -> None:
        self._answer(False)

    def _answer(self, approve: bool) -> None:
        name = self._target()
        if not name:
            return
        verb = "approved" if approve else "denied"

        def job(d: Any) -> None:
            (d.approve if approve else d.deny)(name)
            self.post_message(msg.ActionDone(f"{verb} {name}'s prompt"))

        self.run_job(f"{verb} {name}", job)

    def action_restart(self) -> None:
        name = self._target()
        if not name:
            return

        def job(d: Any) -> None:
            d.restart(name)
            self.post_message(msg.ActionDone(f"restarted {name}"))

        self.notify(f"restarting {name}…", timeout=2)
        self.run_job(f"restart {name}", job)

    def action_kill(self) -> None:
        name = self._target()
        if not name:
            return

        def job(d: Any) -> None:
            rec = d.get(name)
            dirty, ahead = d.agent_changes(rec)
            self.post_message(msg.KillPlan(name, dirty, ahead, rec.branch, rec.worktree))

        self.run_job(f"kill {name}", job)

    def _do_kill(self, name: str, discard: bool) -> None:
        def job(d: Any) -> None:
            result = d.kill(name, discard=discard)
            if result.get("kept"):
                text = (f"stopped {name}; kept its worktree and branch ({result['commits']} commit(s), "
                        f"{result['uncommitted']} uncommitted file(s))")
            else:
                ref = result.get("recovery_ref")
                text = f"removed {name} (worktree and branch)" + (f"; recovery ref {ref}" if ref else "")
            self.post_message(msg.ActionDone(text))

        self.run_job(f"kill {name}", job)

    # ------------------------------------------------------------------ actions: review
    def action_commit(self) -> None:
        name = self._target()
        if not name:
            return

        def job(d: Any) -> None:
            result = d.review.commit(name)
            extra = f" ({result.warning})" if getattr(result, "warning", "") else ""
            self.post_message(msg.ActionDone(f"committed {result.commit[:10]} in {name}: {result.subject}{extra}"))
            self.diff_feed.touch(name)

        self.notify(f"committing {name}'s work…", timeout=2)
        self.run_job(f"commit {name}", job)

    def action_merge(self) -> None:
        name = self._target()
        if not name:
            return

        def check(d: Any) -> None:
            chk = d.review.check_merge(name)
            lines = [f"merge {chk.branch} into {chk.target} ({chk.strategy})", ""]
            if chk.up_to_date:
                self.post_message(msg.ActionDone(f"{name}: nothing to merge, {chk.target} has it all", poke=False))
                return
            lines.append(f"{chk.commits} commit(s); {len(chk.files)} file(s) change in {chk.target}:")
            lines += [f"  {f.get('status', '')[:1].upper()} {f.get('path', '')}" for f in chk.files[:30]]
            if len(chk.files) > 30:
                lines.append(f"  … {len(chk.files) - 30} more")
            problems = list(chk.problems)
            if problems:
                lines += ["", "Cannot merge now:"] + [f"  {p}" for p in problems]
                self.post_message(msg.ShowText(f"Merge {name}", lines))
                return

            def do_merge(d2: Any) -> None:
                res = d2.review.merge(name)
                commit = getattr(res, "commit", "") or ""
                self.post_message(msg.ActionDone(f"merged {name} into {chk.target} {commit[:10]}".rstrip()))

            self.post_message(msg.ShowText(f"Merge {name}", lines, confirm=do_merge))

        self.run_job(f"check merge {name}", check)

    def action_compare(self) -> None:
        names = [r.name for r in self.rows if r.name in self.marked] or (
            [self.selected] if self.selected else [])
        if not names:
            self.notify("select agents with space first", severity="warning")
            return

        def job(d: Any) -> None:
            from agentdeck.review.compare import table

            rows = d.review.compare(names)
            self.post_message(msg.ShowText("Compare " + ", ".join(names), table(rows)))

        self.notify(f"comparing {', '.join(names)}…", timeout=2)
        self.run_job("compare", job)

    # ------------------------------------------------------------------ actions: attention
    def action_broadcast(self) -> None:
        from agentdeck.tui.screens.send import SendScreen

        names = [r.name for r in self.rows if r.name in self.marked] or [r.name for r in self.rows]
        live = [n for n in names if not self.by_name[n].exited]
        if not live:
            self.notify("no running agent to broadcast to", severity="warning")
            return

        def send(result: tuple[str, bool] | None) -> None:
            if not result:
                return
            text, force = result

            def job(d: Any) -> None:
                sent, refused = [], []
                for n in live:
                    try:
                        d.send(n, text, force=force)
                        sent.append(n)
                    except Exception as exc:
                        refused.append(f"{n} ({exc})")
                text_done = f"sent to {', '.join(sent) or 'nobody'}"
                if refused:
                    text_done += "; refused: " + "; ".join(refused)
                self.post_message(msg.ActionDone(text_done, severity="warning" if refused else "information"))

            self.run_job("broadcast", job)

        self.app.push_screen(SendScreen(live, waiting=any(self.by_name[n].waiting for n in live)), send)

    def action_fork(self) -> None:
        name = self._target()
        if not name:
            return
        from agentdeck.tui.screens.fork import ForkScreen

        short = name.partition("/")[2] if getattr(self.app.deck, "multi", False) else name
        taken = set(self.by_name)
        if getattr(self.app.deck, "multi", False):  # names are unique per repository
            label = name.partition("/")[0]
            taken = {k.partition("/")[2] for k in self.by_name if k.partition("/")[0] == label}
        suggestion, n = f"{short}-fork", 2
        while suggestion in taken:
            suggestion, n = f"{short}-fork-{n}", n + 1

        def forked(new: str | None) -> None:
            if new:
                self.notify(f"forked {name} into {new}")
                self._select_when_listed(new)
                self.poke()

        self.app.push_screen(ForkScreen(name, suggestion), forked)

    # ------------------------------------------------------------------ token usage (agentdeck.usage)
    usage_feed: Any = None

    def _start_usage_feed(self) -> None:
        from agentdeck.tui.usage_feed import UsageFeed

        self.usage_feed = UsageFeed(self.app.pool, interval=getattr(self.app, "usage_interval", 5.0))
        self._feed(self.usage_feed, "usage")

    def on_usage_updated(self, message: Any) -> None:
        summary = message.summary
        self.query_one(HeaderBar).set_usage(summary.tokens_per_minute, summary.cost_usd)
        self.query_one(AgentList).set_tokens(summary.tokens)
        self._paint()

    # ------------------------------------------------------------------ actions: Memory and Research tabs
    def action_edit_note(self) -> None:
        note = self.query_one(MemoryPane).selected
        if note is None:
            self.notify("no note to edit", severity="warning")
            return
        from agentdeck.deck import Deck

        # `agentdeck memory edit` owns the whole edit (its editor, the version check), in the user's terminal.
        argv = Deck.agentdeck_argv("--repo", str(self.app.deck.repo.root), "memory", "edit", note)
        try:
            self.app.attacher(self.app, argv)
        except Exception as exc:
            self.notify(f"cannot open the editor: {exc}", severity="error")
        self._load_memory()

    def _research_visible(self, visible: bool) -> None:
        """The Research pane reads the ledger only while its tab shows (and the deck is live)."""
        if self.live or not visible:
            self.query_one(ResearchPane).set_visible(visible)

    def action_research_pause(self) -> None:
        self.query_one(ResearchPane).pause_or_resume()

    def action_research_stop(self) -> None:
        self.query_one(ResearchPane).ask_stop()

    def action_research_promote(self) -> None:
        self.query_one(ResearchPane).ask_promote()

