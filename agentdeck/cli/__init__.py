"""The command line's dispatcher: every engine operation, with ``--json`` where a script reads it.

This package is the one place that loads a command's subsystem lazily.  The commands live in
command-group modules, each with ``add(subparsers, name)`` (core) or ``register(subparsers)``
(extensions), and import what their handlers need at the top; the dispatcher imports only the
module of the command being run:

- ``hook`` (called on every agent event) goes to :mod:`agentdeck.hooks` before anything else is
  imported, and the stdio ``mcp`` server to :mod:`agentdeck.mcp.server` before argparse;
- the plain forms of ``ls``, ``peek``, ``wait`` and ``events`` (called by scripts and by agents
  themselves, often) first try :func:`agentdeck.cli.reads.light`, which reads the state database
  through :mod:`agentdeck.quick` without building the deck;
- any other known command gets a parser holding just its own module's commands
  (:data:`COMMANDS`); only ``--help`` and an unknown command build the whole parser (``--version`` is answered first).

The groups: :mod:`agentdeck.cli.agents` (new, broadcast, fork, send, approve, deny, attach,
restart, kill), :mod:`agentdeck.cli.reads` (ls, peek, wait, events), :mod:`agentdeck.cli.upkeep`
(recover, gc, doctor, _watch, hook), and the subsystems' own modules in :data:`EXTENSIONS`.

The dispatcher's own imports of agentdeck stay inside its functions: ``hook`` runs with nothing of
agentdeck loaded but this module and :mod:`agentdeck.hooks` (``tests/test_hooks.py``).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

#: Core commands in the order ``--help`` lists them -> their module (``add(subparsers, name)``).
CORE_COMMANDS: dict[str, str] = {
    "new": "agentdeck.cli.agents", "broadcast": "agentdeck.cli.agents", "fork": "agentdeck.cli.agents",
    "ls": "agentdeck.cli.reads", "peek": "agentdeck.cli.reads", "send": "agentdeck.cli.agents",
    "approve": "agentdeck.cli.agents", "deny": "agentdeck.cli.agents", "wait": "agentdeck.cli.reads",
    "events": "agentdeck.cli.reads", "attach": "agentdeck.cli.agents", "restart": "agentdeck.cli.agents",
    "kill": "agentdeck.cli.agents", "recover": "agentdeck.cli.upkeep", "gc": "agentdeck.cli.upkeep",
    "doctor": "agentdeck.cli.upkeep", "_watch": "agentdeck.cli.upkeep", "hook": "agentdeck.cli.upkeep",
}

#: The subsystems' command modules (``register(subparsers)``), in ``--help`` order.
EXTENSIONS = (
    "agentdeck.review.cli",
    "agentdeck.memory.cli",
    "agentdeck.research.cli",
    "agentdeck.serve",
    "agentdeck.usage_cli",
)

#: Each extension command -> its module (``tests/test_cli_dispatch.py`` holds this to what they register).
EXTENSION_COMMANDS: dict[str, str] = {
    **dict.fromkeys(("diff", "commit", "merge", "conflicts", "compare", "push", "pr"), "agentdeck.review.cli"),
    "memory": "agentdeck.memory.cli", "mcp": "agentdeck.memory.cli",
    "research": "agentdeck.research.cli",
    "serve": "agentdeck.serve",
    "usage": "agentdeck.usage_cli",
}

#: Every command the dispatcher can load alone -> its module.
COMMANDS: dict[str, str] = {**CORE_COMMANDS, **EXTENSION_COMMANDS}

#: The commands :func:`agentdeck.cli.reads.light` may answer without the deck.
LIGHT_COMMANDS = ("ls", "peek", "wait", "events")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # answered before any command's parser (which would load every subsystem)
        from agentdeck import __version__

        print(f"agentdeck {__version__}")
        return 0
    if argv[:1] == ["hook"]:
        from agentdeck.hooks import main as hook_main

        return hook_main(argv[1:])
    if "mcp" in argv[:3]:  # the stdio MCP server: no argparse, no other command's modules before `initialize`
        from agentdeck.mcp.server import main as mcp_main

        code = mcp_main(argv)
        if code is not None:
            return code
    code = _light(argv)
    if code is not None:
        return code
    return _main(argv)


def _split_repo(argv: list[str]) -> tuple[str | None, list[str]] | None:
    """(``--repo`` value, the rest) for argv that starts with at most one ``--repo``; None otherwise."""
    repo = None
    rest = list(argv)
    if rest and rest[0] == "--repo" and len(rest) > 1:
        repo, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--repo="):
        repo, rest = rest[0].split("=", 1)[1], rest[1:]
    if any(a == "--repo" or a.startswith("--repo=") for a in rest):
        return None
    return repo, rest


def _only_repo_options(argv: list[str]) -> bool:
    """``agentdeck --repo A [--repo B ...]`` (no command): the deck over those repositories."""
    i = 0
    while i < len(argv):
        if argv[i].startswith("--repo="):
            i += 1
        elif argv[i] == "--repo" and i + 1 < len(argv):
            i += 2
        else:
            return False
    return bool(argv)


def _light(argv: list[str]) -> int | None:
    """A read command through :func:`agentdeck.cli.reads.light`; None when it cannot answer."""
    split = _split_repo(argv)
    if split is None or not split[1] or split[1][0] not in LIGHT_COMMANDS:
        return None
    repo, (command, *opts) = split[0], split[1]
    from agentdeck.cli import reads
    from agentdeck.cli_util import print_json
    from agentdeck.errors import AgentdeckError

    try:
        return reads.light(repo, command, opts)
    except BrokenPipeError:
        return _closed_stdout()
    except KeyboardInterrupt:
        return 130
    except AgentdeckError as err:
        print(f"agentdeck: error: {err}", file=sys.stderr)
        if "--json" in opts:
            print_json({"error": str(err)})
        return err.exit_code


def _main(argv: list[str]) -> int:
    """Parse *argv* and run its command's handler; every error is one line (and ``{"error"}`` with
    ``--json``), with its exit code."""
    from agentdeck.errors import AgentdeckError
    if not argv or _only_repo_options(argv):
        return _open_deck_or_help(argv)
    split = _split_repo(argv)
    command = split[1][0] if split is not None and split[1] else None
    parser = build_parser(only=command)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        return _closed_stdout()
    except AgentdeckError as err:
        try:
            _report(err, args)
        except BrokenPipeError:
            _closed_stdout()
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an outside failure: one line, the traceback in a log
        if os.environ.get("AGENTDECK_DEBUG") == "1":
            raise
        log = _log_traceback()
        _report(RuntimeError(f"unexpected failure: {type(exc).__name__}: {exc} (traceback in {log})"), args)
        return 1


def _closed_stdout() -> int:
    """The reader of our output went away (``agentdeck ... | head``): stop quietly, as a Unix tool
    killed by SIGPIPE would (exit 141), and keep Python from complaining when it flushes at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141


def _log_traceback() -> str:
    import traceback  # only on a failure

    from agentdeck.paths import agentdeck_home

    path = agentdeck_home() / "errors.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(traceback.format_exc() + "\n")
    except OSError:
        return "(unwritable log)"
    return str(path)


def _report(err: Exception, args: Any) -> None:
    message = str(err)
    print(f"agentdeck: error: {message}", file=sys.stderr)
    if getattr(args, "json", False):
        from agentdeck.cli_util import print_json

        print_json({"error": message})


def _open_deck_or_help(argv: list[str]) -> int:
    """A bare `agentdeck`: the deck, started before anything else is built (first paint)."""
    from agentdeck.errors import AgentdeckError
    from agentdeck.tui.app import run_deck

    repos = [a.split("=", 1)[1] if a.startswith("--repo=") else argv[i + 1]  # in the order given
             for i, a in enumerate(argv) if a.startswith("--repo=") or (a == "--repo" and i + 1 < len(argv))]
    try:
        return int(run_deck(repos or None) or 0)
    except AgentdeckError as err:
        print(f"agentdeck: error: {err}", file=sys.stderr)
        return err.exit_code


# ---------------------------------------------------------------------- parser


def build_parser(extensions: bool = True, only: str | None = None) -> Any:
    """The whole parser; with *extensions* False only the core commands (a core command then never
    imports the review, memory, research... modules).  With *only* a command of :data:`COMMANDS`:
    just that command (an extension module's commands come together), so running a command imports
    its own module and no other; an unknown *only* gets the whole parser (argparse names the choices)."""
    import argparse  # not at the top: the light path never parses

    from agentdeck import __version__

    parser = argparse.ArgumentParser(
        prog="agentdeck",
        description="Run many coding agents side by side, each in its own git worktree and tmux pane.",
        epilog="Run `agentdeck` alone inside a git repository to open the deck.",
    )
    parser.add_argument("--version", action="version", version=f"agentdeck {__version__}")
    parser.add_argument("--repo", help="repository to act on (default: the current directory's)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if only in CORE_COMMANDS:
        importlib.import_module(CORE_COMMANDS[only]).add(sub, only)
        return parser
    if only in EXTENSION_COMMANDS:
        importlib.import_module(EXTENSION_COMMANDS[only]).register(sub)
        if only in sub.choices:
            return parser
        return build_parser(extensions)  # the table is stale: the whole parser still runs it
    for name, module_name in CORE_COMMANDS.items():
        importlib.import_module(module_name).add(sub, name)
    for module_name in EXTENSIONS if extensions else ():
        importlib.import_module(module_name).register(sub)
    return parser
