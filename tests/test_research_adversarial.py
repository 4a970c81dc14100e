"""Hostile proposers and jobs, through the real harness (`agentdeck research run`, proposer "command").

Each test gives the synthetic lab of research_support (score = (X-7)^2 + (Y-2)^2 + 1; baseline 18)
one attack of issue 14 and checks that the harness names it, never keeps it, never promotes it.
The jobs run unsandboxed (the lab's default here), so they *can* reach the ledger, results.tsv and
the git directory: what is tested is that the harness notices.  The proposer script is in the
test's temp folder; it reads a counter file to play its items in order.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import TRAIN, make_lab, set_constants
from support import git, retry_until, run_cli

PROPOSER = '''\
import json, os, subprocess, sys
from pathlib import Path

HERE = Path({here!r})
count_file = HERE / "count"
n = int(count_file.read_text()) if count_file.exists() else 0
count_file.write_text(str(n + 1))
items = json.loads((HERE / "items.json").read_text())
item = items[min(n, len(items) - 1)]
wt = Path(os.environ["AGENTDECK_TRIAL_WORKTREE"])
lab = wt / "lab"
def sh(*args):
    subprocess.run(args, cwd=wt, check=True, capture_output=True)
for cmd in item.get("shell", []):
    subprocess.run(cmd.replace("{{n}}", str(n)), shell=True, cwd=lab, check=True)
for rel, text in item.get("write", {{}}).items():
    (lab / rel).write_text(text.replace("{{n}}", str(n)))
print(item["desc"].replace("{{n}}", str(n)))
'''


def lab(tmp_path: Path, items: list[dict], *, gates: str = "", repeats: int = 1, train: str = TRAIN,
        gpus: str = "[0]", confirm: bool = False) -> Path:
    here = tmp_path / "proposer"
    here.mkdir()
    (here / "items.json").write_text(json.dumps(items))
    script = here / "propose.py"
    script.write_text(PROPOSER.format(here=str(here)))
    return make_lab(tmp_path / "repo", proposer="command", repeats=repeats, gates=gates, train=train, gpus=gpus,
                    confirm=confirm, extra=f'proposer_command = "{sys.executable} {script}"')


def train_with(**values: str) -> str:
    return set_constants(TRAIN, values)


def research(repo: Path, *args: str, env: dict | None = None):
    return run_cli("research", *args, cwd=repo, env=env, timeout=180)


def status(repo: Path, tag: str = "t") -> dict:
    proc = research(repo, "status", "--tag", tag, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def proposals(st: dict) -> list[dict]:
    return [t for t in st["trials"] if t["kind"] == "proposal"]


GOOD = train_with(X="7.0", Y="2.0")  # score 1.0: far better than the baseline's 18


# ====================================================================== only regular files


def test_symlink_out_is_never_run_kept_or_merged(tmp_path):
    outside = tmp_path / "x.py"
    outside.write_text(GOOD)
    repo = lab(tmp_path, [{"shell": [f"rm train.py && ln -s {outside} train.py"], "desc": "symlink out"}],
               gates="max_jump = 1000.0")
    proc = research(repo, "run", "--tag", "t", "--trials", "1")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    st = status(repo)
    (trial,) = proposals(st)
    assert trial["status"] == "crash"
    assert trial["reason"] == ("train.py is a symbolic link in the commit (mode 120000); editable files must be "
                               "regular files")
    assert trial["seconds"] is None  # never ran
    assert st["best"]["id"] == 1 and git(repo, "rev-parse", "research/t") == git(repo, "rev-parse", "main")
    proc = research(repo, "promote", str(trial["id"]))
    assert proc.returncode == 1 and "crashed" in proc.stderr
    assert outside.read_text() == GOOD  # nothing wrote through the link
    assert git(repo, "ls-tree", "main", "lab/train.py").startswith("100644")


def test_symlink_to_protected_and_hard_links(tmp_path):
    items = [
        {"shell": ["rm train.py && ln -s prepare.py train.py"], "desc": "symlink to protected"},
        {"shell": ["rm train.py && ln prepare.py train.py"], "desc": "hard link to protected"},
        {"shell": [f"ln train.py {tmp_path}/linked-out"], "write": {"train.py": GOOD}, "desc": "hard link out"},
    ]
    repo = lab(tmp_path, items, gates="max_jump = 1000.0")
    proc = research(repo, "run", "--tag", "t", "--trials", "3")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    st = status(repo)
    reasons = {t["description"]: (t["status"], t["reason"], t["seconds"]) for t in proposals(st)}
    assert reasons["symlink to protected"] == (
        "crash", "train.py is a symbolic link in the commit (mode 120000); editable files must be regular files", None)
    assert reasons["hard link to protected"] == (
        "crash", "train.py is a hard link to the protected prepare.py; protected prepare.py has 2 hard links "
                 "(one expected)", None)
    # A hard link to a file outside the repository (the job's writes would land there).
    assert reasons["hard link out"] == ("crash", "train.py has 2 hard links (one expected)", None)
    assert st["best"]["id"] == 1


def test_a_job_that_links_its_files_out_is_a_crash(tmp_path):
    # The job itself (not the proposal) hard-links the protected file and symlinks its own file out.
    hostile = train_with(X="7.0", Y="2.0").replace(
        "def main():\n", "def main():\n    import os\n    os.link('prepare.py', os.environ['LAB_PIDFILE'])\n"
        "    os.rename('train.py', 'moved.py')\n    os.symlink('/tmp/x', 'train.py')\n")
    repo = lab(tmp_path, [{"write": {"train.py": hostile}, "desc": "links at run time"}], gates="max_jump = 1000.0")
    proc = research(repo, "run", "--tag", "t", "--trials", "1", env={"LAB_PIDFILE": str(tmp_path / "out")})
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (trial,) = proposals(status(repo))
    assert trial["status"] == "crash" and trial["seconds"] is not None
    assert trial["reason"] == ("train.py is a symbolic link on disk; protected prepare.py has 2 hard links "
                               "(one expected)")


def test_mode_change_to_a_symlink_through_the_index(tmp_path):
    # The proposer stages train.py as a symlink (mode 120000 -> /tmp/x) and hides it from `git add`
    # with skip-worktree, while the file on disk is a better train.py: the job would run the file,
    # the commit (and a merge of it) would carry the link.
    items = [{"shell": [
        "cd .. && blob=$(printf /tmp/x | git hash-object -w --stdin) && "
        "git update-index --cacheinfo 120000,$blob,lab/train.py && git update-index --skip-worktree lab/train.py"],
        "write": {"train.py": GOOD}, "desc": "mode change"},
        # The commit gets an X = 6.0 train.py through the index; the disk keeps a different one.
        {"shell": ["cd .. && blob=$(sed 's/^X = 3.0/X = 6.0/' lab/train.py | git hash-object -w --stdin) && "
                   "git update-index --cacheinfo 100644,$blob,lab/train.py && "
                   "git update-index --skip-worktree lab/train.py"],
         "write": {"train.py": GOOD}, "desc": "hidden edit"}]
    repo = lab(tmp_path, items, gates="max_jump = 1000.0")
    proc = research(repo, "run", "--tag", "t", "--trials", "2")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    st = status(repo)
    trials = {t["description"]: t for t in proposals(st)}
    mode_change = trials["mode change"]
    assert mode_change["status"] == "crash" and "symbolic link in the commit" in mode_change["reason"]
    assert trials["mode change"]["seconds"] is None
    hidden = trials["hidden edit"]
    assert hidden["status"] == "crash" and hidden["seconds"] is None
    assert hidden["reason"] == "train.py on disk differs from the commit"
    assert st["best"]["id"] == 1
    proc = research(repo, "promote", str(trials["mode change"]["id"]))
    assert proc.returncode == 1 and "120000" not in git(repo, "ls-tree", "-r", "main")


def test_a_lab_whose_editable_file_is_a_link_does_not_start(tmp_path):
    repo = lab(tmp_path, [{"desc": "never asked"}])
    (tmp_path / "real.py").write_text(TRAIN)
    (repo / "lab/train.py").unlink()
    (repo / "lab/train.py").symlink_to(tmp_path / "real.py")
    git(repo, "commit", "-qam", "train.py is a link now")
    proc = research(repo, "run", "--tag", "t", "--trials", "1")
    assert proc.returncode == 2
    assert "editable lab/train.py is not a regular file in the commit (mode 120000)" in proc.stderr


def test_promote_refuses_a_tree_that_breaks_the_rule(tmp_path):
    # A best recorded by an older agentdeck, whose tree holds a symlink: promote refuses it.
    repo = lab(tmp_path, [{"write": {"train.py": GOOD}, "desc": "honest"}], gates="max_jump = 1000.0")
    assert research(repo, "run", "--tag", "t", "--trials", "1").returncode == 0
    st = status(repo)
    best = st["best"]
    assert best["id"] != 1
    wt = tmp_path / "forge"
    git(repo, "worktree", "add", "-q", "--detach", str(wt), best["commit"])
    (wt / "lab/train.py").unlink()
    (wt / "lab/train.py").symlink_to("/tmp/x")
    git(wt, "commit", "-qam", "link")
    forged = git(wt, "rev-parse", "HEAD")
    db = sqlite3.connect(repo / ".git/agentdeck/research/ledger.db")
    db.execute("UPDATE trials SET commit_sha = ? WHERE id = ?", (forged, best["id"]))
    db.commit()
    db.close()
    proc = research(repo, "promote")
    assert proc.returncode == 1
    assert "breaks the regular-file rule: lab/train.py has mode 120000" in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "research/t~1")  # nothing merged


# ====================================================================== the metric


def test_a_fake_metric_jump_is_suspect_and_never_promoted_unchecked(tmp_path):
    once = tmp_path / "faked-once"
    lucky = train_with(X="4.0").replace(
        'print(f"score: {value:.6f}")',
        f'print("score: 0.0001" if not __import__("os").path.exists({str(once)!r}) else f"score: {{value:.6f}}"); '
        f'open({str(once)!r}, "a").close()')
    liar = train_with(X="5.0").replace('print(f"score: {value:.6f}")', 'print("score: 0.0001")')
    repo = lab(tmp_path, [{"write": {"train.py": lucky}, "desc": "lucky once"},
                          {"write": {"train.py": liar}, "desc": "always lies"}], repeats=2)
    proc = research(repo, "run", "--tag", "t", "--trials", "2")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    st = status(repo)
    trials = {t["description"]: t for t in proposals(st)}
    # The one-off fake: re-run twice, the runs disagree: discarded.
    first = trials["lucky once"]
    assert first["status"] == "discard" and first["suspect"]
    assert "suspect (improves on the best by" in first["reason"] and "runs disagree" in first["reason"]
    reruns = [t for t in st["trials"] if t["description"].startswith("re-run ") and f"suspect {first['id']}" in
              t["description"]]
    assert len(reruns) == 2 and all(t["kind"] == "confirm" for t in reruns)
    # The consistent liar: its runs agree, so it is kept — flagged, and not promotable unchecked.
    liar_t = trials["always lies"]
    assert liar_t["status"] == "keep" and liar_t["suspect"]
    assert st["best"]["id"] == liar_t["id"] and st["best"]["suspect"] is True
    assert abs(st["best"]["metric"] - 0.0001) < 1e-12
    from agentdeck.tui.widgets import research_pane as rp

    assert rp.status_cell(liar_t).plain == "keep ⚠" and "⚠ suspect" in rp.summary(st).plain
    proc = research(repo, "promote")
    assert proc.returncode == 1 and f"trial {liar_t['id']} is suspect" in proc.stderr
    assert "--accept-suspect" in proc.stderr
    assert research(repo, "promote", "--accept-suspect").returncode == 0
    # Every trial left a memory note marked with its kind, re-runs and baselines included.
    from agentdeck.memory.store import MemoryStore
    from agentdeck.research import Research

    r = Research.open(repo)
    titles = [n["title"] for n in MemoryStore.open(repo=r.repo, config=r.config).recent(limit=50,
                                                                                         kinds=["experiment"])]
    assert sum(" suspect re-run " in t for t in titles) == 4
    assert sum(" baseline keep: baseline" in t for t in titles) == 2


def test_a_metric_printed_twice_is_a_crash(tmp_path):
    twice = TRAIN.replace('print("peak_vram_mb: 2048.0")', 'print("score: 0.0001")\n    print("peak_vram_mb: 2048.0")')
    repo = lab(tmp_path, [{"write": {"train.py": twice}, "desc": "twice"}], gates="max_jump = 1000.0")
    proc = research(repo, "run", "--tag", "t", "--trials", "1")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    st = status(repo)
    (trial,) = proposals(st)
    assert (trial["status"], trial["reason"]) == (
        "crash", "metric printed 2 times with different values (18, 0.0001); a job prints its result once")
    assert st["best"]["id"] == 1


# ====================================================================== the record


TAMPER = '''
def tamper():
    import sqlite3, subprocess
    common = subprocess.run(["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True).stdout.strip()
    state = os.path.join(os.path.abspath(common), "agentdeck", "research")
    {body}
'''


def hostile_train(body: str) -> str:
    code = TRAIN.replace("\n\nmain()\n", "\n" + TAMPER.format(body=body) + "\n\nmain()\n")
    return code.replace("    time.sleep(_SLEEP)\n", "    tamper()\n    time.sleep(_SLEEP)\n", 1)


def test_a_job_rewriting_the_ledger_stops_the_run(tmp_path):
    body = ('db = sqlite3.connect(os.path.join(state, "ledger.db")); '
            'db.execute("UPDATE runs SET baseline_metric = 0.00001"); db.commit()')
    repo = lab(tmp_path, [{"write": {"train.py": hostile_train(body)}, "desc": "rewrites the ledger"},
                          {"write": {"train.py": GOOD}, "desc": "never runs"}], gates="max_jump = 1000.0")
    proc = research(repo, "run", "--tag", "t", "--trials", "2")
    assert proc.returncode == 1
    assert "ledger changed outside the harness: the run's baseline, best or settings changed" in proc.stderr
    st = status(repo)
    assert st["state"] == "failed" and st["message"].startswith("ledger changed outside the harness")
    assert not any(t["status"] == "keep" for t in proposals(st))
    # A failed run cannot be continued: its record is not to be trusted.
    proc = research(repo, "run", "--tag", "t", "--trials", "1")
    assert proc.returncode == 1 and "failed" in proc.stderr


def test_a_job_rewriting_decided_trials_or_adding_one_stops_the_run(tmp_path):
    body = ('db = sqlite3.connect(os.path.join(state, "ledger.db")); '
            'db.execute("UPDATE trials SET metric = 0.00001 WHERE id = 1"); db.commit()')
    repo = lab(tmp_path, [{"write": {"train.py": hostile_train(body)}, "desc": "rewrites a trial"}],
               gates="max_jump = 1000.0")
    proc = research(repo, "run", "--tag", "t", "--trials", "1")
    assert proc.returncode == 1 and "trial 1's row differs from the harness's decision" in proc.stderr


def test_a_fake_keep_row_in_results_tsv_is_rewritten_from_the_ledger(tmp_path):
    body = ('open(os.path.join(state, "t", "results.tsv"), "a").write('
            '"deadbee\\t0.000001\\t0.0\\tkeep\\tcheated\\t99\\tproposal\\t0\\t1.0\\n")')
    repo = lab(tmp_path, [{"write": {"train.py": hostile_train(body)}, "desc": "appends a keep row"},
                          {"write": {"train.py": train_with(Y="1.5")}, "desc": "after it"}], gates="max_jump = 1000.0")
    proc = research(repo, "run", "--tag", "t", "--trials", "2")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    st = status(repo)
    text = Path(st["results_tsv"]).read_text()
    assert "cheated" not in text
    ids = sorted(int(line.split("\t")[5]) for line in text.splitlines()[1:])
    assert ids == sorted(t["id"] for t in st["trials"] if t["seconds"] is not None or t["status"] == "crash")


def test_a_job_writing_into_git_is_a_crash(tmp_path):
    body = ('open(os.path.join(os.path.abspath(common), "hooks", "post-checkout"), "w").write("#!/bin/sh\\n")')
    repo = lab(tmp_path, [{"write": {"train.py": hostile_train(body).replace('X = 3.0', 'X = 7.0')},
                           "desc": "installs a hook"}], gates="max_jump = 1000.0")
    proc = research(repo, "run", "--tag", "t", "--trials", "1")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    st = status(repo)
    (trial,) = proposals(st)
    assert (trial["status"], trial["reason"]) == ("crash", "changed under .git: hooks/post-checkout (added)")
    assert st["best"]["id"] == 1


# ====================================================================== the run


def test_five_crashes_in_a_row_pause_the_run(tmp_path):
    items = [{"write": {"train.py": train_with(MODE='"exit"', X="{n}.5")}, "desc": "crash {n}"}]
    repo = lab(tmp_path, items)  # max_crashes: the default, 5
    proc = research(repo, "run", "--tag", "t", "--detach")
    assert proc.returncode == 0, proc.stderr
    st = retry_until(lambda: (s := status(repo))["state"] == "paused" and s, timeout=60)
    assert st["message"].startswith("paused after 5 crashes in a row (last: trial 6: exit code 3)")
    assert "agentdeck research resume --tag t" in st["message"]
    # Paused means no new job starts; one the freed lane had already taken may finish (and crash).
    def settled():
        now = status(repo)
        return not any(t["status"] == "running" for t in now["trials"]) and now

    st = retry_until(settled, timeout=30)
    ran = [t["id"] for t in proposals(st) if t["seconds"] is not None]
    assert ran[:5] == [2, 3, 4, 5, 6] and set(ran) <= {2, 3, 4, 5, 6, 7}
    assert all(t["status"] == "crash" for t in proposals(st) if t["seconds"] is not None)
    assert st["state"] == "paused"
    human = research(repo, "status")
    assert "paused after 5 crashes in a row" in human.stdout
    assert research(repo, "stop", "--tag", "t").returncode == 0


# ====================================================================== per-hardware bests


def test_each_hardware_class_has_its_baseline_best_and_branch(tmp_path):
    # Lane 1 is "faster hardware": the same code scores 10 less there.
    fast = TRAIN.replace('value = evaluate(X, Y)', 'value = evaluate(X, Y) - (10.0 if os.environ.get('
                         '"CUDA_VISIBLE_DEVICES") == "1" else 0.0)')
    items = [{"write": {"train.py": set_constants(fast, {"X": "5.0"})}, "desc": "x5"},
             {"write": {"train.py": set_constants(fast, {"X": "6.0"})}, "desc": "x6"},
             {"write": {"train.py": set_constants(fast, {"X": "6.5"})}, "desc": "x6.5"}]
    repo = lab(tmp_path, items, train=fast, gates="max_jump = 1000.0")
    env = {"AGENTDECK_RESEARCH_SLOT_CLASSES": "0=A100,1=H100"}
    proc = research(repo, "run", "--tag", "t", "--trials", "1", "--gpus", "0", env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # Continued with a lane of a new class: it measures its own baseline first.
    proc = research(repo, "run", "--tag", "t", "--trials", "2", "--gpus", "0,1", env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    st = status(repo)
    assert st["hardware"] == "a100" and st["slot_classes"] == {"0": "a100", "1": "h100"}
    assert st["baseline"]["metric"] == 18.0
    h100 = st["bests"]["h100"]
    assert h100["branch"] == "research/t@h100" and h100["baseline"]["metric"] == 8.0
    on_h100 = [t for t in st["trials"] if t["hardware"] == "h100"]
    assert on_h100[0]["kind"] == "baseline" and all(t["gpu"] in ("1", None) for t in on_h100)
    # Each trial was judged against its own class: kept ones beat their class's baseline.
    for t in proposals(st):
        base = st["baseline"]["metric"] if t["hardware"] == "a100" else h100["baseline"]["metric"]
        if t["status"] == "keep":
            assert t["metric"] < base
    for cls, best in (("a100", st["best"]), ("h100", h100["best"])):
        branch = "research/t" if cls == "a100" else "research/t@h100"
        assert git(repo, "rev-parse", branch) == best["commit"]
        mine = [t["metric"] for t in st["trials"] if t["hardware"] == cls and t["status"] == "keep"]
        assert best["metric"] == min(mine)
    human = research(repo, "status")
    assert "on h100 (branch research/t@h100): baseline 8.000000" in human.stdout
    # The Research tab shows each class's baseline, best and branch, and each lane's class.
    from agentdeck.tui.widgets import research_pane as rp

    shown = rp.summary(st).plain
    assert "on a100" in shown and "h100: baseline 8 " in shown and "research/t@h100" in shown
    assert [line.split()[:3] for line in rp.lanes(st).plain.splitlines()] == [["GPU", "0", "a100"],
                                                                             ["GPU", "1", "h100"]]
