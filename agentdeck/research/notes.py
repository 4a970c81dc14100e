"""Experiment notes in the shared memory, behind two small functions.

Every trial that ran or crashed leaves a note (kind ``experiment``, tags
``research``, the run's tag, the outcome and the trial's kind: baseline,
proposal, confirm or suspect-re-run) so that every proposer and every agent in
the deck sees what was tried, crashes included.  The memory store is another part of agentdeck; if
it cannot be imported or fails, research goes on without notes (the ledger and
results.tsv stay the record) and says so once in the loop's log.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("agentdeck.research")


class Notes:
    def __init__(self, repo: Any, config: Any, deck: Any = None):
        self.repo = repo
        self.config = config
        self.deck = deck
        self._local = threading.local()
        self._warned = False
        self.disabled = False

    def _store(self):
        store = getattr(self._local, "store", None)
        if store is None:
            from agentdeck.memory.store import MemoryStore

            store = MemoryStore.open(repo=self.repo, config=self.config, author="research")
            self._local.store = store
        return store

    def _fail(self, what: str, exc: BaseException) -> None:
        if not self._warned:
            log.warning("research: shared memory unavailable (%s: %s: %s); continuing without notes",
                        what, type(exc).__name__, exc)
            self._warned = True

    def add(self, title: str, body: str, tags: list[str]) -> str | None:
        if self.disabled:
            return None
        try:
            note = self._store().add(title[:200], body, tags=tags, kind="experiment")
            return getattr(note, "id", None)
        except Exception as exc:  # notes must never stop the loop
            self._fail("add", exc)
            return None

    def search(self, query: str, limit: int = 8) -> list[dict[str, Any]]:
        if self.disabled:
            return []
        try:
            return list(self._store().search(query, limit=limit))
        except Exception as exc:
            self._fail("search", exc)
            return []

    def close(self) -> None:
        store = getattr(self._local, "store", None)
        if store is not None:
            try:
                store.close()
            except Exception:
                pass
