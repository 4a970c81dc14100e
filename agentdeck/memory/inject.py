"""The shared memory's side of wiring an agent: the brief, where the store is, the MCP server.

Nothing here edits a tracked file or the user's global agent configuration:
every artefact (the brief, an agent's MCP config) is written under agentdeck's
state directory and passed to the agent on its command line or in its env.

*where* below is any of: a :class:`agentdeck.deck.Deck`, a
:class:`agentdeck.paths.RepoPaths`, an adapter's
:class:`agentdeck.agents.base.LaunchContext` (``state_dir`` + ``repo_root``),
a :class:`agentdeck.memory.store.MemoryStore`, a :class:`~agentdeck.memory.store.Locations`,
or None (the environment / cwd).

The MCP server: agents whose adapter speaks streamable HTTP (``Adapter.mcp_http``) are wired
to the repository's one server (``ctx.mcp_url``, see :mod:`agentdeck.mcp_link.service`) with their
bearer token in ``AGENTDECK_MCP_TOKEN`` (env only: the config files name the variable, never
the token); the others, and any context without a URL, start ``agentdeck mcp`` over stdio.

The adapters do not call these one by one: :meth:`agentdeck.agents.base.Adapter.memory_wiring`
gathers them into one neutral :class:`~agentdeck.agents.base.MemoryWiring`, which each CLI's
folder turns into its own flags (``agents/claude/memory.py``, ``agents/codex/memory.py``,
``agents/gemini/adapter.py``, ``agents/aider/adapter.py``); any other agent gets
:func:`memory_env` (``AGENTDECK_MEMORY_DIR`` and ``AGENTDECK_MEMORY_BRIEF``).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from string import Template
from typing import Any

from agentdeck.memory.store import (
    ENV_MEMORY_BRIEF,
    ENV_MEMORY_DIR,
    Locations,
    MemoryStore,
    locate,
    memory_dir_for,
    note_slug,
)
from agentdeck.paths import ENV_MCP_TOKEN

MAX_CORE_CHARS = 4000
PROMPT_NAME = "memory_brief.md"


# ----------------------------------------------------------------------------- locating


def locations(where: Any = None) -> Locations:
    """The store's locations (memory dir, state dir, repository root) for *where*."""
    if where is None:
        return locate()
    if isinstance(where, Locations):
        return where
    if isinstance(where, MemoryStore):
        state = where.index_path.parent if where.index_path.name == "memory-index.db" else None
        return Locations(where.root, state, None)
    if hasattr(where, "repo") and hasattr(where, "config"):  # a Deck
        return locate(repo=where.repo, config=where.config)
    if hasattr(where, "state_dir") and hasattr(where, "repo_root"):  # a LaunchContext
        from agentdeck.config import load_config

        state_dir, root = Path(where.state_dir), Path(where.repo_root)
        config = load_config(root)
        return Locations(memory_dir_for(root, state_dir, config.memory.dir), state_dir, root)
    if hasattr(where, "state_dir") and hasattr(where, "root"):  # RepoPaths
        return locate(repo=where)
    if isinstance(where, (str, os.PathLike)):
        return locate(cwd=where)
    raise TypeError(f"cannot find the memory store from {where!r}")


def _read_nofollow(path: Path) -> str:
    """A regular file's text, or "" when it is missing, a link or anything else (never read through a link)."""
    import errno
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            return ""
        raise
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return ""
        return fh.read().decode("utf-8", errors="replace")


def artefact_dir(loc: Locations, sub: str) -> Path:
    """``<state dir>/<sub>`` (made), or under the memory dir's ``.cache`` with no state dir."""
    base = loc.state_dir if loc.state_dir is not None else loc.memory_dir / ".cache"
    path = base / sub
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_atomic(path: Path, text: str) -> Path:
    """Whole or not at all, never through a link planted at the name or at a temporary name."""
    from agentdeck import fsutil

    fsutil.atomic_write(path, text)
    return path


# ----------------------------------------------------------------------------- the brief


def load_prompt(name: str) -> str:
    """A template from ``agentdeck/prompts`` (installed) or the checkout's ``prompts/``."""
    try:
        from importlib.resources import files

        resource = files("agentdeck.prompts") / name
        if resource.is_file():
            return resource.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError, TypeError):
        pass
    here = Path(__file__).resolve().parent.parent  # agentdeck/
    for candidate in (here / "prompts" / name, here.parent / "prompts" / name):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError(f"prompt template {name!r} not found in agentdeck/prompts or prompts/")


def core_summary(core_text: str, limit: int = MAX_CORE_CHARS) -> str:
    """CORE.md without HTML comments and its top heading, cut to *limit* characters."""
    text = re.sub(r"<!--.*?-->", "", core_text, flags=re.DOTALL)
    lines = text.strip().splitlines()
    if lines and re.match(r"^#\s+core\b", lines[0].strip(), re.IGNORECASE):
        lines = lines[1:]
    text = "\n".join(lines).strip()
    if not text:
        return "(empty: the user has not written a core summary yet)"
    if len(text) > limit:
        cut = text[:limit].rsplit("\n", 1)[0].rstrip()
        text = cut + '\n\n… (cut here; read all of it with memory_read("CORE"))'
    return text


def brief_text(where: Any = None, agent_name: str | None = None) -> str:
    """The memory brief for one agent: how to use the tools, then the CORE summary."""
    loc = locations(where)
    agent = agent_name or os.environ.get("AGENTDECK_AGENT") or "agent"
    core_path = loc.memory_dir / "CORE.md"
    core = _read_nofollow(core_path)
    template = Template(load_prompt(PROMPT_NAME))
    return template.safe_substitute(
        agent=agent,
        memory_dir=str(loc.memory_dir),
        journal=f"journal/{note_slug(agent, 64)}",
        core=core_summary(core),
    ).strip() + "\n"


def brief_file(where: Any = None, agent_name: str | None = None) -> Path:
    """The brief written to ``<state dir>/briefs/<agent>.md`` (Aider ``--read``, env, hooks)."""
    loc = locations(where)
    agent = agent_name or os.environ.get("AGENTDECK_AGENT") or "agent"
    path = artefact_dir(loc, "briefs") / f"{note_slug(agent, 64)}.md"
    return _write_atomic(path, brief_text(loc, agent))


# ----------------------------------------------------------------------------- the MCP server


def _split_env_prefix(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """``["env", "A=1", "python", ...]`` -> (``["python", ...]``, ``{"A": "1"}``)."""
    env: dict[str, str] = {}
    rest = list(argv)
    if rest and os.path.basename(rest[0]) == "env":
        rest = rest[1:]
        while rest and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", rest[0]):
            key, value = rest.pop(0).split("=", 1)
            env[key] = value
    return rest, env


def _default_command() -> tuple[list[str], dict[str, str]]:
    pkg_parent = str(Path(__file__).resolve().parent.parent.parent)
    env: dict[str, str] = {}
    if "site-packages" not in pkg_parent and "dist-packages" not in pkg_parent:
        existing = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = pkg_parent + (os.pathsep + existing if existing else "")
    return [sys.executable, "-m", "agentdeck", "mcp"], env


def memory_env(where: Any = None, agent_name: str | None = None, *, with_brief: bool = True) -> dict[str, str]:
    """Env for any agent: where the store is, the brief's path (``AGENTDECK_MEMORY_BRIEF``), and,
    when *where* is a launch wired to the HTTP server, its bearer token (``AGENTDECK_MCP_TOKEN``)."""
    loc = locations(where)
    env = {ENV_MEMORY_DIR: str(loc.memory_dir)}
    if with_brief:
        env[ENV_MEMORY_BRIEF] = str(brief_file(loc, agent_name))
    if http_url(where) and getattr(where, "mcp_token", ""):
        env[ENV_MCP_TOKEN] = where.mcp_token
    return env


def http_url(where: Any) -> str:
    """The repository's MCP server URL a launch context is wired to ('' = stdio)."""
    url = getattr(where, "mcp_url", "")
    return url if isinstance(url, str) else ""


def mcp_server_spec(where: Any = None, agent_name: str | None = None, *,
                    mcp_command: list[str] | None = None) -> dict[str, Any]:
    """``{"command", "args", "env"}`` that starts ``agentdeck mcp`` for one agent over stdio.

    The env names the agent (its notes' author), the state dir and the memory
    dir explicitly: some agents (Codex) start MCP servers with a reduced
    environment.  *mcp_command* is the adapter's ``LaunchContext.mcp_command``
    (a leading ``env VAR=...`` is turned into env entries).
    """
    from agentdeck import paths

    loc = locations(where)
    if mcp_command:
        argv, env = _split_env_prefix(list(mcp_command))
    else:
        argv, env = _default_command()
    agent = agent_name or os.environ.get(paths.ENV_AGENT) or ""
    if agent:
        env[paths.ENV_AGENT] = agent
    if loc.state_dir is not None:
        env[paths.ENV_STATE_DIR] = str(loc.state_dir)
    if loc.repo_root is not None:
        env[paths.ENV_REPO] = str(loc.repo_root)
    env[ENV_MEMORY_DIR] = str(loc.memory_dir)
    return {"command": argv[0], "args": argv[1:], "env": env}
