"""``agentdeck research ...`` through the real CLI, in subprocesses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import make_lab, research_for
from support import git, retry_until, run_cli

TRIAL_KEYS = {"id", "kind", "status", "reason", "metric", "commit", "description", "gpu", "seconds"}


def test_run_status_log_promote(tmp_path):
    repo = make_lab(tmp_path / "repo", repeats=2)
    proc = run_cli("research", "run", "--tag", "c1", "--trials", "3", "--gpus", "0,1", "--budget", "2", cwd=repo)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "baseline 18.000000" in proc.stdout and "research c1: done" in proc.stdout
    assert proc.stdout.count("trial ") >= 5  # one line per decided trial (not a tty: no live table)
    proc = run_cli("research", "status", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    # The contract's shape.
    assert {"tag", "branch", "results_tsv", "baseline", "best", "trials"} <= set(status)
    assert status["tag"] == "c1" and status["branch"] == "research/c1"
    assert Path(status["results_tsv"]).is_file()
    assert set(status["baseline"]) == {"metric", "runs", "noise"} and status["baseline"]["runs"] == 2
    assert set(status["best"]) == {"id", "metric", "commit"}
    # The contract's keys, plus those the second round added (claimed; hardware, suspect).
    assert status["trials"] and all(TRIAL_KEYS <= set(t) <= TRIAL_KEYS | {"claimed", "hardware", "suspect"}
                                    for t in status["trials"])
    assert {t["kind"] for t in status["trials"]} <= {"baseline", "proposal", "confirm"}
    assert {t["status"] for t in status["trials"]} <= {"queued", "running", "keep", "discard", "crash"}
    assert {t["gpu"] for t in status["trials"]} <= {"0", "1", None}
    assert status["slots"] == ["0", "1"]
    # Each job was handed the budget from --budget.
    assert json.loads(run_cli("research", "status", "--tag", "c1", "--json", cwd=repo).stdout) == status
    proc = run_cli("research", "log", "1", cwd=repo)
    assert proc.returncode == 0 and "score: 18.000000" in proc.stdout
    human = run_cli("research", "status", cwd=repo)
    assert human.returncode == 0 and "research c1 (done)" in human.stdout
    best = status["best"]
    if best["id"] > 2:  # a proposal beat the baseline: promote merges it into main
        proc = run_cli("research", "promote", "--json", cwd=repo)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["trial"] == best["id"] and result["into"] == "main"
        assert git(repo, "merge-base", "--is-ancestor", best["commit"], "main") == ""
        again = run_cli("research", "promote", cwd=repo)
        assert again.returncode == 1 and "already in main" in again.stderr
    else:
        proc = run_cli("research", "promote", cwd=repo)
        assert proc.returncode == 1 and "nothing to promote" in proc.stderr


def test_promote_refuses_a_crash_and_a_dirty_conflict(tmp_path):
    repo = make_lab(tmp_path / "repo", repeats=1)
    research = research_for(repo)
    tag = research.start("p1", trials=2)
    from research_support import ScriptedProposer

    research.run(tag, proposer=ScriptedProposer([
        {"set": {"MODE": '"exit"'}, "desc": "crashes"},
        {"set": {"X": "6.0"}, "desc": "good"},
    ]))
    proc = run_cli("research", "promote", "2", cwd=repo)
    assert proc.returncode == 1 and "crashed" in proc.stderr
    # main moved on in a conflicting way: the merge is refused and nothing is left half done.
    (repo / "lab/train.py").write_text((repo / "lab/train.py").read_text().replace("X = 3.0", "X = 5.0"))
    git(repo, "commit", "-qam", "someone else changed X")
    head = git(repo, "rev-parse", "HEAD")
    proc = run_cli("research", "promote", cwd=repo)
    assert proc.returncode == 1 and "conflict" in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""


def test_errors_exit_codes_and_json(tmp_path):
    repo = make_lab(tmp_path / "repo")
    proc = run_cli("research", "status", "--json", cwd=repo)
    assert proc.returncode == 2 and "no research run yet" in proc.stderr
    assert "error" in json.loads(proc.stdout)
    proc = run_cli("research", "run", "--gpus", "zero", cwd=repo)
    assert proc.returncode == 2 and "--gpus" in proc.stderr
    proc = run_cli("research", "run", "--tag", "Bad Tag", cwd=repo)
    assert proc.returncode == 2 and "bad tag" in proc.stderr
    proc = run_cli("research", "run", "--budget", "60", cwd=repo)  # timeout_s is 30 in this lab
    assert proc.returncode == 2 and "timeout_s" in proc.stderr
    proc = run_cli("research", "status", "--tag", "nope", cwd=repo)
    assert proc.returncode == 2
    proc = run_cli("research", cwd=repo)
    assert proc.returncode == 2 and "run" in proc.stdout
    assert "research/" not in git(repo, "branch", "--list")


def test_detach_then_stop_from_another_process(tmp_path):
    repo = make_lab(tmp_path / "repo", repeats=1)
    (repo / "lab/train.py").write_text((repo / "lab/train.py").read_text().replace("_SLEEP = 0.05", "_SLEEP = 1.0"))
    git(repo, "commit", "-qam", "longer jobs")
    proc = run_cli("research", "run", "--tag", "bg", "--detach", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "running in the background" in proc.stdout
    research = research_for(repo)
    assert research.loop_alive("bg")
    retry_until(lambda: research.status("bg")["best"] is not None, timeout=30)
    proc = run_cli("research", "stop", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "stopped"
    assert not research.loop_alive("bg")
    status = research.status("bg")
    assert status["state"] == "stopped"
    assert all(t["status"] in ("keep", "discard", "crash") for t in status["trials"])
    log = (research.run_dir("bg") / "loop.log").read_text()
    assert "Traceback" not in log


def test_live_table_renders_the_run(tmp_path):
    from rich.console import Console

    from agentdeck.research.cli import _Display

    repo = make_lab(tmp_path / "repo", repeats=1)
    research = research_for(repo)
    tag = research.start("live", trials=1)
    display = _Display(research, tag, live=False)
    research.run(tag, on_event=display.on_event)
    console = Console(record=True, width=160)
    console.print(display.render())
    text = console.export_text()
    assert "research live · done · best" in text
    for column in ("kind", "status", "score", "Δ base", "gpu", "description"):
        assert column in text
    assert "baseline" in text and "proposal" in text
