"""The research loop with an executor that behaves like a cluster: jobs queue before they run, the
node is known only once they run, and a cancel can fail (the controller does not answer)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import ScriptedProposer, by_desc, make_lab, research_for

from agentdeck.research import loop_jobs as loop_mod
from agentdeck.research.executors.base import JobState
from agentdeck.research.executors.local import LocalExecutor


class ClusterLike(LocalExecutor):
    """Local jobs, reported like a cluster's: *pending_polls* polls "pending" first, then "running" on
    *node*; the first *cancel_failures* cancels raise."""

    def __init__(self, node: str = "", pending_polls: int = 0, cancel_failures: int = 0):
        super().__init__()
        self.node, self.pending_polls, self.cancel_failures = node, pending_polls, cancel_failures
        self.pending: dict[str, int] = {}
        self.cancels: list[str] = []
        self.checked: list[Path | None] = []

    def check(self, research_dir=None):
        self.checked.append(research_dir)

    def submit(self, spec):
        handle = super().submit(spec)
        handle.data.pop("running_at")  # queued: the loop times it from when it is seen running
        self.pending[handle.job_id] = self.pending_polls
        return handle

    def poll(self, handle):
        state = super().poll(handle)
        left = self.pending.get(handle.job_id, 0)
        if left > 0 and not state.finished:
            self.pending[handle.job_id] = left - 1
            return JobState("pending")
        if state.state == "running" and self.node:
            handle.data["node"] = self.node
        return state

    def cancel(self, handle):
        self.cancels.append(handle.job_id)
        if self.cancel_failures > 0:
            self.cancel_failures -= 1
            raise RuntimeError("controller did not answer")
        super().cancel(handle)


def test_the_ledger_keeps_the_node_once_the_job_runs_and_the_slot_as_its_gpu(tmp_path):
    repo = make_lab(tmp_path / "repo", repeats=1)
    research = research_for(repo)
    tag = research.start("node", trials=1)
    executor = ClusterLike(node="gpu-node-7", pending_polls=2)
    proposer = ScriptedProposer([{"set": {"X": "5.0", "_SLEEP": "1.0"}, "desc": "slow X"}])
    assert research.run(tag, proposer=proposer, executor=executor)["state"] == "done"
    trial = research.ledger.trial(tag, by_desc(research.status(tag), "slow X")["id"])
    assert trial.job["node"] == "gpu-node-7"
    assert trial.job["_slot"] == "0" and trial.job["pid"] > 0  # what a restart reattaches by
    assert trial.gpu == "0" and trial.status == "keep"
    research.close()


def test_a_failed_cancel_on_timeout_is_retried_and_the_loop_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(loop_mod, "CANCEL_RETRY_S", 0.2)
    repo = make_lab(tmp_path / "repo", repeats=1, timeout=5)  # room for a normal job on a loaded machine
    research = research_for(repo)
    tag = research.start("cancel", trials=2)
    executor = ClusterLike(cancel_failures=1)
    proposer = ScriptedProposer([{"set": {"MODE": '"hang"'}, "desc": "hang"}, {"set": {"X": "5.0"}, "desc": "X"}])
    assert research.run(tag, proposer=proposer, executor=executor)["state"] == "done"
    status = research.status(tag)
    hang = by_desc(status, "hang")
    assert (hang["status"], hang["reason"]) == ("crash", "timeout after 5s")
    assert len(executor.cancels) == 2  # refused once, then done
    assert by_desc(status, "X")["status"] == "keep"
    research.close()


def test_a_failed_cancel_at_stop_does_not_break_the_shutdown(tmp_path, monkeypatch):
    monkeypatch.setattr(loop_mod, "CANCEL_RETRY_S", 0.2)
    repo = make_lab(tmp_path / "repo", repeats=1, timeout=60)
    research = research_for(repo)
    tag = research.start("stop", trials=1)
    executor = ClusterLike(cancel_failures=1)
    proposer = ScriptedProposer([{"set": {"MODE": '"hang"'}, "desc": "hang"}])

    def on_event(kind, data):
        if kind == "start" and data["kind"] == "proposal":
            research.ledger.set_control(tag, "stop")

    assert research.run(tag, proposer=proposer, executor=executor, on_event=on_event)["state"] == "stopped"
    hang = by_desc(research.status(tag), "hang")
    assert (hang["status"], hang["reason"]) == ("discard", "stopped")
    assert len(executor.cancels) == 2
    assert research.ledger.run(tag).state == "stopped"
    research.close()


def test_start_and_continue_check_the_executor_with_the_research_dir(tmp_path, monkeypatch):
    from agentdeck.research import Research

    repo = make_lab(tmp_path / "repo", repeats=1)
    research = research_for(repo)
    made: list[ClusterLike] = []

    def make_executor(self, settings):
        made.append(ClusterLike())
        return made[-1]

    monkeypatch.setattr(Research, "make_executor", make_executor)
    tag = research.start("checked", trials=0)
    research.ledger.update_run(tag, state="stopped")
    assert research.start(tag, trials=1) == tag  # continued
    assert [e.checked for e in made] == [[research.research_dir], [research.research_dir]]
    research.close()
