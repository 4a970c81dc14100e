"""The research feed: reads the research ledger while the Research tab shows and posts what changed."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from agentdeck.tui.messages import ResearchStatus, TrialDetail

LOG_TAIL_LINES = 40


class ResearchFeed:
    """Reads the research ledger while the tab shows; posts what changed."""

    def __init__(self, open_research: Callable[[], Any], interval: float = 0.5):
        self.open_research = open_research
        self.interval = interval
        self.visible = threading.Event()
        self.wake = threading.Event()
        self.want: tuple[str, int] | None = None  # (tag, trial) whose log/diff the pane wants
        self.polls = 0
        self._last_status: Any = object()
        self._last_detail: tuple[Any, ...] | None = None

    def poke(self) -> None:
        self.wake.set()

    def forget(self) -> None:
        self._last_status = object()
        self._last_detail = None
        self.wake.set()

    def run(self, post: Callable[[Any], Any], stop: threading.Event) -> None:
        research = self.open_research()
        try:
            while not stop.is_set():
                if not self.visible.is_set():
                    self.wake.wait(0.5)
                    self.wake.clear()
                    continue
                self.polls += 1
                status = self._status(research, post)
                if status is not None:
                    self._detail(research, status, post)
                self.wake.wait(self.interval)
                self.wake.clear()
        finally:
            try:
                research.close()
            except Exception:
                pass

    def _status(self, research: Any, post: Callable[[Any], Any]) -> dict[str, Any] | None:
        try:
            tag = research.latest_tag()
            status = research.status(tag) if tag else None
        except Exception as exc:
            post(ResearchStatus(None, error=f"cannot read the research ledger: {exc}"))
            self._last_status = object()
            return None
        if status != self._last_status:
            self._last_status = status
            post(ResearchStatus(status))
        return status

    def _detail(self, research: Any, status: dict[str, Any], post: Callable[[Any], Any]) -> None:
        want = self.want
        if want is None or want[0] != status["tag"]:
            return
        tag, trial_id = want
        trial = next((t for t in status["trials"] if t["id"] == trial_id), None)
        if trial is None:
            return
        key = (tag, trial_id, trial["status"], trial["commit"])
        if key == self._last_detail and trial["status"] not in ("running",):
            return
        try:
            log = research.log(trial_id, tag)
            log = "\n".join(log.splitlines()[-LOG_TAIL_LINES:])
        except Exception as exc:
            log = str(exc)
        try:
            diff = research.diff(trial_id, tag) if trial["commit"] else ""
        except Exception as exc:
            diff = f"cannot show the diff: {exc}"
        self._last_detail = key
        post(TrialDetail(tag, trial_id, log, diff))
