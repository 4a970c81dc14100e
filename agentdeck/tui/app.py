"""The deck's App: wiring only (screens, feeds and widgets live in their own modules).

``make_app`` is shared by the CLI and the tests; ``run_deck`` is what a bare
``agentdeck`` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import BindingType
from textual.worker import Worker, WorkerState

from agentdeck.tui.attach import Attacher, default_attacher
from agentdeck.tui.bindings import check_keymap, palette_binding
from agentdeck.tui.commands import DeckCommands
from agentdeck.tui.context import FeedSettings
from agentdeck.tui.live import DeckPool, diff_size
from agentdeck.tui.main_screen import MainScreen


class DeckApp(App[int]):
    CSS_PATH = "agentdeck.tcss"
    TITLE = "agentdeck"
    COMMANDS = App.COMMANDS | {DeckCommands}
    BINDINGS: ClassVar[list[BindingType]] = [palette_binding()]

    def __init__(self, deck: Any, attacher: Attacher | None = None, *, clock: Callable[[], float] = time.time,
                 deck_factory: Callable[[], Any] | None = None, live: bool = True,
                 poll_interval: float = 0.1, preview_interval: float = 0.2,
                 size_fn: Callable[[Any, str], tuple[int, int]] = diff_size, watch_worktrees: bool = True,
                 usage_interval: float = 5.0):
        super().__init__()
        self.deck = deck
        self.pool = DeckPool(deck, deck_factory)
        self.attacher: Attacher = attacher or default_attacher()
        self.clock = clock
        self.live = live
        self.feeds = FeedSettings(poll_interval, preview_interval, size_fn, watch_worktrees, usage_interval)
        self.bells = 0
        self.notices: list[tuple[str, str]] = []  # (severity, message), newest last: the history of toasts
        self.main_screen: Any = None

        self._keymap_problems = check_keymap(dict(deck.config.keymap))
        self.set_keymap(dict(deck.config.keymap))  # [keymap]: binding id -> key(s)

    def get_default_screen(self) -> Any:
        self.main_screen = MainScreen(live=self.live)
        return self.main_screen

    def on_mount(self) -> None:
        for problem in self._keymap_problems:
            self.notify(problem, severity="warning", timeout=10)

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = False, **kwargs: Any) -> None:
        """A toast; never markup (engine messages may hold brackets), and kept in ``notices``.
        *markup* is taken (Textual's signature) and ignored."""
        del markup
        self.notices.append((severity, message))
        del self.notices[:-200]
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)  # type: ignore[arg-type]

    def agent_started_waiting(self, names: list[str]) -> None:
        """An agent began waiting for the user: a bell ([notify] bell) and a notification."""
        if self.deck.config.notify.bell:
            self.bells += 1
            self.bell()
        self.notify(f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} waiting for you (w jumps there)",
                    severity="warning", timeout=5)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every failed worker becomes one notification line, never a traceback."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            self.notify(error_line(event.worker.error), severity="error", timeout=8)


def error_line(exc: BaseException) -> str:
    from agentdeck.errors import AgentdeckError

    if isinstance(exc, AgentdeckError):
        return str(exc)
    return f"unexpected failure: {type(exc).__name__}: {exc}"


def make_app(deck: Any, attacher: Attacher | None = None, **options: Any) -> DeckApp:
    """The deck over *deck*; tests inject an *attacher*, a frozen *clock*, or ``live=False``."""
    return DeckApp(deck, attacher, **options)


def run_deck(repos: list[str] | None = None) -> int:
    """``agentdeck`` with no arguments: open the deck of the current (or the given) repository."""
    deck = open_decks(repos)
    try:
        app = make_app(deck)
        result = app.run()
    finally:
        deck.close()
    return int(result or app.return_code or 0)


def configured_repos() -> list[str] | None:
    """No --repo: the current repository plus `[deck] repos` of the user config (None: just this one)."""
    import os

    from agentdeck.config import load_config
    from agentdeck.errors import NotARepository
    from agentdeck.paths import find_repo

    listed = [os.path.expanduser(r) for r in load_config(None).deck.repos]
    if not listed:
        return None
    try:
        here = [str(find_repo(Path.cwd()).root)]
    except NotARepository:
        here = []
    return here + listed


def open_decks(repos: list[str] | None = None) -> Any:
    """The Deck of the current (or the one given) repository; a MultiDeck over several ``--repo``."""
    from pathlib import Path

    from agentdeck.deck import Deck
    from agentdeck.tui.multideck import MultiDeck

    if not repos:
        repos = configured_repos()
    if not repos or len(repos) == 1:
        return Deck.open(repos[0] if repos else None)
    decks: list[Any] = []
    seen: set[Path] = set()
    try:
        for path in repos:
            deck = Deck.open(path)
            root = Path(deck.repo.root).resolve()
            if root in seen:  # the same repository twice: one group
                deck.close()
                continue
            seen.add(root)
            decks.append(deck)
    except BaseException:
        for deck in decks:
            deck.close()
        raise
    return decks[0] if len(decks) == 1 else MultiDeck(decks)
