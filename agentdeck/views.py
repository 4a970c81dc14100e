"""How an agent is listed (``ls --json``, the MCP tools): standard library and the store only, so a
light command can list agents without importing the deck."""

from __future__ import annotations

from typing import Any

from agentdeck.store import AgentRecord, utc_iso


class AgentView:
    """An agent as listed: the record plus what is derived at read time."""

    def __init__(self, rec: AgentRecord):
        self.rec = rec

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AgentView) and self.rec == other.rec

    def __repr__(self) -> str:
        return f"AgentView(rec={self.rec!r})"

    def __getattr__(self, item: str) -> Any:
        return getattr(self.rec, item)

    def to_json(self) -> dict[str, Any]:
        r = self.rec
        return {
            "name": r.name,
            "agent": r.definition,
            "kind": r.kind,
            "status": r.status,
            "status_source": r.status_source,
            "status_since": utc_iso(r.status_at) if r.status_at else None,
            "branch": r.branch,
            "base": r.base_branch,
            "base_commit": r.base_commit,
            "worktree": r.worktree,
            "cwd": r.start_dir,
            "created_at": r.created_at,
            "kept": r.kept,
            "session_id": r.session_id or None,
            "tmux_session": r.session,
            **sandbox_fields(r.extra),
        }


def sandbox_fields(extra: dict[str, Any] | None) -> dict[str, Any]:
    """``sandbox`` (``none``/``agent``/``bwrap``), ``autonomy`` (``ask``/``auto``) and ``network``
    of an agent, as recorded at ``new`` in ``extra["sandbox"]`` (issue 17; read here without
    importing :mod:`agentdeck.sandbox.agent_mode`, which :func:`~agentdeck.sandbox.agent_mode.recorded`
    mirrors: agents made before sandboxes read as ``none``/``ask``)."""
    raw = (extra or {}).get("sandbox")
    raw = raw if isinstance(raw, dict) else {}
    return {"sandbox": str(raw.get("mode") or "none"), "autonomy": str(raw.get("autonomy") or "ask"),
            "network": bool(raw.get("network", True))}


def sandbox_label(fields: dict[str, Any]) -> str:
    """``none``, ``agent``, ``bwrap/auto``, ``bwrap/auto/offline``: the SANDBOX column of ``ls`` and
    the deck, from :func:`sandbox_fields` (or an ``ls --json`` row)."""
    mode = fields.get("sandbox") or "none"
    parts = [mode]
    if fields.get("autonomy") == "auto":
        parts.append("auto")
    if fields.get("network") is False and mode != "none":
        parts.append("offline")
    return "/".join(parts)
