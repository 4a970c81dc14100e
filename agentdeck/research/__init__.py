"""Auto-research: agentdeck runs the experiment loop on the GPUs and keeps the winners.

:class:`Research` is the facade the deck exposes as ``deck.research`` (and the
CLI, the TUI's Research tab and the MCP server call):

- ``start(tag=None, trials=None, proposer=None, gpus=None, budget_s=None) -> tag``
  creates a run (or prepares an existing one to continue) — validated first,
  nothing left behind on error;
- ``run(tag, ...)`` runs the loop in this process until done or stopped;
  ``run_detached(tag)`` starts it as a background process;
- ``status(tag=None)`` the contract's JSON object; ``trial``, ``log``, ``diff``;
- ``pause``, ``resume``, ``stop``, ``promote`` (a suspect trial only with ``accept_suspect``;
  never a tree whose editable files are not regular files).

Layout under the repository's state dir::

    research/ledger.db             every run and trial (SQLite, WAL)
    research/<tag>/results.tsv     autoresearch's columns + trial, kind, gpu, seconds
    research/<tag>/logs/<id>.log   each job's output (+ <id>.log.exit, its exit status)
    research/<tag>/logs/<id>.eval.log  the protected evaluation's output (with eval_command)
    research/eval.seed             the evaluation's secret (mode 0600; hidden from sandboxed jobs)
    research/<tag>/loop.lock       held by the run's loop process
    research/<tag>/loop.log        the detached loop's own output

Trial worktrees and artifacts live outside the state folder, out of the jobs' reach
(:mod:`agentdeck.research.isolation`): ``<cache>/research/<repo>-<id>/<tag>/wt/``,
``.../artifacts/<trial>/`` (removed once a trial is recorded).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import posixpath
import re
import subprocess
import sys
import time
import types
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from agentdeck.errors import Refused, UsageError

TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,47}$")
METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _settings_from_dict(data: dict[str, Any]):
    from agentdeck.config import RaySettings, ResearchSettings, SlurmSettings

    names = {f.name for f in dataclasses.fields(ResearchSettings)}
    kwargs = {k: v for k, v in data.items() if k in names and k not in ("ray", "slurm")}
    settings = ResearchSettings(**kwargs)
    ray_names = {f.name for f in dataclasses.fields(RaySettings)}
    slurm_names = {f.name for f in dataclasses.fields(SlurmSettings)}
    settings.ray = RaySettings(**{k: v for k, v in (data.get("ray") or {}).items() if k in ray_names})
    settings.slurm = SlurmSettings(**{k: v for k, v in (data.get("slurm") or {}).items() if k in slurm_names})
    return settings


class Research:
    """The auto-research subsystem of one repository (``deck.research``)."""

    def __init__(self, deck: Any):
        self.deck = deck
        self.repo = deck.repo
        self.config = deck.config
        self.last_warnings: list[str] = []

    @classmethod
    def open(cls, cwd: str | os.PathLike[str] | None = None) -> "Research":
        """Without a Deck (no tmux needed): what the loop process and scripts use."""
        from agentdeck import paths
        from agentdeck.config import load_config

        repo = paths.find_repo(cwd)
        config = load_config(repo.root)
        return cls(types.SimpleNamespace(repo=repo, config=config, is_light=True))

    # ------------------------------------------------------------------ parts
    @property
    def research_dir(self) -> Path:
        return Path(self.repo.research_dir)

    def run_dir(self, tag: str) -> Path:
        return self.research_dir / tag

    @functools.cached_property
    def ledger(self):
        from agentdeck.research.ledger import Ledger

        self.research_dir.mkdir(parents=True, exist_ok=True)
        return Ledger(self.research_dir / "ledger.db")

    @functools.cached_property
    def notes(self):
        from agentdeck.research.notes import Notes

        return Notes(self.repo, self.config, None if getattr(self.deck, "is_light", False) else self.deck)

    def full_deck(self):
        """A real Deck (the ``agent`` proposer needs panes)."""
        if getattr(self.deck, "is_light", False):
            from agentdeck.deck import Deck

            self.deck = Deck.open(self.repo.root)
        return self.deck

    def settings_from_run(self, run: dict[str, Any]):
        return _settings_from_dict(run["settings"])

    def make_executor(self, settings: Any):
        from agentdeck.research.executors.base import get_executor

        return get_executor(settings.executor, settings)

    def make_proposer(self, name: str, tag: str, settings: Any):
        from agentdeck.research.proposers.base import ProposerContext, get_proposer

        ctx = ProposerContext(research=settings, llm=self.config.llm, repo_root=self.repo.root,
                              state_dir=self.repo.state_dir, tag=tag, deck=None, ledger=self.ledger)
        ctx.research_facade = self  # type: ignore[attr-defined]
        return get_proposer(name, ctx)

    def close(self) -> None:
        if "ledger" in self.__dict__:
            self.ledger.close()
        if "notes" in self.__dict__:
            self.notes.close()

    # ------------------------------------------------------------------ tags
    def latest_tag(self) -> str | None:
        return self.ledger.latest_tag()

    def resolve_tag(self, tag: str | None) -> str:
        if tag:
            if self.ledger.run(tag) is None:
                known = ", ".join(self.ledger.tags()) or "none"
                raise UsageError(f"no research run tagged {tag!r} (runs: {known}); see `agentdeck research status`")
            return tag
        latest = self.latest_tag()
        if latest is None:
            raise UsageError("no research run yet in this repository; start one with `agentdeck research run`")
        return latest

    def new_tag(self) -> str:
        from agentdeck import git

        base = datetime.now().strftime("%b%d").lower()
        taken = set(self.ledger.tags())
        n = 1
        while True:
            tag = base if n == 1 else f"{base}-{n}"
            if tag not in taken and not git.branch_exists(self.repo.root, f"research/{tag}"):
                return tag
            n += 1

    def loop_alive(self, tag: str) -> bool:
        from agentdeck.research.loop import LoopLock

        return LoopLock.held(self.run_dir(tag) / "loop.lock")

    # ------------------------------------------------------------------ starting
    def effective_settings(self, proposer: str | None = None, budget_s: float | None = None):
        settings = dataclasses.replace(self.config.research)
        if proposer:
            settings.proposer = proposer
        if budget_s is not None:
            settings.budget_s = float(budget_s)
        return settings

    def _validate(self, settings: Any, base_commit: str) -> tuple[dict[str, str], list[str], list[str]]:
        """(protected blobs, editable repo paths, warnings); UsageError on a broken lab."""
        from agentdeck import git
        from agentdeck.research import gitops

        warnings: list[str] = []
        if settings.proposer not in ("mutate", "search", "llm", "agent", "command"):
            raise UsageError(f"unknown proposer {settings.proposer!r}; use mutate, search, llm, agent or command")
        if not settings.command.strip():
            raise UsageError("[research] command is empty; set the training command, e.g. \"python train.py\"")
        if not METRIC_RE.match(settings.metric):
            raise UsageError(f"[research] metric {settings.metric!r} is not a name like val_bpb")
        if settings.budget_s <= 0:
            raise UsageError("the time budget must be positive (--budget or [research] budget_s)")
        if settings.timeout_s <= settings.budget_s:
            raise UsageError(
                f"[research] timeout_s ({settings.timeout_s:g}) must exceed the budget ({settings.budget_s:g}); "
                "raise timeout_s or lower the budget"
            )
        if settings.repeats_baseline < 1:
            raise UsageError("[research] repeats_baseline must be at least 1")
        workdir = posixpath.normpath(settings.workdir.strip() or ".")
        if workdir.startswith("/") or ".." in Path(workdir).parts:
            raise UsageError(f"[research] workdir {workdir!r} must be a folder inside the repository")
        files = gitops.tree_files(self.repo.root, base_commit, workdir)
        if not files:
            raise UsageError(
                f"[research] workdir {workdir!r} has no committed files at {base_commit[:10]}; "
                "commit the lab first (git add, git commit)"
            )
        editable = gitops.match(workdir, settings.editable, files.keys())
        if not editable:
            raise UsageError(
                f"none of [research] editable ({', '.join(settings.editable) or 'empty'}) is a committed file in "
                f"{workdir!r}; commit it or fix the list"
            )
        modes = gitops.tree_modes(self.repo.root, base_commit, workdir)
        irregular = [p for p in gitops.match(workdir, settings.editable, modes.keys()) if modes[p] not in
                     ("100644", "100755")]
        if irregular:
            raise UsageError(f"editable {irregular[0]} is not a regular file in the commit (mode {modes[irregular[0]]}); "
                             "replace the link or submodule with the file itself and commit")
        protected_paths = gitops.match(workdir, settings.protected, files.keys())
        for pattern in settings.protected:
            if not gitops.match(workdir, [pattern], files.keys()):
                warnings.append(f"protected file {pattern!r} is not committed in {workdir!r}; nothing guards it")
        overlap = set(protected_paths) & set(editable)
        if overlap:
            raise UsageError(f"{', '.join(sorted(overlap))} is both editable and protected in [research]; pick one")
        program = gitops.join(workdir, settings.program)
        if program not in files:
            warnings.append(f"the lab's program {settings.program!r} is not committed in {workdir!r}; proposers get "
                            "no instructions (a template ships in agentdeck's prompts/program.md)")
        dirty = git.status_porcelain(self.repo.root)
        touched = [p for p in dirty if p in editable or p in protected_paths or p == program]
        if touched:
            warnings.append("uncommitted changes to " + ", ".join(touched) + " are not part of the run "
                            "(trials start from the last commit)")
        protected = {p: files[p] for p in protected_paths}
        return protected, editable, warnings

    def start(self, tag: str | None = None, trials: int | None = None, proposer: str | None = None,
              gpus: Any = None, budget_s: float | None = None) -> str:
        """Create the run *tag* (default: from the date), or ready an existing one to continue."""
        from agentdeck import git
        from agentdeck.research.hardware import slot_classes
        from agentdeck.research.loop import settings_dict

        if trials is not None and trials < 0:
            raise UsageError("--trials must be 0 or more")
        if tag is not None and not TAG_RE.match(tag):
            raise UsageError(f"bad tag {tag!r}: use lower-case letters, digits, '.', '_' or '-' (e.g. nov26)")
        existing = self.ledger.run(tag) if tag else None
        if existing is not None:
            return self._continue(existing, trials, proposer, gpus, budget_s)
        settings = self.effective_settings(proposer, budget_s)
        base_commit = git.head_commit(self.repo.root)
        if base_commit is None:
            raise UsageError("this repository has no commits yet; commit the lab first")
        base_branch = git.current_branch(self.repo.root) or base_commit
        protected, _editable, warnings = self._validate(settings, base_commit)
        executor = self.make_executor(settings)
        executor.check(self.research_dir)
        _check_sandbox(settings, executor)
        slots = executor.slots(gpus if gpus is not None else settings.gpus)
        prop = self.make_proposer(settings.proposer, tag or "check", settings)
        prop.check()
        tag = tag or self.new_tag()
        branch = f"research/{tag}"
        if git.branch_exists(self.repo.root, branch):
            raise UsageError(f"branch {branch} already exists and is not a run of this repository's ledger; "
                             "choose another --tag")
        if not git.is_valid_branch_name(self.repo.root, branch):
            raise UsageError(f"{branch!r} is not a valid branch name; choose another --tag")
        data = settings_dict(settings)
        data["slots"] = slots
        data["slot_classes"], data["primary_class"] = slot_classes(
            slots, executor.pins_devices, settings.executor, getattr(settings, "hardware", "") or "")
        data["workdir"] = posixpath.normpath(settings.workdir.strip() or ".")
        self.ledger.create_run(
            tag, branch=branch, base_branch=base_branch, base_commit=base_commit, workdir=data["workdir"],
            settings=data, protected=protected, trials_limit=trials, state="starting", control="run",
        )
        try:
            git.run(self.repo.root, "branch", branch, base_commit)
            self.run_dir(tag).mkdir(parents=True, exist_ok=True)
        except BaseException:
            self.ledger.conn.execute("DELETE FROM runs WHERE tag = ?", (tag,))  # nothing half done
            raise
        self.last_warnings = warnings
        return tag

    def _continue(self, run: dict[str, Any], trials: int | None, proposer: str | None, gpus: Any,
                  budget_s: float | None) -> str:
        tag = run["tag"]
        if self.loop_alive(tag):
            raise Refused(f"research run {tag!r} is already running; see `agentdeck research status --tag {tag}`")
        if run["state"] == "failed":
            raise Refused(f"research run {tag!r} failed ({run['message'][:160]}); fix and commit the lab, then start "
                          "a new run (without --tag, or with a new tag)")
        problem = self.ledger.chain_problem(tag)
        if problem:
            raise Refused(f"research run {tag!r}: ledger changed outside the harness ({problem}); its record cannot "
                          "be trusted — start a new run (without --tag, or with a new tag)")
        data = dict(run["settings"])
        if proposer:
            data["proposer"] = proposer
        if budget_s is not None:
            data["budget_s"] = float(budget_s)
        settings = _settings_from_dict(data)
        if settings.timeout_s <= settings.budget_s:
            raise UsageError(f"timeout_s ({settings.timeout_s:g}) must exceed the budget ({settings.budget_s:g})")
        executor = self.make_executor(settings)
        executor.check(self.research_dir)
        _check_sandbox(settings, executor)
        if gpus is not None:
            from agentdeck.research.hardware import slot_classes

            data["slots"] = executor.slots(gpus)
            classes, primary = slot_classes(data["slots"], executor.pins_devices, settings.executor,
                                            getattr(settings, "hardware", "") or "")
            data["slot_classes"] = classes
            data["primary_class"] = data.get("primary_class") or primary  # the primary class never changes
        self.make_proposer(settings.proposer, tag, settings).check()
        if trials is not None:
            limit = int(run["proposals"]) + trials
        elif run["state"] == "done":
            limit = None  # a finished run continued without --trials runs until stopped
        else:
            limit = run["trials_limit"]  # an interrupted, stopped or paused run goes on to its own end
        if self.ledger.chain_head(tag)[0]:
            self.ledger.update_run(tag, trials_limit=limit, control="run", state="starting", message="")
            # The decision chain covers the settings: they change with their link, in one transaction.
            self.ledger.record_decision(tag, None, run_fields={"settings": data})
        else:
            self.ledger.update_run(tag, settings=data, trials_limit=limit, control="run", state="starting", message="")
        self.last_warnings = []
        return tag

    # ------------------------------------------------------------------ running
    def run(self, tag: str, proposer: Any = None, executor: Any = None,
            on_event: Callable[[str, dict[str, Any]], None] | None = None,
            on_tick: Callable[[Any], None] | None = None) -> dict[str, Any]:
        """Run the loop of *tag* in this process until it is done, stopped or fails."""
        from agentdeck.research.loop import ResearchLoop

        loop = ResearchLoop(self, tag, proposer=proposer, executor=executor, on_event=on_event, on_tick=on_tick)
        return loop.run()

    def run_detached(self, tag: str, wait_s: float = 20.0) -> int:
        """Start the loop of *tag* as a background process; its pid once it holds the run's lock."""
        run_dir = self.run_dir(tag)
        run_dir.mkdir(parents=True, exist_ok=True)
        package_parent = str(Path(__file__).resolve().parent.parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = package_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(run_dir / "loop.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agentdeck.research.cli", "--repo", str(self.repo.root), "research", "run",
                 "--tag", tag, "--attach-run"],
                cwd=str(self.repo.root), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.loop_alive(tag):
                return proc.pid
            if proc.poll() is not None:
                tail = (run_dir / "loop.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise Refused(f"the research loop exited at once ({' / '.join(tail) or proc.returncode}); "
                              f"see {run_dir / 'loop.log'}")
            time.sleep(0.05)
        return proc.pid

    # ------------------------------------------------------------------ control
    def pause(self, tag: str | None = None) -> dict[str, Any]:
        tag = self.resolve_tag(tag)
        self._require_active(tag, "pause")
        self.ledger.set_control(tag, "pause")
        return {"tag": tag, "control": "pause"}

    def resume(self, tag: str | None = None) -> dict[str, Any]:
        """Resume a paused run; a run whose loop is gone is restarted in the background."""
        tag = self.resolve_tag(tag)
        run = self.ledger.run(tag)
        assert run is not None
        if self.loop_alive(tag):
            self.ledger.set_control(tag, "run")
            return {"tag": tag, "control": "run", "restarted": False}
        if run["state"] in ("done", "failed"):
            raise Refused(f"research run {tag!r} is {run['state']}; continue it with "
                          f"`agentdeck research run --tag {tag} --trials K`")
        self.ledger.update_run(tag, control="run")
        pid = self.run_detached(tag)
        return {"tag": tag, "control": "run", "restarted": True, "pid": pid}

    def stop(self, tag: str | None = None, wait_s: float = 60.0) -> dict[str, Any]:
        """Stop the run: running jobs are cancelled and recorded, queued trials recorded as never run."""
        tag = self.resolve_tag(tag)
        run = self.ledger.run(tag)
        assert run is not None
        if run["state"] in ("done", "failed", "stopped") and not self.loop_alive(tag):
            return {"tag": tag, "state": run["state"]}  # nothing runs: nothing to stop
        self.ledger.set_control(tag, "stop")
        if self.loop_alive(tag):
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and self.loop_alive(tag):
                time.sleep(0.05)
            if self.loop_alive(tag):
                raise Refused(f"the loop of {tag!r} has not stopped after {wait_s:g}s; it will stop at its next check")
            return {"tag": tag, "state": (self.ledger.run(tag) or {}).get("state", "stopped")}
        # No loop: cancel what a dead loop left running, and record it.
        self._stop_orphans(tag)
        return {"tag": tag, "state": "stopped"}

    def _stop_orphans(self, tag: str) -> None:
        run = self.ledger.run(tag)
        assert run is not None
        settings = self.settings_from_run(run)
        executor = self.make_executor(settings)
        for t in self.ledger.trials(tag, states=("running",)):
            handle = executor.reattach(t["job"]) if t["job"] else None
            if handle is not None:
                try:
                    executor.cancel(handle)
                except Exception as exc:  # a vanished cluster must not block the stop
                    print(f"agentdeck: could not cancel trial {t['id']}: {exc}", file=sys.stderr)
        from agentdeck.research.loop import ResearchLoop

        if self.ledger.trials(tag, states=("running", "queued", "judging")):
            loop = ResearchLoop(self, tag, proposer=_NoProposer(), executor=executor)
            if loop._loop_lock.acquire():
                try:
                    loop._recover()
                    loop._shutdown("stopped")
                finally:
                    loop.cleanup.put(None)
                    loop._cleanup_worker()
                    loop._loop_lock.release()
                return
        self.ledger.update_run(tag, state="stopped", control="stop")

    def _require_active(self, tag: str, verb: str) -> None:
        run = self.ledger.run(tag)
        assert run is not None
        if run["state"] in ("done", "failed", "stopped"):
            raise Refused(f"research run {tag!r} is {run['state']}; nothing to {verb}")

    # ------------------------------------------------------------------ reading
    def state(self, tag: str) -> str:
        run = self.ledger.run(tag)
        assert run is not None
        state = run["state"]
        if state in ("starting", "running", "paused") and not self.loop_alive(tag):
            return "interrupted"
        return state

    def status(self, tag: str | None = None) -> dict[str, Any]:
        """The contract's ``research status --json`` object (plus ``state`` and counters)."""
        tag = self.resolve_tag(tag)
        run = self.ledger.run(tag)
        assert run is not None
        trials = self.ledger.trials(tag)
        primary = run["settings"].get("primary_class") or "default"
        suspect = {t["id"] for t in trials if t["meta"].get("suspect")}
        best = None
        if run["best_trial"] is not None:
            best = {"id": run["best_trial"], "metric": run["best_metric"], "commit": run["best_commit"]}
            if run["best_trial"] in suspect:
                best["suspect"] = True
        return {
            "tag": tag,
            "branch": run["branch"],
            "results_tsv": str(self.run_dir(tag) / "results.tsv"),
            "baseline": {"metric": run["baseline_metric"], "runs": run["baseline_runs"], "noise": run["noise"]},
            "best": best,
            "trials": [self.trial_json(t) | {"hardware": t.get("hardware") or primary} for t in trials],
            "hardware": primary,
            "slot_classes": dict(run["settings"].get("slot_classes") or {}),
            "bests": self._class_bests(run, suspect),
            "state": self.state(tag),
            "metric": self.settings_from_run(run).metric,
            "direction": self.settings_from_run(run).direction,
            "slots": run["settings"].get("slots", []),
            "proposals": run["proposals"],
            "trials_limit": run["trials_limit"],
            "duplicates": run["duplicates"],
            "proposal_failures": run["proposal_failures"],
            "message": run["message"],
            "importances": self._importances(tag),
            **self._trust(run),
        }

    def _trust(self, run: dict[str, Any]) -> dict[str, Any]:
        """Where the metric comes from and what the jobs run in (``metric_source``, ``sandbox``)."""
        from agentdeck.research.isolation import resolve_sandbox

        settings = self.settings_from_run(run)
        resolved = resolve_sandbox(settings.sandbox, settings.executor)
        return {"metric_source": "eval" if (settings.eval_command or "").strip() else "self-reported",
                "sandbox": resolved.mode, "sandbox_detail": resolved.error or resolved.detail}

    def _importances(self, tag: str) -> dict[str, Any] | None:
        """The search proposer's latest parameter importances (from the ledger; Optuna is not imported)."""
        from agentdeck.research.proposers.search import latest_importances

        return latest_importances(self.ledger, tag)

    def _class_bests(self, run: dict[str, Any], suspect: set[int]) -> dict[str, Any]:
        """The baseline and best of every hardware class other than the run's primary one."""
        from agentdeck.research.hardware import class_branch

        out = {}
        primary = run["settings"].get("primary_class") or "default"
        for cls, row in self.ledger.class_rows(run["tag"]).items():
            best = None
            if row["best_trial"] is not None:
                best = {"id": row["best_trial"], "metric": row["best_metric"], "commit": row["best_commit"]}
                if row["best_trial"] in suspect:
                    best["suspect"] = True
            out[cls] = {"branch": class_branch(run["branch"], cls, primary),
                        "baseline": {"metric": row["baseline_metric"], "runs": row["baseline_runs"],
                                     "noise": row["noise"]},
                        "best": best}
        return out

    @staticmethod
    def trial_json(t: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": t["id"],
            "kind": t["kind"],
            "status": t["status"],
            "reason": t["reason"],
            "metric": t["metric"],
            "commit": t["commit"],
            "description": t["description"],
            "gpu": t["gpu"],
            "seconds": None if t["seconds"] is None else round(float(t["seconds"]), 3),
            "hardware": t.get("hardware") or "",
            "suspect": bool(t["meta"].get("suspect")),
            "claimed": t.get("claimed"),
        }

    def trial(self, trial_id: int | str, tag: str | None = None) -> dict[str, Any]:
        tag = self.resolve_tag(tag)
        try:
            number = int(str(trial_id).lstrip("#"))
        except ValueError:
            raise UsageError(f"bad trial {trial_id!r}: give its number (see `agentdeck research status`)") from None
        t = self.ledger.trial(tag, number)
        if t is None:
            raise UsageError(f"run {tag!r} has no trial {number}; see `agentdeck research status --tag {tag}`")
        return t

    def log(self, trial_id: int | str, tag: str | None = None) -> str:
        t = self.trial(trial_id, tag)
        path = Path(t["log_path"]) if t["log_path"] else None
        if path is None or not path.exists():
            raise Refused(f"trial {t['id']} has no log: it never ran ({t['status']}: {t['reason'] or 'queued'})")
        text = path.read_text(encoding="utf-8", errors="replace")
        evaluation = path.with_name(f"{t['id']}.eval.log")  # the protected evaluation's output, if it ran
        if evaluation.exists():
            text += ("" if text.endswith("\n") or not text else "\n") + f"=== evaluation ({evaluation.name}) ===\n"
            text += evaluation.read_text(encoding="utf-8", errors="replace")
        return text

    def diff(self, trial_id: int | str, tag: str | None = None) -> str:
        from agentdeck.research import gitops

        t = self.trial(trial_id, tag)
        if not t["commit"] or t["commit"] == t["parent"]:
            return ""
        return gitops.diff(self.repo.root, t["parent"], t["commit"])

    # ------------------------------------------------------------------ promote
    def promote(self, trial_id: int | str | None = None, tag: str | None = None,
                accept_suspect: bool = False) -> dict[str, Any]:
        """Merge a trial (default: the run's best) into the run's base branch (a plain ``git merge``).

        Refused for a suspect trial (a jump too large to believe) unless *accept_suspect*, and
        for a tree whose editable files are not all regular files (a symlink or submodule would
        reach outside the repository once merged)."""
        from agentdeck import git
        from agentdeck.research import gitops

        tag = self.resolve_tag(tag)
        run = self.ledger.run(tag)
        assert run is not None
        if trial_id is None:
            if run["best_trial"] is None or run["best_commit"] == run["base_commit"]:
                raise Refused(f"nothing to promote: no trial of {tag!r} beat the baseline yet")
            trial_id = run["best_trial"]
        t = self.trial(trial_id, tag)
        if t["kind"] == "baseline" or t["commit"] == run["base_commit"]:
            raise Refused(f"trial {t['id']} is the baseline: nothing to promote")
        if t["status"] in ("queued", "running"):
            raise Refused(f"trial {t['id']} is still {t['status']}; wait for its result")
        if t["status"] == "crash":
            raise Refused(f"trial {t['id']} crashed ({t['reason']}); promote a kept trial instead")
        if t["status"] == "suspect":
            raise Refused(f"trial {t['id']} is suspect and still being re-run; wait for its re-runs")
        if t["meta"].get("suspect") and not accept_suspect:
            raise Refused(f"trial {t['id']} is suspect ({t['meta']['suspect']}); check its log and diff, then "
                          f"`agentdeck research promote {t['id']} --accept-suspect` if it is real")
        settings = self.settings_from_run(run)
        modes = gitops.tree_modes(self.repo.root, t["commit"], run["workdir"])
        base_modes = gitops.tree_modes(self.repo.root, run["base_commit"], run["workdir"])
        editable = set(gitops.match(run["workdir"], settings.editable, modes.keys()))
        irregular = sorted(p for p, mode in modes.items() if mode not in ("100644", "100755")
                           and (p in editable or base_modes.get(p) != mode))
        if irregular:
            raise Refused(f"trial {t['id']} breaks the regular-file rule: {irregular[0]} has mode "
                          f"{modes[irregular[0]]} (a symbolic link or submodule); nothing merged")
        base = run["base_branch"]
        current = git.current_branch(self.repo.root)
        if current != base:
            raise Refused(f"the main checkout is on {current or 'a detached HEAD'}, not {base}; "
                          f"`git switch {base}` there, then promote")
        if git.run_ok(self.repo.root, "merge-base", "--is-ancestor", t["commit"], "HEAD"):
            raise Refused(f"trial {t['id']} is already in {base}")
        message = f"research {tag}: promote trial {t['id']} ({self.settings_from_run(run).metric} " \
                  f"{t['metric']}): {t['description']}"
        try:
            merged = gitops.merge(self.repo.root, t["commit"], message)
        except gitops.GitError as exc:
            raise Refused(f"promoting trial {t['id']} into {base} would conflict or failed ({exc.stderr[:200]}); "
                          f"nothing changed — merge {gitops.trial_ref(tag, t['id'])} by hand") from None
        return {"tag": tag, "trial": t["id"], "commit": t["commit"], "into": base, "merge_commit": merged}


def _check_sandbox(settings: Any, executor: Any) -> None:
    """A UsageError when ``[research] sandbox = "bwrap"`` cannot be honoured here (before a run starts)."""
    from agentdeck.research.isolation import resolve_sandbox

    resolved = resolve_sandbox(settings.sandbox, executor.name)
    if resolved.error:
        raise UsageError(f"[research] {resolved.error}")


class _NoProposer:
    name = "none"

    def check(self) -> None: ...

    def propose(self, request):  # pragma: no cover - never asked
        raise RuntimeError("no proposer")

    def close(self) -> None: ...


def submit_from_agent(description: str, agent: str | None = None, cwd: str | None = None) -> dict[str, Any]:
    """What the MCP tool ``research_submit(description)`` calls from inside an agent's pane.

    Marks the agent's open proposal request as submitted; the ``agent``
    proposer then copies the editable files from the agent's worktree into the
    trial's worktree and agentdeck runs the job.
    """
    from agentdeck import paths

    agent = agent or os.environ.get(paths.ENV_AGENT, "")
    if not agent:
        raise UsageError("research_submit must be called from an agent started by agentdeck (AGENTDECK_AGENT unset)")
    description = " ".join(str(description).split())
    if not description:
        raise UsageError("research_submit needs a one-line description of the change")
    state_dir = os.environ.get(paths.ENV_STATE_DIR)
    if state_dir:
        research_dir = Path(state_dir) / "research"
    else:
        research_dir = paths.find_repo(cwd).research_dir
    from agentdeck.errors import Refused
    from agentdeck.research.ledger import Ledger

    if not (Path(research_dir) / "ledger.db").exists():
        raise Refused(f"agent {agent!r} has no open research request; wait for the next instruction")
    ledger = Ledger(Path(research_dir) / "ledger.db")
    try:
        row = ledger.submit_agent_request(agent, description[:300])
    finally:
        ledger.close()
    if row is None:
        raise Refused(f"agent {agent!r} has no open research request; wait for the next instruction")
    return {"submitted": True, "agent": agent, "tag": row["tag"], "description": description[:300]}


__all__ = ["Research", "submit_from_agent"]
