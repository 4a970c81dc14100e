"""Attaching to an agent's tmux session from the deck (injectable, so tests can replace it).

- Outside tmux: the deck suspends (``App.suspend()``), the terminal runs
  ``tmux -L <socket> attach-session``; tmux's own detach (``C-b d``) returns to
  the deck as the user left it.
- Inside the user's own tmux (``$TMUX`` set): never a tmux nested in the deck's
  terminal.  A popup of the *user's* tmux runs a client of agentdeck's server
  (``env -u TMUX``); detaching closes the popup and the deck is right there.
  tmux older than 3.2 (no ``display-popup``) gets a new window instead, which
  closes on detach.

An attacher is a callable ``attacher(app, argv) -> None`` called on the app's
thread; ``argv`` is ``Deck.attach_argv(name)``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from typing import Any, Protocol


class Attacher(Protocol):
    def __call__(self, app: Any, argv: list[str]) -> None: ...


def inner_command(argv: list[str]) -> str:
    """The shell command a window or popup of the user's tmux runs to attach."""
    return "env -u TMUX " + shlex.join(argv)


def popup_argv(argv: list[str]) -> list[str]:
    return ["tmux", "display-popup", "-E", "-w", "95%", "-h", "95%", inner_command(argv)]


def window_argv(argv: list[str]) -> list[str]:
    return ["tmux", "new-window", "-n", "agentdeck", inner_command(argv)]


class SuspendAttacher:
    """Outside tmux: hand the terminal to ``tmux attach`` and take it back on detach."""

    def __init__(self, run: Callable[[list[str]], int] = subprocess.call):
        self.run = run

    def __call__(self, app: Any, argv: list[str]) -> None:
        with app.suspend():
            code = self.run(argv)
        if code not in (0, None):
            app.notify(f"tmux attach exited with status {code}", severity="warning")


class PopupAttacher:
    """Inside the user's tmux: a popup (or window) of that tmux attached to agentdeck's server."""

    def __init__(self, run: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        self.run = run

    def __call__(self, app: Any, argv: list[str]) -> None:
        # The popup blocks its tmux client call until it closes: wait in a thread, not on the UI.
        app.run_worker(lambda: self._open(app, argv), thread=True, group="attach", exit_on_error=False,
                       name="attach")

    def _open(self, app: Any, argv: list[str]) -> None:
        proc = self.run(popup_argv(argv), capture_output=True, text=True)
        if proc.returncode != 0 and _no_popup(proc.stderr):
            proc = self.run(window_argv(argv), capture_output=True, text=True)
        if proc.returncode != 0:
            message = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            app.call_from_thread(app.notify, f"could not open the agent in your tmux: {message[0]}",
                                 severity="error")


def _no_popup(stderr: str) -> bool:
    text = (stderr or "").lower()
    return "unknown command" in text or "display-popup" in text or "invalid" in text


def default_attacher(environ: dict[str, str] | None = None) -> Attacher:
    env = os.environ if environ is None else environ
    return PopupAttacher() if env.get("TMUX") else SuspendAttacher()
