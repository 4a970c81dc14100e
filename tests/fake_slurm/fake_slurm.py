#!/usr/bin/env python3
"""A small, honest imitation of Slurm's commands for command-level tests.

The files ``sbatch``, ``squeue``, ``scontrol``, ``sacct``, ``scancel`` and ``sinfo`` next to this
one run it under their own name.  State lives in ``$FAKE_SLURM_DIR`` (required):
``jobs/<id>.json`` per job, ``calls.log`` (one line per command run, its argv quoted), and flag
files the tests create at run time: ``down`` (the controller stops answering).

``sbatch`` records the job and starts a detached "node" process that waits for the job's GPUs
(``FAKE_SLURM_GPUS``, default 2), then runs the batch script in its own process group with
``CUDA_VISIBLE_DEVICES``, ``SLURM_JOB_ID`` and the submitter's environment (``--export=ALL``),
in ``--chdir`` (``/tmp`` when that fails, as slurmstepd does), output to ``--output``.  It
enforces ``--time`` (state TIMEOUT) and honours ``scancel`` (CANCELLED, ExitCode 0:15).

Environment knobs: ``FAKE_SLURM_GPUS``, ``FAKE_SLURM_NODE`` (default ``fakenode1``),
``FAKE_SLURM_PARTITIONS`` (default ``debug``; the first is the default), ``FAKE_SLURM_DELAY``
(seconds a job stays PENDING before it may start), ``FAKE_SLURM_MINJOBAGE`` (seconds a finished
job stays visible to squeue/scontrol; default 300), ``FAKE_SLURM_ACCOUNTING=1`` (sacct answers;
otherwise "accounting storage is disabled"), ``FAKE_SLURM_PRIVATE=<dir>`` (the node runs jobs in a
private mount namespace where <dir> is an empty tmpfs: a filesystem the node does not share;
needs ``unshare``), ``FAKE_SLURM_KILLWAIT`` (seconds between SIGTERM and SIGKILL; default 0.5).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

STATE = Path(os.environ.get("FAKE_SLURM_DIR", ""))
NODE = os.environ.get("FAKE_SLURM_NODE", "fakenode1")
GPUS = int(os.environ.get("FAKE_SLURM_GPUS", "2"))
PARTITIONS = [p for p in os.environ.get("FAKE_SLURM_PARTITIONS", "debug").split(",") if p]
DELAY = float(os.environ.get("FAKE_SLURM_DELAY", "0"))
MINJOBAGE = float(os.environ.get("FAKE_SLURM_MINJOBAGE", "300"))
ACCOUNTING = os.environ.get("FAKE_SLURM_ACCOUNTING") == "1"
PRIVATE = os.environ.get("FAKE_SLURM_PRIVATE", "")
KILLWAIT = float(os.environ.get("FAKE_SLURM_KILLWAIT", "0.5"))
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
NOT_REACHABLE = "Unable to contact slurm controller (connect failure)"


# ---------------------------------------------------------------------------- state
@contextmanager
def locked():
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def jobs_dir() -> Path:
    path = STATE / "jobs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def load(job_id: str) -> dict | None:
    try:
        return json.loads((jobs_dir() / f"{job_id}.json").read_text())
    except (OSError, ValueError):
        return None


def save(job: dict) -> None:
    path = jobs_dir() / f"{job['id']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    os.replace(tmp, path)


def all_jobs() -> list[dict]:
    out = []
    for path in sorted(jobs_dir().glob("*.json"), key=lambda p: int(p.stem)):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    return out


def visible(job: dict) -> bool:
    """squeue/scontrol forget a finished job after MinJobAge."""
    return not (job["state"] in FINISHED and job.get("end") and time.time() - job["end"] > MINJOBAGE)


def down() -> bool:
    return (STATE / "down").exists()


def log_call(name: str, argv: list[str]) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "calls.log", "a") as fh:
        fh.write(" ".join([name] + [shlex.quote(a) for a in argv]) + "\n")


def gpus_of(gres: str) -> int:
    total = 0
    for part in (gres or "").split(","):
        fields = part.split("(")[0].split(":")
        if fields[0] == "gpu":
            total += int(fields[-1]) if len(fields) > 1 and fields[-1].isdigit() else 1
    return total


def parse_time(text: str) -> float | None:
    if not text or text in ("UNLIMITED", "INFINITE"):
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        seconds = parts[0] * 60
    elif len(parts) == 2:
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return days * 86400 + seconds


def fmt(job: dict, template: str) -> str:
    def field(m: re.Match) -> str:
        key = m.group(2)
        value = {
            "i": job["id"], "T": job["state"], "N": job.get("node", "") if job["state"] != "PENDING" else "",
            "Z": job["workdir"], "j": job["name"], "P": job["partition"], "b": job.get("gres") or "N/A",
            "t": {"PENDING": "PD", "RUNNING": "R", "COMPLETED": "CD", "FAILED": "F", "CANCELLED": "CA",
                  "TIMEOUT": "TO"}.get(job["state"], job["state"][:2]),
        }.get(key, "")
        return str(value)

    return re.sub(r"%(\.?\d*)([A-Za-z])", field, template)


# ---------------------------------------------------------------------------- sbatch
VALUE_OPTS = {"-J": "job-name", "-D": "chdir", "-o": "output", "-e": "error", "-t": "time", "-p": "partition",
              "-A": "account", "-N": "nodes", "-n": "ntasks", "-c": "cpus-per-task", "-C": "constraint",
              "-q": "qos"}
LONG_VALUE = {"job-name", "chdir", "output", "error", "time", "partition", "gres", "open-mode", "account",
              "qos", "wrap", "export", "nodes", "ntasks", "cpus-per-task", "mem", "constraint", "comment",
              "gpus", "mail-type", "mail-user", "reservation", "exclude", "nodelist"}


def parse_sbatch(argv: list[str]) -> tuple[dict, list[str]]:
    opts: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq and key in LONG_VALUE:
                i += 1
                value = argv[i]
            opts[key] = value if (eq or key in LONG_VALUE) else True
        elif arg in VALUE_OPTS:
            i += 1
            opts[VALUE_OPTS[arg]] = argv[i]
        elif arg.startswith("-") and len(arg) > 2 and arg[:2] in VALUE_OPTS:
            opts[VALUE_OPTS[arg[:2]]] = arg[2:]
        elif arg.startswith("-") and arg != "-":
            opts[arg.lstrip("-")] = True
        else:
            rest = argv[i:]
            break
        i += 1
    return opts, rest


def sbatch(argv: list[str]) -> int:
    opts, rest = parse_sbatch(argv)
    if down():
        print(f"sbatch: error: Batch job submission failed: {NOT_REACHABLE}", file=sys.stderr)
        return 1
    if rest:
        script = Path(rest[0]).read_text()
    elif "wrap" in opts:
        script = "#!/bin/sh\n" + opts["wrap"] + "\n"
    else:
        script = sys.stdin.read()
    if not script.startswith("#!"):
        print("sbatch: error: This does not look like a batch script.", file=sys.stderr)
        return 1
    partition = opts.get("partition") or PARTITIONS[0]
    if partition not in PARTITIONS:
        print(f"sbatch: error: invalid partition specified: {partition}", file=sys.stderr)
        print("sbatch: error: Batch job submission failed: Invalid partition name specified", file=sys.stderr)
        return 1
    gres = opts.get("gres") or ""
    if gpus_of(gres) > GPUS:
        print("sbatch: error: Batch job submission failed: Requested node configuration is not available",
              file=sys.stderr)
        return 1
    workdir = opts.get("chdir") or os.getcwd()
    with locked():
        counter = STATE / "next_id"
        job_id = int(counter.read_text()) if counter.exists() else 1
        counter.write_text(str(job_id + 1))
        output = opts.get("output") or f"slurm-{job_id}.out"
        output = output.replace("%j", str(job_id)).replace("%x", opts.get("job-name") or "sbatch")
        if not output.startswith("/"):
            output = os.path.join(workdir, output)
        job = {
            "id": str(job_id), "name": opts.get("job-name") or (Path(rest[0]).name if rest else "wrap"),
            "workdir": workdir, "output": output, "open_mode": opts.get("open-mode") or "truncate",
            "time": opts.get("time") or "", "partition": partition, "gres": gres, "state": "PENDING",
            "exit": "0:0", "submit": time.time(), "start": None, "end": None, "node": "", "gpus": [],
            "pgid": 0, "cancel": False, "argv": argv, "user": os.environ.get("USER", "root"),
        }
        save(job)
        (jobs_dir() / f"{job_id}.sh").write_text(script)
        (jobs_dir() / f"{job_id}.env").write_text(json.dumps(dict(os.environ)))
    subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_node", str(job_id)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)
    if opts.get("parsable"):
        print(job_id)
    else:
        print(f"Submitted batch job {job_id}")
    return 0


# ---------------------------------------------------------------------------- the node
def free_gpus(jobs: list[dict]) -> list[int]:
    busy = {g for j in jobs if j["state"] == "RUNNING" for g in j.get("gpus", [])}
    return [g for g in range(GPUS) if g not in busy]


def node(job_id: str) -> int:
    # Wait for the job's turn (FIFO, like a simple scheduler) and its GPUs.
    while True:
        with locked():
            job = load(job_id)
            if job is None or job["state"] != "PENDING":
                return 0
            jobs = all_jobs()
            need = gpus_of(job["gres"])
            earlier = [j for j in jobs if j["state"] == "PENDING" and int(j["id"]) < int(job_id)]
            free = free_gpus(jobs)
            if time.time() - job["submit"] >= DELAY and not earlier and len(free) >= need:
                job.update(state="RUNNING", start=time.time(), node=NODE, gpus=free[:need])
                save(job)
                break
        time.sleep(0.05)
    env = json.loads((jobs_dir() / f"{job_id}.env").read_text())
    env.update(SLURM_JOB_ID=job_id, SLURM_JOBID=job_id, SLURMD_NODENAME=NODE, SLURM_JOB_NAME=job["name"],
               SLURM_SUBMIT_DIR=job["workdir"])
    if job["gpus"]:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in job["gpus"])
    step = [sys.executable, str(Path(__file__).resolve()), "_step", job_id]
    if PRIVATE:
        step = ["unshare", "-m", "/bin/sh", "-c", 'mount -t tmpfs fake-node-private "$0" && exec "$@"', PRIVATE] + step
    proc = subprocess.Popen(step, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    with locked():
        job = load(job_id)
        job["pgid"] = proc.pid
        save(job)
    limit = parse_time(job["time"])
    state = ""
    while proc.poll() is None:
        time.sleep(0.05)
        if limit is not None and time.time() - job["start"] > limit and not state:
            state = "TIMEOUT"
            kill_step(proc.pid)
        current = load(job_id) or job
        if current.get("cancel") and not state:
            state = "CANCELLED"
            kill_step(proc.pid)
    rc = proc.returncode
    with locked():
        job = load(job_id)
        if state:
            job["state"], job["exit"] = state, "0:15"
        elif rc < 0:
            job["state"], job["exit"] = "FAILED", f"0:{-rc}"
        else:
            job["state"], job["exit"] = ("COMPLETED" if rc == 0 else "FAILED"), f"{rc}:0"
        job["end"] = time.time()
        save(job)
    return 0


def kill_step(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + KILLWAIT
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def step(job_id: str) -> int:
    """Runs on the node (possibly in a private mount namespace): output file, chdir, the script."""
    job = load(job_id)
    try:
        out = os.open(job["output"], os.O_WRONLY | os.O_CREAT | (os.O_APPEND if job["open_mode"] == "append"
                                                                else os.O_TRUNC), 0o644)
    except OSError as exc:
        print(f"slurmstepd: error: Could not open stdout file {job['output']}: {exc}", file=sys.stderr)
        return 1
    try:
        os.chdir(job["workdir"])
    except OSError:
        os.write(out, f"slurmstepd: error: couldn't chdir to `{job['workdir']}': No such file or directory: "
                      "going to /tmp instead\n".encode())
        os.chdir("/tmp")
    script = jobs_dir() / f"{job_id}.sh"
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.execv("/bin/sh", ["/bin/sh", str(script)])
    return 127


# ---------------------------------------------------------------------------- queries
def option_values(argv: list[str], short: str, long: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg in (short, f"--{long}") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{long}="):
            return arg.split("=", 1)[1]
    return None


def squeue(argv: list[str]) -> int:
    if down():
        print(f"slurm_load_jobs error: {NOT_REACHABLE}", file=sys.stderr)
        return 1
    ids = option_values(argv, "-j", "jobs")
    states = option_values(argv, "-t", "states")
    name = option_values(argv, "-n", "name")
    template = option_values(argv, "-o", "format") or "%.18i %.9P %.8j %.2t %N"
    jobs = [j for j in all_jobs() if visible(j)]
    if ids is not None:
        wanted = [i for i in ids.split(",") if i]
        jobs = [j for j in jobs if j["id"] in wanted]
        if len(wanted) == 1 and not jobs:
            print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
            return 1
    if states is None:
        jobs = [j for j in jobs if j["state"] in ("PENDING", "RUNNING", "COMPLETING")]
    elif states.lower() != "all":
        allowed = {s.strip().upper() for s in states.split(",")}
        short = {"PD": "PENDING", "R": "RUNNING", "CG": "COMPLETING", "CD": "COMPLETED", "F": "FAILED",
                 "CA": "CANCELLED", "TO": "TIMEOUT"}
        allowed = {short.get(s, s) for s in allowed}
        jobs = [j for j in jobs if j["state"] in allowed]
    if name is not None:
        jobs = [j for j in jobs if j["name"] in name.split(",")]
    if "-h" not in argv and "--noheader" not in argv:
        print("JOBID PARTITION NAME ST NODELIST")
    for job in jobs:
        print(fmt(job, template))
    return 0


def scontrol(argv: list[str]) -> int:
    args = [a for a in argv if a not in ("-o", "--oneliner")]
    if args[:1] == ["ping"]:
        if down():
            print("Slurmctld(primary) at fakectl is DOWN")
            return 1
        print("Slurmctld(primary) at fakectl is UP")
        return 0
    if down():
        print(f"slurm_load_jobs error: {NOT_REACHABLE}", file=sys.stderr)
        return 1
    if args[:2] == ["show", "job"] and len(args) >= 3:
        job = load(args[2])
        if job is None or not visible(job):
            print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
            return 1
        nodes = job.get("node") or "(null)"
        print(f"JobId={job['id']} JobName={job['name']} UserId={job['user']}(0) JobState={job['state']} "
              f"Reason=None ExitCode={job['exit']} RunTime=00:00:01 TimeLimit={job['time'] or 'UNLIMITED'} "
              f"Partition={job['partition']} NodeList={nodes} BatchHost={job.get('node') or '(null)'} "
              f"WorkDir={job['workdir']} StdOut={job['output']} TresPerNode={job['gres'] or '(null)'}")
        return 0
    print(f"scontrol: error: fake scontrol does not know {' '.join(argv)}", file=sys.stderr)
    return 1


def sacct(argv: list[str]) -> int:
    if not ACCOUNTING:
        print("Slurm accounting storage is disabled", file=sys.stderr)
        return 1
    if down():
        print("sacct: error: Problem talking to the database: Connection refused", file=sys.stderr)
        return 1
    ids = (option_values(argv, "-j", "jobs") or "").split(",")
    fields = (option_values(argv, "-o", "format") or "JobID,JobName,State,ExitCode").split(",")
    sep = "|" if ("-P" in argv or "--parsable2" in argv) else " "
    if "-n" not in argv and "--noheader" not in argv:
        print(sep.join(fields))
    for job_id in ids:
        job = load(job_id)
        if job is None:
            continue
        state = job["state"] + (" by 0" if job["state"] == "CANCELLED" else "")
        values = {"jobid": job["id"], "jobname": job["name"], "state": state, "exitcode": job["exit"],
                  "nodelist": job.get("node") or "None assigned", "workdir": job["workdir"]}
        print(sep.join(values.get(f.lower(), "") for f in fields))
    return 0


def scancel(argv: list[str]) -> int:
    if down():
        print(f"scancel: error: Kill job error on job id {' '.join(argv)}: {NOT_REACHABLE}", file=sys.stderr)
        return 1
    rc = 0
    for job_id in [a for a in argv if not a.startswith("-")]:
        with locked():
            job = load(job_id)
            if job is None or not visible(job):
                print(f"scancel: error: Kill job error on job id {job_id}: Invalid job id specified", file=sys.stderr)
                rc = 1
                continue
            if job["state"] in FINISHED:
                print(f"scancel: error: Kill job error on job id {job_id}: Job/step already completing or completed",
                      file=sys.stderr)
                rc = 1
                continue
            if job["state"] == "PENDING":
                job.update(state="CANCELLED", exit="0:0", end=time.time())
            else:
                job["cancel"] = True
            save(job)
    return rc


def sinfo(argv: list[str]) -> int:
    if down():
        print(f"slurm_load_partitions: {NOT_REACHABLE}", file=sys.stderr)
        return 1
    partition = option_values(argv, "-p", "partition")
    template = option_values(argv, "-o", "format") or "%P %T %N %G"
    parts = PARTITIONS if partition is None else [p for p in PARTITIONS if p in partition.split(",")]
    running = [j for j in all_jobs() if j["state"] == "RUNNING"]
    state = "idle" if not running else ("allocated" if len(free_gpus(running)) == 0 and GPUS else "mixed")
    for part in parts:
        values = {"N": NODE, "n": NODE, "T": state, "t": state, "G": f"gpu:{GPUS}" if GPUS else "(null)",
                  "P": part + ("*" if part == PARTITIONS[0] else ""), "R": part, "D": "1"}
        print(re.sub(r"%(\.?\d*)([A-Za-z])", lambda m, values=values: values.get(m.group(2), ""), template))
    return 0


COMMANDS = {"sbatch": sbatch, "squeue": squeue, "scontrol": scontrol, "sacct": sacct, "scancel": scancel,
            "sinfo": sinfo}


def main() -> int:
    if not str(STATE) or str(STATE) == ".":
        print("fake slurm: set FAKE_SLURM_DIR", file=sys.stderr)
        return 2
    if len(sys.argv) >= 3 and sys.argv[1] == "_node":
        return node(sys.argv[2])
    if len(sys.argv) >= 3 and sys.argv[1] == "_step":
        return step(sys.argv[2])
    name = Path(sys.argv[0]).name
    if name not in COMMANDS:
        name, argv = sys.argv[1], sys.argv[2:]
    else:
        argv = sys.argv[1:]
    log_call(name, argv)
    return COMMANDS[name](argv)


if __name__ == "__main__":
    sys.exit(main())
