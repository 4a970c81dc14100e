"""The Ray executor against a real local Ray cluster (2 logical GPUs, 4 CPUs, on 127.0.0.1).

One cluster serves every test of the run (tests/cluster_support.py starts it once, even across
pytest-xdist workers, and stops it at the end).  Without Ray the cluster tests skip, unless
AGENTDECK_REQUIRE_CLUSTER=1 (then they fail).  The request-shape and missing-Ray tests need no
cluster and always run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_support import (
    RAY_GPUS,
    exclusive_ray_gpus,
    free_ports,
    ray_missing,
    shared_ray_cluster,
    skip_or_fail,
)
from research_support import ScriptedProposer, by_desc, make_lab, read_records, research_for
from support import git, retry_until, run_cli


@pytest.fixture(scope="session")
def ray_cluster():
    reason = ray_missing()
    if reason:
        skip_or_fail(reason)
    with shared_ray_cluster() as info:
        yield info


@pytest.fixture
def ray_gpus(ray_cluster):
    """The cluster's GPUs for this test alone (pytest-xdist workers share the one cluster)."""
    with exclusive_ray_gpus():
        yield ray_cluster


def settings(address: str = "", **ray):
    from agentdeck.config import ResearchSettings

    s = ResearchSettings()
    s.executor = "ray"
    s.ray.address = address
    for key, value in ray.items():
        setattr(s.ray, key, value)
    return s


def executor(address: str = "", **ray):
    from agentdeck.research.executors import get_executor

    ex = get_executor("ray", settings(address, **ray))
    ex.LOG_INTERVAL_S = 0.2
    return ex


def spec(tmp_path: Path, trial: int, command: str, *, slot: str = "ray:0", name: str = "", cwd: Path | None = None):
    from agentdeck.research.executors.base import JobSpec

    wt = cwd or tmp_path / f"wt{trial}"
    wt.mkdir(parents=True, exist_ok=True)
    return JobSpec(trial_id=trial, tag="t", command=command, cwd=wt,
                   env={"AGENTDECK_BUDGET_S": "5", "AGENTDECK_TRIAL": str(trial)},
                   log_path=tmp_path / "logs" / f"{trial}.log", slot=slot, budget_s=5, timeout_s=30,
                   name=name or f"agentdeck-{tmp_path.name}-t-{trial}")


def finished(ex, handle, timeout=60):
    return retry_until(lambda: (lambda s: s if s.finished else None)(ex.poll(handle)), timeout=timeout,
                       what=f"Ray job {handle.job_id} to finish")


# ============================================================================ no cluster needed
def test_without_ray_check_names_the_extra(monkeypatch):
    from agentdeck.errors import UsageError

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.job_submission", None)
    ex = executor("http://127.0.0.1:1")
    with pytest.raises(UsageError, match=r"pip install 'agentdeck\[ray\]'"):
        ex.check()


def test_job_request_local_runs_in_place_remote_uploads(tmp_path):
    from agentdeck.research.executors.ray import is_local_address

    wt = tmp_path / "wt"
    (wt / "lab").mkdir(parents=True)
    (wt / ".git").write_text("gitdir: elsewhere\n")
    s = spec(tmp_path, 4, "python train.py --x 'a b'", cwd=wt / "lab")
    local = executor("http://127.0.0.1:8265", num_gpus=1.0,
                     runtime_env={"env_vars": {"HF_HOME": "/data", "AGENTDECK_BUDGET_S": "999"}, "pip": ["x"]})
    req = local.job_request(s, "agentdeck-r-t-4")
    assert req["entrypoint"] == f"cd {wt / 'lab'} && exec /bin/sh -c 'python train.py --x '\"'\"'a b'\"'\"''"
    assert "working_dir" not in req["runtime_env"] and req["runtime_env"]["pip"] == ["x"]
    assert req["runtime_env"]["env_vars"] == {"HF_HOME": "/data", "AGENTDECK_BUDGET_S": "5", "AGENTDECK_TRIAL": "4",
                                              "PYTHONUNBUFFERED": "1"}
    assert req["entrypoint_num_gpus"] == 1.0 and req["submission_id"] == "agentdeck-r-t-4"
    assert req["metadata"]["agentdeck_cwd"] == str(wt / "lab")
    assert "entrypoint_num_gpus" not in local.job_request(spec(tmp_path, 5, "x", slot="cpu"), "i")
    remote = executor("http://ray-head.example.invalid:8265")
    assert remote.upload and not local.upload
    up = remote.job_request(s, "i")
    assert up["runtime_env"]["working_dir"] == str(wt) and ".git" in up["runtime_env"]["excludes"]
    assert up["entrypoint"].startswith("cd lab && exec /bin/sh -c ")
    shared = executor("http://ray-head.example.invalid:8265")
    shared.ray.shared_fs = True  # the optional key (docs/cluster.md)
    assert not type(shared)(shared.settings).upload
    assert is_local_address("") and is_local_address("127.0.0.1:8265") and is_local_address("http://localhost:1")


def test_unreachable_cluster_is_a_clear_error_then_lost(tmp_path):
    from agentdeck.errors import UsageError
    from agentdeck.research.executors.base import JobHandle

    if ray_missing():
        skip_or_fail(ray_missing())
    (port,) = free_ports(1)
    ex = executor(f"http://127.0.0.1:{port}")
    with pytest.raises(UsageError, match="does not answer"):
        ex.check()
    ex.LOST_AFTER_S = 0.5
    handle = JobHandle("ray", "agentdeck-x-t-1", {"submission_id": "agentdeck-x-t-1",
                                                  "log_path": str(tmp_path / "1.log")})
    assert ex.poll(handle).state == "pending"  # no verdict on the first silence
    ex.cancel(handle)  # never raises; retried by the log thread
    lost = retry_until(lambda: (lambda s: s if s.state == "lost" else None)(ex.poll(handle)), timeout=10)
    assert "has not answered" in lost.detail
    ex.close()


# ============================================================================ the real cluster
def test_parallel_trials_queue_for_gpus_and_stream_logs(tmp_path, ray_gpus):
    ex = executor(ray_gpus["address"])
    ex.check()
    assert ex.slots("auto") == [f"ray:{i}" for i in range(RAY_GPUS)]
    record = tmp_path / "record.jsonl"
    stamp = ("python3 -c 'import json,os,sys,time; "
             "print(json.dumps({\"cvd\": os.environ.get(\"CUDA_VISIBLE_DEVICES\"), "
             "\"budget\": os.environ.get(\"AGENTDECK_BUDGET_S\"), \"cwd\": os.getcwd(), \"at\": time.time(), "
             "\"what\": sys.argv[1]}))' {what} >> " + str(record))
    cmd = (f"echo started; {stamp.replace('{what}', 'start')}; sleep 5; {stamp.replace('{what}', 'end')}; "
           "echo ended; exit {code}")
    handles = [ex.submit(spec(tmp_path, i, cmd.replace("{code}", str(i)), slot=f"ray:{i}"))
               for i in range(RAY_GPUS + 1)]
    seen, streamed = [], False
    while True:  # what the loop sees, tick by tick
        states = [ex.poll(h).state for h in handles]
        if all(st == "done" for st in states):
            break
        seen.append(states)
        for h, st in zip(handles, states):
            text = Path(h.data["log_path"]).read_text()
            # The log streams into the trial's log file while the job runs.
            streamed |= st == "running" and "\nstarted\n" in text and "\nended\n" not in text
        time.sleep(0.2)
    assert streamed
    assert any(st.count("pending") >= 1 and st.count("running") == RAY_GPUS for st in seen)  # queued for a GPU
    assert all(st.count("running") <= RAY_GPUS for st in seen)
    assert [(o.state, o.exit_code) for o in (ex.poll(h) for h in handles)] == [("done", i) for i in range(3)]
    rows = read_records(record)
    starts = sorted((r for r in rows if r["what"] == "start"), key=lambda r: r["at"])
    ends = sorted(r["at"] for r in rows if r["what"] == "end")
    assert len(starts) == 3 and all(r["budget"] == "5" for r in rows)
    assert {r["cvd"] for r in starts[:2]} == {"0", "1"}  # Ray's scheduler set CUDA_VISIBLE_DEVICES
    assert starts[1]["at"] < ends[0]  # the first two ran at once, one per GPU
    assert starts[2]["at"] >= ends[0]  # the third waited for a free GPU
    assert {r["cwd"] for r in starts} == {str(tmp_path / f"wt{i}") for i in range(3)}  # ran in place, no upload
    for h in handles:
        log = ex.read_log(h)
        assert "\nstarted\n" in log and "\nended\n" in log
        ex.finish(h)
    assert all(h.node for h in handles)
    ex.close()


def test_timeout_and_crash_through_the_research_loop(tmp_path, ray_gpus):
    pidfile = tmp_path / "grandchild.pid"
    # A Ray job gets the cluster's environment, not agentdeck's: extra variables go in runtime_env.
    extra = (f'executor = "ray"\n\n[research.ray]\naddress = "{ray_gpus["address"]}"\nnum_gpus = 1\n'
             f'runtime_env = {{ env_vars = {{ LAB_PIDFILE = "{pidfile}" }} }}\n')
    repo = make_lab(tmp_path / "repo", gpus="[0, 1]", workers=2, repeats=1, timeout=6, extra=extra)
    research = research_for(repo)
    tag = research.start("ray1", trials=3)
    proposer = ScriptedProposer([
        {"set": {"X": "5.0"}, "desc": "better"},
        {"set": {"MODE": '"exit"'}, "desc": "exit"},
        {"set": {"MODE": '"hang"'}, "desc": "hang"},
    ])
    t0 = time.time()
    result = research.run(tag, proposer=proposer)
    assert result["state"] == "done", research.status(tag)
    status = research.status(tag)
    assert by_desc(status, "better")["status"] == "keep" and by_desc(status, "better")["metric"] == 6.0
    assert (by_desc(status, "exit")["status"], by_desc(status, "exit")["reason"]) == ("crash", "exit code 3")
    hang = by_desc(status, "hang")
    assert (hang["status"], hang["reason"]) == ("crash", "timeout after 6s")
    assert 6 <= hang["seconds"] < 40
    # stop_job took the job's whole process group: the grandchild the hanging job started is gone.
    child = int(pidfile.read_text())
    retry_until(lambda: not Path(f"/proc/{child}").exists(), timeout=15, what="the grandchild to be killed")
    assert {t["gpu"] for t in status["trials"]} <= {"ray:0", "ray:1"}
    assert "boom" in research.log(by_desc(status, "exit")["id"])
    assert research.log(by_desc(status, "better")["id"]).strip().endswith("peak_vram_mb: 2048.0")
    assert time.time() - t0 < 120


def test_reattach_adopts_instead_of_submitting_twice(tmp_path, ray_cluster):
    record = tmp_path / "ran.txt"
    s = spec(tmp_path, 1, f"echo ran >> {record}; sleep 2; echo 'score: 1.5'")
    first = executor(ray_cluster["address"], num_gpus=0)  # no GPU: it runs beside the GPU tests
    handle = first.submit(s)
    data = json.loads(json.dumps(handle.data))  # what the ledger keeps
    first.close()  # agentdeck "exits"; the job keeps running on the cluster
    second = executor(ray_cluster["address"], num_gpus=0)
    again = second.reattach(data)
    assert again is not None and again.job_id == handle.job_id
    # An agentdeck that died before recording the submission submits the same trial again: adopted.
    adopted = second.submit(s)
    assert adopted.job_id == handle.job_id and adopted.data.get("adopted")
    assert (finished(second, again).state, finished(second, again).exit_code) == ("done", 0)
    assert "score: 1.5" in second.read_log(again)
    assert record.read_text() == "ran\n"  # ran once
    # A stale job with the same name but another worktree (an older ledger) is not adopted.
    other = second.submit(spec(tmp_path, 1, "echo other", cwd=tmp_path / "elsewhere", name=s.name))
    assert other.job_id == f"{handle.job_id}-2" and not other.data.get("adopted")
    assert finished(second, other).exit_code == 0
    # A job the cluster does not know: no handle on reattach, lost on poll.
    assert second.reattach({"submission_id": "agentdeck-never-submitted"}) is None
    from agentdeck.research.executors.base import JobHandle

    ghost = JobHandle("ray", "agentdeck-never-submitted", {"log_path": str(tmp_path / "g.log")})
    assert second.poll(ghost).state == "lost"
    second.close()


def test_check_sizes_and_refuses(tmp_path, ray_cluster):
    from agentdeck.errors import UsageError

    with pytest.raises(UsageError, match=r"no node of the Ray cluster .* has 3 GPU"):
        executor(ray_cluster["address"], num_gpus=3).check()
    with pytest.raises(UsageError, match="Ray Client address"):
        executor("ray://127.0.0.1:10001").check()
    assert executor(ray_cluster["address"], num_gpus=0.5).slots("auto") == [f"ray:{i}" for i in range(4)]
    assert executor(ray_cluster["address"], num_gpus=0).slots("auto") == ["ray:0"]  # one node
    assert executor(ray_cluster["address"]).slots([0, 1, 2]) == ["ray:0", "ray:1", "ray:2"]


def test_doctor_reports_the_ray_cluster(tmp_path, ray_cluster):
    import types

    from agentdeck import paths
    from agentdeck.config import load_config
    from agentdeck.research.cluster import doctor_checks

    extra = f'executor = "ray"\n\n[research.ray]\naddress = "{ray_cluster["address"]}"\n'
    repo = make_lab(tmp_path / "repo", extra=extra)
    deck = types.SimpleNamespace(repo=paths.find_repo(repo), config=load_config(repo))
    checks = {c["name"]: c for c in doctor_checks(deck)}
    assert [checks[n]["level"] for n in ("ray", "ray cluster", "ray GPUs", "ray worktrees")] == ["ok"] * 4
    assert "2 GPUs on 1 node" in checks["ray GPUs"]["detail"]
    (port,) = free_ports(1)
    deck.config.research.ray.address = f"http://127.0.0.1:{port}"
    bad = {c["name"]: c for c in doctor_checks(deck)}
    assert bad["ray cluster"]["level"] == "error" and "ray start --head" in bad["ray cluster"]["fix"]


@pytest.mark.slow
def test_restart_mid_run_reattaches_ray_jobs(tmp_path, ray_cluster):
    extra = f'executor = "ray"\n\n[research.ray]\naddress = "{ray_cluster["address"]}"\nnum_gpus = 0\n'
    repo = make_lab(tmp_path / "repo", gpus="[0, 1]", workers=2, repeats=1, extra=extra)
    (repo / "lab/train.py").write_text((repo / "lab/train.py").read_text().replace("_SLEEP = 0.05", "_SLEEP = 6"))
    git(repo, "commit", "-qam", "slower jobs")
    proc = run_cli("research", "run", "--tag", "rr", "--trials", "1", "--detach", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    research = research_for(repo)
    retry_until(lambda: [t for t in research.ledger.trials("rr", states=("running",))
                         if t.started_at is not None], timeout=60, what="a running job")
    loop_pid = research.ledger.run("rr").pid
    os.kill(loop_pid, signal.SIGKILL)  # agentdeck dies hard; the Ray job keeps running
    retry_until(lambda: not research.loop_alive("rr"), timeout=10)
    running = research.ledger.trials("rr", states=("running",))
    assert running
    ids = {t.id: t.job["submission_id"] for t in running}
    proc = run_cli("research", "run", "--tag", "rr", cwd=repo, timeout=150)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    status = research.status("rr")
    assert status["state"] == "done", status["message"]
    by_id = {t["id"]: t for t in status["trials"]}
    for tid in ids:
        assert by_id[tid]["status"] in ("keep", "discard") and by_id[tid]["metric"] is not None
        assert research.log(tid).count("score:") == 1  # the same Ray job, picked up again, not re-run
    from ray.job_submission import JobSubmissionClient

    jobs = [j.submission_id for j in JobSubmissionClient(ray_cluster["address"]).list_jobs()]
    for sid in ids.values():
        assert jobs.count(sid) == 1 and f"{sid}-2" not in jobs
