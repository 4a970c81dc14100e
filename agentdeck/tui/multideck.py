"""One deck over several repositories: a facade that looks like one :class:`~agentdeck.deck.Deck`.

The deck's screens, feeds and palette address agents by a name.  Over several
repositories that name is a *key*, ``<repo label>/<agent name>`` (labels are
slugs, so they never hold a ``/``; the agent name after the first ``/`` may).
Every call that takes a key is routed to the agent's own Deck with the plain
name; records coming back carry the key as their name, so the screen never has
to know which repository an agent lives in.

With one repository the deck uses the plain :class:`Deck` and nothing here.  Both
are a :class:`~agentdeck.deck.DeckLike`: callers ask ``by_repo``, ``key``,
``plain_name``, ``label_of``, ``deck_of`` instead of which of the two they hold.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.config import Config
    from agentdeck.deck import Deck, DeckLike, KillResult
    from agentdeck.memory.store import MemoryStore
    from agentdeck.paths import RepoPaths
    from agentdeck.store import AgentRecord
    from agentdeck.tmux import Tmux

SEP = "/"


def repo_labels(decks: list[Deck]) -> list[str]:
    """A short, unique label per deck: the slug of its folder name (``name-2`` on a clash)."""
    from agentdeck.paths import slugify

    labels: list[str] = []
    for deck in decks:
        base = slugify(deck.repo.root.name) or "repo"
        label, n = base, 2
        while label in labels:
            label, n = f"{base}-{n}", n + 1
        labels.append(label)
    return labels


def split_key(key: str) -> tuple[str, str]:
    label, sep, name = key.partition(SEP)
    return (label, name) if sep else ("", key)


class Focus:
    """Which repository new agents go to (shared by every thread's MultiDeck)."""

    def __init__(self, label: str) -> None:
        self.label = label


class _Routed:
    """A sub-facade (``review``) whose calls are routed by their first argument."""

    def __init__(self, multi: MultiDeck, attr: str) -> None:
        self._multi = multi
        self._attr = attr

    def compare(self, keys: list[str], *args: Any, **kwargs: Any) -> Any:
        labels = {split_key(k)[0] for k in keys}
        if len(labels) != 1:
            from agentdeck.errors import UsageError

            raise UsageError("compare works on agents of one repository; select agents of a single repository")
        deck = self._multi.deck_of(keys[0])
        return getattr(deck, self._attr).compare([split_key(k)[1] for k in keys], *args, **kwargs)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        def call(key: str, *args: Any, **kwargs: Any) -> Any:
            label, name = self._multi.route(key)
            sub = getattr(self._multi.decks[label], self._attr)
            return self._multi.keyed(label, getattr(sub, method)(name, *args, **kwargs))

        return call


class MultiDeck:
    """Several Decks behind the Deck methods the TUI uses; agent names are ``label/name`` keys."""

    multi: ClassVar[bool] = True

    def __init__(self, decks: list[Deck], labels: list[str] | None = None, focus: Focus | None = None) -> None:
        if not decks:
            raise ValueError("MultiDeck needs at least one deck")
        self.labels = labels or repo_labels(decks)
        self.decks: dict[str, Deck] = dict(zip(self.labels, decks))
        self.focus = focus or Focus(self.labels[0])
        self.review = _Routed(self, "review")

    # ---------------------------------------------------------------- the current repository
    @property
    def current(self) -> Deck:
        return self.decks.get(self.focus.label) or next(iter(self.decks.values()))

    @property
    def repo(self) -> RepoPaths:
        return self.current.repo

    @property
    def config(self) -> Config:
        return self.current.config

    @property
    def tmux(self) -> Tmux:
        return self.current.tmux

    @property
    def memory(self) -> MemoryStore:
        return self.current.memory

    @property
    def worktree_root(self) -> None:
        return None  # no one folder holds every repository's worktrees: each worktree is watched alone

    def resolve_base(self, base: str | None) -> tuple[str, str]:
        """New agents go to the focused repository: its base."""
        return self.current.resolve_base(base)

    def research_reader(self) -> Any:
        return self.current.research_reader()

    def title(self) -> str:
        return " + ".join(self.labels)

    def by_repo(self) -> list[tuple[str, Deck]]:
        """(label, Deck) per repository, in the deck's order."""
        return list(self.decks.items())

    def reopen(self) -> MultiDeck:
        """A new MultiDeck (a new Deck per repository) for another thread, sharing the focus."""
        with _REOPEN_LOCK:
            decks = [d.reopen() for d in self.decks.values()]
        return MultiDeck(decks, labels=list(self.labels), focus=self.focus)

    def focus_on(self, key: str) -> None:
        """New agents go to the repository of *key* (the selected agent's)."""
        self.focus.label = split_key(key)[0]

    # ---------------------------------------------------------------- keys
    def route(self, key: str) -> tuple[str, str]:
        from agentdeck.errors import UsageError

        label, name = split_key(key)
        if label not in self.decks:
            raise UsageError(f"no repository {label!r} in this deck for agent {key!r}; "
                             f"use one of {', '.join(self.labels)}")
        return label, name

    def deck_of(self, key: str) -> Deck:
        return self.decks[self.route(key)[0]]

    def key(self, label: str, name: str) -> str:
        return f"{label}{SEP}{name}"

    def plain_name(self, key: str) -> str:
        """The agent's name within its repository."""
        return split_key(key)[1]

    def label_of(self, key: str) -> str:
        return split_key(key)[0]

    def keyed(self, label: str, value: Any) -> Any:
        """An engine record coming back: its name becomes the key."""
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "name") \
                and hasattr(value, "worktree"):
            return dataclasses.replace(value, name=self.key(label, value.name))
        return value

    # ---------------------------------------------------------------- the agents, for the status feed
    def records(self) -> list[AgentRecord]:
        """Every agent of every repository, grouped by repository (in the deck's order)."""
        out: list[AgentRecord] = []
        for label, deck in self.decks.items():
            out.extend(self.keyed(label, rec) for rec in deck.records())
        return out

    def data_version(self) -> tuple[int, ...]:
        """Every repository's ``Deck.data_version`` (it moves when any of them was written)."""
        return tuple(v for d in self.decks.values() for v in d.data_version())

    # ---------------------------------------------------------------- agent calls
    def get(self, key: str) -> AgentRecord:
        label, name = self.route(key)
        return self.keyed(label, self.decks[label].get(name))

    def agent_changes(self, rec: AgentRecord) -> tuple[list[str], int]:
        label, name = self.route(rec.name)
        return self.decks[label].agent_changes(dataclasses.replace(rec, name=name))

    def new(self, name: str, definition: str | None = None, prompt: str = "", base: str | None = None,
            cwd_subdir: str = "") -> AgentRecord:
        """A new agent in the focused repository (or the one a ``label/`` prefix names)."""
        label, plain = split_key(name)
        if label not in self.decks:
            label, plain = self.focus.label, name
        return self.keyed(label, self.decks[label].new(plain, definition, prompt, base, cwd_subdir))

    def fork(self, key: str, new_name: str, prompt: str = "") -> AgentRecord:
        label, name = self.route(key)
        return self.keyed(label, self.decks[label].fork(name, new_name, prompt))

    # Deck methods whose first argument is an agent name: routed to the agent's own Deck.
    def peek(self, key: str, colors: bool = False) -> str:
        return self.deck_of(key).peek(self.plain_name(key), colors=colors)

    def send(self, key: str, text: str, force: bool = False) -> None:
        self.deck_of(key).send(self.plain_name(key), text, force=force)

    def approve(self, key: str) -> None:
        self.deck_of(key).approve(self.plain_name(key))

    def deny(self, key: str) -> None:
        self.deck_of(key).deny(self.plain_name(key))

    def restart(self, key: str) -> AgentRecord:
        label, name = self.route(key)
        return self.keyed(label, self.decks[label].restart(name))

    def kill(self, key: str, discard: bool = False) -> KillResult:
        return self.deck_of(key).kill(self.plain_name(key), discard=discard)

    def attach_argv(self, key: str) -> list[str]:
        return self.deck_of(key).attach_argv(self.plain_name(key))

    def events(self, key: str) -> list[dict[str, Any]]:
        return self.deck_of(key).events(self.plain_name(key))

    def wait(self, key: str, until: set[str], timeout: float | None = None, poll: float = 0.1) -> str:
        return self.deck_of(key).wait(self.plain_name(key), until, timeout, poll)

    def copied_files(self, key: str) -> set[str]:
        return self.deck_of(key).copied_files(self.plain_name(key))

    def pane_address(self, key: str) -> tuple[str, str] | None:
        return self.deck_of(key).pane_address(self.plain_name(key))

    def close(self) -> None:
        for deck in self.decks.values():
            deck.close()


# Decks for other threads are opened one at a time (``MultiDeck.reopen``).
_REOPEN_LOCK = threading.Lock()


def multi_factory(main: MultiDeck) -> Callable[[], MultiDeck]:
    """The DeckPool factory: a fresh Deck per repository for the calling thread."""
    return main.reopen


def is_multi(deck: DeckLike) -> bool:
    return deck.multi


def plain_decks(deck: DeckLike) -> list[tuple[str, Deck]]:
    """(label, Deck) pairs: one pair with an empty label for a single deck."""
    return deck.by_repo()


if TYPE_CHECKING:  # pragma: no cover - for the type checker: both shapes of a deck are DeckLike
    def _both_are_decklike(one: Deck, several: MultiDeck) -> tuple[DeckLike, DeckLike]:
        return one, several
