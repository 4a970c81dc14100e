"""The ``search`` proposer (Optuna ask/tell over the lab's constants) and its space."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import ScriptedProposer, make_lab, research_for
from support import git, run_cli

from agentdeck.errors import UsageError
from agentdeck.research import space as sp
from agentdeck.research.proposers.search import observations

SOURCE = '''\
"""A lab."""
import math

DEPTH = 8  # blocks
WIDTH: int = 1_024
WARMUP = 100
STEPS = 0
LR = 3e-4  # peak learning rate
BETA2 = 0.95
CLIP = 1.0
DECAY = 0.0
OFFSET = -1
SEED = 1234
_SLEEP = 0.5
NAME = "x"


def f():
    return math.sqrt(LR)
'''


def by(space: sp.Space) -> dict[str, sp.Param]:
    return {p.name: p for p in space.params}


# ---------------------------------------------------------------------- the space


def test_space_is_derived_from_the_constants_values():
    space = sp.build_space({"train.py": SOURCE})
    params = by(space)
    assert list(params) == ["DEPTH", "WIDTH", "WARMUP", "STEPS", "LR", "BETA2", "CLIP", "DECAY"]
    assert (params["DEPTH"].kind, params["DEPTH"].low, params["DEPTH"].high) == ("pow2", 1, 512)
    assert (params["WIDTH"].kind, params["WIDTH"].low, params["WIDTH"].high) == ("pow2", 16, 65536)
    assert (params["WARMUP"].kind, params["WARMUP"].low, params["WARMUP"].high, params["WARMUP"].log) == (
        "int", 1, 10000, True)
    assert (params["STEPS"].low, params["STEPS"].high, params["STEPS"].log) == (0, 10, False)
    lr = params["LR"]
    assert (lr.kind, lr.log) == ("float", True) and lr.low == pytest.approx(3e-6) and lr.high == pytest.approx(0.03)
    beta = params["BETA2"]
    assert beta.kind == "gap" and beta.low == pytest.approx(0.5) and beta.high == pytest.approx(0.9995)
    assert (params["CLIP"].low, params["CLIP"].high) == (0.01, 100.0)
    assert (params["DECAY"].low, params["DECAY"].high, params["DECAY"].log) == (0.0, 1.0, False)
    # Negative values are sentinels; SEED and _private names are never searched.
    assert [s["name"] for s in space.skipped] == ["OFFSET"]
    assert "SEED" not in params and "_SLEEP" not in params
    assert params["LR"].line == 8 and params["LR"].text == "3e-4"


def test_space_params_round_trip_and_stay_in_their_kind():
    params = by(sp.build_space({"train.py": SOURCE}))
    depth, beta, lr = params["DEPTH"], params["BETA2"], params["LR"]
    assert depth.to_param(32) == 5 and depth.from_param(5) == 32
    assert depth.to_param(24) is None and depth.to_param(1024) is None  # not a power of two / outside
    assert beta.from_param(beta.to_param(0.999)) == pytest.approx(0.999)
    assert lr.to_param(0.0300001) == pytest.approx(0.03)  # a hair outside (three digits) is the bound
    assert lr.to_param(0.05) is None
    assert lr.format(6.1234e-4) == "6.12e-4" and depth.format(64) == "64"
    assert params["WIDTH"].format(4096) == "4_096"
    assert beta.format(0.99937) == "0.99937"


def test_space_overrides_from_the_config():
    space = sp.build_space({"train.py": SOURCE}, {
        "LR": {"low": 1e-4, "high": 1e-2},
        "WARMUP": {"low": 0, "high": 500, "step": 10},
        "DEPTH": {"choices": [4, 6, 8]},
        "WIDTH": {"low": 256, "high": 4096},
        "OFFSET": {"low": -1, "high": 5},
        "CLIP": {"high": 2.0},
    })
    params = by(space)
    assert (params["LR"].low, params["LR"].high, params["LR"].log, params["LR"].source) == (
        1e-4, 1e-2, True, "[research.space]")
    assert (params["WARMUP"].kind, params["WARMUP"].step, params["WARMUP"].log) == ("int", 10, False)
    assert (params["DEPTH"].kind, params["DEPTH"].choices) == ("choice", [4, 6, 8])
    assert params["WIDTH"].kind == "pow2"  # both bounds powers of two: stays one
    assert (params["OFFSET"].low, params["OFFSET"].high, params["OFFSET"].log) == (-1, 5, False)
    assert (params["CLIP"].low, params["CLIP"].high) == (0.01, 2.0)
    assert space.skipped == []
    for overrides, words in [
        ({"NOPE": {"low": 1, "high": 2}}, "research.space.NOPE: no top-level numeric constant NOPE"),
        ({"SEED": {"low": 1, "high": 2}}, "research.space.SEED: constants named"),
        ({"DEPTH": {"low": 1.5, "high": 8}}, "research.space.DEPTH.low: DEPTH is an integer"),
        ({"LR": {"low": 1e-2, "high": 1e-4}}, "research.space.LR.high: must exceed low"),
        ({"LR": {"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4}}, "research.space.LR.step"),
        ({"DECAY": {"low": 0.0, "high": 1.0, "log": True}}, "research.space.DECAY.log"),
        ({"DEPTH": {"choices": [4, 8], "low": 2}}, "research.space.DEPTH.choices: give choices or low/high"),
        ({"OFFSET": {"high": 4}}, "research.space.OFFSET: OFFSET = -1 is not searched by default"),
    ]:
        with pytest.raises(UsageError, match=words.replace(".", r"\.")) as info:
            sp.build_space({"train.py": SOURCE}, overrides)
        assert info.value.exit_code == 2


def test_points_are_written_into_the_numbers_own_characters():
    space = sp.build_space({"train.py": SOURCE})
    point = {p.name: p.value for p in space.params}
    point.update(LR=6.1e-4, WARMUP=40, WIDTH=2048, BETA2=0.99)
    changed, changes = sp.apply_point({"train.py": SOURCE}, space, point)
    text = changed["train.py"]
    assert sp.describe(changes) == "WIDTH 1_024 -> 2_048, WARMUP 100 -> 40, LR 3e-4 -> 6.1e-4, BETA2 0.95 -> 0.99"
    expected = (SOURCE.replace("1_024", "2_048").replace("WARMUP = 100", "WARMUP = 40")
                .replace("3e-4  # peak", "6.1e-4  # peak").replace("0.95", "0.99"))
    assert text == expected  # comments, annotations and everything else kept
    assert sp.point_of({"train.py": text}, space) == point
    # Only the searched numbers differ: the same skeleton; a code change or a missing constant is not.
    keys = space.keys()
    assert sp.skeleton({"train.py": text}, keys) == sp.skeleton({"train.py": SOURCE}, keys)
    assert sp.skeleton({"train.py": SOURCE + "\n\n"}, keys) == sp.skeleton({"train.py": SOURCE}, keys)
    assert sp.skeleton({"train.py": text.replace("math.sqrt", "math.log")}, keys) != sp.skeleton(
        {"train.py": SOURCE}, keys)
    assert sp.skeleton({"train.py": SOURCE.replace("OFFSET = -1", "OFFSET = -2")}, keys) != sp.skeleton(
        {"train.py": SOURCE}, keys)
    assert sp.skeleton({"train.py": SOURCE.replace("CLIP = 1.0", "CLIP = min(1.0, 2.0)")}, keys) is None


def test_observations_are_noise_aware_and_wait_for_suspects():
    def t(id_, kind="proposal", status="discard", metric=None, state="final", **kw):
        return {"id": id_, "kind": kind, "status": status, "metric": metric, "state": state,
                "commit": f"c{id_}", "meta": kw.pop("meta", {}), **kw}

    trials = [
        t(1, "baseline", "keep", 2.0, commit="base"), t(2, "baseline", "keep", 2.2, commit="base"),
        t(3, status="discard", metric=1.5),
        t(4, "confirm", "discard", 1.9, confirm_of=3),
        t(5, status="keep", metric=1.0, meta={"kept_value": 1.1}),
        t(6, status="crash"),
        t(7, status="suspect", metric=0.1, state="judging"),
        t(8, status="discard", reason="stopped before it ran"),
        t(9, status="running", state="running"),
        t(10, "baseline", "keep", 1.2, hardware="h100"),  # another hardware class: its own point
    ]
    trials[0]["commit"] = trials[1]["commit"] = trials[9]["commit"] = "base"
    got = {o.key: o for o in observations(trials)}
    assert got[("b", "base", "")].value == pytest.approx(2.1)  # the baseline's runs, averaged
    assert got[("b", "base", "h100")].value == pytest.approx(1.2) and got[("b", "base", "h100")].hardware == "h100"
    assert got[("t", 3)].value == pytest.approx(1.7)  # with its confirmation run
    assert got[("t", 5)].value == pytest.approx(1.1)  # a keep: the kept (confirmed) value
    assert got[("t", 6)].failed and got[("t", 6)].value is None  # a crash is a failure, not a score
    assert got[("t", 7)].pending and got[("t", 9)].pending  # suspect: not told until confirmed
    assert got[("t", 8)].skip  # never ran: never told
    assert ("t", 4) not in got  # confirmations are part of their trial


# ---------------------------------------------------------------------- through the harness

EXTRA = '''sampler = "{sampler}"

[research.space]
X = {{ choices = [1.0, 3.0, 5.0, 7.0] }}
Y = {{ choices = [1.0, 2.0] }}
'''


def _points(research, tag):
    """The points the search asked for (a winner the loop re-applies on a newer best is not an ask)."""
    return [tuple(t.meta["params"][k] for k in ("X", "Y")) for t in research.ledger.trials(tag)
            if t.kind == "proposal" and t.proposer == "search" and "reapplied_from" not in t.meta]


@pytest.mark.slow
def test_search_resumes_from_the_ledger_and_parallel_workers_never_repeat(tmp_path):
    repo = make_lab(tmp_path / "repo", gpus="[0, 1]", workers=3, repeats=1, proposer="search",
                    extra=EXTRA.format(sampler="tpe"))
    # One process: 4 proposals, two slots and three proposal workers asking at once.
    proc = run_cli("research", "run", "--tag", "s1", "--trials", "4", cwd=repo)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    research = research_for(repo)
    first = _points(research, "s1")
    assert len(first) == 4 and len(set(first)) == 4 and (3.0, 1.0) not in first
    before = research.ledger.trials("s1")
    # A restart (this process, a fresh proposer): the study is rebuilt from the ledger, every finished
    # trial told with its value, and the three points left of the eight are the ones proposed.
    from agentdeck.research.proposers.search import SearchProposer

    research.start("s1", trials=3)
    settings = research.settings_from_run(research.ledger.run("s1"))
    proposer = research.make_proposer("search", "s1", settings)
    assert isinstance(proposer, SearchProposer)
    assert research.run("s1", proposer=proposer)["state"] == "done"
    points = _points(research, "s1")
    everything = {(x, y) for x in (1.0, 3.0, 5.0, 7.0) for y in (1.0, 2.0)} - {(3.0, 1.0)}
    assert len(points) == 7 and set(points) == everything
    (study,) = proposer._studies.values()
    told = {(t.params["X"], t.params["Y"]): t.value for t in study.study.trials if t.state.name == "COMPLETE"}
    for t in before:  # every trial of the first process that has a value
        if t.kind == "proposal" and t.status in ("keep", "discard") and t.metric is not None:
            found = sp.constants_by_key({"train.py": git(repo, "show", f"{t.commit}:lab/train.py")})
            assert told[(found[("train.py", "X")].value, found[("train.py", "Y")].value)] == pytest.approx(
                t.meta.get("kept_value", t.metric))
    assert told[(3.0, 1.0)] == pytest.approx(18.0)  # the baseline, told too
    # No ask duplicated an earlier trial: the only duplicates are changes the loop moved onto a newer best.
    status = research.status("s1")
    assert status["duplicates"] == sum("duplicate" in t["reason"] for t in status["trials"])
    research.close()


def test_concurrent_asks_in_one_process_get_different_points(tmp_path):
    """Workers asking before any of their proposals reaches the ledger still get distinct points."""
    repo = make_lab(tmp_path / "repo", repeats=1, proposer="search", extra=EXTRA.format(sampler="random"))
    research = research_for(repo)
    tag = research.start("c1", trials=3)
    settings = research.settings_from_run(research.ledger.run(tag))
    proposer = research.make_proposer("search", tag, settings)
    from agentdeck.research import gitops
    from agentdeck.research.proposers.base import ProposalFailed, ProposalRequest

    head = git(repo, "rev-parse", "HEAD")
    requests = []
    for worker in range(8):
        wt = tmp_path / f"wt{worker}"
        gitops.add_worktree(repo, wt, head)
        requests.append(ProposalRequest(
            tag=tag, worktree=wt, workdir=wt / "lab", editable=["train.py"], program="", metric="score",
            direction="min", best={"id": None, "metric": None, "commit": head},
            baseline={"metric": None, "runs": 0, "noise": None}, history=[], seed=worker, worker=worker))
    results: dict[int, object] = {}
    barrier = threading.Barrier(7)

    def work(i):
        barrier.wait()
        try:
            results[i] = proposer.propose(requests[i])
        except ProposalFailed as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(7)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    proposals = [r for r in results.values() if not isinstance(r, Exception)]
    points = [tuple(p.meta["params"][k] for k in ("X", "Y")) for p in proposals]
    # Eight points, the current one excluded: seven workers get the seven others, each one once.
    assert len(points) == 7 and len(set(points)) == 7 and (3.0, 1.0) not in points
    for p in proposals:
        assert p.description and "\n" not in p.description and p.meta["search"]["number"] >= 0
    with pytest.raises(ProposalFailed, match="exhausted"):
        proposer.propose(requests[7])
    research.close()


class CodeChange:
    """A proposer that changes code, not constants (as an LLM or an agent would): the score drops by 10."""

    name = "code"
    uses_notes = False

    def check(self) -> None: ...

    def close(self) -> None: ...

    def propose(self, request):
        from agentdeck.research.proposers.base import Proposal

        path = request.workdir / "train.py"
        path.write_text(path.read_text().replace("evaluate(X, Y) +", "evaluate(X, Y) - 10.0 +"))
        return Proposal("code", {})


@pytest.mark.slow
def test_a_code_change_starts_a_new_study_seeded_with_what_still_applies(tmp_path):
    repo = make_lab(tmp_path / "repo", repeats=1, proposer="search", extra=EXTRA.format(sampler="random"))
    research = research_for(repo)
    tag = research.start("n1", trials=1)
    # One proposal per run, so each is made on the best before it: (5, 2) scores 5, (7, 1) 2, then the
    # code change on (7, 1) scores -8.
    for proposer in (ScriptedProposer([{"set": {"X": "5.0", "Y": "2.0"}}]),
                     ScriptedProposer([{"set": {"X": "7.0", "Y": "1.0"}}]), CodeChange()):
        assert research.run(tag, proposer=proposer)["state"] == "done"
        research.start(tag, trials=1)
    assert [t.status for t in research.ledger.trials(tag)] == ["keep"] * 4
    settings = research.settings_from_run(research.ledger.run(tag))
    proposer = research.make_proposer("search", tag, settings)
    assert research.run(tag, proposer=proposer)["state"] == "done"
    last = research.ledger.trials(tag)[-1]
    assert last.proposer == "search" and last.status in ("keep", "discard")
    (study,) = proposer._studies.values()
    # The new study was told only the trial with the new code (the origin, (7, 1) at -8) ...
    complete = [(t.params["X"], t.params["Y"], t.value) for t in study.study.trials if t.state.name == "COMPLETE"]
    assert complete[0] == (7.0, 1.0, pytest.approx(-8.0)) and len(complete) == 1
    # ... and asked first for the best point of the old code that is not the current one: (5, 2).
    assert tuple(last.meta["params"][k] for k in ("X", "Y")) == (5.0, 2.0)
    assert last.description == "X 7.0 -> 5.0, Y 1.0 -> 2.0" and last.metric == pytest.approx(-5.0)
    research.close()


# ---------------------------------------------------------------------- the CLI


def test_research_space_cli_and_unknown_names(tmp_path):
    repo = make_lab(tmp_path / "repo", proposer="search", extra='[research.space]\nX = { low = 1.0, high = 9.0 }\n')
    proc = run_cli("research", "space", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    got = {p["name"]: p for p in data["params"]}
    assert set(got) == {"X", "Y"} and data["files"] == ["train.py"] and data["sampler"] == "tpe"
    assert (got["X"]["low"], got["X"]["high"], got["X"]["log"], got["X"]["source"]) == (1.0, 9.0, False,
                                                                                         "[research.space]")
    assert got["Y"]["source"] == "derived" and got["Y"]["range"] == "[0.01, 100] log"
    text = run_cli("research", "space", cwd=repo)
    assert text.returncode == 0 and "X" in text.stdout and "[research.space]" in text.stdout
    # A name that is no constant of the editable files: exit 2 naming the key, nothing created.
    config = (repo / ".agentdeck.toml").read_text().replace("X = {", "NOPE = {")
    (repo / ".agentdeck.toml").write_text(config)
    for args in (("research", "space"), ("research", "run", "--tag", "bad", "--trials", "1")):
        proc = run_cli(*args, cwd=repo)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "research.space.NOPE" in proc.stderr and proc.stderr.count("\n") == 1
    assert "research/bad" not in git(repo, "branch", "--list")


def test_search_refuses_an_unknown_sampler_and_names_the_install(tmp_path, monkeypatch):
    from agentdeck.research.proposers import search

    with pytest.raises(UsageError, match="sampler 'nope'"):
        search.require_optuna("nope")
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    with pytest.raises(UsageError, match=r"pip install optuna cmaes"):
        search.require_optuna("tpe")
    monkeypatch.setitem(sys.modules, "cmaes", None)
    monkeypatch.delitem(sys.modules, "optuna")
    with pytest.raises(UsageError, match="pip install cmaes"):
        search.require_optuna("cmaes")


def test_status_and_the_deck_read_importances_without_optuna(tmp_path):
    repo = make_lab(tmp_path / "repo", repeats=1, proposer="search")
    research = research_for(repo)
    tag = research.start("i1", trials=0)
    from agentdeck.research.proposers.search import save_importances

    assert research.status(tag)["importances"] is None
    save_importances(research.ledger, tag, {"trials": 9, "params": {"X": 0.8, "Y": 0.2}})
    assert research.status(tag)["importances"]["params"] == {"X": 0.8, "Y": 0.2}
    code = ("import sys, json; from agentdeck.research import Research; r = Research.open(sys.argv[1]); "
            "s = r.status('i1'); from agentdeck.tui.widgets.research_pane import importance_text; "
            "print(json.dumps([s['importances']['trials'], 'optuna' in sys.modules, "
            "importance_text(s['importances']).plain]))")
    import subprocess

    from support import ROOT

    out = subprocess.run([sys.executable, "-c", code, str(repo)], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    trials, imported, shown = json.loads(out.stdout)
    assert trials == 9 and imported is False and "X 0.80 · Y 0.20" in shown
    research.close()


def test_redo_writes_the_same_point_onto_a_newer_best(tmp_path):
    """Where a cherry-pick of a search proposal onto a newer best would conflict, its point still applies."""
    repo = make_lab(tmp_path / "repo", proposer="search")
    research = research_for(repo)
    tag = research.start("r1", trials=1)
    proposer = research.make_proposer("search", tag, research.settings_from_run(research.ledger.run(tag)))
    from agentdeck.research import gitops
    from agentdeck.research.proposers.base import ProposalFailed, ProposalRequest

    def request(commit, name):
        wt = tmp_path / name
        gitops.add_worktree(repo, wt, commit)
        return ProposalRequest(tag=tag, worktree=wt, workdir=wt / "lab", editable=["train.py"], program="",
                               metric="score", direction="min", best={"id": None, "metric": None, "commit": commit},
                               baseline={"metric": None, "runs": 0, "noise": None}, history=[])

    first = request(git(repo, "rev-parse", "HEAD"), "a")
    proposal = proposer.propose(first)
    proposed = (first.workdir / "train.py").read_text()
    # A newer best with other values (as a keep would leave it).
    newer = request(git(repo, "rev-parse", "HEAD"), "b")
    path = newer.workdir / "train.py"
    path.write_text(path.read_text().replace("X = 3.0", "X = 6.5").replace("Y = 1.0", "Y = 1.75"))
    best = gitops.commit_all(newer.worktree, "newer best")
    again = request(best, "c")
    redone = proposer.redo(again, {"meta": proposal.meta})
    assert (again.workdir / "train.py").read_text() == proposed  # the same point, the same file
    assert redone.description.startswith("X 6.5 -> ") and redone.meta["params"] == proposal.meta["params"]
    assert proposer.redo(request(best, "d"), {"meta": {"proposer": "mutate"}}) is None
    with pytest.raises(ProposalFailed, match="already has"):
        proposer.redo(request(git(repo, "rev-parse", "HEAD"), "e"),
                      {"meta": {"proposer": "search", "params": {"X": 3.0, "Y": 1.0}}})
    research.close()


def test_one_study_per_hardware_class(tmp_path):
    """Only trials of the run's primary class (its first baseline's, or [research] hardware) are told."""
    repo = make_lab(tmp_path / "repo", proposer="search")
    research = research_for(repo)
    tag = research.start("h1", trials=1)
    head = git(repo, "rev-parse", "HEAD")
    for hardware, value in (("cpu", 18.0), ("h100", 5.0)):
        research.ledger.insert_trial(tag, kind="baseline", state="final", status="keep", metric=value,
                                     commit=head, parent=head, hardware=hardware)
    from agentdeck.research import gitops
    from agentdeck.research.proposers.base import ProposalRequest

    def told(settings):
        proposer = research.make_proposer("search", tag, settings)
        wt = tmp_path / f"wt-{settings.hardware or 'first'}"
        gitops.add_worktree(repo, wt, head)
        proposer.propose(ProposalRequest(
            tag=tag, worktree=wt, workdir=wt / "lab", editable=["train.py"], program="", metric="score",
            direction="min", best={"id": 1, "metric": 18.0, "commit": head},
            baseline={"metric": 18.0, "runs": 1, "noise": 0.0}, history=[]))
        (study,) = proposer._studies.values()
        return study.key.split("@")[1], [t.value for t in study.study.trials if t.state.name == "COMPLETE"]

    settings = research.settings_from_run(research.ledger.run(tag))
    assert told(settings) == ("cpu", [18.0])
    settings.hardware = "h100"
    assert told(settings) == ("h100", [5.0])
    research.close()
