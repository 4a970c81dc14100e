"""``agentdeck mcp``: the stdio MCP server named ``agentdeck`` (mcp SDK 2.x, ``MCPServer``).

One server process runs per agent (its launch passes it on the command line), so
the calling agent is the process's ``AGENTDECK_AGENT``.  It finds the repository
through ``AGENTDECK_MEMORY_DIR`` / ``AGENTDECK_STATE_DIR`` (set for every agent)
or its working directory.

Tools come in groups, registered in one place: :data:`TOOL_GROUPS` is a list of
``register(server, context)`` callables.  The memory group is here; research
(``research_submit``) and deck tools add their own function to the list, e.g.::

    from agentdeck.mcp_server import TOOL_GROUPS
    TOOL_GROUPS.append(register_research_tools)   # or add it to the list below

A group may decide not to register (``context.config.mcp.deck_tools`` false).
Errors a tool expects (bad input, a refused update) reach the agent as a tool
error with agentdeck's one-line message; nothing outside the store is read or
written (ids are validated, symlinks refused, see :mod:`agentdeck.memory.store`).
"""

# No "from __future__ import annotations": the SDK reads the tools' annotations at runtime,
# and those of the memory tools name local types (NoteId).

import functools
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable

SERVER_NAME = "agentdeck"

INSTRUCTIONS = (
    "agentdeck's shared memory: Markdown notes shared by every coding agent working on this repository "
    "and by the user. Search it before starting work and when something surprises you; write a note when "
    "you learn something another agent would want (a gotcha, a decision and why, a result, a dead end); "
    "correct notes with memory_update and the version you read; log your steps with memory_append_journal."
)


@dataclass
class ServerContext:
    """What tool groups share: the calling agent, where it runs, lazily opened subsystems."""

    cwd: Path = field(default_factory=Path.cwd)
    agent: str = field(default_factory=lambda: os.environ.get("AGENTDECK_AGENT", "") or "user")
    _memory: Any = None
    _config: Any = None
    _deck: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def memory(self):
        """The :class:`MemoryStore` (opened on first use; errors surface per call)."""
        with self._lock:
            if self._memory is None:
                from agentdeck.memory.store import MemoryStore

                self._memory = MemoryStore.open(cwd=self.cwd, author=self.agent)
            return self._memory

    @property
    def config(self):
        with self._lock:
            if self._config is None:
                from agentdeck.config import load_config
                from agentdeck.memory.store import locate

                try:
                    root = locate(cwd=self.cwd).repo_root
                except Exception:
                    root = None
                self._config = load_config(root)
            return self._config

    @property
    def deck(self):
        """The :class:`agentdeck.deck.Deck` of the repository (for deck and research tools)."""
        with self._lock:
            if self._deck is None:
                from agentdeck.deck import Deck

                root = os.environ.get("AGENTDECK_REPO") or str(self.cwd)
                self._deck = Deck.open(root)
            return self._deck

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()


def tool_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn agentdeck's own errors into MCP tool errors (``is_error`` with the one-line message)."""
    from mcp.server.mcpserver.exceptions import ToolError

    from agentdeck.errors import AgentdeckError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AgentdeckError as err:
            raise ToolError(str(err)) from None
        except OSError as err:
            raise ToolError(f"{type(err).__name__}: {err.strerror or err}") from None

    return wrapper


# ----------------------------------------------------------------------------- memory tools


def register_memory_tools(server: Any, context: ServerContext) -> None:
    from mcp_types import ToolAnnotations
    from pydantic import Field

    from agentdeck.memory.store import MAX_BODY, MAX_JOURNAL_ENTRY, MAX_TAGS, MAX_TITLE

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

    @tool_errors
    def memory_search(
        query: Annotated[str, Field(min_length=1, max_length=500, description="words to look for")],
        limit: Annotated[int, Field(ge=1, le=100, description="most results to return")] = 10,
    ) -> list[dict[str, Any]]:
        """Search the shared memory (full text, best match first). Returns id, title, kind, tags, snippet."""
        return [public(hit) for hit in context.memory.search(query, limit)]

    @tool_errors
    def memory_read(id: NoteId) -> dict[str, Any]:
        """Read one note in full (frontmatter fields, body, and its version for memory_update).

        Also reads "CORE" (the user's pinned summary) and "journal/<agent>" (an agent's journal).
        """
        return context.memory.get(id).to_json()

    @tool_errors
    def memory_write(
        title: Annotated[str, Field(min_length=1, max_length=MAX_TITLE, description="one specific line")],
        body: Annotated[str, Field(max_length=MAX_BODY, description="Markdown: what, why, how you know")],
        tags: Annotated[list[str], Field(max_length=MAX_TAGS, description="short words")] = [],  # noqa: B006
        kind: Annotated[str, Field(max_length=40, description=(
            "note, decision, gotcha, finding, experiment, handoff or core-proposal"))] = "note",
    ) -> dict[str, Any]:
        """Write a NEW note to the shared memory (never overwrites). Returns its id, path and version.

        A "warning" in the answer means the note IS saved but search will find it a little later: do not
        write it again. An error means nothing was written.
        """
        note = context.memory.add(title, body, tags=tags, kind=kind)
        return _saved({"id": note.id, "path": str(note.path), "version": note.version}, note)

    @tool_errors
    def memory_update(
        id: NoteId,
        body: Annotated[str, Field(max_length=MAX_BODY, description="the note's complete new body")],
        expected_version: Annotated[int, Field(ge=1, description="the version you read with memory_read")],
    ) -> dict[str, Any]:
        """Replace a note's body. Refused if the note changed since you read it: read again and redo."""
        note = context.memory.update(id, body=body, expected_version=expected_version)
        return _saved({"id": note.id, "path": str(note.path), "version": note.version}, note)

    @tool_errors
    def memory_append_journal(
        text: Annotated[str, Field(min_length=1, max_length=MAX_JOURNAL_ENTRY, description="what you did or learned")],
    ) -> dict[str, Any]:
        """Append a dated entry to your own journal (journal/<your agent name>).

        The entry is appended whole or not at all: an error means nothing was written.
        """
        note = context.memory.append_journal(text)
        return _saved({"id": note.id, "path": str(note.path)}, note)

    @tool_errors
    def memory_recent(
        limit: Annotated[int, Field(ge=1, le=200, description="most notes to return")] = 20,
    ) -> list[dict[str, Any]]:
        """The most recently written or updated notes, newest first."""
        return [public(row) for row in context.memory.recent(limit)]

    server.add_tool(memory_search, annotations=read_only, title="Search shared memory")
    server.add_tool(memory_read, annotations=read_only, title="Read a memory note")
    server.add_tool(memory_write, annotations=additive, title="Write a new memory note")
    server.add_tool(memory_update, annotations=rewriting, title="Update a memory note")
    server.add_tool(memory_append_journal, annotations=additive, title="Append to your journal")
    server.add_tool(memory_recent, annotations=read_only, title="Recent memory notes")


def _saved(result: dict[str, Any], note: Any) -> dict[str, Any]:
    """A write's answer: saved, plus a ``warning`` when the search index could not follow (do not retry)."""
    if getattr(note, "warning", ""):
        result["warning"] = note.warning
    return result


def register_research_tools(server: Any, context: ServerContext) -> None:
    """``research_submit(description)``: the ``agent`` proposer's "my change is ready"."""
    from agentdeck.research.mcp_tools import register_research_tools as register

    register(server, context)


def register_deck_tools(server: Any, context: ServerContext) -> None:
    from agentdeck.deck_tools import register_deck_tools as register

    register(server, context)


#: Every tool group of the server, in registration order.
TOOL_GROUPS: list[Callable[[Any, ServerContext], None]] = [
    register_memory_tools, register_research_tools, register_deck_tools,
]


def build_server(context: ServerContext | None = None):
    """The MCPServer with every tool group registered."""
    from mcp.server.mcpserver import MCPServer

    from agentdeck import __version__

    context = context or ServerContext()
    server = MCPServer(SERVER_NAME, instructions=INSTRUCTIONS, version=__version__, log_level="WARNING")
    for register in TOOL_GROUPS:
        register(server, context)
    return server


def serve(cwd: str | os.PathLike[str] | None = None) -> int:
    """Run the server on stdio until the client closes it."""
    context = ServerContext(cwd=Path(cwd) if cwd else Path.cwd())
    server = build_server(context)
    try:
        server.run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        context.close()
    return 0
