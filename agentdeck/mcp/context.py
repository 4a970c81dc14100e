"""What the tool groups of the ``agentdeck`` MCP server share: the caller, the context, errors.

* :data:`CALLER` - the agent the current request speaks for: over HTTP set for each request
  from its bearer token (:mod:`agentdeck.mcp.http_app`), whatever the request says; unset
  over stdio, where the caller is the process's ``AGENTDECK_AGENT`` (or ``user``);
* :class:`ServerContext` - who calls, where it runs, lazily opened subsystems;
* :func:`tool_errors` - agentdeck's own errors as MCP tool errors (one line, ``is_error``);
* :func:`tool_adder` - the decorator each tool group registers its tools with.
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from agentdeck.config import load_config
from agentdeck.errors import AgentdeckError
from agentdeck.mcp_link.auth import Identity
from agentdeck.memory.store import MemoryStore, locate

#: The agent the current request speaks for (HTTP: set from its bearer token for each request).
CALLER: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("agentdeck_mcp_caller", default=None)


@dataclass
class ServerContext:
    """What tool groups share: who calls, where it runs, lazily opened subsystems.

    Over stdio the caller is fixed (*agent*); over HTTP it is :data:`CALLER`, so one context
    serves every agent: reads go through one shared store (one index, one ``stat`` sync per
    second whoever asks), writes through a store per agent (its name as author, its branch).
    """

    cwd: Path = field(default_factory=Path.cwd)
    agent: str = field(default_factory=lambda: os.environ.get("AGENTDECK_AGENT", "") or "user")
    #: How reads bring the index up to date (``MemoryStore.search(sync=...)``): "auto" (a ``stat``
    #: sync at most once a second) unless a :class:`MemoryWatcher` keeps it in step (False).
    read_sync: bool | str = "auto"
    _memory: Any = None
    _writers: dict[tuple[str, str], Any] = field(default_factory=dict)
    _config: Any = None
    _deck: Any = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # ------------------------------------------------------------------ who
    def caller(self) -> Identity:
        """The calling agent: the request's token's agent over HTTP, else this process's agent."""
        who = CALLER.get()
        return who if who is not None else Identity(self.agent, "")

    @property
    def current_agent(self) -> str:
        return self.caller().name

    # ------------------------------------------------------------------ memory
    @property
    def memory(self):
        """The shared :class:`MemoryStore` for reads (opened on first use; errors surface per call)."""
        with self._lock:
            if self._memory is None:
                self._memory = MemoryStore.open(cwd=self.cwd, author=self.agent)
            return self._memory

    def writer(self):
        """The store that writes as the caller (author = the caller's name, branch = its worktree's)."""
        who = self.caller()
        if CALLER.get() is None:
            return self.memory  # stdio: one caller, one store
        with self._lock:
            key = (who.name, who.worktree)  # a new agent may take a killed one's name
            store = self._writers.get(key)
            if store is None:
                shared = self.memory
                worktree = who.worktree if who.worktree and Path(who.worktree).is_dir() else None
                store = MemoryStore(shared.root, shared.index_path, author=who.name, worktree=worktree)
                self._writers[key] = store
            return store

    def forget_writers(self, keep: set[str]) -> None:
        """Close the stores of agents no longer known (a killed agent's token is revoked)."""
        with self._lock:
            for key in [k for k in self._writers if k[0] not in keep]:
                self._writers.pop(key).close()

    # ------------------------------------------------------------------ config, deck
    @property
    def config(self):
        with self._lock:
            if self._config is None:
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
                # Imported on the first deck or research tool call: a server that only serves
                # memory never loads the deck (adapters, tmux, status), and starts faster.
                from agentdeck.deck import Deck

                root = os.environ.get("AGENTDECK_REPO") or str(self.cwd)
                self._deck = Deck.open(root)
            return self._deck

    def close(self) -> None:
        with self._lock:
            for store in self._writers.values():
                store.close()
            self._writers.clear()
            if self._memory is not None:
                self._memory.close()


def tool_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn agentdeck's own errors into MCP tool errors (``is_error`` with the one-line message)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AgentdeckError as err:
            raise ToolError(str(err)) from None
        except OSError as err:
            raise ToolError(f"{type(err).__name__}: {err.strerror or err}") from None

    return wrapper


def tool_adder(server: Any) -> Callable[[Any, str], Callable[[Callable[..., Any]], Callable[..., Any]]]:
    """The decorator of one group's tools: ``@tool(annotations, "Title")`` wraps the function in
    :func:`tool_errors` and adds it to *server* (tools are listed in the order they are defined)."""

    def tool(annotations: Any, title: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            wrapped = tool_errors(fn)
            server.add_tool(wrapped, annotations=annotations, title=title)
            return wrapped

        return add

    return tool
