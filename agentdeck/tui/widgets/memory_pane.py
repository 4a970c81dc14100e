"""The Memory tab: search the shared notes as you type, read one as Markdown, see who wrote what.

- ``/`` (on this tab) puts the cursor in the search box; the box takes every key
  while focused (no deck key fires); ``enter``/``esc`` go back to the results.
- An empty query lists the newest notes; otherwise the store's ranked search
  (the last word matches as a prefix).
- The highlighted note is rendered with Textual's ``Markdown`` widget.
- "Recent activity" groups the latest writes (journals included) by agent.
- A :class:`~agentdeck.memory.watch.MemoryWatcher` (started the first time the tab
  shows) reports every write by any agent; the pane refreshes, debounced, while
  visible (and once when it shows again otherwise).

All store access runs in thread workers; results come back as messages.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Markdown, Static

from agentdeck.deck import Deck
from agentdeck.tui.context import deck_app
from agentdeck.tui.widgets.list_pane import ListPane

SEARCH_LIMIT = 50
RECENT_LIMIT = 100
ACTIVITY_LIMIT = 200
REFRESH_DEBOUNCE_S = 0.1
NOTE_COLUMNS = (("title", "TITLE"), ("kind", "KIND"), ("tags", "TAGS"), ("author", "BY"), ("updated", "UPDATED"))


class SearchBox(Input):
    """The search input; ``esc`` hands the keys back to the results."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "leave", "back to the results", show=False)]

    def action_leave(self) -> None:
        pane = self.parent
        if isinstance(pane, MemoryPane):
            pane.focus_results()


@dataclass
class MemoryResults(Message):
    """Notes for the list (a search's hits or the newest notes) and the activity by agent."""

    seq: int
    query: str
    notes: list[dict[str, Any]]
    activity: list[tuple[str, int, str, str]]
    error: str = ""


@dataclass
class NoteLoaded(Message):
    """A note rendered as Markdown (read in a worker)."""

    note_id: str
    markdown: str


@dataclass
class MemoryChanged(Message):
    """The watcher saw writes (posted from its thread)."""

    ids: set[str]


def note_markdown(note: Any) -> str:
    """A note as Markdown: its title, one line of metadata, its body."""
    tags = ", ".join(note.tags) if note.tags else ""
    meta = [f"`{note.id}`", note.kind, f"by {note.author}", f"updated {str(note.updated)[:16].replace('T', ' ')}",
            f"v{note.version}"]
    if tags:
        meta.append(f"tags: {tags}")
    if note.status != "active":
        meta.append(f"**{note.status}**" + (f" by `{note.superseded_by}`" if note.superseded_by else ""))
    body = note.body.strip() or "_(empty)_"
    return f"# {note.title}\n\n{' · '.join(meta)}\n\n{body}\n"


def activity_by_agent(rows: list[dict[str, Any]], limit: int = 6) -> list[tuple[str, int, str, str]]:
    """(agent, writes, newest update, newest title) per author, most recent first."""
    groups: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for row in rows:  # newest first
        author = str(row.get("author") or "user")
        groups.setdefault(author, []).append(row)
    out = []
    for author, items in list(groups.items())[:limit]:
        newest = items[0]
        out.append((author, len(items), str(newest.get("updated", "")), str(newest.get("title", ""))))
    return out


class MemoryPane(ListPane):
    DEFAULT_CSS = """
    MemoryPane { height: 1fr; }
    MemoryPane > #memory-search { height: 3; }
    MemoryPane > #memory-status { height: auto; padding: 0 1; color: $text-muted; }
    MemoryPane > #memory-body { height: 1fr; }
    MemoryPane #memory-left { width: 2fr; }
    MemoryPane #notes { height: 1fr; }
    MemoryPane #memory-activity { height: auto; max-height: 8; padding: 0 1; border-top: solid $panel; }
    MemoryPane #memory-note-scroll { width: 3fr; border-left: solid $panel; }
    MemoryPane #memory-note { margin: 0 1; }
    """
    TABLE = "notes"
    COLUMNS = NOTE_COLUMNS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notes: list[dict[str, Any]] = []
        self.query_text = ""
        self.shown_id: str | None = None
        self.shown_markdown = ""
        self.activity: list[tuple[str, int, str, str]] = []
        self.refreshes = 0  # results applied (tests, diagnostics)
        self._seq = 0
        self._active = False
        self._dirty = False
        self._pending: Any = None
        self._store: Any = None
        self._watcher: Any = None
        self._watch_lock = threading.Lock()
        self._closed = False

    def compose(self) -> ComposeResult:
        yield SearchBox(placeholder="search the shared notes (/ types here; enter or esc: back to the list)",
                        id="memory-search")
        yield Static(Text("loading notes…", style="italic"), id="memory-status")
        with Horizontal(id="memory-body"):
            with Vertical(id="memory-left"):
                yield DataTable(cursor_type="row", id="notes")
                yield Static("", id="memory-activity")
            with VerticalScroll(id="memory-note-scroll"):
                yield Markdown("", id="memory-note")

    def on_mount(self) -> None:
        self.table.display = False  # the columns: ListPane

    def on_unmount(self) -> None:
        self._closed = True
        self._stop_watcher()

    # ------------------------------------------------------------------ from the screen
    def activate(self) -> None:
        """The tab shows (or something changed on purpose): refresh, and watch for writes."""
        self._active = True
        self._dirty = False
        self.reload()

    def deactivate(self) -> None:
        self._active = False

    def focus_search(self) -> None:
        self.query_one(SearchBox).focus()

    def edit_selected(self) -> None:
        """``e``: `agentdeck memory edit` owns the whole edit (its editor, the version check), run in
        the user's terminal through the deck's attacher; the list is read again afterwards."""
        note = self.selected
        if note is None:
            self.app.notify("no note to edit", severity="warning")
            return
        argv = Deck.agentdeck_argv("--repo", str(deck_app(self).deck.repo.root), "memory", "edit", note)
        try:
            deck_app(self).attacher(self.app, argv)
        except Exception as exc:
            self.app.notify(f"cannot open the editor: {exc}", severity="error")
        self.activate()

    def focus_results(self) -> None:
        table = self.query_one("#notes", DataTable)
        if table.display:
            table.focus()
        else:
            self.screen.set_focus(None)
            try:
                self.screen.query_one("#agents").focus()
            except Exception:
                pass

    # ------------------------------------------------------------------ loading
    def reload(self) -> None:
        self._seq += 1
        self._fetch(self._seq, self.query_text)

    def _memory(self) -> Any:
        """The deck's store (``deck.memory``; one for every worker thread: its index keeps a
        connection per thread)."""
        if self._store is None:
            self._store = deck_app(self).deck.memory
        return self._store

    @work(thread=True, exclusive=True, exit_on_error=False, group="memory-fetch")
    def _fetch(self, seq: int, query: str) -> None:
        try:
            store = self._memory()
            self._ensure_watcher(store)
            if query.strip():
                notes = store.search(query, SEARCH_LIMIT)
            else:
                notes = store.recent(RECENT_LIMIT)
            rows = store.recent(ACTIVITY_LIMIT, kinds=None, include_hidden=True)
            try:
                rows = sorted(rows + store.recent(ACTIVITY_LIMIT, kinds=["journal"], sync=False),
                              key=lambda r: str(r.get("updated", "")), reverse=True)
            except Exception:
                pass
            self.post_message(MemoryResults(seq, query, notes, activity_by_agent(rows)))
        except Exception as exc:
            self.post_message(MemoryResults(seq, query, [], [], error=f"cannot read the shared memory: {exc}"))

    def _ensure_watcher(self, store: Any) -> None:
        with self._watch_lock:
            if self._watcher is not None or self._closed:
                return
            from agentdeck.memory.store import MemoryStore
            from agentdeck.memory.watch import MemoryWatcher

            own = MemoryStore(store.root, store.index_path)  # its own store: it syncs on its own thread
            watcher = MemoryWatcher(own, self._watched)
            watcher.start()
            self._watcher = watcher
        if self._closed:
            self._stop_watcher()

    def _watched(self, ids: set[str]) -> None:
        """On the watcher's thread: hand over to the app's thread (never blocks the watcher)."""
        if not self._closed:
            self.post_message(MemoryChanged(set(ids)))

    def _stop_watcher(self) -> None:
        with self._watch_lock:
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            threading.Thread(target=watcher.stop, name="agentdeck-memory-watch-stop", daemon=True).start()

    def on_memory_changed(self, message: MemoryChanged) -> None:
        message.stop()
        if not self._active:
            self._dirty = True
            return
        if message.ids and self.shown_id in message.ids:
            self.shown_id = None  # re-render the note shown: it changed
        if self._pending is None:  # debounce: one refresh for a burst
            self._pending = self.set_timer(REFRESH_DEBOUNCE_S, self._debounced)

    def _debounced(self) -> None:
        self._pending = None
        self.reload()

    @on(Input.Changed, "#memory-search")
    def _query_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_text = event.value
        self.reload()

    @on(Input.Submitted, "#memory-search")
    def _query_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_results()

    # ------------------------------------------------------------------ painting
    def on_memory_results(self, message: MemoryResults) -> None:
        message.stop()
        if message.seq != self._seq:
            return  # an older query's answer
        self.refreshes += 1
        if message.error:
            self.show_message(message.error)
            return
        self.activity = message.activity
        self.show_notes(message.notes, query=message.query)
        self._paint_activity()

    def show_message(self, text: str) -> None:
        self.query_one("#memory-status", Static).update(Text(text, style="italic"))
        self.query_one("#notes", DataTable).display = False

    def show_notes(self, notes: list[dict[str, Any]], query: str = "") -> None:
        table = self.query_one("#notes", DataTable)
        keep = self.selected
        self.notes = notes
        table.clear()
        for note in notes:
            tags = note.get("tags") or []
            table.add_row(
                Text(str(note.get("title", "")), style="bold"), str(note.get("kind", "")),
                ", ".join(tags) if isinstance(tags, (list, tuple)) else str(tags), str(note.get("author", "")),
                str(note.get("updated", ""))[:16].replace("T", " "), key=str(note.get("id")),
            )
        self.keep_cursor([str(n.get("id")) for n in notes], keep)
        if query.strip():
            status = (f"{len(notes)} match(es) for {query.strip()!r}, best first" if notes
                      else f"nothing matches {query.strip()!r} (yet: the list follows every write)")
        else:
            status = (f"{len(notes)} note(s), newest first; / searches, e edits the highlighted one"
                      if notes else "no notes yet: agents add them with the memory tools, you with "
                                    "`agentdeck memory add`")
        self.query_one("#memory-status", Static).update(Text(status, style="italic"))
        table.display = bool(notes)
        self.show_highlighted()

    def _paint_activity(self) -> None:
        now = time.time()
        text = Text("Recent activity by agent\n", style="bold")
        if not self.activity:
            text.append("nobody wrote yet", style="italic")
        for author, count, updated, title in self.activity:
            text.append(f"{author:<14} ", style="cyan")
            text.append(f"{count:>3} write(s), last {_ago(updated, now)}: ")
            text.append(title[:60], style="dim")
            text.append("\n")
        text.rstrip()
        self.query_one("#memory-activity", Static).update(text)

    def show_highlighted(self) -> None:
        note_id = self.selected
        view = self.query_one("#memory-note", Markdown)
        if note_id is None:
            if self.shown_id is not None or not self.shown_markdown:
                self.shown_id, self.shown_markdown = None, ""
                view.update("_select a note to read it_" if self.notes else "")
            return
        if note_id == self.shown_id:
            return
        self.shown_id = note_id
        self._load_note(note_id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="memory-note")
    def _load_note(self, note_id: str) -> None:
        try:
            text = note_markdown(self._memory().get(note_id))
        except Exception as exc:
            text = f"_cannot read note `{note_id}`: {exc}_"
        self.post_message(NoteLoaded(note_id, text))

    def on_note_loaded(self, message: NoteLoaded) -> None:
        message.stop()
        if message.note_id != self.selected:
            return
        self.shown_markdown = message.markdown
        self.query_one("#memory-note", Markdown).update(message.markdown)

    @property
    def selected(self) -> str | None:
        note = self.at_cursor(self.notes)
        return None if note is None else str(note.get("id"))


def _ago(stamp: str, now: float) -> str:
    from datetime import datetime

    try:
        then = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return stamp[:16] or "?"
    secs = max(0, int(now - then))
    if secs < 60:
        return f"{secs}s ago"
    if secs < 3600:
        return f"{secs // 60}m ago"
    if secs < 86400:
        return f"{secs // 3600}h ago"
    return f"{secs // 86400}d ago"
