"""Memory tools of the ``agentdeck`` MCP server: search, read, write, update, journal, recent.

Registered as one tool group of :mod:`agentdeck.mcp.server` (``TOOL_GROUPS``).  Notes and
journal entries are written as the caller (:meth:`ServerContext.writer`): over HTTP the agent
whose bearer token the request carries, whatever the request says; over stdio the process's
``AGENTDECK_AGENT``.  Nothing outside the store is read or written (ids are validated, links
refused, see :mod:`agentdeck.memory.store`); a write either lands whole or reports an error, and a
``warning`` in an answer means saved but not yet searchable.
"""

# No "from __future__ import annotations": the SDK reads the tools' annotations at runtime,
# and those of the memory tools name local types (NoteId).

from typing import Annotated, Any

from mcp_types import ToolAnnotations
from pydantic import Field

from agentdeck.mcp.context import ServerContext, tool_adder
from agentdeck.memory.store import MAX_BODY, MAX_JOURNAL_ENTRY, MAX_TAGS, MAX_TITLE


def register_memory_tools(server: Any, context: ServerContext) -> None:
    tool = tool_adder(server)
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    additive = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                               open_world_hint=False)
    rewriting = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                                open_world_hint=False)

    NoteId = Annotated[str, Field(min_length=1, max_length=140, pattern=r"^[A-Za-z0-9/_.-]+$",
                                  description="a note id from search or recent, e.g. 20261126-build-cache-gotcha")]

    def public(row: dict[str, Any]) -> dict[str, Any]:
        keep = ("id", "title", "kind", "tags", "author", "updated", "version", "path", "snippet", "summary")
        return {k: row[k] for k in keep if k in row}

    @tool(read_only, "Search shared memory")
    def memory_search(
        query: Annotated[str, Field(min_length=1, max_length=500, description="words to look for")],
        limit: Annotated[int, Field(ge=1, le=100, description="most results to return")] = 10,
    ) -> list[dict[str, Any]]:
        """Search the shared memory (full text, best match first). Returns id, title, kind, tags, snippet."""
        return [public(hit) for hit in context.memory.search(query, limit, sync=context.read_sync)]

    @tool(read_only, "Read a memory note")
    def memory_read(id: NoteId) -> dict[str, Any]:
        """Read one note in full (frontmatter fields, body, and its version for memory_update).

        Also reads "CORE" (the user's pinned summary) and "journal/<agent>" (an agent's journal).
        """
        return context.memory.get(id).to_json()

    @tool(additive, "Write a new memory note")
    def memory_write(
        title: Annotated[str, Field(min_length=1, max_length=MAX_TITLE, description="one specific line")],
        body: Annotated[str, Field(max_length=MAX_BODY, description="Markdown: what, why, how you know")],
        tags: Annotated[list[str], Field(max_length=MAX_TAGS, description="short words")] = [],  # noqa: B006 - the SDK's schema shows this default; never mutated
        kind: Annotated[str, Field(max_length=40, description=(
            "note, decision, gotcha, finding, experiment, handoff or core-proposal"))] = "note",
    ) -> dict[str, Any]:
        """Write a NEW note to the shared memory (never overwrites). Returns its id, path and version.

        A "warning" in the answer means the note IS saved but search will find it a little later: do not
        write it again. An error means nothing was written.
        """
        note = context.writer().add(title, body, tags=tags, kind=kind)
        return _saved({"id": note.id, "path": str(note.path), "version": note.version}, note)

    @tool(rewriting, "Update a memory note")
    def memory_update(
        id: NoteId,
        body: Annotated[str, Field(max_length=MAX_BODY, description="the note's complete new body")],
        expected_version: Annotated[int, Field(ge=1, description="the version you read with memory_read")],
    ) -> dict[str, Any]:
        """Replace a note's body. Refused if the note changed since you read it: read again and redo."""
        note = context.writer().update(id, body=body, expected_version=expected_version)
        return _saved({"id": note.id, "path": str(note.path), "version": note.version}, note)

    @tool(additive, "Append to your journal")
    def memory_append_journal(
        text: Annotated[str, Field(min_length=1, max_length=MAX_JOURNAL_ENTRY, description="what you did or learned")],
    ) -> dict[str, Any]:
        """Append a dated entry to your own journal (journal/<your agent name>).

        The entry is appended whole or not at all: an error means nothing was written.
        """
        note = context.writer().append_journal(text)
        return _saved({"id": note.id, "path": str(note.path)}, note)

    @tool(read_only, "Recent memory notes")
    def memory_recent(
        limit: Annotated[int, Field(ge=1, le=200, description="most notes to return")] = 20,
    ) -> list[dict[str, Any]]:
        """The most recently written or updated notes, newest first."""
        return [public(row) for row in context.memory.recent(limit, sync=context.read_sync)]


def _saved(result: dict[str, Any], note: Any) -> dict[str, Any]:
    """A write's answer: saved, plus a ``warning`` when the search index could not follow (do not retry)."""
    if getattr(note, "warning", ""):
        result["warning"] = note.warning
    return result
