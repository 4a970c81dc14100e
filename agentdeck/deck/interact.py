"""Typing into a live agent: ``send``, ``approve``, ``deny``, ``broadcast`` and ``attach_argv``.

Text is typed only into a live pane, and never into an agent that waits for an answer
unless forced (typed text could answer its prompt).
"""

from __future__ import annotations

from agentdeck.agents import get_adapter
from agentdeck.errors import Refused, UsageError
from agentdeck.mcp_link import first_prompt
from agentdeck.mcp_link import service as mcp_service
from agentdeck.store import AgentRecord

from .base import DeckBase


class InteractOps(DeckBase):
    """Input to agents' panes."""

    def _live_pane(self, rec: AgentRecord, action: str) -> str:
        pane = self.tmux.pane_id(rec.session) if self.tmux.has_session(rec.session) else None
        panes = self.tmux.panes()
        info = panes.get(rec.session)
        if pane is None or info is None or info.dead:
            self.refresh(settle=False)
            raise Refused(f"cannot {action} {rec.name}: it has exited; run `agentdeck restart {rec.name}` first")
        return pane

    def send(self, name: str, text: str, force: bool = False) -> None:
        rec = self.get(name)
        if not text:
            raise UsageError("nothing to send: give the text to type")
        self.refresh(settle=False)
        rec = self.get(name)
        if rec.status == "exited":
            raise Refused(f"cannot send to {name}: it has exited; run `agentdeck restart {name}` first")
        if rec.status == "waiting" and not force:
            raise Refused(
                f"{name} is waiting for an answer (typed text could answer its prompt); "
                f"use `agentdeck approve/deny {name}`, or `send --force`"
            )
        pane = self._live_pane(rec, "send to")
        mcp_service.settle_before_typing(self, rec)  # a CLI connecting its MCP server drops typed Enters
        adapter = get_adapter(rec.definition, self.config)
        io = self.tmux.pane_io(pane)
        adapter.submit(io, text)
        self.store.add_event(name, "send", "user", detail={"chars": len(text)})
        if mcp_service.just_launched(rec) and first_prompt.enter_again_if_still_typed(
                io, adapter, first_prompt.first_words(text)):
            self.store.add_event(name, "send", "deck", detail={"enter_again": "the text still sat in the input box"})

    def _answer(self, name: str, approve: bool) -> None:
        rec = self.get(name)
        self.refresh(settle=False)
        rec = self.get(name)
        verb = "approve" if approve else "deny"
        if rec.status != "waiting":
            raise Refused(f"{name} has no pending question to {verb} (it is {rec.status})")
        pane = self._live_pane(rec, verb)
        adapter = get_adapter(rec.definition, self.config)
        io = self.tmux.pane_io(pane)
        adapter.approve(io) if approve else adapter.deny(io)
        self.store.add_event(name, verb, "user")

    def approve(self, name: str) -> None:
        self._answer(name, True)

    def deny(self, name: str) -> None:
        self._answer(name, False)

    def broadcast(self, names: list[str], text: str, force: bool = False) -> dict[str, str]:
        """Send *text* to each agent; returns name -> "sent" or the reason it was not."""
        for name in names:
            self.get(name)
        results: dict[str, str] = {}
        for name in names:
            try:
                self.send(name, text, force=force)
                results[name] = "sent"
            except Refused as err:
                results[name] = str(err)
        return results

    def attach_argv(self, name: str) -> list[str]:
        rec = self.get(name)
        if not self.tmux.has_session(rec.session):
            raise Refused(f"{name} has no tmux session (it exited); run `agentdeck restart {name}` first")
        return self.tmux.attach_argv(rec.session)
