"""One synchronous pass over every agent of a repository: liveness, screen, fusion.

A command that finds no watcher running samples once (:meth:`Sampler.sample`) before it prints,
so what it says is true even before the watcher's first look; :meth:`Sampler.liveness` is the
cheap part alone (one tmux call).  The watcher uses the sampler's adapters and its ``exited``
bookkeeping too.  The rules themselves are :mod:`agentdeck.status.rules`.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from agentdeck.agents import get_adapter
from agentdeck.agents.generic.adapter import GenericAdapter
from agentdeck.config import AgentDef
from agentdeck.status.launch import launch_abandoned
from agentdeck.status.rules import PERSIST_S, decide, restart_pending

SAVE_SCREEN_EVERY_S = 5.0


def screen_digest(text: str) -> str:
    """A short digest of a screen: equal screens, equal digests."""
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=12).hexdigest()


class Sampler:
    """One pass over every agent of a repository: liveness, screen, fusion."""

    def __init__(self, deck: Any):
        self.deck = deck
        self._adapters: dict[str, Any] = {}

    def adapter(self, rec: Any) -> Any:
        key = rec.definition
        if key not in self._adapters:
            try:
                self._adapters[key] = get_adapter(rec.definition, self.deck.config)
            except Exception:  # definition removed from the config: fall back to generic rules
                self._adapters[key] = GenericAdapter(rec.definition, AgentDef(command="?"), self.deck.config)
        return self._adapters[key]

    def sample(self, settle: bool = False) -> int:
        """Sample every agent once; returns how many panes were alive.

        *settle*: when the stored sample is stale (no watcher was running), take a
        second look ``quiet_s`` later before calling changed output ``working``.
        """
        deck = self.deck
        store = deck.store
        tmux = deck.tmux
        now = time.time()
        listed = tmux.list_panes()  # one tmux call; None when the server is down
        server_alive = listed is not None
        panes = listed or {}
        states = store.screen_states()
        work = []
        for rec in store.list_agents():
            if rec.status == "exited" and rec.kept:
                continue
            if rec.extra.get("launching"):
                self._check_launch(rec)
                continue  # `new` is still creating it (or it was just found abandoned)
            pane = panes.get(rec.session)
            if pane is None or pane.dead:
                if not restart_pending(rec, pane, now):
                    self._exited(rec, pane, server_alive)
                continue
            work.append((rec, pane, states.get(rec.name)))
        first: dict[str, str] = {}
        if settle:
            # Nobody watched: capture every stale pane, wait ONCE, and let the second look tell
            # still screens from changing ones.
            for rec, pane, state in work:
                if state is None or now - state["sampled_at"] > 3 * deck.config.deck.status_interval:
                    first[rec.name] = tmux.capture(pane.pane_id)
            if first:
                time.sleep(min(0.6, min(self.adapter(rec).quiet_s for rec, _, _ in work)))
        pending = {}
        for rec, pane, state in work:
            updates = self._sample_pane(rec, pane, state, now, first.get(rec.name))
            if updates:
                pending[rec.name] = updates
        if pending:
            store.put_screen_states(pending)  # one transaction for the whole pass
        return len(work)

    # ------------------------------------------------------------------ liveness
    def liveness(self, watched: bool = False) -> None:
        """Only the cheap part (one tmux call): mark dead panes and a dead server ``exited`` now.

        *watched*: a watcher runs, and it records dead panes and killed sessions the moment tmux
        reports them; then only what it cannot see is checked here, with no tmux call at all:
        abandoned launches, and a server that is gone (its socket refuses connections)."""
        tmux = self.deck.tmux
        now = time.time()
        if watched and tmux.is_alive():
            for rec in self.deck.store.list_agents():
                if rec.extra.get("launching"):
                    self._check_launch(rec)
            return
        listed = tmux.list_panes()  # one tmux call; None when the server is down
        server_alive = listed is not None
        panes = listed or {}
        for rec in self.deck.store.list_agents():
            if rec.extra.get("launching"):
                self._check_launch(rec)
                continue
            if rec.status == "exited":
                continue
            pane = panes.get(rec.session)
            if (pane is None or pane.dead) and not restart_pending(rec, pane, now):
                self._exited(rec, pane, server_alive)

    def _check_launch(self, rec) -> None:
        """A launch whose process is gone: ``exited``, with the reason as its event."""
        if not launch_abandoned(rec):
            return
        ident = rec.extra.get("launcher") or {}
        pid = ident.get("pid") if isinstance(ident, dict) else None
        reason = (f"launch interrupted: the process creating it (pid {pid}) ended before the agent started"
                  if pid else "launch interrupted: no process is creating it any more")
        self.deck.mark_launch_interrupted(rec, reason)

    def _exited(self, rec, pane, server_alive: bool) -> bool:
        """Record *rec* ``exited`` (a dead pane keeps its last screen); True when it was changed."""
        if rec.status == "exited":
            return False
        detail: dict[str, object] = {}
        if pane is not None:
            detail["exit_status"] = pane.dead_status
            try:
                self.deck.save_last_screen(rec.name, self.deck.tmux.capture(pane.pane_id))
            except Exception:
                pass
        else:
            detail["reason"] = "tmux server gone" if not server_alive else "tmux session gone"
        return self.deck.store.set_status(rec.name, "exited", "liveness", detail)

    # ------------------------------------------------------------------ screen
    def _sample_pane(self, rec, pane, state, now: float, first_look: str | None) -> dict | None:
        """Classify one pane; returns the screen-state fields to store, None when nothing moved."""
        deck = self.deck
        store = deck.store
        adapter = self.adapter(rec)
        fingerprint = pane.fingerprint
        settled = first_look is not None
        changed_fp = state is None or state["fingerprint"] != fingerprint
        verdict = state["verdict"] if state is not None else ""
        screen_hash = state["screen_hash"] if state is not None else ""
        changed_at = state["changed_at"] if state is not None else now
        saved_at = state["saved_at"] if state is not None else 0.0
        updates: dict[str, object] = {"fingerprint": fingerprint, "sampled_at": now}
        # window_activity counts whole seconds: look again at panes active in the last two.
        if settled or changed_fp or not screen_hash or now - pane.activity <= 2:
            screen = deck.tmux.capture(pane.pane_id)
            new_hash = screen_digest(screen)
            if first_look is not None and new_hash != screen_hash:  # settled
                # Unwatched until now: still since the first look means quiet for as long as we can tell.
                changed_at = now - adapter.quiet_s if screen_digest(first_look) == new_hash else time.time()
            elif new_hash != screen_hash:
                changed_at = now
            keys = adapter.dialog_action(screen)
            if keys and self._dialog_recently_answered(rec.name, now):
                keys = None  # the last answer is still being processed; never send it twice
            if keys:
                deck.tmux.send_keys(pane.pane_id, *keys)
                store.add_event(rec.name, "dialog", "screen", detail={"keys": keys})
            v = adapter.classify(screen)
            verdict = v.status or ""
            updates.update(screen_hash=new_hash, changed_at=changed_at, verdict=verdict)
            if new_hash != screen_hash and now - saved_at >= SAVE_SCREEN_EVERY_S:
                deck.save_last_screen(rec.name, screen)
                updates["saved_at"] = now
        decision = self._decide(rec, adapter, verdict, changed_at, now)
        candidate = state["candidate"] if state is not None else ""
        candidate_at = state["candidate_at"] if state is not None else 0.0
        if decision is None or decision == rec.status:
            updates.update(candidate="", candidate_at=0.0)
        elif decision != candidate:
            updates.update(candidate=decision, candidate_at=now)
            # A prompt on screen is unambiguous: no persistence window for `waiting`; and a
            # one-off reader (no watcher running) cannot wait for one.
            if (decision == "waiting" and verdict == "waiting") or settled:
                store.set_status(rec.name, decision, "screen", {"verdict": verdict}, if_status_at=rec.status_at)
                updates.update(candidate="", candidate_at=0.0)
        elif now - candidate_at >= PERSIST_S:
            store.set_status(rec.name, decision, "screen", {"verdict": verdict}, if_status_at=rec.status_at)
            updates.update(candidate="", candidate_at=0.0)
        if state is not None and all(state[k] == v for k, v in updates.items() if k != "sampled_at"):
            return None  # an idle pane costs no write
        return updates

    def _dialog_recently_answered(self, name: str, now: float, within: float = 3.0) -> bool:
        last = self.deck.store.last_event(name, "dialog")
        return last is not None and now - last["ts"] < within

    def _decide(self, rec, adapter, verdict: str, changed_at: float, now: float) -> str | None:
        """The status the screen implies now (None: it says nothing against the recorded one)."""
        return decide(rec, adapter, verdict, changed_at, now)
