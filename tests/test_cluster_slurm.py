"""The Slurm executor: exact command lines against fake Slurm commands, then a real single-node Slurm.

The fake commands (tests/fake_slurm/) run jobs as real processes and keep Slurm's observable
behaviour (states, ExitCode N:S, forgetting finished jobs after MinJobAge, an unreachable
controller, a node without the shared filesystem).  The real-Slurm tests need
``tests/setup_slurm.sh`` to have run (root); they skip otherwise, unless AGENTDECK_REQUIRE_CLUSTER=1.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_support import (
    can_unshare,
    fake_calls,
    fake_slurm_env,
    real_slurm,
    skip_or_fail,
    slurm_conf_gpus,
)
from research_support import ScriptedProposer, by_desc, make_lab, read_records, research_for
from support import git, retry_until, run_cli


def settings(**slurm):
    from agentdeck.config import ResearchSettings

    s = ResearchSettings()
    s.executor = "slurm"
    for key, value in slurm.items():
        setattr(s.slurm, key, value)
    return s


def executor(**slurm):
    from agentdeck.research.executors import get_executor

    ex = get_executor("slurm", settings(**slurm))
    ex.QUERY_INTERVAL_S = 0.2
    return ex


def spec(tmp_path: Path, trial: int, command: str, *, slot: str = "slurm:0", timeout_s: float = 30,
         env: dict | None = None, cwd: Path | None = None):
    from agentdeck.research.executors.base import JobSpec

    wt = cwd or tmp_path / f"wt{trial}"
    wt.mkdir(parents=True, exist_ok=True)
    return JobSpec(trial_id=trial, tag="t", command=command, cwd=wt,
                   env={"AGENTDECK_BUDGET_S": "5", "AGENTDECK_TRIAL": str(trial), **(env or {})},
                   log_path=tmp_path / "logs" / f"{trial}.log", slot=slot, budget_s=5, timeout_s=timeout_s,
                   name=f"agentdeck-repo1-t-{trial}")


def wait_finished(ex, handle, timeout=20):
    return retry_until(lambda: (lambda s: s if s.finished else None)(ex.poll(handle)), timeout=timeout,
                       what=f"job {handle.job_id} to finish")


def wait_state(ex, handle, state, timeout=20):
    return retry_until(lambda: ex.poll(handle).state == state, timeout=timeout, what=f"job {handle.job_id} {state}")


# ============================================================================ fake Slurm: commands
def test_sbatch_command_line_script_and_outcome(tmp_path, monkeypatch):
    state = fake_slurm_env(monkeypatch, tmp_path / "slurm", partitions="gpu,cpu")
    ex = executor(partition="gpu", gres="gpu:1", sbatch_args=["--account=lab", "--qos=short"])
    s = spec(tmp_path, 7, "echo CVD=$CUDA_VISIBLE_DEVICES B=$AGENTDECK_BUDGET_S pwd=$(pwd) "
                          "q=\"it's fine\"; echo to-stderr >&2; exit 5", timeout_s=30)
    handle = ex.submit(s)
    assert handle.job_id == "1" and handle.data["job_id"] == "1"
    [call] = fake_calls(state, "sbatch")
    assert shlex.split(call)[1:] == [
        "--parsable", "--job-name=agentdeck-repo1-t-7", f"--chdir={s.cwd}", f"--output={s.log_path}",
        "--open-mode=truncate", "--time=0:02:00", "--partition=gpu", "--gres=gpu:1", "--account=lab",
        "--qos=short", f"{s.log_path}.sbatch",
    ]
    script = Path(f"{s.log_path}.sbatch").read_text()
    assert script.startswith("#!/bin/sh\n") and "export AGENTDECK_BUDGET_S=5" in script
    done = wait_finished(ex, handle)
    assert (done.state, done.exit_code) == ("done", 5)
    log = ex.read_log(handle)
    assert f"CVD=0 B=5 pwd={s.cwd} q=it's fine" in log and "to-stderr" in log
    assert Path(f"{s.log_path}.exit").read_text().strip() == "5"
    assert handle.node == "fakenode1"
    # Before submitting, it looked for a live job of this very trial (a restarted agentdeck adopts it).
    assert "-n agentdeck-repo1-t-7" in fake_calls(state, "squeue")[0]


def test_a_job_that_ended_before_the_first_poll_still_names_its_node(tmp_path, monkeypatch):
    """A busy machine: the job ran and wrote its exit file before any poll saw it running."""
    state = fake_slurm_env(monkeypatch, tmp_path / "slurm")
    ex = executor()
    s = spec(tmp_path, 1, "exit 4")
    handle = ex.submit(s)
    retry_until(lambda: Path(f"{s.log_path}.exit").exists(), what="the job to end")
    done = wait_finished(ex, handle)
    assert (done.state, done.exit_code) == ("done", 4)
    assert handle.node == "fakenode1" and handle.data["node"] == "fakenode1"
    calls = len(fake_calls(state))
    assert wait_finished(ex, handle).exit_code == 4
    assert len(fake_calls(state)) == calls  # a finished job costs Slurm nothing on later polls


def test_cpu_slot_and_empty_gres_ask_for_no_gpu(tmp_path, monkeypatch):
    state = fake_slurm_env(monkeypatch, tmp_path / "slurm")
    ex = executor(gres="")
    h1 = ex.submit(spec(tmp_path, 1, "echo CVD=${CUDA_VISIBLE_DEVICES-unset}"))
    ex2 = executor(gres="gpu:1")
    h2 = ex2.submit(spec(tmp_path, 2, "echo CVD=${CUDA_VISIBLE_DEVICES-unset}", slot="cpu"))
    assert wait_finished(ex, h1).exit_code == 0 and wait_finished(ex2, h2).exit_code == 0
    assert not [c for c in fake_calls(state, "sbatch") if "--gres" in c]


def test_jobs_beyond_the_gpus_queue_as_pending(tmp_path, monkeypatch):
    fake_slurm_env(monkeypatch, tmp_path / "slurm", gpus=2)
    ex = executor()
    record = tmp_path / "record.jsonl"
    cmd = (f"echo \"{{\\\"cvd\\\": \\\"$CUDA_VISIBLE_DEVICES\\\", \\\"start\\\": $(date +%s.%N)}}\" >> {record}; "
           "sleep 8")
    handles = [ex.submit(spec(tmp_path, i, cmd, slot=f"slurm:{i}")) for i in range(3)]
    seen = []  # what the loop would see, tick by tick
    while not all(ex.poll(h).finished for h in handles):
        seen.append([ex.poll(h).state for h in handles])
        time.sleep(0.1)
    assert ["running", "running", "pending"] in seen  # both GPUs taken: the third waits in the queue
    assert all(s.count("running") <= 2 for s in seen)
    assert [ex.poll(h).exit_code for h in handles] == [0, 0, 0]
    rows = sorted(read_records(record), key=lambda r: r["start"])
    assert len(rows) == 3 and {r["cvd"] for r in rows[:2]} == {"0", "1"}
    assert rows[2]["start"] >= rows[0]["start"] + 1.9  # it started once a GPU was free


def test_cancel_stops_the_whole_job(tmp_path, monkeypatch):
    fake_slurm_env(monkeypatch, tmp_path / "slurm")
    ex = executor()
    pidfile = tmp_path / "child.pid"
    handle = ex.submit(spec(tmp_path, 1, f"sleep 60 & echo $! > {pidfile}; wait"))
    wait_state(ex, handle, "running")
    child = int(retry_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=10))
    ex.cancel(handle)
    done = wait_finished(ex, handle)
    assert (done.state, done.exit_code) == ("done", 143) and "CANCELLED" in done.detail
    retry_until(lambda: not Path(f"/proc/{child}").exists() or
                Path(f"/proc/{child}/stat").read_text().split()[2] == "Z", timeout=10)
    ex.cancel(handle)  # cancelling twice (or a finished job) is harmless


def test_a_job_slurm_forgets_is_read_from_its_exit_file_or_sacct_or_lost(tmp_path, monkeypatch):
    state = fake_slurm_env(monkeypatch, tmp_path / "slurm", minjobage=0)
    ex = executor()
    ok = ex.submit(spec(tmp_path, 1, "echo fine; exit 4"))
    killed = ex.submit(spec(tmp_path, 2, "kill -9 $PPID; sleep 5"))  # the batch script dies: no exit file
    retry_until(lambda: len([p for p in (state / "jobs").glob("*.json")
                             if json.loads(p.read_text())["state"] in ("COMPLETED", "FAILED")]) == 2, timeout=10)
    # MinJobAge 0: squeue and scontrol no longer know either job.
    assert wait_finished(ex, ok).exit_code == 4  # from the exit file
    lost = wait_finished(ex, killed)
    assert lost.state == "lost" and "no longer knows" in lost.detail
    # With accounting, sacct still knows how it ended.
    monkeypatch.setenv("FAKE_SLURM_ACCOUNTING", "1")
    ex2 = executor()
    again = ex2.reattach(killed.data)
    assert again is not None
    done = wait_finished(ex2, again)
    assert (done.state, done.exit_code) == ("done", 137)


def test_unreachable_controller_keeps_state_then_records_lost(tmp_path, monkeypatch):
    state = fake_slurm_env(monkeypatch, tmp_path / "slurm")
    ex = executor()
    handle = ex.submit(spec(tmp_path, 1, "sleep 30"))
    wait_state(ex, handle, "running")
    (state / "down").touch()
    ex.LOST_AFTER_S = 1.0
    first = retry_until(lambda: (lambda st: st if "silent" in st.detail else None)(ex.poll(handle)), timeout=5)
    assert first.state == "running"  # not a verdict yet
    ex.cancel(handle)  # must not raise; retried once the controller answers
    lost = retry_until(lambda: (lambda s: s if s.state == "lost" else None)(ex.poll(handle)), timeout=10)
    assert "has not answered" in lost.detail
    from agentdeck.errors import UsageError

    with pytest.raises(UsageError, match="does not answer"):
        executor().check(tmp_path / "research")
    (state / "down").unlink()
    ex.poll(handle)  # the controller is back: the pending scancel goes out
    retry_until(lambda: json.loads((state / "jobs" / "1.json").read_text())["state"] == "CANCELLED", timeout=10)


def test_reattach_after_restart_and_no_double_submit(tmp_path, monkeypatch):
    state = fake_slurm_env(monkeypatch, tmp_path / "slurm")
    record, gate = tmp_path / "ran.txt", tmp_path / "gate"
    # The job runs until the test opens the gate: still live when the second executor looks, however slow
    # the machine (a fixed sleep could end first, and the "adopt" below would then submit again).
    s = spec(tmp_path, 3, f"echo ran >> {record}; while [ ! -e {gate} ]; do sleep 0.05; done; echo score: 1.5")
    first = executor()
    handle = first.submit(s)
    wait_state(first, handle, "running")
    data = json.loads(json.dumps(handle.data))  # what the ledger keeps
    # A restarted agentdeck: a new executor finds the job again from the ledger's data.
    second = executor()
    again = second.reattach(data)
    assert again is not None and again.job_id == handle.job_id
    # The loop died before recording the submission: submitting the same trial adopts the live job.
    adopted = second.submit(s)
    assert adopted.job_id == handle.job_id and adopted.data.get("adopted")
    assert len(fake_calls(state, "sbatch")) == 1
    gate.touch()
    assert wait_finished(second, again).exit_code == 0
    assert record.read_text() == "ran\n" and "score: 1.5" in second.read_log(again)
    assert second.reattach({"job_id": "999", "exit_file": str(tmp_path / "none")}) is None
    assert second.reattach({}) is None


def test_check_names_what_is_wrong(tmp_path, monkeypatch):
    from agentdeck.errors import UsageError

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UsageError, match=r"missing: sbatch, squeue, scontrol, scancel"):
        executor().check(tmp_path)
    fake_slurm_env(monkeypatch, tmp_path / "slurm", partitions="debug,cpu")
    monkeypatch.setenv("PATH", f"{Path(__file__).parent / 'fake_slurm'}{os.pathsep}/usr/bin:/bin")
    with pytest.raises(UsageError, match="no node in partition 'nope'"):
        executor(partition="nope").check(tmp_path / "r")
    monkeypatch.setenv("FAKE_SLURM_GPUS", "0")
    with pytest.raises(UsageError, match="offers 1 GPU"):
        executor().check(tmp_path / "r")
    executor(gres="").check(tmp_path / "r")  # CPU trials are fine without GPUs
    monkeypatch.setenv("FAKE_SLURM_GPUS", "4")
    ex = executor(gres="gpu:2")
    ex.check(tmp_path / "r")
    assert ex.probed[str((tmp_path / "r").resolve())][0] is True
    assert ex.slots("auto") == ["slurm:0", "slurm:1"]  # 4 GPUs, 2 per trial
    assert ex.slots([0, 1, 2]) == ["slurm:0", "slurm:1", "slurm:2"]
    assert ex.slots("cpu") == ["cpu"]
    assert not list((tmp_path / "r" / ".probe").iterdir())  # the probe cleans up


def test_check_refuses_worktrees_the_nodes_do_not_share(tmp_path, monkeypatch):
    from agentdeck.errors import UsageError

    if not can_unshare():
        pytest.skip("needs `unshare -m` (root) to give the fake node a private filesystem")
    private = tmp_path / "private"
    (private / "research").mkdir(parents=True)
    fake_slurm_env(monkeypatch, tmp_path / "slurm", private=private)
    ex = executor()
    with pytest.raises(UsageError, match="not on a filesystem the Slurm nodes share"):
        ex.check(private / "research")
    # A trial submitted anyway says why in the log agentdeck shows.
    s = spec(private, 1, "echo hi", cwd=private / "wt")
    handle = ex.submit(s)
    done = wait_finished(ex, handle)
    assert done.state == "done" and done.exit_code != 0
    assert "filesystem the nodes share" in ex.read_log(handle)


# ============================================================================ fake Slurm: the loop
def _slurm_lab(tmp_path, **kw):
    extra = 'executor = "slurm"\n\n[research.slurm]\ngres = "gpu:1"\n'
    return make_lab(tmp_path / "repo", extra=extra, **kw)


def test_research_loop_on_fake_slurm(tmp_path, monkeypatch):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("LAB_RECORD", str(record))
    fake_slurm_env(monkeypatch, tmp_path / "slurm", gpus=2)
    # The timeout leaves a loaded 2-core machine room for three Python start-ups per job (sbatch, the
    # fake node, the job) before it decides the "hang" trial.
    repo = _slurm_lab(tmp_path, gpus="[0, 1]", workers=2, repeats=1, timeout=8)
    research = research_for(repo)
    monkeypatch.chdir(repo)  # check() finds the research folder from here and probes it
    tag = research.start("sl", trials=3)
    proposer = ScriptedProposer([
        {"set": {"X": "5.0"}, "desc": "better"},
        {"set": {"MODE": '"exit"'}, "desc": "exit"},
        {"set": {"MODE": '"hang"'}, "desc": "hang"},
    ])
    result = research.run(tag, proposer=proposer)
    assert result["state"] == "done", research.status(tag)
    status = research.status(tag)
    assert by_desc(status, "better")["status"] == "keep"
    assert (by_desc(status, "exit")["status"], by_desc(status, "exit")["reason"]) == ("crash", "exit code 3")
    hang = by_desc(status, "hang")
    assert (hang["status"], hang["reason"]) == ("crash", "timeout after 8s")
    assert {t["gpu"] for t in status["trials"]} <= {"slurm:0", "slurm:1"}
    assert all(r["slot"] in ("0", "1") and r["budget"] == "1" for r in read_records(record))
    assert research.log(by_desc(status, "better")["id"]).strip().endswith("peak_vram_mb: 2048.0")


# ============================================================================ real Slurm
@pytest.fixture
def slurm_cluster():
    reason = real_slurm()
    if reason:
        skip_or_fail(reason)
    return slurm_conf_gpus()


def test_real_slurm_trials_gpus_queue_cancel_and_exit_codes(tmp_path, slurm_cluster):
    ex = executor()
    ex.check(tmp_path / "research")
    assert ex.probed[str((tmp_path / "research").resolve())][0] is True
    assert ex.slots("auto") == [f"slurm:{i}" for i in range(slurm_cluster)]
    gate = tmp_path / "gate"  # the jobs hold their GPUs until the test has seen the queue
    cmd = f"echo CVD=$CUDA_VISIBLE_DEVICES B=$AGENTDECK_BUDGET_S; while [ ! -e {gate} ]; do sleep 0.1; done; "
    handles = [ex.submit(spec(tmp_path, i, cmd + f"exit {i}")) for i in range(slurm_cluster + 1)]
    retry_until(lambda: [ex.poll(h).state for h in handles[:slurm_cluster]] == ["running"] * slurm_cluster,
                timeout=30)
    assert ex.poll(handles[-1]).state == "pending"
    gate.touch()
    long = ex.submit(spec(tmp_path, 9, "sleep 120"))
    outcomes = [wait_finished(ex, h, timeout=60) for h in handles]
    assert [o.exit_code for o in outcomes] == list(range(slurm_cluster + 1))
    gpus = sorted(ex.read_log(h).split("CVD=")[1].split()[0] for h in handles[:slurm_cluster])
    assert gpus == [str(i) for i in range(slurm_cluster)]  # Slurm set CUDA_VISIBLE_DEVICES from the GRES
    assert "B=5" in ex.read_log(handles[0])
    wait_state(ex, long, "running", timeout=30)
    ex.cancel(long)
    done = wait_finished(ex, long, timeout=30)
    assert done.state == "done" and done.exit_code == 143  # SIGTERM
    assert handles[0].node


@pytest.mark.slow
def test_real_slurm_research_run_cli(tmp_path, slurm_cluster, monkeypatch):
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("LAB_RECORD", str(record))
    repo = _slurm_lab(tmp_path, gpus='"auto"', workers=2, repeats=1, timeout=20)
    proc = run_cli("research", "run", "--tag", "real", "--trials", "3", cwd=repo, timeout=150)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    status = json.loads(run_cli("research", "status", "--tag", "real", "--json", cwd=repo).stdout)
    assert status["state"] == "done", status
    proposals = [t for t in status["trials"] if t["kind"] == "proposal"]
    assert len(proposals) == 3 and all(t["status"] in ("keep", "discard", "crash") for t in status["trials"])
    assert {t["gpu"] for t in status["trials"]} <= {f"slurm:{i}" for i in range(slurm_conf_gpus())}
    jobs = read_records(record)
    assert jobs and {j["slot"] for j in jobs} <= {str(i) for i in range(slurm_conf_gpus())}
    assert len(git(repo, "log", "--oneline", "research/real").splitlines()) >= 1
