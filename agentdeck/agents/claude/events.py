"""Claude Code's hook events -> status: plain data, standard library only.

``agentdeck hook claude <Event>`` (:mod:`agentdeck.hooks`) imports this module alone, on
every event; the adapter registers :data:`HOOK_EVENTS` in its ``--settings`` file.  The
payload comes as JSON on stdin, its ``hook_event_name`` naming the event.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the hook path imports no more than it needs
if TYPE_CHECKING:
    from typing import Any

#: The hook events agentdeck registers, each calling ``agentdeck hook claude <Event>``.
HOOK_EVENTS = (
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PostToolUse",
    "PostToolUseFailure",
    "Notification",
    "Stop",
    "StopFailure",
    "SessionEnd",
)

#: The payload key naming the event (the argument names it when the payload does not).
EVENT_KEY = "hook_event_name"
#: The payload is the JSON on stdin (not the last argument).
PAYLOAD_IN_ARGV = False

#: Event -> status.  Callables decide from the payload.  ``PermissionRequest`` fires the
#: instant a permission dialog (or an AskUserQuestion question) appears; ``Notification
#: permission_prompt`` only ~6 s later.  A user's "No" at the dialog fires no hook at all
#: (the screen fills that gap).  ``SessionEnd`` sets nothing: liveness says ``exited``.
#: ``first-idle`` is idle only while nothing else happened since the (re)launch
#: (:func:`agentdeck.hooks.decide`).
EVENTS: dict[str, object] = {
    "UserPromptSubmit": "working",
    "PreToolUse": lambda p: "waiting" if p.get("tool_name") == "AskUserQuestion" else "working",
    "PostToolUse": "working",
    "PostToolUseFailure": "working",
    "PermissionRequest": "waiting",
    "Notification": lambda p: {
        "permission_prompt": "waiting",
        "elicitation_dialog": "waiting",
        "idle_prompt": "idle",
    }.get(str(p.get("notification_type", ""))),
    "Elicitation": "waiting",
    "Stop": "idle",
    "StopFailure": "idle",
    "SessionStart": "first-idle",
    "SessionEnd": None,
}


def refine(rec: Any, event: str, payload: dict[str, Any], status: str | None, detail: dict[str, Any],
           updates: dict[str, Any]) -> str | None:
    """Learn the conversation id: ``/clear`` starts a new conversation (restart resumes that
    one); a fork's SessionStart reports its source's id (``source: "resume"``), its later
    events its own."""
    if not (event == "SessionStart" and payload.get("source") == "resume"):
        sid = payload.get("session_id")
        if isinstance(sid, str) and sid and sid != rec.session_id:
            updates["session_id"] = sid
    return status
