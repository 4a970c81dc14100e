"""Codex's ``notify`` calls -> status: plain data, standard library only.

``agentdeck hook codex notify '<json>'`` (:mod:`agentdeck.hooks`) imports this module
alone, on every completed turn.  The payload is the last argument; its ``type`` is the
event (only ``agent-turn-complete`` exists in Codex 0.169).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: the hook path imports no more than it needs
if TYPE_CHECKING:
    from typing import Any

EVENT_KEY = "type"
#: The payload is the last argument (not stdin).
PAYLOAD_IN_ARGV = True

EVENTS: dict[str, object] = {
    "agent-turn-complete": "idle",
}


def refine(rec: Any, event: str, payload: dict[str, Any], status: str | None, detail: dict[str, Any],
           updates: dict[str, Any]) -> str | None:
    """Codex also reports turns of its side threads (the title it generates): only the
    agent's own conversation counts.  Learns the conversation id on the way."""
    thread = payload.get("thread-id")
    if not isinstance(thread, str) or not thread:
        return status
    if rec.session_id:
        if thread != rec.session_id:
            detail["ignored"] = "other thread"
            return None
        return status
    if codex_session_file(thread) is None:
        detail["ignored"] = "no session file (side thread)"
        return None
    updates["session_id"] = thread
    return status


def codex_home() -> str:
    return os.environ.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")


def codex_session_file(thread_id: str, home: str | None = None) -> str | None:
    """The rollout file Codex keeps for a conversation (``sessions/YYYY/MM/DD/rollout-*-<id>.jsonl``)."""
    import glob

    root = os.path.join(home or codex_home(), "sessions")
    matches = glob.glob(os.path.join(root, "*", "*", "*", f"rollout-*{thread_id}.jsonl"))
    return matches[0] if matches else None
