"""The deck's background feeds; they run in worker threads and only post messages.

With nothing changing, none of them does any work: each sleeps until it is told.
They read only through the Deck facade (``records``, ``data_version``,
``watcher_pid``, ``pane_address``, ``peek``, ``review``); nothing here touches a widget.

- :class:`DeckPool` (``pool.py``) gives each thread its own Deck (``Deck.reopen``:
  SQLite connections belong to the thread that opened them).
- :class:`StatusFeed` (``status.py``) sleeps on ONE inotify watch per repository (the
  state folder: every commit of every process writes ``state.db-wal``) and on the
  status watcher's pidfd; on a commit by another connection (``Deck.data_version``,
  asked again a few times in the second after a notice: a commit shows a moment after
  its writes) it reads the agents and posts them when they changed; when the watcher
  ends while agents live, it starts another.
- :class:`PreviewFeed` (``preview.py``) keeps one tmux control-mode client on the
  selected agent's session (``switch-client`` when the selection moves): tmux tells it
  when that pane draws, and only then is it captured (through that client), at most
  every ``interval`` while it keeps drawing; only captures whose hash changed are posted.
- :class:`DiffFeed` (``diff.py``) recomputes an agent's diff size when its work may
  have changed: its status moved (a turn ended, a prompt came), every few seconds while
  it works, when it is selected, or when the deck acted on it (commit, merge); never git
  for every agent on a timer, and no watch per folder.  The conflict radar runs after it.
- :class:`ResearchFeed` (``research.py``) reads the research ledger while the Research
  tab shows.
- The token-usage feed is :mod:`agentdeck.tui.usage_feed`.
"""

from agentdeck.tui.live.diff import DiffFeed, conflict_marks, diff_size, load_diff
from agentdeck.tui.live.pool import DeckPool, Feed, Post
from agentdeck.tui.live.preview import PreviewFeed
from agentdeck.tui.live.research import ResearchFeed
from agentdeck.tui.live.status import StatusFeed

__all__ = ["DeckPool", "DiffFeed", "Feed", "Post", "PreviewFeed", "ResearchFeed", "StatusFeed", "conflict_marks",
           "diff_size", "load_diff"]
