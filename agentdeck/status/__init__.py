"""Status truth: fuse the agent's own events, its screen and its liveness.

Sources, best first (DESIGN.md section 2):

1. **Events** — hooks / notify callbacks write a status straight into the
   database (``agentdeck hook``, source ``hook``).
2. **Screen** — the adapter classifies what the pane shows (patterns), plus
   *quietness* (no change for ``quiet_s``) for agents without events.  For
   agents with events the screen only fills gaps: a pattern verdict that
   contradicts the hook status (an interrupt fires no hook; a quota message
   looks idle) wins once the hook status is older than the grace time.
3. **Liveness** — a dead pane, a missing session or a dead tmux server is
   ``exited``, at once, whatever else says.

Where each part lives:

- :mod:`~agentdeck.status.rules` — the rules as pure functions (:func:`decide`,
  :func:`restart_pending`, the first-prompt typing hold);
- :mod:`~agentdeck.status.sampler` — one synchronous pass (:class:`Sampler`), which a command
  that finds no watcher running does first, so what it prints is true at once;
- :mod:`~agentdeck.status.watcher` — the watcher process (``agentdeck _watch``, push not poll),
  with :mod:`~agentdeck.status.sources` (control-mode clients, pidfds, inotify: what wakes it) and
  :mod:`~agentdeck.status.looks` (what it does with a pane that drew);
- :mod:`~agentdeck.status.watching` — whether a watcher runs, starting one (any command that
  reads or changes status does; it exits by itself once no agent has been alive for a while);
- :mod:`~agentdeck.status.launch` — who is launching an agent, and whether that process is gone.

The names below are importable from here as before; each loads its own module on first use, so
the light commands (:mod:`agentdeck.quick`: ``watcher_alive``, ``launch_abandoned``) load the
standard-library parts only, never the adapters the sampler and the watcher need.

Status is a layer below the facade: a ``deck`` argument here is the :class:`agentdeck.deck.Deck`
(its ``repo``, ``config``, ``store`` and ``tmux``), typed ``Any`` because this package never
imports the deck.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.status.launch import LEGACY_LAUNCH_S, launch_abandoned, process_gone, process_identity
    from agentdeck.status.looks import BATCH_S, PERSIST_SCREEN_EVERY_S, SETTLE_S
    from agentdeck.status.rules import HOOK_GRACE_S, PERSIST_S, RESTART_GRACE_S, decide, restart_pending
    from agentdeck.status.sampler import SAVE_SCREEN_EVERY_S, Sampler
    from agentdeck.status.watcher import SAFETY_S, WATCH_GRACE_S, Service, Watcher, run_watcher, watcher_services
    from agentdeck.status.watching import ensure_watcher, watcher_alive, watcher_pid

#: Each name importable from ``agentdeck.status`` -> the module that defines it.
_HOMES: dict[str, str] = {
    **dict.fromkeys(("LEGACY_LAUNCH_S", "launch_abandoned", "process_gone", "process_identity"), "launch"),
    **dict.fromkeys(("BATCH_S", "PERSIST_SCREEN_EVERY_S", "SETTLE_S"), "looks"),
    **dict.fromkeys(("HOOK_GRACE_S", "PERSIST_S", "RESTART_GRACE_S", "decide", "restart_pending"), "rules"),
    **dict.fromkeys(("SAVE_SCREEN_EVERY_S", "Sampler"), "sampler"),
    **dict.fromkeys(("SAFETY_S", "WATCH_GRACE_S", "Service", "Watcher", "run_watcher", "watcher_services"),
                    "watcher"),
    **dict.fromkeys(("ensure_watcher", "watcher_alive", "watcher_pid"), "watching"),
}

__all__ = [
    "BATCH_S",
    "HOOK_GRACE_S",
    "LEGACY_LAUNCH_S",
    "PERSIST_S",
    "PERSIST_SCREEN_EVERY_S",
    "RESTART_GRACE_S",
    "SAFETY_S",
    "SAVE_SCREEN_EVERY_S",
    "SETTLE_S",
    "WATCH_GRACE_S",
    "Sampler",
    "Service",
    "Watcher",
    "decide",
    "ensure_watcher",
    "launch_abandoned",
    "process_gone",
    "process_identity",
    "restart_pending",
    "run_watcher",
    "watcher_alive",
    "watcher_pid",
    "watcher_services",
    "write_atomic",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def write_atomic(path: Path, text: str) -> None:
    """Replace *path* with *text* through a temporary file and a rename, without fsync: for the
    deck's last-screen files, a cache rewritten every few seconds (:func:`agentdeck.fsutil.atomic_write`
    is the durable one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
