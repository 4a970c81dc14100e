"""The sandbox and the reaper: a hostile job reaches nothing but its artifacts (issue 14).

Real bubblewrap (installed here and in CI: nothing skips for it), real processes, real git and
SQLite; the fake lab of tests/sandbox_support.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import research_for
from sandbox_support import attempts, env_of, make_eval_lab, processes_with, unique_sleep
from support import retry_until

from agentdeck import sandbox
from agentdeck.sandbox import profiles
from agentdeck.sandbox.env import allowed_env, expand
from agentdeck.sandbox.profile import Profile, ProfileError, bwrap_argv, mounts

# ---------------------------------------------------------------------- pure parts

def test_mounts_apply_shallowest_first_and_conflicts_are_refused():
    profile = Profile(cwd="/home/u/wt", writable=("/home/u/art",), read_only=("/home/u/wt",),
                      hidden=("/home", "/home/u", "/home/u/wt/.git", "/etc/shadow", "/nowhere"),
                      devices=("/dev/nvidia0",), home="/tmp/home")
    facts = {"/home": "dir", "/home/u": "dir", "/home/u/wt": "dir", "/home/u/wt/.git": "file",
             "/home/u/art": "dir", "/etc/shadow": "file", "/nowhere": "missing", "/dev/nvidia0": "device"}
    assert mounts(profile, facts) == [
        ("hide-dir", "/home"), ("tmpfs", "/tmp"),
        ("hide-dir", "/home/u"), ("tmpfs", "/tmp/home"), ("tmpfs", "/var/tmp"), ("hide-file", "/etc/shadow"),
        ("dev", "/dev/nvidia0"),
        ("ro", "/home/u/wt"), ("rw", "/home/u/art"),  # shown again inside the hidden home
        ("hide-file", "/home/u/wt/.git"),  # hidden inside the shown worktree
    ]
    argv = bwrap_argv(profile, facts, userns=True, uid=1000, disable_userns=True)
    assert argv[:6] == ["bwrap", "--unshare-user", "--uid", "1000", "--gid", "1000"]
    assert "--unshare-net" in argv and "--unshare-pid" in argv and "--die-with-parent" in argv
    assert argv[-3:] == ["--chdir", "/home/u/wt", "--"]
    assert argv.index("/home/u/art") > argv.index("--tmpfs")  # bound after its hidden parent
    networked = bwrap_argv(Profile(cwd="/", network=True), {}, userns=False)
    assert "--unshare-net" not in networked and "--cap-drop" in networked
    with pytest.raises(ProfileError, match="both hidden and writable"):
        mounts(Profile(cwd="/", writable=("/x",), hidden=("/x",)), {"/x": "dir"})


def test_the_environment_is_an_allow_list():
    source = {"PATH": "/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "CUDA_HOME": "/cuda", "ANTHROPIC_API_KEY": "sk-1",
              "AGENTDECK_STATE_DIR": "/repo/.git/agentdeck", "SSH_AUTH_SOCK": "/run/ssh", "TMUX": "/tmp/t,1,0",
              "HF_TOKEN": "hf-1", "HOME": "/root"}
    env = allowed_env(source, extra={"TOKEN": "${HF_TOKEN}", "GONE": "${NOPE}", "URL": "http://${NOPE}/x"},
                      fixed={"HOME": "/tmp/home", "AGENTDECK_TRIAL": "3"})
    assert env == {"PATH": "/bin", "LANG": "C.UTF-8", "LC_ALL": "C", "CUDA_HOME": "/cuda", "TOKEN": "hf-1",
                   "URL": "http:///x", "HOME": "/tmp/home", "AGENTDECK_TRIAL": "3"}
    assert expand("${A}${B}", {"A": "1"}) == "1" and expand("${B}", {}) is None


def test_bubblewrap_works_here():
    found = sandbox.probe()
    assert found.works, f"bubblewrap must work on this machine (CI installs it): {found.reason}"
    assert sandbox.resolve("auto").mode == "bwrap" and sandbox.resolve("none").mode == "none"
    assert sandbox.resolve("bwrap", supported=False, why_unsupported="cluster").error


# ---------------------------------------------------------------------- the reaper

def _marked_command(mark: str) -> list[str]:
    # The command leaves a setsid grandchild behind (its own session and process group).
    return ["/bin/sh", "-c", f"setsid sh -c 'exec sleep {mark}' & echo started"]


@pytest.mark.parametrize("sandboxed", [False, True])
def test_the_reaper_kills_a_setsid_child_when_the_command_ends(tmp_path, sandboxed):
    mark = unique_sleep()
    profile = None
    if sandboxed:
        (tmp_path / "wt").mkdir()
        (tmp_path / "art").mkdir()
        profile = profiles.research_job(cwd=tmp_path / "wt", worktree=tmp_path / "wt", artifact_dir=tmp_path / "art",
                                        hidden=[], env={"PATH": os.environ["PATH"]}, gpus=False)
    exit_file = tmp_path / "exit"
    out = subprocess.run(sandbox.command(_marked_command(mark), profile, str(exit_file)), capture_output=True,
                         text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert out.returncode == 0 and "started" in out.stdout, out.stderr
    assert exit_file.read_text().strip() == "0"
    assert processes_with(mark) == []  # gone when the reaper returned, not later


def test_a_cancelled_reaper_ends_its_whole_tree(tmp_path):
    mark = unique_sleep()
    argv = sandbox.command(["/bin/sh", "-c", f"setsid sh -c 'exec sleep {mark}' & exec sleep 300"],
                           None, str(tmp_path / "exit"))
    proc = subprocess.Popen(argv, start_new_session=True)
    retry_until(lambda: processes_with(mark), timeout=20, what="the setsid child to start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert processes_with(mark) == []
    assert (tmp_path / "exit").read_text().strip() == str(128 + signal.SIGTERM)


# ---------------------------------------------------------------------- hostile jobs in the loop

def _baseline_only(repo: Path):
    research = research_for(repo)
    tag = research.start("t", trials=0)
    return research, tag


@pytest.mark.parametrize("mode", ["none", "bwrap"])
def test_a_job_gets_an_allow_listed_environment(tmp_path, monkeypatch, mode):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-456")
    repo = make_eval_lab(tmp_path / "repo", sandbox=mode)
    train = repo / "lab" / "train.py"
    train.write_text(train.read_text().replace('MODE = "ok"', 'MODE = "probe"'))
    subprocess.run(["git", "commit", "-qam", "probe"], cwd=repo, check=True)
    research, tag = _baseline_only(repo)
    research.run(tag)
    status = research.status(tag)
    assert status["sandbox"] == mode and status["baseline"]["metric"] == 18.0, status
    log = research.log(1, tag)
    env = env_of(log)
    assert "sk-ant-secret-123" not in log and "aws-secret-456" not in log
    assert not {"ANTHROPIC_API_KEY", "AWS_SECRET_ACCESS_KEY", "AGENTDECK_STATE_DIR", "AGENTDECK_HOME",
                "AGENTDECK_EVAL_SEED", "AGENTDECK_TMUX_SOCKET"} & set(env)
    assert env["AGENTDECK_TRIAL"] == "1" and env["AGENTDECK_BUDGET_S"] == "1" and env["CUDA_VISIBLE_DEVICES"] == "0"
    from agentdeck.research.isolation import trials_root

    artifacts = trials_root(research.repo) / tag / "artifacts"
    assert Path(env["AGENTDECK_ARTIFACT_DIR"]).parent == artifacts
    assert not Path(env["AGENTDECK_ARTIFACT_DIR"]).is_relative_to(repo)  # outside the worktree and .git
    assert attempts(log)["write artifacts"] == "ok"
    if mode == "bwrap":
        assert env["HOME"] == "/tmp/home"
        assert "UID 0" not in log
    else:
        assert env["HOME"] == os.environ["HOME"]


def test_a_sandboxed_job_cannot_reach_the_record_git_the_secret_or_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.txt").write_text("ssh key\n")
    monkeypatch.setenv("HOME", str(home))
    repo = tmp_path / "repo"
    research_dir = repo / ".git" / "agentdeck" / "research"
    targets = {"seed": str(research_dir / "eval.seed"), "ledger": str(research_dir / "ledger.db"),
               "results": str(research_dir / "t" / "results.tsv"), "git_config": str(repo / ".git" / "config"),
               "git_head": str(repo / ".git" / "refs" / "heads" / "main"), "home_file": str(home / "secret.txt")}
    make_eval_lab(repo, sandbox="bwrap", targets=targets)
    train = repo / "lab" / "train.py"
    train.write_text(train.read_text().replace('MODE = "ok"', 'MODE = "probe"'))
    subprocess.run(["git", "commit", "-qam", "probe"], cwd=repo, check=True)
    research, tag = _baseline_only(repo)
    from agentdeck.research.evaluate import eval_seed
    from agentdeck.research.results_tsv import ResultsTsv

    eval_seed(research.research_dir)  # the secret exists before the job runs
    ResultsTsv(research.run_dir(tag) / "results.tsv", "score").ensure()
    before = {name: Path(path).read_bytes() for name, path in targets.items()}
    research.run(tag)
    log = research.log(1, tag)
    got = attempts(log)
    assert got["write artifacts"] == "ok", log
    for what in ("read seed", "write ledger", "write results", "write git config", "write git refs",
                 "write worktree", "write protected", "read home"):
        assert got[what].startswith("denied"), (what, log)
    assert Path(targets["git_config"]).read_bytes() == before["git_config"]
    assert Path(targets["git_head"]).read_bytes() == before["git_head"]
    assert b"hostile" not in Path(targets["ledger"]).read_bytes()
    assert "deadbee" not in Path(targets["results"]).read_text()
    status = research.status(tag)
    assert status["baseline"]["metric"] == 18.0 and status["trials"][0]["status"] == "keep", status


@pytest.mark.parametrize("mode", ["none", "bwrap"])
def test_a_setsid_child_that_outlives_the_timeout_is_killed(tmp_path, mode):
    mark = unique_sleep()
    repo = make_eval_lab(tmp_path / "repo", sandbox=mode, escape=mark, timeout=3)
    train = repo / "lab" / "train.py"
    train.write_text(train.read_text().replace('MODE = "ok"', 'MODE = "escape"'))
    subprocess.run(["git", "commit", "-qam", "escape"], cwd=repo, check=True)
    research, tag = _baseline_only(repo)
    seen: list[int] = []

    def on_tick(loop) -> None:
        if not seen:
            seen.extend(processes_with(mark))

    research.run(tag, on_tick=on_tick)
    trial = research.status(tag)["trials"][0]
    assert trial["status"] == "crash" and trial["reason"].startswith("timeout after 3s"), trial
    assert seen, "the job never started its setsid child"
    assert retry_until(lambda: processes_with(mark) == [], timeout=10, what="the setsid child to be killed")


# ---------------------------------------------------------------------- the GPU lane

def test_a_gpu_slot_is_leased_again_only_once_nvidia_smi_lists_none_of_the_job(tmp_path, monkeypatch):
    from agentdeck.research.executors.base import JobHandle
    from agentdeck.research.executors.local import LocalExecutor

    name = f"agentdeck-test-{uuid.uuid4().hex[:6]}"
    stray = subprocess.Popen(["sleep", "300"], env={"PATH": os.environ["PATH"], "AGENTDECK_JOB": name + "-eval"})
    other = subprocess.Popen(["sleep", "300"], env={"PATH": os.environ["PATH"], "AGENTDECK_JOB": "someone-else"})
    try:
        bindir = tmp_path / "bin"
        bindir.mkdir()
        listing = tmp_path / "listing"
        listing.write_text(f"{stray.pid}\n{other.pid}\n")
        # A stand-in for nvidia-smi: lists the pids in `listing` that are still alive.
        (bindir / "nvidia-smi").write_text(
            "#!/bin/sh\n"
            f'for p in $(cat {listing}); do\n'
            '  [ -d /proc/$p ] && ! grep -q "^State:.*Z" /proc/$p/status && echo $p\n'
            'done\n'
            "exit 0\n")
        (bindir / "nvidia-smi").chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
        executor = LocalExecutor()
        handle = JobHandle("local", "1", {"slot": "0", "job_name": name})
        assert executor.settle(handle) == ""
        assert stray.wait(timeout=10) == -signal.SIGKILL  # the job's stray process was killed
        assert other.poll() is None  # another job's process is left alone
        assert executor.settle(JobHandle("local", "2", {"slot": "cpu", "job_name": name})) == ""
    finally:
        for p in (stray, other):
            p.kill()
            p.wait()


def test_doctor_says_whether_research_jobs_are_sandboxed(tmp_path):
    import json

    from support import run_cli

    repo = make_eval_lab(tmp_path / "repo", sandbox="auto")
    out = run_cli("doctor", "--json", cwd=repo)
    found = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert found["sandbox"]["level"] == "ok" and "bubblewrap" in found["sandbox"]["detail"], out.stdout
    research = found["research sandbox"]
    assert research["level"] == "ok" and "run in bubblewrap" in research["detail"]
    assert "metric from the protected evaluation" in research["detail"]
    status = run_cli("research", "status", cwd=repo)  # no run yet: a usage error, not a crash
    assert status.returncode == 2
