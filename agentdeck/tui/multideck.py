"""One deck over several repositories: a facade that looks like one :class:`~agentdeck.deck.Deck`.

The deck's screens, feeds and palette address agents by a name.  Over several
repositories that name is a *key*, ``<repo label>/<agent name>`` (labels are
slugs, so they never hold a ``/``; the agent name after the first ``/`` may).
Every call that takes a key is routed to the agent's own Deck with the plain
name; records coming back carry the key as their name, so the screen never has
to know which repository an agent lives in.

With one repository the deck uses the plain :class:`Deck` and nothing here.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable

SEP = "/"


def repo_labels(decks: list[Any]) -> list[str]:
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

    def __init__(self, multi: "MultiDeck", attr: str) -> None:
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

    multi = True

    def __init__(self, decks: list[Any], labels: list[str] | None = None, focus: Focus | None = None) -> None:
        if not decks:
            raise ValueError("MultiDeck needs at least one deck")
        self.labels = labels or repo_labels(decks)
        self.decks: dict[str, Any] = dict(zip(self.labels, decks))
        self.focus = focus or Focus(self.labels[0])
        self.review = _Routed(self, "review")

    # ---------------------------------------------------------------- the current repository
    @property
    def current(self) -> Any:
        return self.decks.get(self.focus.label) or next(iter(self.decks.values()))

    @property
    def repo(self) -> Any:
        return self.current.repo

    @property
    def config(self) -> Any:
        return self.current.config

    @property
    def tmux(self) -> Any:
        return self.current.tmux

    @property
    def memory(self) -> Any:
        return self.current.memory

    @property
    def worktree_root(self) -> Any:
        return None  # no one folder holds every repository's worktrees: each worktree is watched alone

    def title(self) -> str:
        return " + ".join(self.labels)

    # ---------------------------------------------------------------- keys
    def route(self, key: str) -> tuple[str, str]:
        from agentdeck.errors import UsageError

        label, name = split_key(key)
        if label not in self.decks:
            raise UsageError(f"no repository {label!r} in this deck for agent {key!r}; "
                             f"use one of {', '.join(self.labels)}")
        return label, name

    def deck_of(self, key: str) -> Any:
        return self.decks[self.route(key)[0]]

    def key(self, label: str, name: str) -> str:
        return f"{label}{SEP}{name}"

    def keyed(self, label: str, value: Any) -> Any:
        """An engine record coming back: its name becomes the key."""
        if dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "name") \
                and hasattr(value, "worktree"):
            return dataclasses.replace(value, name=self.key(label, value.name))
        return value

    # ---------------------------------------------------------------- the store, for the status feed
    def records(self) -> list[Any]:
        """Every agent of every repository, grouped by repository (in the deck's order)."""
        out = []
        for label, deck in self.decks.items():
            out.extend(self.keyed(label, rec) for rec in deck.store.list_agents())
        return out

    def data_version(self) -> tuple:
        return tuple(d.store.conn.execute("PRAGMA data_version").fetchone()[0] for d in self.decks.values())

    # ---------------------------------------------------------------- agent calls
    def get(self, key: str) -> Any:
        label, name = self.route(key)
        return self.keyed(label, self.decks[label].get(name))

    def agent_changes(self, rec: Any) -> Any:
        label, name = self.route(rec.name)
        return self.decks[label].agent_changes(dataclasses.replace(rec, name=name))

    def new(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """A new agent in the focused repository (or the one a ``label/`` prefix names)."""
        label, plain = split_key(name)
        if label not in self.decks:
            label, plain = self.focus.label, name
        return self.keyed(label, self.decks[label].new(plain, *args, **kwargs))

    def fork(self, key: str, new_name: str, prompt: str = "") -> Any:
        label, name = self.route(key)
        return self.keyed(label, self.decks[label].fork(name, new_name, prompt))

    # Deck methods whose first argument is an agent name: routed to the agent's own Deck.
    ROUTED = frozenset({"peek", "send", "approve", "deny", "restart", "kill", "attach_argv", "events", "wait",
                        "copied_files"})

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in MultiDeck.ROUTED:
            raise AttributeError(f"MultiDeck has no {method!r}: not a per-agent Deck method (see ROUTED)")

        def call(key: str, *args: Any, **kwargs: Any) -> Any:
            label, name = self.route(key)
            return self.keyed(label, getattr(self.decks[label], method)(name, *args, **kwargs))

        return call

    def close(self) -> None:
        for deck in self.decks.values():
            deck.close()


def multi_factory(main: MultiDeck) -> Callable[[], MultiDeck]:
    """The DeckPool factory: a fresh Deck per repository for the calling thread."""
    lock = threading.Lock()

    def make() -> MultiDeck:
        with lock:
            decks = [type(d)(d.repo, d.config, d.tmux.socket) for d in main.decks.values()]
        return MultiDeck(decks, labels=list(main.labels), focus=main.focus)

    return make


def is_multi(deck: Any) -> bool:
    return bool(getattr(deck, "multi", False))


def plain_decks(deck: Any) -> list[tuple[str, Any]]:
    """(label, Deck) pairs: one pair with an empty label for a single deck."""
    if is_multi(deck):
        return list(deck.decks.items())
    return [("", deck)]
