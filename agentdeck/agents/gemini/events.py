"""Gemini CLI's hook events -> status: plain data, standard library only.

``agentdeck hook gemini <Event>`` (:mod:`agentdeck.hooks`) imports this module alone; the
payload is JSON on stdin, as for Claude Code.  The adapter registers :data:`HOOK_EVENTS`
in the system settings file it writes (when it can: see the package's notes).
"""

from __future__ import annotations

HOOK_EVENTS = ("SessionStart", "BeforeAgent", "BeforeTool", "AfterTool", "AfterAgent", "Notification", "SessionEnd")

EVENT_KEY = "hook_event_name"
PAYLOAD_IN_ARGV = False

EVENTS: dict[str, object] = {
    "BeforeAgent": "working",
    "BeforeTool": "working",
    "AfterTool": "working",
    "Notification": lambda p: "waiting" if "permission" in str(p.get("notification_type", "")).lower() else None,
    "AfterAgent": "idle",
    "SessionStart": "first-idle",
    "SessionEnd": None,
}
