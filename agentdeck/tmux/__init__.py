"""tmux: the one package that talks to tmux (the ``tmux`` command, no library).

agentdeck runs its own tmux server (``tmux -L <socket>``, default ``agentdeck``)
and never touches the user's.  One session per agent, one window, one pane; the
session name carries a per-repository prefix so one server can serve several
repositories.  The server is started with agentdeck's own config file, so that
``remain-on-exit`` holds from the first instant: an agent that exits at once
still leaves its last screen behind, and so that a pane that dies signals the
``wait-for`` channel :data:`PANE_DIED` (the watcher waits on it instead of
polling for dead panes).

Two ways in:

* :class:`Tmux` (:mod:`agentdeck.tmux.server`) runs one ``tmux`` command per
  call (a subprocess; what the CLI and the deck use).  Whether the server runs
  at all is answered without any subprocess: a connection to its socket.
* :class:`ControlClient` (:mod:`agentdeck.tmux.control`) is one long-lived
  control-mode client (``tmux -C attach``) on one session: tmux pushes ``%output`` for that session's panes the
  moment they draw, ``%exit`` when the session goes, and runs commands sent on
  its input (captures without a subprocess each).  The status watcher keeps one
  per agent session; the deck one for the agent it previews.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentdeck.tmux.server import (
    MIN_TMUX,
    PANE_DIED,
    PANE_DIED_HOOK,
    PANE_FORMAT,
    SERVER_CONF,
    PaneHandle,
    PaneInfo,
    Result,
    Tmux,
    TmuxGone,
    capture_args,
    check_installed,
    default_socket,
    parse_panes,
    server_running,
    socket_path,
    version,
)

__all__ = [
    "MIN_TMUX", "PANE_DIED", "PANE_DIED_HOOK", "PANE_FORMAT", "SERVER_CONF", "ControlClient", "PaneHandle",
    "PaneInfo", "Result", "Tmux", "TmuxGone", "capture_args", "check_installed", "default_socket", "parse_panes",
    "quote", "server_running", "socket_path", "version",
]

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.tmux.control import ControlClient, quote


def __getattr__(name: str) -> Any:
    """The control-mode client loads on first use: the light commands need the server part only."""
    if name in ("ControlClient", "quote"):
        value = getattr(importlib.import_module("agentdeck.tmux.control"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
