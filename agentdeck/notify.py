"""Telling the user when an agent needs them: desktop notifications and agentdeck's tmux status line.

The watcher calls :class:`Notifier` after every pass with the statuses it sees,
so notifications fire whether or not a deck is open.  (The terminal bell is
the deck's job: only it owns a terminal.)  ``[notify]`` chooses the channels.
A Notifier needs only the state store (to read statuses and record what it
told) and the tmux server (for the status line), not the deck.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.config import NotifySettings
    from agentdeck.store import Store
    from agentdeck.tmux import Tmux

EVENTS = {
    "waiting": "needs you",
    "idle": "finished its turn",
    "exited": "exited",
}


def transitions(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str]]:
    """(agent, new status) worth telling: into waiting, working -> idle, into exited."""
    out = []
    for name, status in after.items():
        old = before.get(name)
        if old is None or old == status:
            continue
        if status == "waiting" or status == "exited" or (status == "idle" and old == "working"):
            out.append((name, status))
    return out


def desktop(title: str, body: str) -> bool:
    """A desktop notification where the platform offers one; False when none is available."""
    if sys.platform == "darwin" and shutil.which("osascript"):
        script = f'display notification {body!r} with title {title!r}'.replace("'", '"')
        argv = ["osascript", "-e", script]
    elif shutil.which("notify-send"):
        argv = ["notify-send", "--app-name=agentdeck", title, body]
    else:
        return False
    try:
        subprocess.run(argv, capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return True


class Notifier:
    """Tells the user about status changes through the channels *settings* (``[notify]``) turns on."""

    def __init__(self, store: Store, tmux: Tmux, settings: NotifySettings):
        self.store = store
        self.tmux = tmux
        self.settings = settings
        self.last: dict[str, str] | None = None
        self.last_status_line: str | None = None

    def update(self) -> None:
        current = {r.name: r.status for r in self.store.list_agents()}
        if self.last is not None and self.settings.desktop:
            for name, status in transitions(self.last, current):
                desktop(f"agentdeck: {name}", f"{name} {EVENTS[status]}")
                self.store.add_event(name, "notify", "watcher", status=status, detail={"channel": "desktop"})
        self.last = current
        if self.settings.tmux_status:
            self._status_line(current)

    def _status_line(self, current: dict[str, str]) -> None:
        waiting = sorted(n for n, s in current.items() if s == "waiting")
        if waiting:
            line = f"#[fg=colour16,bg=colour214] {len(waiting)} waiting: {', '.join(waiting)[:60]} #[default]"
        else:
            line = "agentdeck · detach: C-b d"
        if line != self.last_status_line:
            self.tmux.set_status_right(line)
            self.last_status_line = line
