"""``agentdeck research ...``: run, status, log, pause, resume, stop, promote, space.

``register(subparsers)`` adds the commands to agentdeck's CLI, whose dispatcher
(:func:`agentdeck.cli.main`) runs them; a detached loop is started the same way
(``python -m agentdeck --repo ROOT research run --tag TAG --attach-run``), which
loads this module and the engine only.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from agentdeck.cli_util import show_help
from agentdeck.errors import Refused

if TYPE_CHECKING:  # rich is loaded only when a run draws live
    from rich.live import Live


def register(subparsers: Any) -> None:
    research = subparsers.add_parser(
        "research", help="auto-research: run experiments on the GPUs and keep the winners",
        description="Auto-research: agentdeck runs a lab's training job for a fixed budget per trial, "
                    "reads its metric and keeps the changes that beat the best by more than the noise.",
    )
    research.set_defaults(func=lambda args: show_help(research))
    sub = research.add_subparsers(dest="research_command", metavar="COMMAND")

    p = sub.add_parser("run", help="start (or continue) a research run",
                       description="Start a research run, or continue the run named by --tag.")
    p.add_argument("--tag", help="run tag (default: from the date, e.g. nov26); an existing tag continues that run")
    p.add_argument("--trials", type=int, default=None,
                   help="number of proposals to run (baselines and confirmations are extra); default: until stopped")
    p.add_argument("--proposer", choices=("mutate", "search", "llm", "agent", "command"),
                   help="who proposes changes (default: [research] proposer)")
    p.add_argument("--gpus", help="`auto` or device ids such as 0,1 (default: [research] gpus)")
    p.add_argument("--budget", type=float, default=None, help="training budget per trial in seconds")
    p.add_argument("--detach", action="store_true", help="run in the background and return at once")
    p.add_argument("--attach-run", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="a run's baseline, best and trials")
    p.add_argument("--tag", help="run tag (default: the latest run)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("log", help="print a trial's job output")
    p.add_argument("trial")
    p.add_argument("--tag", help="run tag (default: the latest run)")
    p.set_defaults(func=cmd_log)

    for verb, help_ in (("pause", "let running jobs finish, start no new ones"),
                        ("resume", "resume a paused run (restarts its loop if it is gone)"),
                        ("stop", "stop the run: cancel running jobs and record them")):
        p = sub.add_parser(verb, help=help_, description=help_)
        p.add_argument("--tag", help="run tag (default: the latest run)")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_control, verb=verb)

    p = sub.add_parser("promote", help="merge a trial (default: the best) into the run's base branch")
    p.add_argument("trial", nargs="?")
    p.add_argument("--tag", help="run tag (default: the latest run)")
    p.add_argument("--accept-suspect", action="store_true",
                   help="promote a suspect trial (its gain was too large to believe; check it first)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("space", help="the search proposer's space: each constant's range and how it was derived",
                       description="The constants the `search` proposer tunes, their ranges and where each came "
                                   "from (derived from the value, or [research.space]). Without --tag: this "
                                   "checkout's HEAD and config; with --tag: that run's best and settings.")
    p.add_argument("--tag", help="a run (default: HEAD with the current config)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_space)


def _research(args: Any):
    repo = getattr(args, "repo", None)
    try:
        from agentdeck.cli_util import open_deck

        return open_deck(args).research
    except ImportError:  # the deck's optional parts are missing: the engine alone is enough here
        from agentdeck.research import Research

        return Research.open(repo)


def _json(obj: Any) -> None:
    from agentdeck.cli_util import print_json

    print_json(obj)


# ---------------------------------------------------------------------- run


def _fmt(value: Any, digits: int = 6) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "-" if value is None else str(value)


def _of_limit(status: dict[str, Any]) -> str:
    """``/N`` after the proposal count when the run has a trial limit, else nothing."""
    limit = status["trials_limit"]
    return "" if limit is None else f"/{limit}"


def cmd_run(args: Any) -> int:
    from agentdeck.research.gpus import parse_gpus_arg

    research = _research(args)
    if args.attach_run:  # the detached loop: its warnings go to loop.log with a time
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
        tag = research.resolve_tag(args.tag)
    else:
        gpus = parse_gpus_arg(args.gpus) if args.gpus else None
        tag = research.start(args.tag, args.trials, args.proposer, gpus, args.budget)
        for warning in research.last_warnings:
            print(f"agentdeck: warning: {warning}", file=sys.stderr)
    if args.detach:
        pid = research.run_detached(tag)
        print(f"research {tag} running in the background (pid {pid}); follow it with "
              f"`agentdeck research status --tag {tag}`, stop it with `agentdeck research stop --tag {tag}`")
        return 0
    display = _Display(research, tag, live=sys.stdout.isatty() and not args.attach_run)
    try:
        display.begin()
        result = research.run(tag, on_event=display.on_event, on_tick=display.on_tick)
    finally:
        display.end()
    status = research.status(tag)
    best, base = status["best"] or {}, status["baseline"]
    print(f"research {tag}: {result['state']}; baseline {_fmt(base['metric'])} ± {_fmt(base['noise'])} "
          f"({base['runs']} runs), best {_fmt(best.get('metric'))} (trial {best.get('id')}), "
          f"{status['proposals']} proposals, {status['duplicates']} duplicates skipped")
    print(f"results: {status['results_tsv']}; branch {status['branch']}")
    if result["state"] == "failed":
        raise Refused(status["message"] or "the research run failed")
    return 0


class _Display:
    """Live progress: a rich table on a terminal, one line per event otherwise."""

    def __init__(self, research: Any, tag: str, live: bool):
        self.research = research
        self.tag = tag
        self.live_enabled = live
        self.live: Live | None = None
        self.last = 0.0

    def begin(self) -> None:
        if not self.live_enabled:
            return
        try:
            from rich.live import Live
        except ImportError:
            self.live_enabled = False
            return
        self.live = Live(self.render(), auto_refresh=False, transient=False)
        self.live.start()

    def end(self) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)
            self.live.stop()
            self.live = None

    def on_tick(self, loop: Any) -> None:
        if self.live is None:
            return
        now = time.monotonic()
        if now - self.last >= 0.5:
            self.last = now
            self.live.update(self.render(), refresh=True)

    def on_event(self, kind: str, data: dict[str, Any]) -> None:
        if self.live is not None:
            return
        if kind == "trial":
            t = data
            metric = _fmt(t.get("metric"))
            print(f"trial {t['id']:>3} {t['kind']:<8} {t['status']:<7} {metric:>10}  gpu {t.get('gpu') or '-':<4} "
                  f"{_fmt(t.get('seconds'), 1):>6}s  {t['description'][:60]}  ({t['reason'][:80]})", flush=True)
        elif kind == "baseline":
            where = f" on {data['hardware']}" if data.get("hardware") else ""
            print(f"baseline{where} {_fmt(data['metric'])} ± {_fmt(data['noise'])} over {data['runs']} run(s)",
                  flush=True)
        elif kind == "suspect":
            print(f"trial {data['id']:>3} suspect: {data['reason']}; re-running it as trials "
                  f"{', '.join(map(str, data['reruns']))}", flush=True)
        elif kind == "tamper":
            print(f"research {self.tag}: warning: {data['reason']}", flush=True)
        elif kind == "state" and data.get("message"):
            print(f"research {self.tag}: {data['state']}: {data['message']}", flush=True)

    def render(self):
        from rich.table import Table

        status = self.research.status(self.tag)
        base = status["baseline"]["metric"]
        best = status["best"] or {}
        table = Table(
            title=f"research {self.tag} · {status['state']} · best {_fmt(best.get('metric'))} "
                  f"(#{best.get('id')}) · baseline {_fmt(base)} ± {_fmt(status['baseline']['noise'])} · "
                  f"{status['proposals']}{_of_limit(status)}"
                  f" proposals · {status['duplicates']} dup",
            title_justify="left",
        )
        for col in ("#", "kind", "status", status["metric"], "Δ base", "gpu", "s", "description"):
            table.add_column(col, overflow="ellipsis", no_wrap=True,
                             justify="right" if col in ("#", "s", "Δ base") else "left")
        trials = status["trials"]
        shown = [t for t in trials if t["status"] in ("running", "queued")] + \
                [t for t in trials if t["status"] not in ("running", "queued")][-15:]
        shown.sort(key=lambda t: t["id"])
        colors = {"keep": "green", "discard": "yellow", "crash": "red", "running": "cyan", "queued": "dim",
                  "suspect": "magenta"}
        for t in shown:
            delta = "" if t["metric"] is None or base is None else f"{t['metric'] - base:+.4f}"
            table.add_row(str(t["id"]), t["kind"], f"[{colors.get(t['status'], '')}]{t['status']}[/]",
                          _fmt(t["metric"]), delta, str(t["gpu"] or "-"), _fmt(t["seconds"], 1),
                          t["description"][:70])
        return table


# ---------------------------------------------------------------------- the rest


def cmd_status(args: Any) -> int:
    research = _research(args)
    status = research.status(args.tag)
    if args.json:
        _json(status)
        return 0
    base, best = status["baseline"], status["best"] or {}
    print(f"research {status['tag']} ({status['state']}) on branch {status['branch']}")
    source = ("protected evaluation ([research] eval_command)" if status.get("metric_source") == "eval"
              else "self-reported (the job prints it; set [research] eval_command for a protected evaluation)")
    print(f"metric: {source}")
    print(f"sandbox: {status.get('sandbox', 'none')} — {status.get('sandbox_detail', '')}")
    print(f"baseline: {_fmt(base['metric'])} ± {_fmt(base['noise'])} over {base['runs']} run(s); "
          f"best: {_fmt(best.get('metric'))} (trial {best.get('id')}, {str(best.get('commit') or '')[:10]})")
    for cls, other in (status.get("bests") or {}).items():
        ob, obest = other["baseline"], other["best"] or {}
        print(f"on {cls} (branch {other['branch']}): baseline {_fmt(ob['metric'])} ± {_fmt(ob['noise'])}; best "
              f"{_fmt(obest.get('metric'))} (trial {obest.get('id')})" + (" [suspect]" if obest.get("suspect") else ""))
    if (status.get("best") or {}).get("suspect"):
        print("the best is suspect: promote it only with --accept-suspect, after checking its log and diff")
    print(f"proposals: {status['proposals']}{_of_limit(status)}"
          + f", duplicates skipped: {status['duplicates']}, proposer failures: {status['proposal_failures']}")
    if status["message"]:
        print(f"note: {status['message']}")
    importances = status.get("importances") or {}
    if importances.get("params"):
        shown = ", ".join(f"{k} {float(v):.2f}" for k, v in list(importances["params"].items())[:8])
        print(f"importance (search, {importances.get('trials')} trials): {shown}")
    print(f"results: {status['results_tsv']}")
    if status["trials"]:
        print()
        print(f"{'#':>4}  {'kind':<8} {'status':<8} {status['metric']:>12} {'gpu':>4} {'s':>7}  description")
        for t in status["trials"]:
            shown = t["status"] + ("?" if t.get("suspect") and t["status"] != "suspect" else "")
            print(f"{t['id']:>4}  {t['kind']:<8} {shown:<8} {_fmt(t['metric']):>12} {t['gpu'] or '-'!s:>4} "
                  f"{_fmt(t['seconds'], 1):>7}  {t['description'][:70]}"
                  + (f"  [{t['reason'][:60]}]" if t["status"] in ("crash", "discard", "suspect") and t["reason"]
                     else ""))
    return 0


def cmd_log(args: Any) -> int:
    research = _research(args)
    text = research.log(args.trial, args.tag)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def cmd_control(args: Any) -> int:
    research = _research(args)
    result = getattr(research, args.verb)(args.tag)
    if args.json:
        _json(result)
    elif args.verb == "pause":
        print(f"research {result['tag']} paused: running jobs finish, no new job starts "
              f"(`agentdeck research resume` to go on)")
    elif args.verb == "resume":
        extra = f" (loop restarted, pid {result['pid']})" if result.get("restarted") else ""
        print(f"research {result['tag']} resumed{extra}")
    else:
        print(f"research {result['tag']} stopped")
    return 0


def cmd_promote(args: Any) -> int:
    research = _research(args)
    result = research.promote(args.trial, args.tag, accept_suspect=args.accept_suspect)
    if args.json:
        _json(result)
    else:
        print(f"merged trial {result['trial']} ({result['commit'][:10]}) of {result['tag']} into {result['into']}")
    return 0


def cmd_space(args: Any) -> int:
    from agentdeck.research.space_commit import space_for

    data = space_for(_research(args), args.tag)
    if args.json:
        _json(data)
        return 0
    where = f"run {data['tag']} at {data['commit'][:10]}" if data.get("tag") else f"HEAD {data['commit'][:10]}"
    print(f"search space of {', '.join(data['files']) or 'no editable file'} ({where}; sampler {data['sampler']})")
    rows = [(p["name"], f"{p['path']}:{p['line']}", p["text"], p["range"], p["source"], p["derivation"])
            for p in data["params"]]
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print(f"  {r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:<{widths[3]}}  "
                  f"{r[4]}: {r[5]}")
    else:
        print("  (nothing to search: no top-level numeric constant)")
    for k in data["skipped"]:
        print(f"  not searched: {k['name']} = {k['value']} ({k['path']}:{k['line']}): {k['reason']}")
    return 0
