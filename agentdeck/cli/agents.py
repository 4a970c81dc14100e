"""The agent lifecycle commands: ``new`` (and its fan-out), ``broadcast``, ``fork``, ``send``,
``approve``, ``deny``, ``attach``, ``restart`` and ``kill``; each a thin face over the deck's method
of the same name."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentdeck.cli_util import open_deck, print_json, respond
from agentdeck.deck import AgentView
from agentdeck.errors import Refused, UsageError


def add(sub: Any, name: str) -> None:
    """Add command *name*'s parser to *sub* (the dispatcher's subparsers)."""
    if name == "new":
        p = _command(sub, "new", "create an agent: a branch, a worktree and a tmux pane running the agent", cmd_new)
        p.add_argument("name")
        p.add_argument("--agent", dest="definition", help="agent definition (default: [deck] default_agent)")
        p.add_argument("--prompt", default="", help="initial prompt")
        p.add_argument("--base", help="base branch or commit (default: HEAD of the current branch)")
        p.add_argument("--cwd", dest="cwd_subdir", default="", help="start the agent in this subdirectory")
        p.add_argument("--sandbox", metavar="MODE",
                       help="none, agent (the CLI's own sandbox: claude, codex) or bwrap (any agent); "
                            "default: [agents.X] sandbox, else [deck] sandbox")
        p.add_argument("--autonomy", metavar="ask|auto", help="auto: no permission prompts (needs a sandbox)")
        p.add_argument("--i-know-it-is-unsandboxed", dest="unsandboxed_ok", action="store_true",
                       help="allow --autonomy auto without a sandbox")
        fan = p.add_mutually_exclusive_group()
        fan.add_argument("--count", type=int, help="N attempts at one task: NAME-1 ... NAME-N")
        fan.add_argument("--foreach", metavar="FILE",
                         help="one agent per non-empty line of FILE (NAME-1 ...); {item} in --prompt is the line")
        p.add_argument("--json", action="store_true")
    elif name == "broadcast":
        p = _command(sub, "broadcast", "send one prompt to several agents", cmd_broadcast)
        p.add_argument("text")
        to = p.add_mutually_exclusive_group(required=True)
        to.add_argument("--to", help="NAME,NAME,...")
        to.add_argument("--all", action="store_true", help="every agent that is not exited")
        p.add_argument("--force", action="store_true", help="also type into agents that wait for an answer")
        p.add_argument("--json", action="store_true")
    elif name == "fork":
        p = _command(sub, "fork", "a new agent from another's current state (uncommitted work and conversation)",
                     cmd_fork)
        p.add_argument("name")
        p.add_argument("new_name")
        p.add_argument("--prompt", default="", help="first prompt for the fork")
        p.add_argument("--json", action="store_true")
    elif name == "send":
        p = _command(sub, "send", "type text into an agent and submit it", cmd_send)
        p.add_argument("name")
        p.add_argument("text")
        p.add_argument("--force", action="store_true", help="send even while the agent waits for an answer")
        p.add_argument("--json", action="store_true")
    elif name in ("approve", "deny"):
        p = _command(sub, name, f"{name} the agent's pending permission prompt",
                     cmd_approve if name == "approve" else cmd_deny)
        p.add_argument("name")
        p.add_argument("--json", action="store_true")
    elif name == "attach":
        p = _command(sub, "attach", "attach to an agent's tmux pane (detach with C-b d)", cmd_attach)
        p.add_argument("name")
    elif name == "restart":
        p = _command(sub, "restart", "relaunch an agent in its worktree (resuming its conversation)", cmd_restart)
        p.add_argument("name", nargs="?")
        p.add_argument("--all", action="store_true", help="restart every exited agent")
        p.add_argument("--json", action="store_true")
    elif name == "kill":
        p = _command(sub, "kill", "stop an agent; keeps its work unless --discard", cmd_kill)
        p.add_argument("name")
        p.add_argument("--discard", action="store_true",
                       help="remove worktree and branch even with work in them (a recovery ref is saved first)")
        p.add_argument("--json", action="store_true")


def _command(sub: Any, name: str, help_: str, func: Callable[[Any], int]) -> Any:
    p = sub.add_parser(name, help=help_, description=help_)
    p.set_defaults(func=func)
    return p


def fanout_specs(name: str, prompt: str, count: int | None, foreach: str | None) -> list[tuple[str, str]]:
    """(name, prompt) for each agent of a fan-out."""
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


def cmd_new(args: Any) -> int:
    deck = open_deck(args)
    sandbox = {"sandbox": args.sandbox, "autonomy": args.autonomy, "unsandboxed_ok": args.unsandboxed_ok}
    if args.count is not None or args.foreach:
        specs = fanout_specs(args.name, args.prompt, args.count, args.foreach)
        recs = deck.new_many(specs, args.definition, args.base, args.cwd_subdir, **sandbox)
    else:
        recs = [deck.new(args.name, args.definition, args.prompt, args.base, args.cwd_subdir, **sandbox)]
    views = [AgentView(r).to_json() for r in recs]
    return respond(args, views if len(views) > 1 or args.count or args.foreach else views[0],
                   *(f"created {rec.name}: branch {rec.branch}, worktree {rec.worktree}" for rec in recs))


def cmd_broadcast(args: Any) -> int:
    deck = open_deck(args)
    if args.all:
        names = [a.name for a in deck.agents() if a.status != "exited"]
    else:
        names = [n.strip() for n in args.to.split(",") if n.strip()]
    if not names:
        raise Refused("no agents to broadcast to (none is running)")
    results = deck.broadcast(names, args.text, force=args.force)
    respond(args, results, *(f"{name}: {result}" for name, result in results.items()))
    return 0 if all(r == "sent" for r in results.values()) else 1


def cmd_fork(args: Any) -> int:
    rec = open_deck(args).fork(args.name, args.new_name, args.prompt)
    return respond(args, AgentView(rec).to_json(),
                   f"forked {args.name} as {rec.name}: branch {rec.branch}, worktree {rec.worktree}")


def cmd_send(args: Any) -> int:
    deck = open_deck(args)
    deck.send(args.name, args.text, force=args.force)
    return respond(args, {"name": args.name, "sent": True})


def cmd_approve(args: Any) -> int:
    open_deck(args).approve(args.name)
    return respond(args, {"name": args.name, "approved": True})


def cmd_deny(args: Any) -> int:
    open_deck(args).deny(args.name)
    return respond(args, {"name": args.name, "denied": True})


def cmd_attach(args: Any) -> int:
    deck = open_deck(args)
    argv = deck.attach_argv(args.name)
    if os.environ.get("TMUX"):
        # Inside the user's own tmux: a popup of *their* tmux attached to agentdeck's server.
        inner = "env -u TMUX " + shlex.join(argv)
        return subprocess.call(["tmux", "display-popup", "-E", "-w", "95%", "-h", "95%", inner])
    os.execvp(argv[0], argv)
    return 0  # pragma: no cover


def cmd_restart(args: Any) -> int:
    deck = open_deck(args)
    if args.all:
        names = deck.restart_all()
    elif args.name:
        names = [deck.restart(args.name).name]
    else:
        raise UsageError("restart needs an agent NAME or --all")
    return respond(args, {"restarted": names},
                   "restarted " + (", ".join(names) if names else "nothing (no exited agents)"))


def cmd_kill(args: Any) -> int:
    deck = open_deck(args)
    result = deck.kill(args.name, discard=args.discard)
    if args.json:
        print_json(result.to_json())
        return 0
    if result.kept:
        print(
            f"stopped {args.name}; kept its worktree and branch ({result.commits} commit(s), "
            f"{result.uncommitted} uncommitted file(s)). Merge or `agentdeck kill {args.name} --discard`."
        )
    else:
        extra = f"; recovery ref {result.recovery_ref}" if result.recovery_ref else ""
        print(f"removed {args.name} (worktree and branch){extra}")
    return 0
