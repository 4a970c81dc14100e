"""The loop moves search proposals onto a newer best with ``SearchProposer.redo`` (the same point,
written into the new best's numbers) where a cherry-pick of their diff conflicts, and a winner
re-applied as the very files it ran is judged again as measured, without a second run."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import TRAIN, ScriptedProposer, make_lab, read_records, research_for
from support import git, retry_until

from agentdeck.research import space as sp

SPACE = '''sampler = "random"

[research.space]
X = { choices = [1.0, 3.0, 5.0, 7.0] }
Y = { choices = [1.0, 2.0] }
'''


def held_train(x: float) -> str:
    """The lab's train.py whose job waits for the gate file ``LAB_GATE`` when ``X`` is *x*
    (``_HOLD`` is not searched, so every trial's files keep it)."""
    return (TRAIN.replace('MODE = "ok"\n', f'MODE = "ok"\n_HOLD = {x!r}\n')
            .replace('if MODE == "gated":', 'if MODE == "gated" or X == _HOLD:'))


class ScriptedSearch(ScriptedProposer):
    """Search proposals in a fixed order: each item's point is written with the space's own
    formatting and carries the search's meta; ``redo`` is the real ``SearchProposer.redo``."""

    def __init__(self, points, search, together: bool = False):
        super().__init__([{"point": p} for p in points])
        self.search = search
        self.together = together  # the first proposal waits for the second: both made on the same best
        self.second = threading.Event()

    def propose(self, request):
        from agentdeck.research.proposers.base import Proposal, ProposalFailed

        with self.lock:
            self.requests.append(request)
            if not self.items:
                raise ProposalFailed("script exhausted")
            point = self.items.pop(0)["point"]
            first = len(self.requests) == 1
        if self.together:
            if first:
                self.second.wait(20)
            else:
                self.second.set()
        sources = {"train.py": request.read("train.py")}
        space = sp.build_space(sources, self.search.ctx.research.space)
        changed, changes = sp.apply_point(sources, space, point)
        for rel, text in changed.items():
            (request.workdir / rel).write_text(text)
        return Proposal(sp.describe(changes), {"proposer": "search", "params": dict(point), "changes": changes})

    def redo(self, request, trial):
        return self.search.redo(request, trial)


def lab(tmp_path, monkeypatch, hold: float, slots: str, workers: int):
    monkeypatch.setenv("LAB_GATE", str(tmp_path / "gate"))
    monkeypatch.setenv("LAB_RECORD", str(tmp_path / "jobs.jsonl"))
    repo = make_lab(tmp_path / "repo", gpus=slots, workers=workers, repeats=1, proposer="search", extra=SPACE,
                    train=held_train(hold))
    return repo, research_for(repo)


def proposals(research, tag):
    return [t for t in research.ledger.trials(tag) if t.kind == "proposal"]


def at(research, tag, x):
    found = [t for t in proposals(research, tag) if t.meta["params"]["X"] == x]
    assert len(found) == 1, [(t.id, t.description, t.status, t.reason) for t in proposals(research, tag)]
    return found[0]


def test_a_queued_search_proposal_is_redone_on_the_new_best(tmp_path, monkeypatch):
    # One slot: (5, 2) runs (held at the gate) while (7, 1) is made on the same base and queued; the
    # run is paused until (5, 2) is kept, so (7, 1) is moved before it runs. A cherry-pick of (7, 1)'s
    # diff onto it conflicts (both changed the X and Y lines), so without redo it was dropped. Redone,
    # its files on the new best are the very files it was proposed as (its own content hash, not a
    # duplicate): it runs once and wins.
    repo, research = lab(tmp_path, monkeypatch, hold=5.0, slots="[0]", workers=1)
    tag = research.start("q", trials=2)
    search = research.make_proposer("search", tag, research.settings_from_run(research.ledger.run(tag)))
    proposer = ScriptedSearch([{"X": 5.0, "Y": 2.0}, {"X": 7.0, "Y": 1.0}], search)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(research.run(tag, proposer=proposer)), daemon=True)
    thread.start()
    retry_until(lambda: len(proposals(research, tag)) == 2 and proposals(research, tag)[1].state == "queued",
                timeout=60)
    # Paused, (7, 1) stays queued while (5, 2) finishes and is kept: it is moved while it waits.
    research.ledger.set_control(tag, "pause")
    (tmp_path / "gate").touch()
    retry_until(lambda: at(research, tag, 5.0).status == "keep", timeout=60)
    retry_until(lambda: at(research, tag, 7.0).parent == at(research, tag, 5.0).commit
                or at(research, tag, 7.0).state == "final", timeout=60)
    assert at(research, tag, 7.0).state == "queued", at(research, tag, 7.0).reason
    research.resume(tag)
    thread.join(90)
    assert outcome.get("state") == "done"
    first, second = at(research, tag, 5.0), at(research, tag, 7.0)
    assert first.status == "keep" and first.metric == pytest.approx(5.0)
    assert second.status == "keep", second.reason
    assert second.metric == pytest.approx(2.0)
    assert second.parent == first.commit and second.meta["rebased_from"] != second.commit
    assert git(repo, "rev-parse", f"{second.commit}^") == first.commit
    assert git(repo, "rev-parse", "research/q") == second.commit
    assert second.description == "X 5.0 -> 7.0, Y 2.0 -> 1.0"  # described against the best it runs on
    assert "X = 7.0" in git(repo, "show", f"{second.commit}:lab/train.py")
    assert research.ledger.run(tag).duplicates == 0
    assert len(read_records(tmp_path / "jobs.jsonl")) == 3  # the baseline and each proposal, once
    research.close()


def test_a_winner_measured_on_an_older_best_is_judged_as_measured(tmp_path, monkeypatch):
    # Two slots: (5, 2) and (7, 1) are made on the base and run at once; (7, 1) is held until (5, 2)
    # was kept, so it beat its parent (the baseline) on an older best. Re-applied on the new best,
    # its point gives the very files it ran: no second run, it is judged again against the best it
    # was moved onto, and kept, as the research branch's next commit.
    repo, research = lab(tmp_path, monkeypatch, hold=7.0, slots="[0, 1]", workers=2)
    tag = research.start("m", trials=2)
    search = research.make_proposer("search", tag, research.settings_from_run(research.ledger.run(tag)))
    proposer = ScriptedSearch([{"X": 5.0, "Y": 2.0}, {"X": 7.0, "Y": 1.0}], search, together=True)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(research.run(tag, proposer=proposer)), daemon=True)
    thread.start()
    retry_until(lambda: any(t.status == "keep" for t in proposals(research, tag)), timeout=60)
    (tmp_path / "gate").touch()
    thread.join(90)
    assert outcome.get("state") == "done"
    assert len(proposals(research, tag)) == 2  # no re-applied copy
    first, second = at(research, tag, 5.0), at(research, tag, 7.0)
    assert first.status == "keep"
    assert second.status == "keep", second.reason
    assert second.metric == pytest.approx(2.0) and "beats the best 5" in second.reason
    assert second.parent == first.commit and second.meta["rebased_from"] != second.commit
    assert git(repo, "rev-parse", f"{second.commit}^") == first.commit
    assert git(repo, "rev-parse", "research/m") == second.commit
    assert git(repo, "rev-parse", f"refs/agentdeck/research/{tag}/{second.id}") == second.commit
    assert research.status(tag)["best"]["id"] == second.id
    assert len(read_records(tmp_path / "jobs.jsonl")) == 3  # judged as measured: never run twice
    research.close()


def test_a_winner_redone_onto_other_code_runs_again(tmp_path, monkeypatch):
    # As above, but the kept trial also changed code (a line no point touches): the point redone on
    # it makes new files, which run as a new trial; the cherry-pick would have conflicted.
    repo, research = lab(tmp_path, monkeypatch, hold=7.0, slots="[0, 1]", workers=2)
    tag = research.start("o", trials=2)
    search = research.make_proposer("search", tag, research.settings_from_run(research.ledger.run(tag)))

    class WithCode(ScriptedSearch):
        def propose(self, request):
            out = super().propose(request)
            if out.meta["params"]["X"] == 5.0:
                path = request.workdir / "train.py"
                path.write_text(path.read_text().replace("evaluate(X, Y) +", "evaluate(X, Y) - 0.5 +"))
            return out

    proposer = WithCode([{"X": 5.0, "Y": 2.0}, {"X": 7.0, "Y": 1.0}], search, together=True)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(research.run(tag, proposer=proposer)), daemon=True)
    thread.start()
    retry_until(lambda: any(t.status == "keep" for t in proposals(research, tag)), timeout=60)
    (tmp_path / "gate").touch()
    thread.join(90)
    assert outcome.get("state") == "done"
    rows = proposals(research, tag)
    first = at(research, tag, 5.0)
    held, again = [t for t in rows if t.meta["params"]["X"] == 7.0]
    assert first.status == "keep" and first.metric == pytest.approx(4.5)
    assert held.status == "discard" and f"re-applied on the new best as trial {again.id}" in held.reason
    assert again.meta["reapplied_from"] == held.id and again.parent == first.commit
    assert again.status == "keep" and again.metric == pytest.approx(1.5)
    text = git(repo, "show", f"{again.commit}:lab/train.py")
    assert "X = 7.0" in text and "Y = 1.0" in text and "- 0.5 +" in text
    assert len(read_records(tmp_path / "jobs.jsonl")) == 4
    research.close()
