"""A fast synthetic lab for the research tests (no torch): a metric computed from constants.

``lab/train.py`` (editable) holds constants; ``lab/prepare.py`` (protected)
holds the evaluation.  ``MODE`` makes a job misbehave on purpose: "exit" exits 3,
"hang" hangs (with a grandchild in its process group), "nometric" prints no
metric, "nan" prints nan, "tamper" rewrites the protected file at run time,
"inf" prints inf, "gated" waits for the file ``LAB_GATE``.  ``_SLEEP`` is the
job's length (mutate leaves it alone).  Environment:
``LAB_RECORD`` (a JSON line per job: slot, start, end, trial), ``LAB_PIDFILE``
(MODE "hang" writes its grandchild's pid there), ``LAB_OFFSETS`` (JSON: trial id ->
offset added to the metric, to fake noise).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import make_repo

PREPARE = '''\
def evaluate(x, y):
    return (x - 7.0) ** 2 + (y - 2.0) ** 2 + 1.0
'''

TRAIN = '''\
import json
import os
import subprocess
import sys
import time

from prepare import evaluate

X = 3.0
Y = 1.0
_SLEEP = 0.05  # not a tuning knob: mutate leaves _names alone
MODE = "ok"


def main():
    start = time.time()
    trial = os.environ.get("AGENTDECK_TRIAL", "")
    if MODE == "exit":
        print("boom", file=sys.stderr)
        sys.exit(3)
    if MODE == "hang":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        pidfile = os.environ.get("LAB_PIDFILE")
        if pidfile:
            with open(pidfile, "w") as fh:
                fh.write(str(child.pid))
        time.sleep(120)
    if MODE == "gated":  # wait until the test opens the gate
        gate = os.environ["LAB_GATE"]
        while not os.path.exists(gate):
            time.sleep(0.01)
    if MODE == "tamper":
        with open("prepare.py", "a") as fh:
            fh.write("# tampered\\n")
    time.sleep(_SLEEP)
    value = evaluate(X, Y) + json.loads(os.environ.get("LAB_OFFSETS", "{}")).get(trial, 0.0)
    print("---")
    if MODE == "nometric":
        print("training done, but no metric line")
    elif MODE == "nan":
        print("score: nan")
    elif MODE == "inf":
        print("score: inf")
    else:
        print(f"score: {value:.6f}")
    print("peak_vram_mb: 2048.0")
    record = os.environ.get("LAB_RECORD")
    if record:
        with open(record, "a") as fh:
            fh.write(json.dumps({"slot": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start,
                                 "end": time.time(), "trial": trial,
                                 "budget": os.environ.get("AGENTDECK_BUDGET_S")}) + "\\n")


main()
'''

#: The lab's environment: one TOML line (an inline table cannot break), braces doubled for str.format.
_LAB_ENV = ('env = {{ LAB_RECORD = "${{LAB_RECORD}}", LAB_PIDFILE = "${{LAB_PIDFILE}}", '
            'LAB_OFFSETS = "${{LAB_OFFSETS}}", LAB_GATE = "${{LAB_GATE}}" }}')

CONFIG = '''\
[research]
workdir = "lab"
metric = "score"
direction = "min"
command = "{python} train.py"
editable = ["train.py"]
protected = ["prepare.py"]
budget_s = 1
timeout_s = {timeout}
gpus = {gpus}
workers = {workers}
confirm = {confirm}
repeats_baseline = {repeats}
proposer = "{proposer}"
sandbox = "{sandbox}"
{gates}
''' + _LAB_ENV + '''
{extra}
'''


#: The sanity gates off: this lab's steps are large by design (18 -> 6 in one trial would be
#: ``suspect``) and its tests crash many trials in a row on purpose.  The gates' own tests
#: (tests/test_research_adversarial.py) pass ``gates=""`` (the defaults) or their own settings.
GATES_OFF = "max_jump = 1000000.0\nmax_crashes = 1000"


def make_lab(path: Path, *, gpus: str = "[0]", workers: int = 1, confirm: bool = False, repeats: int = 2,
             timeout: float = 30, proposer: str = "mutate", extra: str = "", train: str = TRAIN,
             sandbox: str = "none", gates: str = GATES_OFF) -> Path:
    # Jobs get an allow-listed environment: the LAB_* knobs reach them through [research] env.
    # sandbox "none" by default (the jobs write LAB_RECORD files the sandbox's private /tmp would
    # hide); tests/test_research_sandbox.py runs the same lab sandboxed.
    config = CONFIG.format(python=sys.executable, gpus=gpus, workers=workers, confirm=str(confirm).lower(),
                           repeats=repeats, timeout=timeout, proposer=proposer, extra=extra, sandbox=sandbox,
                           gates=gates)
    return make_repo(path, {
        "README.md": "# lab\n",
        "lab/prepare.py": PREPARE,
        "lab/train.py": train,
        "lab/program.md": "Lower the score by changing the constants of train.py.\n",
        ".agentdeck.toml": config,
        ".gitignore": "__pycache__/\n",
    })


def set_constants(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text, n = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, count=1, flags=re.MULTILINE)
        assert n == 1, name
    return text


class ScriptedProposer:
    """Proposals from a script, in order; each item: {"set": {...}, "write": {...}, "desc": ..., "fail": ...}."""

    name = "scripted"
    uses_notes = False

    def __init__(self, items: list[dict[str, Any]]):
        self.items = list(items)
        self.lock = threading.Lock()
        self.requests: list[Any] = []

    def check(self) -> None: ...

    def close(self) -> None: ...

    def propose(self, request):
        from agentdeck.research.proposers.base import Proposal, ProposalFailed

        with self.lock:
            self.requests.append(request)
            if not self.items:
                raise ProposalFailed("script exhausted")
            item = self.items.pop(0)
        if "fail" in item:
            raise ProposalFailed(item["fail"])
        if "set" in item:
            path = request.workdir / "train.py"
            path.write_text(set_constants(path.read_text(), item["set"]))
        for rel, text in item.get("write", {}).items():
            target = request.worktree / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        desc = item.get("desc") or ", ".join(f"{k}={v}" for k, v in item.get("set", {}).items()) or "edit"
        return Proposal(desc, {"script": True})


def _open_deck(repo: Path):
    from agentdeck.deck import Deck

    return Deck.open(repo)


def research_for(repo: Path):
    """The repository's Research, with the deck as its agent runner (as ``deck.research`` has)."""
    from agentdeck.research import Research

    return Research.open(repo, runners=lambda: _open_deck(repo))


def by_desc(status: dict[str, Any], desc: str, kind: str = "proposal") -> dict[str, Any]:
    found = [t for t in status["trials"] if t["description"] == desc and t["kind"] == kind]
    assert found, (desc, [(t["id"], t["description"]) for t in status["trials"]])
    return found[-1]


def status_of(research, tag: str, desc: str) -> str | None:
    """The status of the last trial described *desc*, None while there is none."""
    found = [t for t in research.status(tag)["trials"] if t["description"] == desc]
    return found[-1]["status"] if found else None


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
