"""What the watcher does with a pane that drew: capture it, classify it, decide, persist.

:class:`PaneState` is what the watcher keeps of one agent's pane between looks; :class:`Looks`
(a part of :class:`~agentdeck.status.watcher.Watcher`) looks at every pane that is due - still
for :data:`SETTLE_S` after drawing, drawing for :data:`BATCH_S`, quiet for ``quiet_s``, or a
hook's grace time over - through the pane's control-mode client (no subprocess), and writes
what changed to the database in one transaction.  Every screen that stays :data:`SETTLE_S` is
classified, so every status that lasts 20 ms or more reaches the events.
"""

from __future__ import annotations

import time
from typing import Any

from agentdeck.status.rules import HOOK_GRACE_S, decide, drawing, drawing_ends, prompt_typing, prompt_typing_ends
from agentdeck.status.sampler import SAVE_SCREEN_EVERY_S, Sampler, screen_digest
from agentdeck.status.watching import log
from agentdeck.tmux import TmuxGone

#: A pane still this long after drawing is captured and classified.
SETTLE_S = 0.008
#: A pane that keeps drawing is captured at least this often.
BATCH_S = 0.04
#: While a pane keeps changing, its screen state is written to the database at most this often.
PERSIST_SCREEN_EVERY_S = 1.0


class PaneState:
    """What the watcher keeps of one agent's pane between looks."""

    __slots__ = (
        "changed_at",
        "check_at",
        "client",
        "dirty_since",
        "last_output",
        "launch_count",
        "name",
        "pane_id",
        "persisted",
        "persisted_at",
        "saved_at",
        "screen_hash",
        "session",
        "verdict",
    )

    def __init__(self, name: str, session: str, pane_id: str, client: Any, launch_count: int):
        self.name = name
        self.session = session
        self.pane_id = pane_id
        self.client = client
        self.launch_count = launch_count
        self.dirty_since: float | None = None  # first output not looked at yet
        self.last_output = 0.0
        self.screen_hash = ""
        self.changed_at = 0.0
        self.verdict = ""
        self.saved_at = 0.0
        self.check_at = 0.0  # a look without output (quiet reached, a hook's grace over); 0 = none
        self.persisted: tuple[str, str, float] = ("", "", 0.0)
        self.persisted_at = 0.0

    def due(self) -> float:
        """When this pane next needs a look (inf: not until it draws)."""
        when = float("inf")
        if self.dirty_since is not None:
            when = min(self.last_output + SETTLE_S, self.dirty_since + BATCH_S)
        if self.check_at:
            when = min(when, self.check_at)
        return when


class Looks:
    """The screen half of the watcher's loop (mixed into :class:`~agentdeck.status.watcher.Watcher`)."""

    deck: Any
    sampler: Sampler
    records: dict[str, Any]
    panes: dict[str, PaneState]
    live_due: bool

    def _refresh_record(self, name: str) -> None:
        raise NotImplementedError  # pragma: no cover - the watcher's

    def look_due(self) -> None:
        now = time.time()
        pending: dict[str, dict[str, Any]] = {}
        for pane in list(self.panes.values()):
            if pane.due() > now:
                continue
            captured = pane.dirty_since is not None
            pane.dirty_since, pane.check_at = None, 0.0
            updates = self.look(pane, now, capture=captured)
            if updates:
                pending[pane.name] = updates
        if pending:
            self.deck.store.put_screen_states(pending)

    def look(self, pane: PaneState, now: float, capture: bool) -> dict[str, Any] | None:
        """Classify one pane (capturing it when it drew); returns the screen state to store, if any."""
        rec = self.records.get(pane.name)
        if rec is None or rec.extra.get("launching"):
            return None
        deck = self.deck
        adapter = self.sampler.adapter(rec)
        changed = False
        if capture:
            try:
                screen = pane.client.capture(pane.pane_id)
            except (TmuxGone, Exception) as exc:  # the pane or its client went meanwhile
                if not isinstance(exc, TmuxGone):
                    log(f"capture of {pane.name} failed: {exc!r}")
                self.live_due = True
                return None
            digest = screen_digest(screen)
            if digest != pane.screen_hash:
                changed = True
                pane.screen_hash, pane.changed_at = digest, now
                keys = adapter.dialog_action(screen)
                if keys and self.sampler._dialog_recently_answered(rec.name, now):
                    keys = None  # the last answer is still being processed; never send it twice
                if keys:
                    pane.client.send("send-keys", "-t", pane.pane_id, *keys)
                    deck.store.add_event(rec.name, "dialog", "screen", detail={"keys": keys})
                pane.verdict = adapter.classify(screen).status or ""
                if now - pane.saved_at >= SAVE_SCREEN_EVERY_S:
                    deck.save_last_screen(rec.name, screen)
                    pane.saved_at = now
        decision = decide(rec, adapter, pane.verdict, pane.changed_at, now)
        if decision is not None and decision != rec.status:
            if deck.store.set_status(rec.name, decision, "screen", {"verdict": pane.verdict}, ts=now,
                                     if_status_at=rec.status_at):
                self._refresh_record(rec.name)
                rec = self.records.get(pane.name, rec)
            else:  # a hook or a command wrote meanwhile: read it again and look once more
                self._refresh_record(rec.name)
                pane.check_at = now + SETTLE_S
        # The next look without output: once quiet, or once a hook's grace time is over.
        later = []
        if now - pane.changed_at < adapter.quiet_s:
            later.append(pane.changed_at + adapter.quiet_s + 0.001)
        if adapter.has_events and rec.status_source == "hook" and now - rec.status_at < HOOK_GRACE_S:
            later.append(rec.status_at + HOOK_GRACE_S + 0.001)
        if prompt_typing(rec.extra, now):  # the hold ends even if the screen never changes again
            later.append(prompt_typing_ends(rec.extra) + 0.001)
        if rec.status == "starting" and not pane.verdict and drawing(rec, adapter, now):
            later.append(drawing_ends(rec) + 0.001)
        if later:
            pane.check_at = min(pane.check_at or float("inf"), *later)
        state = (pane.screen_hash, pane.verdict, pane.changed_at)
        if state == pane.persisted:
            return None
        urgent = (pane.verdict != pane.persisted[1] or not capture or not changed
                  or isinstance(rec.extra.get("pending_prompt"), dict) or bool(rec.extra.get("prompt_typing")))
        if not urgent and now - pane.persisted_at < PERSIST_SCREEN_EVERY_S:
            pane.check_at = min(pane.check_at or float("inf"), pane.persisted_at + PERSIST_SCREEN_EVERY_S)
            return None
        pane.persisted, pane.persisted_at = state, now
        return {"fingerprint": "", "screen_hash": pane.screen_hash, "changed_at": pane.changed_at,
                "sampled_at": now, "verdict": pane.verdict, "candidate": "", "candidate_at": 0.0,
                "saved_at": pane.saved_at}
