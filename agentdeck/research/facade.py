"""The auto-research facade: :class:`Research`, one repository's research runs (``deck.research``).

The CLI, the TUI's Research tab and the MCP server call it; it starts runs
(:mod:`.starting`), runs and steers their loops (:mod:`.loop`, through its public API),
reads them (:mod:`.reading`) and promotes trials (:mod:`.promote`).  It needs the
repository, its config and, for the ``agent`` proposer only, an agent runner
(:mod:`.runner`): research never imports the deck.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from agentdeck import git, paths
from agentdeck.config import ResearchSettings, load_config
from agentdeck.errors import Refused, UsageError
from agentdeck.research import gitops
from agentdeck.research.executors import get_executor
from agentdeck.research.executors.base import Executor
from agentdeck.research.ledger import Ledger
from agentdeck.research.loop import LoopLock, ResearchLoop
from agentdeck.research.model import Run, Trial
from agentdeck.research.notes import Notes
from agentdeck.research.promote import promote
from agentdeck.research.proposers import get_proposer
from agentdeck.research.proposers.base import Proposal, ProposalRequest, Proposer, ProposerContext
from agentdeck.research.reading import status_json, trial_json
from agentdeck.research.runner import RunnerFactory
from agentdeck.research.starting import settings_from_dict, start_run


class Research:
    """The auto-research subsystem of one repository (``deck.research``)."""

    def __init__(self, repo: Any, config: Any, runners: RunnerFactory | None = None):
        """*repo*: the repository's ``RepoPaths``; *config*: its ``Config``; *runners*: opens an agent
        runner (a deck) per thread for the ``agent`` proposer (None: that proposer is refused; see
        :mod:`agentdeck.research.runner`)."""
        self.repo = repo
        self.config = config
        self.runners: RunnerFactory | None = runners
        self.last_warnings: list[str] = []

    @classmethod
    def open(cls, cwd: str | os.PathLike[str] | None = None, runners: RunnerFactory | None = None) -> Research:
        """Without a deck (no tmux needed): what scripts and tests use (*runners*: for the ``agent``
        proposer)."""
        repo = paths.find_repo(cwd)
        return cls(repo, load_config(repo.root), runners)

    # ------------------------------------------------------------------ parts
    @property
    def research_dir(self) -> Path:
        return Path(self.repo.research_dir)

    def run_dir(self, tag: str) -> Path:
        return self.research_dir / tag

    @functools.cached_property
    def ledger(self) -> Ledger:
        self.research_dir.mkdir(parents=True, exist_ok=True)
        return Ledger(self.research_dir / "ledger.db")

    @functools.cached_property
    def notes(self) -> Notes:
        return Notes(self.repo, self.config)

    def settings_from_run(self, run: Run) -> ResearchSettings:
        return settings_from_dict(run.settings)

    def make_executor(self, settings: Any) -> Executor:
        return get_executor(settings.executor, settings)

    def make_proposer(self, name: str, tag: str, settings: Any) -> Proposer:
        ctx = ProposerContext(research=settings, llm=self.config.llm, repo_root=self.repo.root,
                              state_dir=self.repo.state_dir, tag=tag, ledger=self.ledger, runners=self.runners)
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
        base = datetime.now().strftime("%b%d").lower()
        taken = set(self.ledger.tags())
        n = 1
        while True:
            tag = base if n == 1 else f"{base}-{n}"
            if tag not in taken and not git.branch_exists(self.repo.root, f"research/{tag}"):
                return tag
            n += 1

    def loop_alive(self, tag: str) -> bool:
        return LoopLock.held(self.run_dir(tag) / "loop.lock")

    # ------------------------------------------------------------------ starting
    def effective_settings(self, proposer: str | None = None, budget_s: float | None = None) -> ResearchSettings:
        settings = dataclasses.replace(self.config.research)
        if proposer:
            settings.proposer = proposer
        if budget_s is not None:
            settings.budget_s = float(budget_s)
        return settings

    def start(self, tag: str | None = None, trials: int | None = None, proposer: str | None = None,
              gpus: Any = None, budget_s: float | None = None) -> str:
        """Create the run *tag* (default: from the date), or ready an existing one to continue
        (:mod:`agentdeck.research.starting`: validated first, nothing left behind on error)."""
        return start_run(self, tag, trials, proposer, gpus, budget_s)

    # ------------------------------------------------------------------ running
    def run(self, tag: str, proposer: Any = None, executor: Any = None,
            on_event: Callable[[str, dict[str, Any]], None] | None = None,
            on_tick: Callable[[Any], None] | None = None) -> dict[str, Any]:
        """Run the loop of *tag* in this process until it is done, stopped or fails."""
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
                [sys.executable, "-m", "agentdeck", "--repo", str(self.repo.root), "research", "run",
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
        if run.state in ("done", "failed"):
            raise Refused(f"research run {tag!r} is {run.state}; continue it with "
                          f"`agentdeck research run --tag {tag} --trials K`")
        self.ledger.update_run(tag, control="run")
        pid = self.run_detached(tag)
        return {"tag": tag, "control": "run", "restarted": True, "pid": pid}

    def stop(self, tag: str | None = None, wait_s: float = 60.0) -> dict[str, Any]:
        """Stop the run: running jobs are cancelled and recorded, queued trials recorded as never run."""
        tag = self.resolve_tag(tag)
        run = self.ledger.run(tag)
        assert run is not None
        if run.state in ("done", "failed", "stopped") and not self.loop_alive(tag):
            return {"tag": tag, "state": run.state}  # nothing runs: nothing to stop
        self.ledger.set_control(tag, "stop")
        if self.loop_alive(tag):
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and self.loop_alive(tag):
                time.sleep(0.05)
            if self.loop_alive(tag):
                raise Refused(f"the loop of {tag!r} has not stopped after {wait_s:g}s; it will stop at its next check")
            after = self.ledger.run(tag)
            return {"tag": tag, "state": after.state if after is not None else "stopped"}
        # No loop: cancel what a dead loop left running, and record it.
        self._stop_orphans(tag)
        return {"tag": tag, "state": "stopped"}

    def _stop_orphans(self, tag: str) -> None:
        run = self.ledger.run(tag)
        assert run is not None
        settings = self.settings_from_run(run)
        executor = self.make_executor(settings)
        for t in self.ledger.trials(tag, states=("running",)):
            handle = executor.reattach(t.job) if t.job else None
            if handle is not None:
                try:
                    executor.cancel(handle)
                except Exception as exc:  # a vanished cluster must not block the stop
                    print(f"agentdeck: could not cancel trial {t.id}: {exc}", file=sys.stderr)
        if self.ledger.trials(tag, states=("running", "queued", "judging")):
            loop = ResearchLoop(self, tag, proposer=_NoProposer(), executor=executor)
            if loop.record_stopped():
                return
        self.ledger.update_run(tag, state="stopped", control="stop")

    def _require_active(self, tag: str, verb: str) -> None:
        run = self.ledger.run(tag)
        assert run is not None
        if run.state in ("done", "failed", "stopped"):
            raise Refused(f"research run {tag!r} is {run.state}; nothing to {verb}")

    # ------------------------------------------------------------------ reading
    def status(self, tag: str | None = None) -> dict[str, Any]:
        """The contract's ``research status --json`` object (plus ``state`` and counters)."""
        return status_json(self, tag)

    trial_json = staticmethod(trial_json)

    def state(self, tag: str) -> str:
        run = self.ledger.run(tag)
        assert run is not None
        state = run.state
        if state in ("starting", "running", "paused") and not self.loop_alive(tag):
            return "interrupted"
        return state

    def trial(self, trial_id: int | str, tag: str | None = None) -> Trial:
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
        path = Path(t.log_path) if t.log_path else None
        if path is None or not path.exists():
            raise Refused(f"trial {t.id} has no log: it never ran ({t.status}: {t.reason or 'queued'})")
        text = path.read_text(encoding="utf-8", errors="replace")
        evaluation = path.with_name(f"{t.id}.eval.log")  # the protected evaluation's output, if it ran
        if evaluation.exists():
            text += ("" if text.endswith("\n") or not text else "\n") + f"=== evaluation ({evaluation.name}) ===\n"
            text += evaluation.read_text(encoding="utf-8", errors="replace")
        return text

    def diff(self, trial_id: int | str, tag: str | None = None) -> str:
        t = self.trial(trial_id, tag)
        if not t.commit or t.commit == t.parent:
            return ""
        return gitops.diff(self.repo.root, t.parent, t.commit)

    # ------------------------------------------------------------------ promote
    def promote(self, trial_id: int | str | None = None, tag: str | None = None,
                accept_suspect: bool = False) -> dict[str, Any]:
        """Merge a trial (default: the run's best) into the run's base branch (see
        :func:`agentdeck.research.promote.promote` for when it is refused)."""
        return promote(self, trial_id, tag, accept_suspect)


class _NoProposer(Proposer):
    name = "none"

    def __init__(self) -> None:  # no context: it is never asked
        pass

    def propose(self, request: ProposalRequest) -> Proposal:  # pragma: no cover - never asked
        raise RuntimeError("no proposer")
