"""research/policy.py rule by rule (pure functions), and the small real pieces the loop feeds it
from: the ledger's decision chain (real SQLite), results.tsv's rewrite, the file facts
(real files, a real git repository) and the hardware classes."""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import git, make_repo

from agentdeck.research import gitops, hardware, policy
from agentdeck.research.ledger import Ledger
from agentdeck.research.model import Gate, JobOutcome, Judgement, PathFacts, Rerun, Run, Trial, Verdict
from agentdeck.research.results_tsv import ResultsTsv

FILE = PathFacts("file", 1, 1, 10)


# ====================================================================== 1. before the job


def test_only_regular_files_in_the_commit():
    assert policy.tree_problems({"train.py": "100644", "run.sh": "100755"}) == []
    problems = policy.tree_problems({"train.py": "120000", "model.py": "160000"})
    assert problems == [
        "model.py is a submodule in the commit (mode 160000); editable files must be regular files",
        "train.py is a symbolic link in the commit (mode 120000); editable files must be regular files",
    ]


def test_only_plain_unlinked_files_on_disk():
    protected = {"prepare.py": PathFacts("file", 1, 1, 99)}
    assert policy.disk_problems({"train.py": FILE}, protected) == []
    assert policy.disk_problems({"train.py": PathFacts("symlink")}, protected) == [
        "train.py is a symbolic link on disk"]
    # The same inode as the protected file (a hard link made by the proposer) is named as such.
    same_inode = {"prepare.py": PathFacts("file", 2, 1, 99)}
    assert policy.disk_problems({"train.py": PathFacts("file", 2, 1, 99)}, same_inode) == [
        "train.py is a hard link to the protected prepare.py", "protected prepare.py has 2 hard links (one expected)"]
    assert policy.disk_problems({"train.py": PathFacts("file", 2, 1, 10)}, protected) == [
        "train.py has 2 hard links (one expected)"]
    assert policy.disk_problems({"train.py": PathFacts("missing", 0)}, {"prepare.py": PathFacts("symlink")}) == [
        "train.py is missing on disk", "protected prepare.py is a symbolic link on disk"]


def test_a_change_made_again_as_its_own_files_is_no_duplicate():
    known = {"a", "b"}
    assert policy.is_duplicate("a", known)  # another trial's files: never run twice
    assert not policy.is_duplicate("c", known)
    assert not policy.is_duplicate("a", known, own="a")  # moved onto a newer best, its own files again
    assert policy.is_duplicate("b", known, own="a")


def test_a_moved_winner_is_judged_as_measured_rerun_or_a_duplicate():
    known = {"mine", "other"}
    assert policy.moved_change("mine", "mine", known) == "as_measured"  # its own files: no second run
    assert policy.moved_change("other", "mine", known) == "duplicate"
    assert policy.moved_change("new", "mine", known) == "rerun"


def test_only_editable_files_may_change():
    assert policy.change_problems(["train.py"], ["train.py"], ["prepare.py"]) == []
    assert policy.change_problems(["prepare.py", "x.py"], ["train.py"], ["prepare.py"]) == [
        "protected file changed: prepare.py"]  # protected first
    assert policy.change_problems(["x.py", "train.py"], ["train.py"], ["prepare.py"]) == [
        "file outside editable changed: x.py"]


def test_dispatch_order():
    queued = [("proposal", "old", 2), ("proposal", "best", 5), ("confirm", "best", 7), ("baseline", "base", 9),
              ("proposal", "best", 3)]
    order = sorted(queued, key=lambda t: policy.dispatch_key(t[0], t[1], "best", t[2]))
    assert [t[2] for t in order] == [9, 7, 3, 5, 2]


def test_git_dir_changes_and_reach():
    before = {".git": "a", "config": "c", "hooks/pre-commit.sample": "s"}
    after = {".git": "a", "config": "C", "hooks/pre-commit.sample": "s", "hooks/post-checkout": "x"}
    changes = policy.git_dir_changes(before, after)
    assert changes == ["config (modified)", "hooks/post-checkout (added)"]
    assert policy.git_dir_changes(after, before)[1] == "hooks/post-checkout (removed)"
    assert policy.reach_problems(["train.py is a symbolic link on disk"], changes) == (
        "train.py is a symbolic link on disk", "changed under .git: config (modified), hooks/post-checkout (added)")
    assert policy.reach_problems([], []) == ()


# ====================================================================== 2. the job's verdict


@pytest.mark.parametrize("outcome, verdict", [
    (JobOutcome(cancel_reason="stopped", exit_code=None), Verdict("discard", "stopped")),
    (JobOutcome(cancel_reason="timeout after 2s", exit_code=-9), Verdict("crash", "timeout after 2s")),
    (JobOutcome(lost=True, exit_code=None), Verdict("crash", "lost")),
    (JobOutcome(reach=("train.py is a symbolic link on disk",), metric_values=(1.0,)),
     Verdict("crash", "train.py is a symbolic link on disk")),
    (JobOutcome(protected_changed=("prepare.py",), metric_values=(1.0,)),
     Verdict("crash", "protected file changed: prepare.py")),
    (JobOutcome(exit_code=3, metric_values=(1.0,)), Verdict("crash", "exit code 3")),
    (JobOutcome(), Verdict("crash", "no metric")),
    (JobOutcome(metric_values=(float("nan"),)), Verdict("crash", "metric is nan")),
    (JobOutcome(metric_values=(2.5, 0.0001)),
     Verdict("crash", "metric printed 2 times with different values (2.5, 0.0001); a job prints its result once")),
    (JobOutcome(metric_values=(2.5, 2.5)), None),  # the same line twice is one result
    (JobOutcome(metric_values=(2.5,)), None),
])
def test_job_verdict_in_order(outcome, verdict):
    assert policy.job_verdict(outcome) == verdict


def test_reach_outranks_the_protected_checksum():
    # A hard-linked train.py that the job wrote changes prepare.py too: the link is the reason named.
    outcome = JobOutcome(reach=("train.py is a hard link to the protected prepare.py",),
                         protected_changed=("prepare.py",), metric_values=(1.0,))
    assert policy.job_verdict(outcome).reason == "train.py is a hard link to the protected prepare.py"
    assert policy.metric_values("score: 1.5\nscore:2\nscored: 3\n", "score") == (1.5, 2.0)


# ====================================================================== 3. judging


def judgement(first: float, **kw) -> Judgement:
    base: dict[str, Any] = {"trial_id": 7, "first": first, "best": 10.0, "reference": 10.0, "stale": False,
                            "noise": 0.1, "direction": "min", "baseline": 10.0}
    base.update(kw)
    return Judgement(**base)


def test_the_automatic_gate():
    # Before any keep: more than 10 % of the baseline's value.
    assert policy.suspicion(9.05, 10.0, "min", 10.0, None, Gate()) == ""
    assert policy.suspicion(8.9, 10.0, "min", 10.0, None, Gate()) == \
        "improves on the best by 1.1, more than 10% of the baseline 10"
    # After keeps: more than 3x the largest improvement kept so far.
    assert policy.suspicion(8.9, 10.0, "min", 10.0, 0.5, Gate()) == ""
    assert "3x the largest improvement kept so far (0.3)" in policy.suspicion(9.0, 10.0, "min", 10.0, 0.3, Gate())
    # max direction: higher is better.
    assert policy.suspicion(0.95, 0.8, "max", 0.8, None, Gate()) != ""
    assert policy.suspicion(0.85, 0.8, "max", 0.8, None, Gate()) == ""


def test_declared_max_jump_and_metric_floor():
    assert policy.suspicion(9.0, 10.0, "min", 10.0, None, Gate(max_jump=2.0)) == ""
    assert policy.suspicion(7.5, 10.0, "min", 10.0, None, Gate(max_jump=2.0)) == \
        "improves on the best by 2.5, more than max_jump 2"
    assert policy.suspicion(9.9, 10.0, "min", 10.0, None, Gate(metric_floor=9.95)) == \
        "9.9 passes the declared metric_floor 9.95"
    assert policy.suspicion(0.99, 0.98, "max", 0.9, None, Gate(metric_floor=0.985)) != ""


def test_agreement_is_within_the_noise():
    assert policy.agree([1.0, 1.1, 1.2], 0.1)
    assert not policy.agree([1.0, 1.1, 1.25], 0.1)
    assert not policy.agree([0.0001, 2.0, 2.0], 0.05)
    assert policy.agree([3.0, 3.0, 3.0], 0.0)


def test_decide_keep_discard_confirm_reapply():
    d = policy.decide(judgement(9.8))
    assert (d.action, d.value) == ("keep", 9.8) and d.gain == pytest.approx(0.2)
    assert d.reason == "9.8 beats the best 10 by 0.2 (noise 0.1)"
    d = policy.decide(judgement(9.95))
    assert d.action == "discard" and d.reason == "9.95 is not better than the best 10 by more than the noise 0.1"
    assert policy.decide(judgement(9.8, confirm=True)).action == "confirm"
    d = policy.decide(judgement(9.8, confirm=True, reruns=(Rerun(8, "running", "running", "", None),)))
    assert d.action == "wait"
    d = policy.decide(judgement(9.5, confirm=True, reruns=(Rerun(8, "judging", "running", "", 10.5),)))
    assert d.action == "discard" and d.reason.startswith("not confirmed: 10 (mean of 2 runs)")
    assert (d.rerun_status, d.rerun_reason) == ("discard", "did not confirm trial 7")
    d = policy.decide(judgement(9.5, confirm=True, reruns=(Rerun(8, "final", "crash", "exit code 1", None),)))
    assert d.reason == "its confirmation run (trial 8) crashed: exit code 1"
    # Measured on an older best: beats what its parent scored -> re-applied on the new best.
    d = policy.decide(judgement(9.8, best=9.0, reference=10.0, stale=True))
    assert d.action == "reapply"
    d = policy.decide(judgement(9.95, best=9.0, reference=10.0, stale=True))
    assert d.action == "discard" and "than its parent 10" in d.reason


def test_a_suspect_is_rerun_twice_and_kept_only_when_the_runs_agree():
    first = policy.decide(judgement(0.0001))
    assert first.action == "suspect" and first.reruns == policy.SUSPECT_RERUNS == 2
    why = first.reason
    assert "more than 10% of the baseline" in why
    # The gate comes before confirm: a suspect is never kept on one run, whatever confirm says.
    assert policy.decide(judgement(0.0001, confirm=True)).action == "suspect"
    # Re-runs that measure something else: discarded.
    d = policy.decide(judgement(0.0001, suspect=why, reruns=(Rerun(8, "judging", "running", "", 9.9),
                                                             Rerun(9, "judging", "running", "", 9.95))))
    assert d.action == "discard" and "runs disagree by more than the noise 0.1: 0.0001, 9.9, 9.95" in d.reason
    # Re-runs that agree: kept, the reason saying it stays suspect.
    d = policy.decide(judgement(5.0, suspect=why, reruns=(Rerun(8, "judging", "running", "", 5.05),
                                                          Rerun(9, "judging", "running", "", 4.95))))
    assert d.action == "keep" and d.value == pytest.approx(5.0) and "promote needs --accept-suspect" in d.reason
    # One re-run still going: wait; one crashed: discarded.
    assert policy.decide(judgement(5.0, suspect=why, reruns=(Rerun(8, "queued", "queued", "", None),))).action == "wait"
    d = policy.decide(judgement(5.0, suspect=why, reruns=(Rerun(8, "final", "crash", "no metric", None),
                                                          Rerun(9, "judging", "running", "", 5.0))))
    assert d.action == "discard" and d.reason == "its re-run (trial 8) crashed: no metric"


def test_crash_streak_pauses_at_max_crashes():
    streak = 0
    for _ in range(4):
        streak = policy.crash_streak(streak, "crash", "exit code 1")
    assert streak == 4 and not policy.crash_pause(streak, 5)
    assert policy.crash_streak(streak, "discard", "stopped before it ran") == 4  # a stop is no outcome
    streak = policy.crash_streak(streak, "crash", "no metric")
    assert policy.crash_pause(streak, 5)
    assert policy.crash_streak(streak, "discard", "9 is not better ...") == 0
    assert policy.crash_pause(1, 1) and not policy.crash_pause(0, 1)


# ====================================================================== the record (real SQLite)


def _ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.create_run("t", branch="research/t", base_branch="main", base_commit="abc", settings={"x": 1},
                      protected={"prepare.py": "blob"})
    for n in range(3):
        tid = ledger.insert_trial("t", kind="proposal", state="judging", status="running", metric=float(n))
        ledger.record_decision("t", tid, {"state": "final", "status": "discard", "reason": "r"})
    return ledger


def test_the_chain_detects_rows_changed_behind_its_back(tmp_path):
    ledger = _ledger(tmp_path)
    head = ledger.chain_head("t")
    assert head[0] == 3 and ledger.chain_problem("t", head) == ""
    # A keep row of the harness's own: fine.
    ledger.record_decision("t", 3, {"status": "keep"}, run_fields={"best_trial": 3, "best_metric": 2.0})
    head = ledger.chain_head("t")
    assert ledger.chain_problem("t", head) == ""
    raw = sqlite3.connect(tmp_path / "ledger.db")
    raw.execute("UPDATE runs SET baseline_metric = 0.00001 WHERE tag = 't'")
    raw.commit()
    assert ledger.chain_problem("t", head) == "the run's baseline, best or settings changed"
    raw.execute("UPDATE runs SET baseline_metric = NULL WHERE tag = 't'")
    raw.execute("UPDATE trials SET metric = 0.0001 WHERE id = 2")
    raw.commit()
    assert ledger.chain_problem("t", head) == "trial 2's row differs from the harness's decision"
    raw.execute("UPDATE trials SET metric = 1.0 WHERE id = 2")
    raw.execute("INSERT INTO trials (tag, id, kind, state, status, created_at) VALUES ('t', 9, 'proposal', "
                "'final', 'keep', 0)")
    raw.commit()
    assert ledger.chain_problem("t", head) == \
        "trial 9 is recorded as decided (keep) but the harness never decided it"
    raw.execute("DELETE FROM trials WHERE id = 9")
    raw.commit()
    assert ledger.chain_problem("t", head) == ""
    # A forger who rewrites the chain too is caught by the head the loop keeps in memory.
    raw.execute("DELETE FROM chain WHERE seq = 4")
    raw.commit()
    assert ledger.chain_problem("t", head).startswith("the decision record was rewritten")
    raw.close()
    ledger.close()


def test_a_run_recorded_before_the_chain_is_adopted_in_one_step(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.create_run("old", branch="research/old", base_branch="main", base_commit="abc")
    for n in range(3):
        tid = ledger.insert_trial("old", kind="proposal", state="queued", status="queued")
        ledger.update_trial("old", tid, state="final" if n < 2 else "queued", status="discard")
    assert ledger.chain_problem("old") == ""  # nothing to check yet
    head = ledger.start_chain("old")
    assert head[0] == 3 and ledger.chain_problem("old", head) == ""  # two decided trials and the run
    assert ledger.start_chain("old") == head
    ledger.close()

def test_the_ledger_reads_and_writes_typed_records(tmp_path):
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.create_run("r", branch="research/r", base_branch="main", base_commit="abc", settings={"slots": ["0"]})
    tid = ledger.insert_trial("r", kind="proposal", commit="c" * 40, parent="abc", meta={"params": {"X": 1.0}},
                              metric=float("nan"))
    ledger.update_trial("r", tid, state="judging", metric=2.5, seconds=float("inf"))
    trial = ledger.trial("r", tid)
    assert isinstance(trial, Trial) and ledger.trials("r") == [trial]
    assert (trial.commit, trial.parent, trial.meta, trial.metric, trial.seconds) == ("c" * 40, "abc",
                                                                                    {"params": {"X": 1.0}}, 2.5, None)
    # The plain form the boundaries get: the ledger's columns, `commit` (not `commit_sha`) last.
    shown = trial.to_json()
    assert list(shown)[:3] == ["tag", "id", "kind"] and list(shown)[-1] == "commit" and "commit_sha" not in shown
    raw = sqlite3.connect(tmp_path / "ledger.db")
    assert raw.execute("SELECT commit_sha, meta FROM trials").fetchone() == ("c" * 40, '{"params": {"X": 1.0}}')
    raw.close()
    run = ledger.run("r")
    assert isinstance(run, Run) and run.settings == {"slots": ["0"]} and run.best_trial is None
    # A name that is no field of the record is refused before anything is written.
    with pytest.raises(ValueError, match="commit_sha"):
        ledger.update_trial("r", tid, commit_sha="d" * 40)
    with pytest.raises(ValueError, match="bogus"):
        ledger.update_run("r", bogus=1)
    assert ledger.trial("r", tid) == trial
    ledger.close()



def test_results_tsv_is_rewritten_after_a_foreign_write(tmp_path):
    tsv = ResultsTsv(tmp_path / "results.tsv", "score")
    trials = [Trial(tag="t", id=1, kind="baseline", commit="a" * 40, metric=2.0, status="keep",
                    description="baseline")]
    assert tsv.append(trials[0], ledger_rows=lambda: trials) is False
    with open(tsv.path, "a") as fh:
        fh.write("fake\t0.000001\t0.0\tkeep\tcheat\t99\tproposal\t0\t1.0\n")
    trials.append(Trial(tag="t", id=2, kind="proposal", commit="b" * 40, metric=3.0, status="discard",
                        description="two"))
    assert tsv.append(trials[1], ledger_rows=lambda: trials) is True
    text = tsv.path.read_text()
    assert "cheat" not in text and [r["trial"] for r in tsv.rows()] == ["1", "2"]
    assert tsv.intact()


# ====================================================================== the facts (real files, real git)


def test_disk_facts_and_git_fingerprint(tmp_path):
    repo = make_repo(tmp_path / "repo", {"lab/train.py": "x = 1\n", "lab/prepare.py": "y = 2\n"})
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "--detach", "-q", str(wt), "HEAD")
    os.link(wt / "lab/prepare.py", tmp_path / "outside")
    (wt / "lab/train.py").unlink()
    (wt / "lab/train.py").symlink_to("/tmp/x")
    facts = gitops.disk_facts(wt, ["lab/train.py", "lab/prepare.py", "lab/nope.py"])
    assert facts["lab/train.py"].kind == "symlink" and facts["lab/nope.py"].kind == "missing"
    assert facts["lab/prepare.py"].kind == "file" and facts["lab/prepare.py"].nlink == 2
    dirs = gitops.git_dirs(wt)
    assert dirs[1] == (repo / ".git").resolve()
    before = gitops.git_dir_fingerprint(wt, dirs)
    hook = repo / ".git/hooks/post-checkout"
    hook.write_text("#!/bin/sh\necho owned\n")
    git(repo, "config", "branch.main.description", "a branch entry is not a change")
    assert policy.git_dir_changes(before, gitops.git_dir_fingerprint(wt, dirs)) == ["hooks/post-checkout (added)"]
    git(repo, "config", "core.fsmonitor", "/tmp/evil")
    (wt / ".git").write_text("gitdir: /elsewhere\n")
    changes = policy.git_dir_changes(before, gitops.git_dir_fingerprint(wt, dirs))
    assert ".git (modified)" in changes and "config (modified)" in changes
    modes = gitops.tree_modes(repo, "HEAD", "lab")
    assert modes == {"lab/prepare.py": "100644", "lab/train.py": "100644"}


def test_hardware_classes(tmp_path, monkeypatch):
    # An nvidia-smi that answers as a machine with two different GPUs would.
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\nprintf '0, NVIDIA A100-SXM4-40GB\\n1, NVIDIA H100 80GB HBM3\\n'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(hardware.ENV_SLOT_CLASSES, raising=False)
    assert hardware.gpu_models() == {"0": "NVIDIA A100-SXM4-40GB", "1": "NVIDIA H100 80GB HBM3"}
    assert hardware.slot_classes(["cpu"], True) == ({"cpu": "cpu"}, "cpu")
    assert hardware.slot_classes(["0", "1", "7"], True) == (
        {"0": "nvidia-a100-sxm4-40gb", "1": "nvidia-h100-80gb-hbm3", "7": "gpu"}, "nvidia-a100-sxm4-40gb")
    assert hardware.slot_classes(["0"], False, executor="slurm") == ({"0": "slurm"}, "slurm")
    monkeypatch.setenv(hardware.ENV_SLOT_CLASSES, "0=NVIDIA A100,1=H100 80GB")
    assert hardware.slot_classes(["0", "1"], True) == ({"0": "nvidia-a100", "1": "h100-80gb"}, "nvidia-a100")
    # [research] hardware names the primary class, or renames the first lane's class.
    assert hardware.slot_classes(["0", "1"], True, hardware="H100 80GB")[1] == "h100-80gb"
    assert hardware.slot_classes(["0", "1"], True, hardware="b200") == (
        {"0": "b200", "1": "h100-80gb"}, "b200")
    assert hardware.class_branch("research/t", "h100-80gb", "b200") == "research/t@h100-80gb"
    assert hardware.class_branch("research/t", "b200", "b200") == "research/t"
