"""The status rules, as pure functions: what a screen verdict means for an agent's status.

:func:`decide` fuses the recorded status (and where it came from: a hook, the screen, a restart)
with what the adapter read on the screen and how long the screen has been still;
:func:`restart_pending` tells a restart under way from a new exit.  No process, tmux or database
here: the sampler and the watcher feed them, and ``tests/test_status_events.py`` checks them
directly.
"""

from __future__ import annotations

from typing import Any

from agentdeck.mcp_link import first_prompt

PERSIST_S = 0.2  # one-off passes (no watcher): a screen verdict must hold this long across passes
HOOK_GRACE_S = 1.5
#: A restarted agent whose pane is still the dead one is given this long before it counts as exited.
RESTART_GRACE_S = 10.0
#: The longest a starting CLI whose prompt the screen table knows is held at ``starting`` while
#: its screen shows none of its patterns (a CLI that changed its look must not stay starting).
DRAWING_HOLD_S = 30.0


def decide(rec: Any, adapter: Any, verdict: str, changed_at: float, now: float) -> str | None:
    """The status a screen verdict implies for *rec*, given when the screen last changed.

    * An agent with events whose status came from a hook: the screen only corrects it, with a
      pattern verdict, once the hook status is older than :data:`HOOK_GRACE_S` (an ``idle``
      verdict only once the screen is quiet).
    * Otherwise a ``waiting`` or ``working`` pattern says so at once.  The agent's prompt
      (``idle`` pattern) is ``idle`` at once after start or while idle; after a turn or an
      answer it is ``idle`` once the screen fell quiet (a TUI may show its prompt while it still
      works), ``working`` until then.  No pattern: ``working`` while the screen changes (an
      agent started without a prompt stays ``starting`` meanwhile), ``idle`` once it has been
      quiet for ``quiet_s``; but a starting CLI whose prompt the screen table knows stays
      ``starting`` until its screen shows a pattern (a blank screen while it loads is not
      ``idle``: a ``send`` then would be lost), for at most :data:`DRAWING_HOLD_S`.
    * A restarted agent whose pane has not been respawned yet (``extra["relaunching"]``) stays
      ``starting`` whatever the old process's screen says.
    * An agent whose first prompt has not been typed yet (it waits for the agent's MCP client to
      list agentdeck's tools, :mod:`agentdeck.mcp_link.first_prompt`) stays ``starting`` unless the
      screen shows it waiting: ``idle`` would tell a script its task is done before it began;
      so does one whose first prompt is being typed (:func:`agentdeck.mcp_link.first_prompt.typing`)
      until the CLI shows it working (or waiting).
    """
    if rec.status == "starting" and relaunching(rec, now):
        return None  # restart has not respawned the pane yet: the old process's screen says nothing
    if rec.extra.get("pending_prompt") and verdict != "waiting":
        return None
    if verdict not in ("waiting", "working") and prompt_typing(rec.extra, now):
        return None
    quiet = now - changed_at >= adapter.quiet_s
    if adapter.has_events and rec.status_source == "hook":
        # Events lead; the screen only corrects them with a clear pattern verdict.
        if not verdict or verdict == rec.status:
            return None
        if now - rec.status_at < HOOK_GRACE_S:
            return None
        if verdict == "idle" and not quiet:
            return None
        return verdict
    if verdict in ("waiting", "working"):
        return verdict
    if verdict == "idle":
        return "idle" if quiet or rec.status in ("starting", "idle") else "working"
    if rec.status == "starting" and drawing(rec, adapter, now):
        return None  # a blank or half-drawn screen: the CLI has not shown its prompt yet
    if not quiet and rec.status == "starting" and not getattr(rec, "prompt", ""):
        return None  # still drawing itself, with nothing to work on yet: starting until its prompt shows
    return "idle" if quiet else "working"


def relaunching(rec: Any, now: float) -> bool:
    """``restart`` marked the row and has not respawned the pane yet (at most :data:`DRAWING_HOLD_S`:
    a restart killed half way must not hold the agent for ever)."""
    at = rec.extra.get("relaunching")
    return isinstance(at, (int, float)) and 0 <= now - float(at) < DRAWING_HOLD_S


def drawing(rec: Any, adapter: Any, now: float) -> bool:
    """A starting CLI with a known prompt that has not drawn it yet (see :func:`decide`)."""
    return bool(getattr(adapter, "knows_prompt", False)) and now - rec.status_at < DRAWING_HOLD_S


def drawing_ends(rec: Any) -> float:
    """When the hold of :func:`drawing` ends, even if the screen never changes again."""
    return float(rec.status_at) + DRAWING_HOLD_S


def prompt_typing(extra: dict, now: float) -> bool:
    """The agent's first prompt is being typed (:func:`agentdeck.mcp_link.first_prompt.typing`): hold ``starting``."""
    return first_prompt.typing(extra, now)


def prompt_typing_ends(extra: dict) -> float:
    """When the typing hold of :func:`prompt_typing` ends, even if the screen never changes again."""
    return float(extra["prompt_typing"]) + first_prompt.TYPING_HOLD_S


def restart_pending(rec: Any, pane: Any, now: float) -> bool:
    """True while a ``restart`` of *rec* is under way: the row says ``starting`` (source restart)
    but its session is not there yet, or its pane is still the one that died before the restart
    (pane_dead_time, in whole seconds); for at most :data:`RESTART_GRACE_S`.  Not a new exit."""
    if rec.status != "starting" or rec.status_source != "restart" or now - rec.status_at > RESTART_GRACE_S:
        return False
    if pane is None:
        return True  # its session (or the whole server) is being made again
    # a dead pane tmux has not reaped yet (no time of death) died before the restart too
    return pane.dead and (not pane.dead_time or pane.dead_time <= int(rec.status_at))
