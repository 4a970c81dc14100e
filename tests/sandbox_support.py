"""A fast fake lab with a protected evaluation (no torch), and hostile jobs, for the sandbox tests.

``lab/train.py`` (editable) "trains" by saving its constants to
``$AGENTDECK_ARTIFACT_DIR/params.json`` and prints a metric: the true one, or
``CLAIM`` when set (a fake).  ``lab/prepare.py`` (protected) is the
evaluation: ``python prepare.py evaluate`` reads the saved constants and
prints the true score; it needs ``AGENTDECK_EVAL_SEED`` (exit 4 without) and
rejects a "model that reads its targets" (``MODE = "cheat"``, exit 3).

``MODE`` makes the job hostile: ``probe`` tries everything a job must not do
and prints one ``ATTEMPT <what>: ok|denied (...)`` line per attempt (the
targets' paths are the constants ``TARGETS``); ``escape`` starts a ``setsid``
child that outlives it (``sleep ESCAPE_MARK``, a unique duration) and hangs.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import CONFIG, GATES_OFF
from support import make_repo

PREPARE = '''\
import json
import os
import sys


def evaluate(x, y):
    return (x - 7.0) ** 2 + (y - 2.0) ** 2 + 1.0


if __name__ == "__main__" and sys.argv[1:] == ["evaluate"]:
    if not os.environ.get("AGENTDECK_EVAL_SEED"):
        print("evaluation: no AGENTDECK_EVAL_SEED")
        sys.exit(4)
    with open(os.path.join(os.environ["AGENTDECK_ARTIFACT_DIR"], "params.json")) as fh:
        params = json.load(fh)
    if params.get("cheat"):
        print("evaluation rejected the model: causality probe failed (it reads its targets)")
        sys.exit(3)
    print("---")
    print("score: %.6f" % evaluate(params["X"], params["Y"]))
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
CLAIM = ""  # printed instead of the true score when set: a fake metric
MODE = "ok"
TARGETS = {targets}
ESCAPE_MARK = "{escape}"


def attempt(what, fn):
    try:
        fn()
        print("ATTEMPT %s: ok" % what, flush=True)
    except Exception as exc:
        print("ATTEMPT %s: denied (%s)" % (what, type(exc).__name__), flush=True)


def append(path, text="hostile\\n"):
    def go():
        with open(path, "a") as fh:
            fh.write(text)
    return go


def read(path):
    def go():
        with open(path, "rb") as fh:
            fh.read()
    return go


def probe():
    print("ENV " + json.dumps(dict(os.environ)), flush=True)
    print("UID %d" % os.getuid(), flush=True)
    hostile = [("read seed", read, "seed", None), ("write ledger", append, "ledger", None),
               ("write results", append, "results", "deadbee\\t0.000010\\t0.0\\tkeep\\tfake\\n"),
               ("write git config", append, "git_config", "[core]\\n\\tfsmonitor = touch /tmp/pwned\\n"),
               ("write git refs", append, "git_head", None), ("read home", read, "home_file", None)]
    for what, make, key, text in hostile:
        if key in TARGETS:  # only where the test named a target: unsandboxed, these would succeed
            attempt(what, make(TARGETS[key]) if text is None else make(TARGETS[key], text))
    if TARGETS:
        attempt("write worktree", append(os.path.join(os.getcwd(), "train.py")))
        attempt("write protected", append(os.path.join(os.getcwd(), "prepare.py")))
    attempt("write artifacts", append(os.path.join(os.environ["AGENTDECK_ARTIFACT_DIR"], "note")))


def main():
    if MODE == "probe":
        probe()
    if MODE == "escape":
        subprocess.Popen(["setsid", "sh", "-c", "exec sleep " + ESCAPE_MARK])
        time.sleep(120)
    with open(os.path.join(os.environ["AGENTDECK_ARTIFACT_DIR"], "params.json"), "w") as fh:
        json.dump({{"X": X, "Y": Y, "cheat": MODE == "cheat"}}, fh)
    print("---")
    print("score: " + (CLAIM or "%.6f" % evaluate(X, Y)))


main()
'''


def make_eval_lab(path: Path, *, sandbox: str = "none", evaluation: bool = True, targets: dict | None = None,
                  escape: str = "", timeout: float = 30, repeats: int = 1, extra: str = "") -> Path:
    """A repository with the fake lab; ``eval_command`` set unless *evaluation* is False."""
    config = CONFIG.format(python=sys.executable, gpus='[0]', workers=1, confirm="false", repeats=repeats,
                           timeout=timeout, proposer="mutate", sandbox=sandbox, gates=GATES_OFF,
                           extra=(f'eval_command = "{sys.executable} prepare.py evaluate"\n' if evaluation else "")
                           + extra)
    train = TRAIN.format(targets=json.dumps(targets or {}), escape=escape)
    return make_repo(path, {
        "README.md": "# lab\n",
        "lab/prepare.py": PREPARE,
        "lab/train.py": train,
        "lab/program.md": "Lower the score by changing the constants of train.py.\n",
        ".agentdeck.toml": config,
        ".gitignore": "__pycache__/\n",
    })


def attempts(log: str) -> dict[str, str]:
    """``{what: "ok" | "denied (...)"}`` from a probe job's log."""
    out = {}
    for line in log.splitlines():
        if line.startswith("ATTEMPT "):
            what, _, result = line[len("ATTEMPT "):].partition(": ")
            out[what] = result
    return out


def env_of(log: str) -> dict[str, str]:
    for line in log.splitlines():
        if line.startswith("ENV "):
            return json.loads(line[4:])
    raise AssertionError("the job printed no ENV line:\n" + log[-2000:])


def unique_sleep() -> str:
    """A ``sleep`` duration no other process uses (about 300 s): it finds that process again."""
    import random

    return f"300.{random.randrange(10**8):08d}"


def processes_with(mark: str) -> list[int]:
    """Host pids of live ``sleep MARK`` processes."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmdline = fh.read()
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[-1].split()[0]
        except OSError:
            continue
        argv = cmdline.split(b"\0")
        if os.path.basename(argv[0]) == b"sleep" and argv[1:2] == [mark.encode()] and state != b"Z":
            found.append(int(name))
    return found
