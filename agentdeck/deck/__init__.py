"""The Deck: the one facade every face (CLI, TUI, MCP) calls.

It owns the life cycle of agents: a branch and worktree (``agentdeck.git``), a
tmux session (``agentdeck.tmux``), an adapter (``agentdeck.agents``) and a row
in the state store (``agentdeck.store``).  Every operation either completes or
leaves nothing behind: no stray branch, worktree, pane or row.

When a process is killed half way (``kill -9``), what it left is recognised and
finished later: a launch records its process (pid and start time), and a launch
whose process is gone reads as ``exited`` (``restart`` finishes it); a removal
records its decision in the row, takes the worktree out of git's sight with one
rename before deleting files, and the next ``kill`` (or ``gc``) finishes it.
Nothing is deleted on the word of the state row alone (any process of the user
can write it): only a worktree git lists under the worktree folder, only a
branch named ``<branch prefix><slug>``.  Mutating operations first check that
the state can be written.

The package, one module per responsibility (each a layer of :class:`Deck`):

- ``base``: state (repository, config, store, tmux), lookups, status, screens;
- ``launch``: the one launch path (environment file, launcher, pane, first prompt);
- ``setup_files``: ``[deck] setup_copy`` and ``setup_command`` for a new worktree;
- ``removal``: ``kill`` and the trusted-path checks guarding every deletion;
- ``lifecycle``: ``new``, ``new_many``, ``fork``, ``restart``, ``restart_all``;
- ``maintenance``: ``stuck`` (doctor), ``gc_plan``/``gc``, recovery refs;
- ``interact``: ``send``, ``approve``/``deny``, ``broadcast``, ``attach_argv``;
- ``names``: agent names and slugs; ``results``: what crosses the boundary
  (:class:`KillResult`, :class:`StuckItem`); ``protocol``: :class:`DeckLike`.
"""

from __future__ import annotations

from agentdeck.views import AgentView

from .interact import InteractOps
from .launch import LAUNCHER, PANE_ENV, STRIPPED_ENV
from .lifecycle import LifecycleOps
from .maintenance import MaintenanceOps
from .names import MAX_NAME, SLUG_RE, TRASH_PREFIX, validate_name
from .protocol import DeckLike
from .results import KillResult, StuckItem

__all__ = [
    "LAUNCHER",
    "MAX_NAME",
    "PANE_ENV",
    "SLUG_RE",
    "STRIPPED_ENV",
    "TRASH_PREFIX",
    "AgentView",
    "Deck",
    "DeckLike",
    "KillResult",
    "StuckItem",
    "validate_name",
]


class Deck(LifecycleOps, MaintenanceOps, InteractOps):
    """One repository's deck (see the module's docstring); ``Deck.open(cwd)`` finds the repository."""
