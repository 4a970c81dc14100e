"""The command line: every engine operation, with ``--json`` where a script reads it.

Kept import-light: ``agentdeck hook`` (called on every agent event) is
dispatched before argparse or anything else is imported; ``ls``, ``peek``,
``wait`` and ``events`` - called by scripts and by agents themselves, often -
first try :mod:`agentdeck.quick` (the state database, no deck), and the other
core commands build a parser without the extension modules (review, memory,
research...), which only their own commands and ``--help`` import.
"""

from __future__ import annotations

import sys

EXTENSIONS = (
    "agentdeck.review.cli",
    "agentdeck.memory.cli",
    "agentdeck.research.cli",
    "agentdeck.serve",
    "agentdeck.usage_cli",
)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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


# Commands defined in this module: their parser needs no extension module.
CORE_COMMANDS = frozenset({
    "new", "broadcast", "fork", "ls", "peek", "send", "approve", "deny", "wait", "events", "attach", "restart",
    "kill", "recover", "gc", "doctor", "_watch", "hook",
})


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


def _light(argv: list[str]) -> int | None:
    """``ls``, ``peek``, ``wait``, ``events`` through :mod:`agentdeck.quick`; None when the
    arguments are anything but the plain forms, or the light path cannot answer (the full path
    then runs, with argparse's own errors and help)."""
    split = _split_repo(argv)
    if split is None or not split[1] or split[1][0] not in ("ls", "peek", "wait", "events"):
        return None
    repo, (command, *opts) = split[0], split[1]
    flags = {o for o in opts if o.startswith("-")}
    as_json = "--json" in flags
    from agentdeck.errors import AgentdeckError

    try:
        if command == "ls":
            if flags - {"--json"} or len(opts) != len(flags):
                return None
            from agentdeck import quick

            rows = quick.ls(repo)
            if rows is None or not (rows or as_json):
                return None
            return _print_ls(rows, as_json, lambda: True)
        if command in ("peek", "events"):
            allowed = {"--json"} if command == "events" else set()
            names = [o for o in opts if not o.startswith("-")]
            if flags - allowed or len(names) != 1:
                return None
            from agentdeck import quick

            if command == "peek":
                text = quick.peek(repo, names[0])
                if text is None:
                    return None
                sys.stdout.write(text.rstrip("\n") + "\n")
                return 0
            events = quick.events(repo, names[0])
            return None if events is None else _print_events(events, as_json)
        return _light_wait(repo, opts)
    except BrokenPipeError:
        return _closed_stdout()
    except KeyboardInterrupt:
        return 130
    except AgentdeckError as err:
        print(f"agentdeck: error: {err}", file=sys.stderr)
        if as_json:
            _json({"error": str(err)})
        return err.exit_code


def _light_wait(repo: str | None, opts: list[str]) -> int | None:
    import time

    from agentdeck import quick

    name = until = timeout = None
    as_json = False
    i = 0
    while i < len(opts):
        opt = opts[i]
        if opt in ("--until", "--timeout") and i + 1 < len(opts):
            value, i = opts[i + 1], i + 2
        elif opt.startswith(("--until=", "--timeout=")):
            opt, value = opt.split("=", 1)
            i += 1
        elif opt == "--json":
            as_json, i = True, i + 1
            continue
        elif not opt.startswith("-") and name is None:
            name, i = opt, i + 1
            continue
        else:
            return None
        if opt == "--until":
            until = value
        else:
            try:
                timeout = float(value)
            except ValueError:
                return None
    if name is None or until is None:
        return None
    wanted = {s.strip() for s in until.split(",") if s.strip()}
    started = time.monotonic()
    status = quick.wait(repo, name, wanted, timeout)
    if status is None:  # the deck's path, for what is left of the timeout
        from agentdeck.cli_util import open_deck

        deck = open_deck(type("Args", (), {"repo": repo})())
        status = deck.wait(name, wanted, quick.remaining(timeout, started))
    if as_json:
        _json({"name": name, "status": status})
    else:
        print(status)
    return 0


def _main(argv: list[str]) -> int:
    from agentdeck.errors import AgentdeckError

    if not argv or _only_repo_options(argv):
        return _open_deck_or_help(argv)
    split = _split_repo(argv)
    core = split is not None and bool(split[1]) and split[1][0] in CORE_COMMANDS
    parser = build_parser(extensions=not core)
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
        import os

        if os.environ.get("AGENTDECK_DEBUG") == "1":
            raise
        log = _log_traceback()
        _report(RuntimeError(f"unexpected failure: {type(exc).__name__}: {exc} (traceback in {log})"), args)
        return 1


def _closed_stdout() -> int:
    """The reader of our output went away (``agentdeck ... | head``): stop quietly, as a Unix tool
    killed by SIGPIPE would (exit 141), and keep Python from complaining when it flushes at exit."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141


def _log_traceback() -> str:
    import traceback

    from agentdeck.paths import agentdeck_home

    path = agentdeck_home() / "errors.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(traceback.format_exc() + "\n")
    except OSError:
        return "(unwritable log)"
    return str(path)


def _report(err: Exception, args) -> None:
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


def build_parser(extensions: bool = True):
    """The whole parser; with *extensions* False only this module's commands (a core command
    then never imports the review, memory, research... modules)."""
    import argparse
    import importlib

    parser = argparse.ArgumentParser(
        prog="agentdeck",
        description="Run many coding agents side by side, each in its own git worktree and tmux pane.",
        epilog="Run `agentdeck` alone inside a git repository to open the deck.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--repo", help="repository to act on (default: the current directory's)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, help_: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = cmd("new", "create an agent: a branch, a worktree and a tmux pane running the agent", cmd_new)
    p.add_argument("name")
    p.add_argument("--agent", dest="definition", help="agent definition (default: [deck] default_agent)")
    p.add_argument("--prompt", default="", help="initial prompt")
    p.add_argument("--base", help="base branch or commit (default: HEAD of the current branch)")
    p.add_argument("--cwd", dest="cwd_subdir", default="", help="start the agent in this subdirectory")
    fan = p.add_mutually_exclusive_group()
    fan.add_argument("--count", type=int, help="N attempts at one task: NAME-1 ... NAME-N")
    fan.add_argument("--foreach", metavar="FILE",
                     help="one agent per non-empty line of FILE (NAME-1 ...); {item} in --prompt is the line")
    p.add_argument("--json", action="store_true")

    p = cmd("broadcast", "send one prompt to several agents", cmd_broadcast)
    p.add_argument("text")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", help="NAME,NAME,...")
    to.add_argument("--all", action="store_true", help="every agent that is not exited")
    p.add_argument("--force", action="store_true", help="also type into agents that wait for an answer")
    p.add_argument("--json", action="store_true")

    p = cmd("fork", "a new agent from another's current state (uncommitted work and conversation)", cmd_fork)
    p.add_argument("name")
    p.add_argument("new_name")
    p.add_argument("--prompt", default="", help="first prompt for the fork")
    p.add_argument("--json", action="store_true")

    p = cmd("ls", "list agents and their status", cmd_ls)
    p.add_argument("--json", action="store_true")
    p.add_argument("--all", action="store_true", help="agents of every repository served by agentdeck's tmux")

    p = cmd("peek", "print an agent's current screen (the last one if it exited)", cmd_peek)
    p.add_argument("name")

    p = cmd("send", "type text into an agent and submit it", cmd_send)
    p.add_argument("name")
    p.add_argument("text")
    p.add_argument("--force", action="store_true", help="send even while the agent waits for an answer")
    p.add_argument("--json", action="store_true")

    for verb in ("approve", "deny"):
        p = cmd(verb, f"{verb} the agent's pending permission prompt", cmd_approve if verb == "approve" else cmd_deny)
        p.add_argument("name")
        p.add_argument("--json", action="store_true")

    p = cmd("wait", "block until an agent reaches a status", cmd_wait)
    p.add_argument("name")
    p.add_argument("--until", required=True, help="status[,status]: starting, working, waiting, idle, exited")
    p.add_argument("--timeout", type=float, default=None, help="seconds (exit 1 when reached)")
    p.add_argument("--json", action="store_true")

    p = cmd("events", "an agent's recorded status history", cmd_events)
    p.add_argument("name")
    p.add_argument("--json", action="store_true")

    p = cmd("attach", "attach to an agent's tmux pane (detach with C-b d)", cmd_attach)
    p.add_argument("name")

    p = cmd("restart", "relaunch an agent in its worktree (resuming its conversation)", cmd_restart)
    p.add_argument("name", nargs="?")
    p.add_argument("--all", action="store_true", help="restart every exited agent")
    p.add_argument("--json", action="store_true")

    p = cmd("kill", "stop an agent; keeps its work unless --discard", cmd_kill)
    p.add_argument("name")
    p.add_argument("--discard", action="store_true",
                   help="remove worktree and branch even with work in them (a recovery ref is saved first)")
    p.add_argument("--json", action="store_true")

    p = cmd("recover", "list recovery refs, or restore one as a branch", cmd_recover)
    p.add_argument("ref", nargs="?")
    p.add_argument("--json", action="store_true")

    p = cmd("gc", "remove orphaned worktrees, panes and expired recovery refs", cmd_gc)
    p.add_argument("--yes", "-y", action="store_true", help="do it without asking")
    p.add_argument("--json", action="store_true")

    p = cmd("doctor", "check git, tmux, agent binaries, settings and agentdeck's own state", cmd_doctor)
    p.add_argument("--json", action="store_true")
    p.add_argument("--fix", action="store_true",
                   help="repair what is safe to repair: a corrupt state database (moved aside, agents "
                        "re-adopted from disk), agents on disk missing from it, an interrupted merge")

    p = sub.add_parser("_watch", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_watch)
    p = sub.add_parser("hook", help="internal: called by agent hooks")
    p.set_defaults(func=lambda a: 0)

    for module_name in EXTENSIONS if extensions else ():
        importlib.import_module(module_name).register(sub)
    return parser


def _version() -> str:
    from agentdeck import __version__

    return f"agentdeck {__version__}"


# ---------------------------------------------------------------------- handlers


def _deck(args):
    from agentdeck.cli_util import open_deck

    return open_deck(args)


def _json(obj) -> None:
    from agentdeck.cli_util import print_json

    print_json(obj)


def fanout_specs(name: str, prompt: str, count: int | None, foreach: str | None) -> list[tuple[str, str]]:
    """(name, prompt) for each agent of a fan-out."""
    from pathlib import Path

    from agentdeck.errors import UsageError

    if count is not None:
        if not 1 <= count <= 100:
            raise UsageError("--count must be between 1 and 100")
        return [(f"{name}-{i}", prompt) for i in range(1, count + 1)]
    path = Path(foreach or "")
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise UsageError(f"--foreach {foreach}: cannot read the file ({exc.strerror}); give a text file") from exc
    if not lines:
        raise UsageError(f"--foreach {foreach}: the file has no non-empty lines; put one item per line")
    if len(lines) > 100:
        raise UsageError(f"--foreach {foreach}: {len(lines)} lines; at most 100 agents at once")
    out = []
    for i, line in enumerate(lines, 1):
        text = prompt.replace("{item}", line) if "{item}" in prompt else (f"{prompt} {line}" if prompt else line)
        out.append((f"{name}-{i}", text))
    return out


def cmd_new(args) -> int:
    from agentdeck.deck import AgentView

    deck = _deck(args)
    if args.count is not None or args.foreach:
        specs = fanout_specs(args.name, args.prompt, args.count, args.foreach)
        recs = deck.new_many(specs, args.definition, args.base, args.cwd_subdir)
    else:
        recs = [deck.new(args.name, args.definition, args.prompt, args.base, args.cwd_subdir)]
    if args.json:
        views = [AgentView(r).to_json() for r in recs]
        _json(views if len(views) > 1 or args.count or args.foreach else views[0])
    else:
        for rec in recs:
            print(f"created {rec.name}: branch {rec.branch}, worktree {rec.worktree}")
    return 0


def cmd_broadcast(args) -> int:
    deck = _deck(args)
    if args.all:
        names = [a.name for a in deck.agents() if a.status != "exited"]
    else:
        names = [n.strip() for n in args.to.split(",") if n.strip()]
    if not names:
        from agentdeck.errors import Refused

        raise Refused("no agents to broadcast to (none is running)")
    results = deck.broadcast(names, args.text, force=args.force)
    if args.json:
        _json(results)
    else:
        for name, result in results.items():
            print(f"{name}: {result}")
    return 0 if all(r == "sent" for r in results.values()) else 1


def cmd_fork(args) -> int:
    from agentdeck.deck import AgentView

    rec = _deck(args).fork(args.name, args.new_name, args.prompt)
    if args.json:
        _json(AgentView(rec).to_json())
    else:
        print(f"forked {args.name} as {rec.name}: branch {rec.branch}, worktree {rec.worktree}")
    return 0


def _age(created_at: str) -> str:
    from datetime import datetime, timezone

    try:
        then = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "?"
    secs = int((datetime.now(timezone.utc) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def cmd_ls(args) -> int:
    decks = [_deck(args)]
    if args.all:
        from agentdeck.deck import Deck
        from agentdeck.registry import known_repos

        seen = {decks[0].repo.root}
        for root in known_repos():
            if root not in seen:
                try:
                    decks.append(Deck.open(root))
                    seen.add(root)
                except Exception:
                    continue
    rows = []
    for deck in decks:
        for view in deck.agents():
            data = view.to_json()
            if args.all:
                data["repo"] = str(deck.repo.root)
            rows.append(data)
    return _print_ls(rows, args.json, decks[0].tmux.is_alive)


def _print_ls(rows: list[dict], as_json: bool, server_alive) -> int:
    if as_json:
        _json(rows)
        return 0
    if not rows:
        live = server_alive()
        print("no agents" + ("" if live else " (agentdeck's tmux server is not running)")
              + "; create one with `agentdeck new NAME --prompt ...`")
        return 0
    header = ("NAME", "STATUS", "AGENT", "BRANCH", "AGE")
    table = [header] + [
        (r["name"], r["status"] + (" (kept)" if r["kept"] else ""), r["agent"], r["branch"], _age(r["created_at"]))
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return 0


def cmd_peek(args) -> int:
    deck = _deck(args)
    sys.stdout.write(deck.peek(args.name).rstrip("\n") + "\n")
    return 0


def cmd_send(args) -> int:
    deck = _deck(args)
    deck.send(args.name, args.text, force=args.force)
    if args.json:
        _json({"name": args.name, "sent": True})
    return 0


def cmd_approve(args) -> int:
    _deck(args).approve(args.name)
    if args.json:
        _json({"name": args.name, "approved": True})
    return 0


def cmd_deny(args) -> int:
    _deck(args).deny(args.name)
    if args.json:
        _json({"name": args.name, "denied": True})
    return 0


def cmd_wait(args) -> int:
    deck = _deck(args)
    until = {s.strip() for s in args.until.split(",") if s.strip()}
    status = deck.wait(args.name, until, args.timeout)
    if args.json:
        _json({"name": args.name, "status": status})
    else:
        print(status)
    return 0


def cmd_events(args) -> int:
    return _print_events(_deck(args).events(args.name), args.json)


def _print_events(events: list[dict], as_json: bool) -> int:
    from agentdeck.store import utc_iso

    for e in events:
        e["time"] = utc_iso(e["ts"])
    if as_json:
        _json(events)
        return 0
    for e in events:
        what = e["status"] or ""
        detail = ", ".join(f"{k}={v}" for k, v in e["detail"].items())
        print(f"{e['time']}  {e['type']:<8} {what:<9} {e['source']:<9} {detail}".rstrip())
    return 0


def cmd_attach(args) -> int:
    import os
    import shlex
    import subprocess

    deck = _deck(args)
    argv = deck.attach_argv(args.name)
    if os.environ.get("TMUX"):
        # Inside the user's own tmux: a popup of *their* tmux attached to agentdeck's server.
        inner = "env -u TMUX " + shlex.join(argv)
        return subprocess.call(["tmux", "display-popup", "-E", "-w", "95%", "-h", "95%", inner])
    os.execvp(argv[0], argv)
    return 0  # pragma: no cover


def cmd_restart(args) -> int:
    deck = _deck(args)
    if args.all:
        names = deck.restart_all()
    elif args.name:
        names = [deck.restart(args.name).name]
    else:
        from agentdeck.errors import UsageError

        raise UsageError("restart needs an agent NAME or --all")
    if args.json:
        _json({"restarted": names})
    else:
        print("restarted " + (", ".join(names) if names else "nothing (no exited agents)"))
    return 0


def cmd_kill(args) -> int:
    deck = _deck(args)
    result = deck.kill(args.name, discard=args.discard)
    if args.json:
        _json(result)
        return 0
    if result["kept"]:
        print(
            f"stopped {args.name}; kept its worktree and branch ({result['commits']} commit(s), "
            f"{result['uncommitted']} uncommitted file(s)). Merge or `agentdeck kill {args.name} --discard`."
        )
    else:
        extra = f"; recovery ref {result['recovery_ref']}" if result["recovery_ref"] else ""
        print(f"removed {args.name} (worktree and branch){extra}")
    return 0


def cmd_recover(args) -> int:
    deck = _deck(args)
    if args.ref:
        branch = deck.recover(args.ref)
        if args.json:
            _json({"ref": args.ref, "branch": branch})
        else:
            print(f"restored {args.ref} as branch {branch}")
        return 0
    refs = deck.recovery_refs()
    if args.json:
        _json(refs)
    elif not refs:
        print("no recovery refs")
    else:
        for r in refs:
            print(f"{r['ref'].removeprefix('refs/agentdeck/trash/')}  {r['commit'][:10]}  {r['date']}  {r['subject']}")
    return 0


def cmd_gc(args) -> int:
    deck = _deck(args)
    plan = deck.gc_plan()
    total = sum(len(v) for v in plan.values())
    if not args.json:
        if total == 0:
            print("nothing to clean up")
            return 0
        for kind, items in plan.items():
            for item in items:
                print(f"{kind[:-1] if kind.endswith('s') else kind}: {item}")
    if total and not args.yes:
        if not sys.stdin.isatty():
            if args.json:
                _json({"plan": plan, "done": None})
            else:
                print("run `agentdeck gc --yes` to remove these (worktrees with work get a recovery ref first)")
            return 0
        answer = input(f"remove these {total} item(s)? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing removed")
            return 0
    done = deck.gc(plan)
    if args.json:
        _json({"plan": plan, "done": done})
    else:
        words = {"agents": "stuck agent", "worktrees": "worktree", "sessions": "tmux session",
                 "trash": "leftover folder", "pruned": "stale worktree entry", "refs": "expired recovery ref"}
        parts = [f"{len(done[k])} {w}" + ("" if len(done[k]) == 1 else "s" if not w.endswith("y") else "")
                 for k, w in words.items() if done.get(k)]
        parts = [p[:-1] + "ies" if p.endswith("entry") and not p.startswith("1 ") else p for p in parts]
        line = "removed " + ", ".join(parts) if parts else "nothing removed"
        if done.get("saved"):
            line += "; work kept in " + ", ".join(done["saved"])
        print(line)
    return 0


def cmd_doctor(args) -> int:
    from agentdeck.doctor import run_checks

    checks = run_checks(getattr(args, "repo", None), fix=getattr(args, "fix", False))
    failed = [c for c in checks if c["level"] == "error"]
    if args.json:
        _json({"ok": not failed, "checks": checks})
    else:
        marks = {"ok": "ok ", "warn": "!  ", "error": "ERR"}
        for c in checks:
            line = f"{'fix' if c.get('fixed') else marks[c['level']]} {c['name']}: {c['detail']}"
            if c.get("fixed"):
                line += f" — fixed: {c['fixed']}"
            elif c.get("fix") and c["level"] != "ok":
                line += f" — {c['fix']}"
            print(line)
    return 1 if failed else 0


def cmd_watch(args) -> int:
    from agentdeck.status import run_watcher

    return run_watcher(_deck(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


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
