"""What the agent adapters call to give each agent the shared memory, with no manual step.

Nothing here edits a tracked file or the user's global agent configuration:
every artefact (the brief, Claude's MCP config) is written under agentdeck's
state directory and passed to the agent on its command line or in its env.

*where* below is any of: a :class:`agentdeck.deck.Deck`, a
:class:`agentdeck.paths.RepoPaths`, an adapter's
:class:`agentdeck.agents.base.LaunchContext` (``state_dir`` + ``repo_root``),
a :class:`agentdeck.memory.store.MemoryStore`, or None (the environment / cwd).

The MCP server: agents whose adapter speaks streamable HTTP (``Adapter.mcp_http``) are wired
to the repository's one server (``ctx.mcp_url``, see :mod:`agentdeck.mcp.service`) with their
bearer token in ``AGENTDECK_MCP_TOKEN`` (env only: the config files name the variable, never
the token); the others, and any context without a URL, start ``agentdeck mcp`` over stdio.

Claude Code (:func:`claude_launch` = :func:`claude_args` + :func:`claude_env`)::

    register_settings_extension(claude_settings_extension)   # the SessionStart "compact" hook
    options, env = claude_launch(ctx)    # options go before "--" and the prompt

Codex (:func:`codex_launch` = :func:`codex_config_args` + :func:`memory_env`)::

    options, env = codex_launch(ctx)     # "-c" overrides, also on ``codex resume``

Aider: :func:`aider_args`; Gemini CLI: :func:`gemini_settings_file`; any other agent:
:func:`memory_env` (``AGENTDECK_MEMORY_DIR`` and ``AGENTDECK_MEMORY_BRIEF``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
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

from agentdeck.mcp import SERVER_NAME, TOKEN_ENV

CLAUDE_ALLOWED_TOOLS = f"mcp__{SERVER_NAME}__*"
MAX_CORE_CHARS = 4000
PROMPT_NAME = "memory_brief.md"


# ----------------------------------------------------------------------------- locating


def _locations(where: Any = None) -> Locations:
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


def _artefact_dir(loc: Locations, sub: str) -> Path:
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
    loc = _locations(where)
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
    loc = _locations(where)
    agent = agent_name or os.environ.get("AGENTDECK_AGENT") or "agent"
    path = _artefact_dir(loc, "briefs") / f"{note_slug(agent, 64)}.md"
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
    loc = _locations(where)
    env = {ENV_MEMORY_DIR: str(loc.memory_dir)}
    if with_brief:
        env[ENV_MEMORY_BRIEF] = str(brief_file(loc, agent_name))
    if http_url(where) and getattr(where, "mcp_token", ""):
        env[TOKEN_ENV] = where.mcp_token
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

    loc = _locations(where)
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


# ----------------------------------------------------------------------------- Claude Code


def claude_mcp_config(where: Any = None, agent_name: str | None = None, *,
                      mcp_command: list[str] | None = None, url: str | None = None) -> dict[str, Any]:
    """``{"mcpServers": {"agentdeck": {...}}}`` for ``claude --mcp-config``.

    ``alwaysLoad``: Claude Code (2.1.197) otherwise may defer the server's tools behind tool search.
    Wired to the HTTP server: ``"type": "http"``, the token as ``${AGENTDECK_MCP_TOKEN}`` in the
    ``Authorization`` header (Claude expands it from its environment; the file holds no secret).
    *url* defaults to the one *where* (a launch context) is wired to.
    """
    url = http_url(where) if url is None else url
    if url:
        server = {"type": "http", "url": url, "headers": {"Authorization": f"Bearer ${{{TOKEN_ENV}}}"}}
        return {"mcpServers": {SERVER_NAME: {**server, "alwaysLoad": True}}}
    spec = mcp_server_spec(where, agent_name, mcp_command=mcp_command)
    return {"mcpServers": {SERVER_NAME: {"type": "stdio", **spec, "alwaysLoad": True}}}


def claude_mcp_config_file(where: Any = None, agent_name: str | None = None, *,
                           mcp_command: list[str] | None = None, url: str | None = None) -> Path:
    """The config above written to ``<state dir>/mcp/<agent>.json``."""
    url = http_url(where) if url is None else url
    loc = _locations(where)
    agent = agent_name or os.environ.get("AGENTDECK_AGENT") or "agent"
    path = _artefact_dir(loc, "mcp") / f"{note_slug(agent, 64)}.json"
    config = claude_mcp_config(loc, agent, mcp_command=mcp_command, url=url)
    return _write_atomic(path, json.dumps(config, indent=2) + "\n")


def claude_args(where: Any = None, agent_name: str | None = None, *,
                mcp_command: list[str] | None = None) -> list[str]:
    """Claude Code options: the server, its tools allowed without prompts, the brief.

    Keep them together and before the prompt: ``--mcp-config`` and
    ``--allowedTools`` take several values, so each is followed by another option.
    """
    loc = _locations(where)
    config_file = claude_mcp_config_file(loc, agent_name, mcp_command=mcp_command, url=http_url(where))
    return [
        "--mcp-config", str(config_file),
        "--allowedTools", CLAUDE_ALLOWED_TOOLS,
        "--append-system-prompt", brief_text(loc, agent_name),
    ]


def claude_env(where: Any = None, agent_name: str | None = None) -> dict[str, str]:
    """Env for Claude Code: its private auto-memory off (one memory, not two) + :func:`memory_env`."""
    return {"CLAUDE_CODE_DISABLE_AUTO_MEMORY": "1", **memory_env(where, agent_name)}


def claude_session_start_hooks(where: Any = None, agent_name: str | None = None) -> list[dict[str, Any]]:
    """Entries for ``settings["hooks"]["SessionStart"]``: the brief again after compaction.

    A SessionStart hook's stdout is added to the conversation; the brief file is
    rewritten at every launch, so it carries the CORE summary of that moment.
    """
    path = brief_file(where, agent_name)
    return [{
        "matcher": "compact",
        "hooks": [{"type": "command", "command": f"cat {shlex.quote(str(path))}"}],
    }]


def claude_settings_extension(ctx: Any, settings: dict[str, Any]) -> None:
    """For :func:`agentdeck.agents.claude.register_settings_extension`: adds the compact hook."""
    hooks = settings.setdefault("hooks", {})
    hooks.setdefault("SessionStart", []).extend(claude_session_start_hooks(ctx, ctx.name))


def claude_launch(ctx: Any) -> tuple[list[str], dict[str, str]]:
    """Everything Claude Code needs from an adapter's LaunchContext: ``(argv options, env)``."""
    return (claude_args(ctx, ctx.name, mcp_command=getattr(ctx, "mcp_command", None) or None),
            claude_env(ctx, ctx.name))


# ----------------------------------------------------------------------------- Codex


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string for everything json.dumps emits.
    return json.dumps(text, ensure_ascii=False)


def codex_config_args(where: Any = None, agent_name: str | None = None, *,
                      mcp_command: list[str] | None = None, with_brief: bool = True) -> list[str]:
    """``-c mcp_servers.agentdeck.*=...`` overrides (and the brief as ``developer_instructions``).

    Wired to the HTTP server: ``url`` and ``bearer_token_env_var`` (Codex reads the token from
    its own environment); else ``command``/``args``/``env`` of a stdio server.
    """
    loc = _locations(where)
    url = http_url(where)
    if url:
        out = [
            "-c", f"mcp_servers.{SERVER_NAME}.url={_toml_string(url)}",
            "-c", f"mcp_servers.{SERVER_NAME}.bearer_token_env_var={_toml_string(TOKEN_ENV)}",
        ]
    else:
        spec = mcp_server_spec(loc, agent_name, mcp_command=mcp_command)
        args_toml = "[" + ", ".join(_toml_string(a) for a in spec["args"]) + "]"
        env_toml = "{" + ", ".join(f"{k} = {_toml_string(v)}" for k, v in spec["env"].items()) + "}"
        out = [
            "-c", f"mcp_servers.{SERVER_NAME}.command={_toml_string(spec['command'])}",
            "-c", f"mcp_servers.{SERVER_NAME}.args={args_toml}",
            "-c", f"mcp_servers.{SERVER_NAME}.env={env_toml}",
        ]
    if with_brief:
        out += ["-c", f"developer_instructions={_toml_string(brief_text(loc, agent_name))}"]
    return out


def codex_launch(ctx: Any) -> tuple[list[str], dict[str, str]]:
    """Everything Codex needs from an adapter's LaunchContext: ``(-c options, env)``."""
    return (codex_config_args(ctx, ctx.name, mcp_command=getattr(ctx, "mcp_command", None) or None),
            memory_env(ctx, ctx.name))


# ----------------------------------------------------------------------------- others


def aider_args(where: Any = None, agent_name: str | None = None) -> list[str]:
    """Aider has no MCP: the brief as a read-only file (it tells the agent about the CLI too)."""
    return ["--read", str(brief_file(where, agent_name))]


def gemini_settings(where: Any = None, agent_name: str | None = None, *,
                    mcp_command: list[str] | None = None, url: str | None = None) -> dict[str, Any]:
    """``{"mcpServers": {"agentdeck": {...}}}`` for a Gemini CLI settings file (tools trusted).

    Wired to the HTTP server: ``httpUrl`` and the token as ``${AGENTDECK_MCP_TOKEN}`` in the
    ``Authorization`` header (Gemini expands variables in its settings files).
    """
    url = http_url(where) if url is None else url
    if url:
        return {"mcpServers": {SERVER_NAME: {"httpUrl": url, "headers": {"Authorization": f"Bearer ${{{TOKEN_ENV}}}"},
                                             "trust": True}}}
    spec = mcp_server_spec(where, agent_name, mcp_command=mcp_command)
    return {"mcpServers": {SERVER_NAME: {**spec, "trust": True}}}


def gemini_settings_file(where: Any = None, agent_name: str | None = None, *,
                         mcp_command: list[str] | None = None) -> Path:
    """The settings above in ``<state dir>/gemini/<agent>.json`` (for ``GEMINI_CLI_SYSTEM_SETTINGS_PATH``)."""
    loc = _locations(where)
    agent = agent_name or os.environ.get("AGENTDECK_AGENT") or "agent"
    path = _artefact_dir(loc, "gemini") / f"{note_slug(agent, 64)}.json"
    settings = gemini_settings(loc, agent, mcp_command=mcp_command, url=http_url(where))
    return _write_atomic(path, json.dumps(settings, indent=2) + "\n")
