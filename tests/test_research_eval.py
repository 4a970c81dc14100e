"""The protected evaluation: only its metric counts; the job's printed one is a claim (issue 14).

Real git repositories, real processes, real SQLite, real bubblewrap; the fake lab of
tests/sandbox_support.py (no torch), and the example lab's evaluation with torch.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import ScriptedProposer, by_desc, research_for
from sandbox_support import make_eval_lab
from support import ROOT, git, make_repo, run_cli

from agentdeck.research import evaluate


def _run(repo: Path, items: list[dict]) -> tuple:
    research = research_for(repo)
    tag = research.start("t", trials=len(items))
    research.run(tag, proposer=ScriptedProposer(items))
    return research, tag, research.status(tag)


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
def test_a_fake_metric_loses_to_the_protected_evaluation(tmp_path, sandbox):
    repo = make_eval_lab(tmp_path / "repo", sandbox=sandbox)
    research, tag, status = _run(repo, [
        {"set": {"CLAIM": '"0.0001"'}, "desc": "fake"},  # prints 0.0001; the evaluation measures 18
        {"set": {"X": "5.0"}, "desc": "real"},  # a real improvement: 6
    ])
    assert status["metric_source"] == "eval" and status["sandbox"] == sandbox
    base = next(t for t in status["trials"] if t["kind"] == "baseline")
    assert (base["status"], base["metric"], base["claimed"]) == ("keep", 18.0, 18.0)
    fake = by_desc(status, "fake")
    assert fake["status"] == "discard" and fake["metric"] == 18.0 and fake["claimed"] == 0.0001
    disagreement = research.trial(fake["id"], tag).meta["disagreement"]
    assert "claimed score 0.0001" in disagreement and "measured 18" in disagreement
    real = by_desc(status, "real")
    assert (real["status"], real["metric"]) == ("keep", 6.0)
    assert status["best"]["id"] == real["id"]
    # The evaluation's output is part of the trial's log; its copy of the files is gone.
    log = research.log(real["id"], tag)
    assert "=== evaluation" in log and log.rstrip().endswith("score: 6.000000")
    from agentdeck.research.isolation import trials_root

    assert not any((trials_root(research.repo) / tag / "eval").glob("*"))


def test_without_an_evaluation_the_metric_is_self_reported(tmp_path):
    repo = make_eval_lab(tmp_path / "repo", evaluation=False)
    _research, _tag, status = _run(repo, [{"set": {"CLAIM": '"0.0001"'}, "desc": "fake"}])
    assert status["metric_source"] == "self-reported"
    assert by_desc(status, "fake")["metric"] == 0.0001  # the old rule: the job's word
    out = run_cli("research", "status", cwd=repo)
    assert out.returncode == 0 and "metric: self-reported" in out.stdout, out.stdout + out.stderr
    assert "sandbox: none" in out.stdout


def test_an_evaluation_that_refuses_the_model_makes_the_trial_a_crash(tmp_path):
    repo = make_eval_lab(tmp_path / "repo", sandbox="bwrap")
    _research, _tag, status = _run(repo, [{"set": {"MODE": '"cheat"'}, "desc": "cheat"}])
    cheat = by_desc(status, "cheat")
    assert cheat["status"] == "crash", cheat
    assert cheat["reason"].startswith("the evaluation failed (exit 3): evaluation rejected the model"), cheat
    assert status["best"]["id"] != cheat["id"]


def test_the_evaluation_gets_the_seed_and_the_job_does_not(tmp_path):
    # The lab's evaluation exits 4 without AGENTDECK_EVAL_SEED: the baseline is measured, so it had it.
    repo = make_eval_lab(tmp_path / "repo", sandbox="bwrap")
    research, tag, status = _run(repo, [])
    assert status["baseline"]["metric"] == 18.0
    seed_file = research.research_dir / "eval.seed"
    assert stat.S_IMODE(seed_file.stat().st_mode) == 0o600
    assert seed_file.read_text().strip() not in research.log(1, tag).split("=== evaluation")[0]


def test_eval_seed_is_made_once(tmp_path):
    first = evaluate.eval_seed(tmp_path / "r")
    assert len(first) == 32 and evaluate.eval_seed(tmp_path / "r") == first
    assert stat.S_IMODE((tmp_path / "r" / "eval.seed").stat().st_mode) == 0o600


def test_export_tree_writes_regular_files_and_refuses_a_link(tmp_path):
    repo = make_repo(tmp_path / "repo", {"lab/a.py": "A = 1\n", "lab/sub/b.txt": "b\n", "other.txt": "x\n"})
    (repo / "lab" / "run.sh").write_text("echo hi\n")
    (repo / "lab" / "run.sh").chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "exe")
    head = git(repo, "rev-parse", "HEAD")
    start = evaluate.export_tree(repo, head, "lab", tmp_path / "out")
    assert start == tmp_path / "out" / "lab"
    assert (start / "a.py").read_text() == "A = 1\n" and (start / "sub" / "b.txt").read_text() == "b\n"
    assert os.access(start / "run.sh", os.X_OK) and not (tmp_path / "out" / "other.txt").exists()
    assert not (start / ".git").exists()
    (repo / "lab" / "a.py").unlink()
    (repo / "lab" / "a.py").symlink_to("/etc/passwd")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "link")
    with pytest.raises(evaluate.EvalSetupError, match=r"a\.py is a symbolic link"):
        evaluate.export_tree(repo, git(repo, "rev-parse", "HEAD"), "lab", tmp_path / "out2")


def test_disagreement_is_reported_only_when_large():
    assert evaluate.disagreement(None, 1.0, "m") == ""
    assert evaluate.disagreement(1.02, 1.0, "m") == ""
    note = evaluate.disagreement(0.0001, 2.3, "val_bpb")
    assert "claimed val_bpb 0.0001" in note and "measured 2.3" in note and "only the evaluation counts" in note


# ---------------------------------------------------------------------- the example lab's evaluation

LAB = ROOT / "examples" / "nanolab"
torch_missing = importlib.util.find_spec("torch") is None


def _save_untrained(lab: Path, artifacts: Path) -> None:
    """Build the model of *lab*/train.py (untrained) and save it as train.py would."""
    code = ("import torch, prepare, train; torch.manual_seed(0); config = train.model_config(); "
            "prepare.save_artifacts(train.build_model(config), config)")
    env = _lab_env(artifacts)
    proc = subprocess.run([sys.executable, "-c", code], cwd=lab, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def _lab_env(artifacts: Path, seed: str = "") -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "NANOLAB_TINY": "1",
           "NANOLAB_CACHE": str(artifacts.parent / "cache"), "AGENTDECK_ARTIFACT_DIR": str(artifacts)}
    if seed:
        env["AGENTDECK_EVAL_SEED"] = seed
    return env


@pytest.mark.slow
@pytest.mark.skipif(torch_missing, reason="torch is not installed (pip install 'agentdeck[lab]')")
def test_nanolab_evaluation_measures_held_out_text_and_rejects_a_model_that_reads_its_targets(tmp_path):
    honest, cheat = tmp_path / "honest", tmp_path / "cheat"
    for lab in (honest, cheat):
        shutil.copytree(LAB, lab, ignore=shutil.ignore_patterns("__pycache__"))
    text = (cheat / "train.py").read_text()
    assert "is_causal=True" in text and "INIT_STD = 0.02" in text
    (cheat / "train.py").write_text(text.replace("is_causal=True", "is_causal=False")
                                    .replace("INIT_STD = 0.02", "INIT_STD = 0.3"))
    for lab in (honest, cheat):
        (lab / "art").mkdir()
        _save_untrained(lab, lab / "art")
    assert (honest / "art" / "model.pt").is_file() and (honest / "art" / "config.json").is_file()
    results = {}
    for lab in (honest, cheat):
        results[lab.name] = subprocess.run([sys.executable, "prepare.py", "evaluate"], cwd=lab,
                                           env=_lab_env(lab / "art", seed="s3cret"), capture_output=True,
                                           text=True, timeout=300)
    ok = results["honest"]
    assert ok.returncode == 0, ok.stdout + ok.stderr
    value = float(next(line.split()[1] for line in ok.stdout.splitlines() if line.startswith("val_bpb:")))
    assert 7.0 < value < 9.0  # an untrained byte model: about 8 bits per byte
    bad = results["cheat"]
    assert bad.returncode == 3, bad.stdout + bad.stderr
    assert "causality probe failed" in bad.stdout and "val_bpb" not in bad.stdout


def test_nanolab_held_out_text_depends_on_the_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("NANOLAB_TINY", "1")
    spec = importlib.util.spec_from_file_location("nanolab_prepare_eval", LAB / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    a, b = prepare.heldout_text("one", 4096), prepare.heldout_text("two", 4096)
    assert len(a) == 4096 and a != b and prepare.heldout_text("one", 4096) == a
    train, val = prepare.generate(200_000, 20_000)
    assert a[:200] not in train and a[:200] not in val  # not the public text
