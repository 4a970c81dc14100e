"""The first prompt waits for the tools: typed once the agent's MCP client has listed them.

An agent CLI given its prompt at launch starts its first turn before its MCP servers have
connected (Claude Code 2.1.197: the first request offers none of agentdeck's tools, and a
``memory_write`` comes back "still connecting").  So for agents wired to the repository's
HTTP server, the adapter leaves the prompt out of the argv
(``Adapter.prompt_waits_for_tools``), the launch marks it pending
(``extra["pending_prompt"]``; the agent reads ``starting`` meanwhile, see
:func:`agentdeck.status.decide`), and the watcher calls :func:`deliver` on every pass:

* once agentdeck's server has recorded a ``tools/list`` from this agent's session (an
  ``mcp_tools`` event, written by :mod:`agentdeck.mcp.http_app`) - or, failing that, once
  :func:`timeout_s` has passed - and the screen is ready (it has settled, or reads idle a
  moment after the listing), the prompt is typed into the pane: pasted as ``send`` pastes it,
  Enter once the CLI shows it, and Enter once more if it still sits in the input box (a CLI
  finishing its start-up can take the Enter before the paste) - in a thread, off the tick;
* never over a first-run dialog (folder trust, which Codex shows before it starts its MCP
  servers): a dialog still shown a few seconds after it was answered is answered again;
  never while the agent waits for an answer (a question): typed text could answer it;
* every step is an event of the agent (``prompt``): held, typed after ``tools/list`` (with the
  wait), typed after the timeout (with the reason), Enter pressed again, dropped because the
  agent exited.

A claim in one transaction swaps the mark for ``extra["prompt_typing"]`` (the time it was
claimed) before typing, so two watchers (a hand-over) never type it twice; the agent still reads
``starting`` while the prompt is being typed and submitted (the CLI sits at its own prompt
meanwhile, which must not be recorded as ``idle``), until the typing thread clears the mark or
:data:`TYPING_HOLD_S` has passed (a watcher killed mid-typing cannot hold the agent for ever).
Standard library and the state store only.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from agentdeck.store import transaction

DEFAULT_TIMEOUT_S = 30.0
ENV_TIMEOUT = "AGENTDECK_FIRST_PROMPT_TIMEOUT"
#: A screen still for this long counts as ready when no pattern reads it idle.
READY_QUIET_S = 0.5
#: After the timeout, type after this much longer even if the screen never looked ready.
LATE_S = 15.0
#: A first-run dialog still shown this long after it was answered is answered again.
DIALOG_AGAIN_S = 3.0
#: After the listing, type after this much longer even if the screen never settled.
LATE_AFTER_LIST_S = 5.0
#: How long the pasted prompt may take to show in the CLI's input box before Enter is pressed anyway.
PASTE_SHOWN_S = 3.0
#: How long after typing the prompt may still sit in the input box before Enter is pressed again.
SUBMIT_CHECK_S = 3.0
#: The longest a claimed prompt being typed holds the agent at ``starting``.
TYPING_HOLD_S = 20.0


def typing(extra: dict[str, Any], now: float) -> bool:
    """True while a claimed first prompt is being typed (and for at most :data:`TYPING_HOLD_S`)."""
    at = extra.get("prompt_typing")
    return isinstance(at, (int, float)) and 0 <= now - float(at) < TYPING_HOLD_S


def timeout_s() -> float:
    """Seconds a prompt waits for the tools (``AGENTDECK_FIRST_PROMPT_TIMEOUT``, default 30)."""
    try:
        value = float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def claim(store: Any, name: str, pending: dict[str, Any], now: float | None = None) -> bool:
    """Swap *pending* in the agent's row for the ``prompt_typing`` mark if it is still there (one
    transaction); True if we did."""
    with transaction(store.conn) as c:
        row = c.execute("SELECT extra FROM agents WHERE name = ?", (name,)).fetchone()
        if row is None:
            return False
        extra = json.loads(row["extra"] or "{}")
        if not extra.get("pending_prompt") or extra["pending_prompt"] != pending:
            return False
        extra.pop("pending_prompt")
        extra["prompt_typing"] = time.time() if now is None else now
        c.execute("UPDATE agents SET extra = ? WHERE name = ?", (json.dumps(extra), name))
    return True


def deliver(deck: Any, records: list[Any], now: float) -> list[str]:
    """Type every pending first prompt that is due; returns the names typed into."""
    pending = [r for r in records if isinstance(r.extra.get("pending_prompt"), dict)]
    if not pending:
        return []
    # The adapters are loaded only when a prompt is pending: the watcher runs this every pass.
    from agentdeck.agents import get_adapter

    states = deck.store.screen_states()
    panes = deck.tmux.panes()
    typed: list[str] = []
    for rec in pending:
        mark = rec.extra["pending_prompt"]
        since = float(mark.get("since") or 0.0)
        limit = float(mark.get("timeout") or DEFAULT_TIMEOUT_S)
        if rec.status == "exited" or rec.kept:
            if claim(deck.store, rec.name, mark, now):
                _typed(deck, rec)
                deck.store.add_event(rec.name, "prompt", "deck",
                                     detail={"dropped": "the agent exited before its first prompt was typed"})
            continue
        pane = panes.get(rec.session)
        if pane is None or pane.dead:
            continue  # the sampler records the exit
        # A first-run dialog (folder trust) comes before the CLI starts its MCP servers (Codex) and
        # would take the typed prompt as its answer: answer it again if it is still shown (an Enter
        # sent while the CLI was still starting can be lost), and type nothing over it.
        adapter = get_adapter(rec.definition, deck.config)
        keys = adapter.dialog_action(deck.tmux.capture(pane.pane_id))
        if keys:
            last = deck.store.last_event(rec.name, "dialog")
            if last is None or now - float(last["ts"]) >= DIALOG_AGAIN_S:
                deck.tmux.send_keys(pane.pane_id, *keys)
                deck.store.add_event(rec.name, "dialog", "deck", detail={"keys": keys, "again": True})
            continue
        listed = deck.store.last_event(rec.name, "mcp_tools")
        listed_at = listed["ts"] if listed is not None and listed["ts"] >= since else None
        if listed_at is None and now - since < limit:
            continue
        state = states.get(rec.name)
        verdict = state["verdict"] if state is not None else ""
        if verdict == "waiting" or rec.status == "waiting":
            continue  # a dialog or a question: typed text could answer it
        if not _ready(state, verdict, listed_at, since, limit, now):
            continue
        if not claim(deck.store, rec.name, mark, now):
            continue
        if listed_at is not None:
            detail: dict[str, Any] = {"typed": "after tools/list", "waited_s": round(listed_at - since, 3),
                                      "typed_after_s": round(now - since, 3)}
        else:
            detail = {"typed": "after the timeout", "timeout_s": limit,
                      "reason": f"agentdeck's MCP server saw no tools/list from this agent within {limit:g}s"}
        typed.append(rec.name)
        # Typing and checking that it was submitted takes a few seconds: not on the watcher's tick.
        threading.Thread(target=_type_and_record, args=(deck, rec, detail), name=f"first-prompt-{rec.name}",
                         daemon=True).start()
    return typed


def _ready(state: Any, verdict: str, listed_at: float | None, since: float, limit: float, now: float) -> bool:
    """The CLI can take the prompt: its screen has settled (it redraws as its servers connect), or
    it reads idle a moment after the listing; or it has had long enough whatever it shows."""
    quiet = state is not None and bool(state["screen_hash"]) and now - float(state["changed_at"]) >= READY_QUIET_S
    if listed_at is not None:
        return quiet or (verdict == "idle" and now - listed_at >= 1.0) or now - listed_at >= LATE_AFTER_LIST_S
    return quiet or verdict == "idle" or now - since >= limit + LATE_S


def _type_and_record(deck: Any, rec: Any, detail: dict[str, Any]) -> None:
    try:
        try:
            io, adapter, head = _type(deck, rec)
        except Exception as exc:  # the pane vanished meanwhile: say so, never retry into another launch
            _event(deck, rec, {"error": f"could not type the first prompt: {exc}"})
            return
        _event(deck, rec, detail)
        try:
            if enter_again_if_still_typed(io, adapter, head):
                _event(deck, rec, {"enter_again": "the prompt still sat in the input box"})
        except Exception:  # the pane is gone: its exit is recorded by the sampler
            pass
    finally:
        _typed(deck, rec)


def _typed(deck: Any, rec: Any) -> None:
    """Typing is over: the screen decides the agent's status again."""
    try:
        deck.store.merge_extra(rec.name, prompt_typing=None)
    except Exception:  # the row is gone (killed meanwhile)
        pass


def _event(deck: Any, rec: Any, detail: dict[str, Any]) -> None:
    try:
        deck.store.add_event(rec.name, "prompt", "deck", detail=detail)
    except Exception:  # the row is gone (killed meanwhile): nothing to record
        pass


def first_words(text: str) -> str:
    """What :func:`enter_again_if_still_typed` looks for: the first words of the text's first line."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:40]


def _type(deck: Any, rec: Any) -> tuple[Any, Any, str]:
    """Type the prompt into the pane (a paste, as ``send`` types), wait until the CLI shows it,
    then Enter.  Returns what :func:`enter_again_if_still_typed` needs."""
    from agentdeck.agents import get_adapter  # see deliver()

    pane = deck.tmux.pane_id(rec.session)
    if not pane:
        raise RuntimeError(f"the tmux session {rec.session} is gone")
    adapter = get_adapter(rec.definition, deck.config)
    io = deck.tmux.pane_io(pane)
    head = first_words(rec.prompt)
    io.send_text(rec.prompt, enter=False)
    deadline = time.monotonic() + PASTE_SHOWN_S
    while head and time.monotonic() < deadline and not _still_typed(io.capture(), head):
        time.sleep(0.1)
    settle = getattr(adapter, "submit_settle_s", None)
    time.sleep(settle(rec.prompt) if callable(settle) else 0.3)
    io.send_keys("Enter")
    return io, adapter, head


#: With an input box the adapter can read, how long the text may sit there before Enter is pressed again
#: (the screen still for :data:`BOX_STILL_S`), and how many times at most.  A CLI that has just
#: started (or restarted) on a loaded machine keeps redrawing for many seconds while it connects;
#: the check waits for it to fall still (30 s), and returns as soon as the box is empty.
BOX_CHECK_S = 30.0
BOX_STILL_S = 1.0
BOX_PRESSES = 3
#: Reads of the box without the text, in a row, that mean it was taken (one read can catch a redraw).
BOX_GONE_READS = 2


def enter_again_if_still_typed(io: Any, adapter: Any, head: str, check_s: float = SUBMIT_CHECK_S) -> bool:
    """When the text still sits in the input box a moment after its Enter (a CLI finishing its
    start-up, or connecting its MCP servers, can take the paste and drop the Enter), press Enter
    again.  True if it did.

    An adapter that reads its input box (``input_box(screen)``) is watched for up to
    :data:`BOX_CHECK_S`: done as soon as the box no longer holds the text (:data:`BOX_GONE_READS`
    reads in a row: a capture can catch the CLI mid-redraw); Enter again whenever the
    screen has been still for :data:`BOX_STILL_S` with the text in the box (a spinner keeps the
    screen moving: the CLI is busy, and takes the Enter once it is not), at most
    :data:`BOX_PRESSES` times.  Otherwise the text on the last lines with no working or waiting
    pattern for *check_s* means it was not taken."""
    read_box = getattr(adapter, "input_box", None)
    if not head:
        return False
    box_known = callable(read_box) and read_box(io.capture()) is not None
    deadline = time.monotonic() + (BOX_CHECK_S if box_known else check_s)
    pressed, last, still_since, gone = 0, None, time.monotonic(), 0
    while time.monotonic() < deadline:
        time.sleep(0.25)
        screen = io.capture()
        if not box_known:
            if not _still_typed(screen, head) or adapter.classify(screen).status in ("working", "waiting"):
                return False
            continue
        box = read_box(screen)  # type: ignore[misc]
        if box is not None and head not in box:
            gone += 1
            if gone >= BOX_GONE_READS:
                return pressed > 0
            continue
        gone = 0
        now = time.monotonic()
        if screen != last:
            last, still_since = screen, now
        elif box is not None and now - still_since >= BOX_STILL_S and pressed < BOX_PRESSES:
            io.send_keys("Enter")
            pressed += 1
            still_since = now
    if box_known:
        return pressed > 0
    io.send_keys("Enter")
    return True


def _still_typed(screen: str, head: str) -> bool:
    """The prompt's first words on one of the last lines (the input box), nothing above saying it ran."""
    tail = [line for line in screen.rstrip().splitlines()[-8:] if line.strip()]
    return any(head in line for line in tail)
