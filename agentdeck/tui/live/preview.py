"""The preview feed: the selected agent's pane, captured only when tmux says it drew."""

from __future__ import annotations

import hashlib
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from agentdeck.errors import UsageError
from agentdeck.tmux import ControlClient, TmuxGone
from agentdeck.tui.live.pool import DeckPool, Feed, Post
from agentdeck.tui.messages import PreviewCaptured


class PreviewFeed(Feed):
    """Shows the pane of ``target()`` (None: nothing to show), captured only when it drew.

    One control-mode client follows the selected agent's session (``switch-client``); tmux's
    ``%output`` for its pane schedules a capture *settle* seconds after the pane went still, and
    at most every *interval* while it keeps drawing.  An agent without a live pane shows its last
    screen (``deck.peek``) once.  Only captures whose hash changed are posted.
    """

    def __init__(self, pool: DeckPool, target: Callable[[], str | None], interval: float = 0.2,
                 settle: float = 0.03):
        super().__init__(pool)
        self.target = target
        self.interval = interval
        self.settle = settle
        self._last: tuple[str, str] | None = None
        self.captures = 0  # (tests, benchmarks)
        self.wakes = 0
        self._client: Any = None
        self._showing: tuple[str, str, str] | None = None  # (name, socket, session) followed now
        self._pane_id = ""
        self._dirty_since: float | None = None
        self._last_output = 0.0
        self._refollow_at = 0.0  # after a lost client, not before this (monotonic)

    def forget(self) -> None:
        """Post the next capture even if unchanged (the widget was cleared)."""
        self._last = None
        self._showing = None  # look again at once

    def capture(self) -> tuple[str, str] | None:
        """Capture the target now: (name, text) when it changed since the last post."""
        name = self.target()
        if not name:
            self._last = None
            return None
        if self._client is not None and self._pane_id and self._showing and self._showing[0] == name:
            text = self._client.capture(self._pane_id, colors=True)
        else:
            text = self.pool.get().peek(name, colors=True)
        self.captures += 1
        digest = hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()
        if self._last == (name, digest):
            return None
        self._last = (name, digest)
        return name, text

    def _follow(self, name: str | None) -> None:
        """Point the control client at *name*'s session (or at nothing)."""
        where = self.pool.get().pane_address(name) if name else None
        if where is None:
            self._showing = (name, "", "") if name else None
            self._pane_id = ""
            return
        socket, session = where
        try:
            if self._client is not None and (self._client.closed or self._client.socket != socket):
                self._drop_client()
            if self._client is None:
                self._client = ControlClient(socket, session)
            elif self._client.session != session:
                result = self._client.command("switch-client", "-t", f"={session}")
                if result.returncode != 0:
                    raise TmuxGone(" ".join(result.stderr))
            result = self._client.command("display-message", "-p", "-t", f"={session}:", "#{pane_id}")
            self._pane_id = result.stdout[0] if result.returncode == 0 and result.stdout else ""
            self._client.session = session
        except (TmuxGone, OSError):
            self._drop_client()
            self._pane_id = ""
        self._showing = (name, socket, session)  # type: ignore[assignment]

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def run(self, post: Post, stop: threading.Event) -> None:
        wake = self._open_pipe()
        try:
            while not stop.is_set():
                name = self.target()
                now = time.monotonic()
                try:
                    if name is None:  # nothing shown: no client, so no output of anyone's wakes this thread
                        if self._showing is not None or self._client is not None:
                            self._showing, self._pane_id, self._last = None, "", None
                            self._drop_client()
                        self._dirty_since = None
                    elif (self._showing is None or self._showing[0] != name) and now >= self._refollow_at:
                        self._follow(name)
                        self._dirty_since = now - self.settle  # a first look at once
                    if name is not None and self._dirty_since is not None and (
                            now - self._last_output >= self.settle or now - self._dirty_since >= self.interval):
                        self._dirty_since = None
                        got = self.capture()
                        if got is not None:
                            post(PreviewCaptured(*got))
                except UsageError:
                    self._last, self._showing = None, None  # the agent was removed meanwhile
                except Exception as exc:
                    self._problem(post, "preview", exc)
                    self._showing = (name, "", "") if name else None
                    self._drop_client()
                if self._client is not None and self._client.pending:
                    self._on_client(read=False)  # output met while a capture waited for its answer
                fds = [wake] + ([self._client.fileno()] if self._client is not None else [])
                timeout = None
                if self._showing is None and name is not None and self._refollow_at > now:
                    timeout = self._refollow_at - now
                elif self._dirty_since is not None:
                    timeout = max(0.0, min(self._last_output + self.settle, self._dirty_since + self.interval)
                                  - time.monotonic())
                ready, _, _ = select.select(fds, [], [], timeout)
                self.wakes += 1
                if wake in ready:
                    self._drain_pipe()
                if self._client is not None and self._client.fileno() in ready:
                    self._on_client()
        finally:
            self._drop_client()
            self._close_pipe()

    def _on_client(self, read: bool = True) -> None:
        client = self._client
        if read:
            client.read()
        now = time.monotonic()
        for kind, value in client.events():
            if kind == "output" and value == self._pane_id:
                self._last_output = now
                if self._dirty_since is None:
                    self._dirty_since = now
            elif kind == "pause":
                client.send("refresh-client", "-A", f"{value}:continue")
            elif kind in ("exit", "eof"):
                # Detached (someone ran `detach-client -s`), or the session went: follow the agent
                # again shortly (a new client; its last screen when it has exited).
                self._drop_client()
                self._pane_id = ""
                self._showing = None
                self._refollow_at = now + 0.2
                return
