"""Units of the research subsystem: metric, GPU slots, mutate, ledger files, the local executor, git."""

from __future__ import annotations

import math
import os
import signal
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import TRAIN, make_lab
from support import git, retry_until

from agentdeck.errors import UsageError
from agentdeck.research import gitops
from agentdeck.research.executors.base import JobSpec
from agentdeck.research.executors.local import LocalExecutor, pid_alive
from agentdeck.research.gpus import SlotPool, parse_gpus_arg, resolve_slots, slot_env
from agentdeck.research.metric import beats, noise_of, read_metric
from agentdeck.research.model import Trial
from agentdeck.research.proposers.base import ProposalFailed, ProposalRequest
from agentdeck.research.proposers.mutate import (
    MutateProposer,
    candidates,
    find_constants,
    format_number,
)
from agentdeck.research.results_tsv import ResultsTsv, tsv_row

# ---------------------------------------------------------------------- metric


def test_metric_is_the_last_matching_line():
    text = "val_bpb: 2.5\nstep 10\nval_bpb:   1.25  \nval_bpbx: 0.1\n---\npeak_vram_mb: 10240.0\n"
    r = read_metric(text, "val_bpb")
    assert r.value == 1.25 and r.finite and r.memory_gb == 10.0
    assert read_metric("loss: 3\n", "val_bpb").value is None
    assert read_metric(" val_bpb: 1.0\n", "val_bpb").value is None  # anchored at line start
    assert read_metric("val_bpb: 1e-3\n", "val_bpb").value == 0.001


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_nan_and_inf_match_but_are_not_finite(raw):
    r = read_metric(f"val_bpb: 1.0\nval_bpb: {raw}\n", "val_bpb")
    assert r.value is not None and not r.finite


def test_beats_needs_more_than_the_noise():
    assert beats(0.9, 1.0, "min", 0.05) and not beats(0.96, 1.0, "min", 0.05)
    assert not beats(1.0, 1.0, "min", 0.0)
    assert beats(1.1, 1.0, "max", 0.05) and not beats(0.9, 1.0, "max", 0.0)
    assert noise_of([1.0]) == 0.0 and math.isclose(noise_of([1.0, 1.2]), 0.14142135, rel_tol=1e-6)


# ---------------------------------------------------------------------- GPU slots


def _fake_nvidia_smi(tmp_path, monkeypatch, output: str, code: int = 0):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {code}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_auto_slots_from_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    _fake_nvidia_smi(tmp_path, monkeypatch, "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\n"
                                            "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)")
    assert resolve_slots("auto") == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert resolve_slots("auto") == ["1"]


def test_auto_without_gpus_is_one_cpu_slot(tmp_path, monkeypatch):
    _fake_nvidia_smi(tmp_path, monkeypatch, "NVIDIA-SMI has failed", code=9)
    assert resolve_slots("auto") == ["cpu"]
    assert slot_env("cpu") == {"CUDA_VISIBLE_DEVICES": ""}


def test_explicit_gpu_lists():
    assert resolve_slots([0, 2]) == ["0", "2"]
    with pytest.raises(UsageError, match="twice"):
        resolve_slots([1, 1])
    assert parse_gpus_arg("0,1,3") == [0, 1, 3] and parse_gpus_arg("auto") == "auto"
    with pytest.raises(UsageError):
        parse_gpus_arg("zero")


def test_slot_pool_never_leases_a_slot_twice():
    pool = SlotPool(["0", "1"])
    assert pool.lease(1) == "0" and pool.lease(2) == "1" and pool.lease(3) is None
    pool.release("0")
    assert pool.lease(4, "1") is None and pool.lease(5, "0") == "0"


# ---------------------------------------------------------------------- mutate

SOURCE = '''\
"""doc"""
import os

LR = 3e-4  # learning rate
DEPTH: int = 8
WARMUP = 10
BETA2 = 0.95
OFFSET = -2
NAME = "x"
FLAG = True
_PRIVATE = 5
SEED = 42
def f():
    INNER = 3
    return INNER
'''


def test_find_constants_only_top_level_numbers():
    found = {c.name: c for c in find_constants(SOURCE)}
    assert set(found) == {"LR", "DEPTH", "WARMUP", "BETA2", "OFFSET"}
    assert found["LR"].text == "3e-4" and found["OFFSET"].value == -2


def test_candidates_stay_in_range():
    assert candidates(8, True, "+") == [16] and candidates(8, True, "-") == [4]
    assert candidates(3, True, "-") == [2, 1]
    assert all(0 < v < 1 for v in candidates(0.95, False, "+") + candidates(0.95, False, "-"))
    assert format_number(6e-4, "3e-4", False) == "6e-4"
    assert format_number(0.0375, "0.05", False) == "0.0375"


def _request(tmp_path, text, history=None, attempt=0):
    wd = tmp_path / "wd"
    wd.mkdir(exist_ok=True)
    (wd / "train.py").write_text(text)
    return ProposalRequest(tag="t", worktree=wd, workdir=wd, editable=["train.py"], program="", metric="m",
                           direction="min", best={}, baseline={}, history=history or [], seed=1, attempt=attempt)


def test_mutate_changes_one_number_and_keeps_the_rest(tmp_path):
    req = _request(tmp_path, SOURCE)
    proposal = MutateProposer(None).propose(req)
    after = (req.workdir / "train.py").read_text()
    assert after != SOURCE
    changed = [(a, b) for a, b in zip(SOURCE.splitlines(), after.splitlines()) if a != b]
    assert 1 <= len(changed) <= 2
    assert "# learning rate" in after and 'NAME = "x"' in after and "SEED = 42" in after
    change = proposal.meta["changes"][0]
    assert change["name"] in proposal.description and change["dir"] in "+-"
    compile(after, "train.py", "exec")


def test_mutate_follows_what_was_kept(tmp_path):
    history = [{"kind": "proposal", "status": "keep", "meta": {"changes": [
        {"path": "train.py", "name": "WARMUP", "dir": "+", "old": "5", "new": "10"}]}}] * 3
    history += [{"kind": "proposal", "status": "crash", "meta": {"changes": [
        {"path": "train.py", "name": n, "dir": d, "old": "x", "new": "y"}]}}
        for n in ("LR", "DEPTH", "BETA2", "OFFSET") for d in "+-" for _ in range(2)]
    picks = []
    for attempt in range(30):
        req = _request(tmp_path, SOURCE, history, attempt)
        picks.append(MutateProposer(None).propose(req).meta["changes"][0]["name"])
    assert picks.count("WARMUP") > 20


def test_mutate_without_constants_fails_clearly(tmp_path):
    with pytest.raises(ProposalFailed, match="no numeric top-level constants"):
        MutateProposer(None).propose(_request(tmp_path, "print('hi')\n"))


# ---------------------------------------------------------------------- results.tsv


def test_results_tsv_rows(tmp_path):
    tsv = ResultsTsv(tmp_path / "results.tsv", "val_bpb")
    tsv.append(Trial(tag="t", commit="abcdef1234", metric=0.99, memory_gb=44.04, status="keep",
                     description="tabs\tand\nnewlines", id=3, kind="proposal", gpu="0", seconds=300.04))
    tsv.append(Trial(tag="t", commit="1234567890", metric=None, memory_gb=None, status="crash",
                     description="oom", id=4, kind="proposal", gpu="1", seconds=None))
    rows = tsv.rows()
    assert rows[0] == {"commit": "abcdef1", "val_bpb": "0.990000", "memory_gb": "44.0", "status": "keep",
                       "description": "tabs and newlines", "trial": "3", "kind": "proposal", "gpu": "0",
                       "seconds": "300.0"}
    assert rows[1]["val_bpb"] == "0.000000" and rows[1]["seconds"] == ""
    assert tsv_row(Trial(tag="t", id=5, kind="proposal", status="crash", metric=1.0))[1] == "0.000000"


# ---------------------------------------------------------------------- local executor


def _spec(tmp_path, command, trial=1, slot="3"):
    return JobSpec(trial_id=trial, tag="t", command=command, cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": slot},
                   log_path=tmp_path / f"{trial}.log", slot=slot, budget_s=1, timeout_s=5)


def test_local_job_runs_in_its_own_group_and_reports_its_exit(tmp_path):
    ex = LocalExecutor()
    h = ex.submit(_spec(tmp_path, "echo gpu=$CUDA_VISIBLE_DEVICES; echo err >&2; exit 7"))
    assert h.data["pgid"] == h.data["pid"] != os.getpgrp()  # its own process group
    state = retry_until(lambda: ex.poll(h) if ex.poll(h).finished else None, timeout=10)
    assert (state.state, state.exit_code) == ("done", 7)
    assert ex.read_log(h) == "gpu=3\nerr\n"
    assert ex.wake.is_set()


def test_cancel_kills_the_whole_group(tmp_path):
    ex = LocalExecutor()
    h = ex.submit(_spec(tmp_path, "sleep 60 & echo $! > child.pid; sleep 60"))
    child = int(retry_until(lambda: (tmp_path / "child.pid").exists() and (tmp_path / "child.pid").read_text().strip()))
    ex.cancel(h)
    state = retry_until(lambda: ex.poll(h) if ex.poll(h).finished else None, timeout=10)
    assert state.state == "done" and state.exit_code != 0
    retry_until(lambda: not pid_alive(child), timeout=10)


def test_reattach_after_restart_reads_the_exit_file_or_reports_lost(tmp_path):
    first = LocalExecutor()
    gate = tmp_path / "gate"  # the job runs until the test has seen it running, however slow the machine
    h = first.submit(_spec(tmp_path, f"while [ ! -e {gate} ]; do sleep 0.05; done; echo done; exit 0", trial=1))
    data = dict(h.data)
    # A "restarted" agentdeck: a new executor that is not the job's parent.
    again = LocalExecutor().reattach(data)
    assert again is not None and again.runtime is None
    assert LocalExecutor().poll(again).state == "running"
    gate.touch()
    state = retry_until(lambda: (lambda s: s if s.finished else None)(LocalExecutor().poll(again)), timeout=10)
    assert (state.state, state.exit_code) == ("done", 0)
    # A job that died with its wrapper (no exit status written) while nobody watched: lost.
    h2 = first.submit(_spec(tmp_path, "sleep 30", trial=2))
    os.killpg(h2.data["pgid"], signal.SIGKILL)
    retry_until(lambda: h2.runtime.poll() is not None, timeout=10)
    lost = LocalExecutor().poll(LocalExecutor().reattach(dict(h2.data)))
    assert lost.state == "lost"
    # A recycled pid is not mistaken for the job: the start time must match too.
    fake = dict(data, pid=os.getpid(), start_time="1")
    assert not pid_alive(fake["pid"], fake["start_time"])


# ---------------------------------------------------------------------- git helpers


def test_cherry_pick_combines_neighbouring_line_edits(tmp_path):
    repo = make_lab(tmp_path / "repo")
    base = git(repo, "rev-parse", "HEAD")
    train = repo / "lab/train.py"
    git(repo, "checkout", "-qb", "a")
    train.write_text(TRAIN.replace("X = 3.0", "X = 6.0"))
    git(repo, "commit", "-qam", "a")
    git(repo, "checkout", "-q", base)
    git(repo, "checkout", "-qb", "b")
    train.write_text(TRAIN.replace("Y = 1.0", "Y = 2.0"))
    git(repo, "commit", "-qam", "b")
    git(repo, "checkout", "-q", "main")
    wt = tmp_path / "wt"
    gitops.add_worktree(repo, wt, git(repo, "rev-parse", "a"))
    new = gitops.cherry_pick(wt, git(repo, "rev-parse", "b"), "combined")
    assert new is not None
    text = git(repo, "show", f"{new}:lab/train.py")
    assert "X = 6.0" in text and "Y = 2.0" in text
    # The same change again applies to nothing: None, and the worktree is left clean.
    assert gitops.cherry_pick(wt, git(repo, "rev-parse", "b"), "again") is None
    assert git(wt, "status", "--porcelain") == ""
    gitops.remove_worktree(repo, wt)
    assert not wt.exists()


def test_content_hash_covers_only_editable_files(tmp_path):
    repo = make_lab(tmp_path / "repo")
    head = git(repo, "rev-parse", "HEAD")
    blobs = gitops.tree_files(repo, head, "lab")
    assert set(blobs) == {"lab/prepare.py", "lab/train.py", "lab/program.md"}
    assert gitops.match("lab", ["train.py"], blobs) == ["lab/train.py"]
    assert gitops.match(".", ["lab/*.py"], blobs) == ["lab/prepare.py", "lab/train.py"]
    h1 = gitops.content_hash(blobs, ["lab/train.py"])
    assert h1 == gitops.content_hash(dict(blobs, **{"lab/program.md": "other"}), ["lab/train.py"])
    assert h1 != gitops.content_hash(dict(blobs, **{"lab/train.py": "other"}), ["lab/train.py"])
    ids = gitops.disk_blob_ids(repo, ["lab/prepare.py", "lab/nothing.py"])
    assert ids == {"lab/prepare.py": blobs["lab/prepare.py"], "lab/nothing.py": "missing"}
