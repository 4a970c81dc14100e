"""Helpers for the cluster tests: one real local Ray cluster per test run, fake and real Slurm.

Ray: ``shared_ray_cluster()`` starts ``ray start --head --block --num-gpus=2 --num-cpus=4`` on
127.0.0.1 with every port chosen free and its own ``--temp-dir``, once per test run: pytest-xdist
workers of one run (same ``PYTEST_XDIST_TESTRUNUID``) share it through a lock file and a list of
holders; the last holder to finish stops it (SIGTERM to the ``ray start --block`` process, which
takes its daemons down; then SIGKILL to whatever is left in its session).  A small reaper process
stops it too if the test run dies without tearing down.

Slurm: ``fake_slurm_env(tmp_path)`` puts ``tests/fake_slurm`` first on PATH; ``real_slurm()`` says
whether ``tests/setup_slurm.sh``'s cluster answers.

``AGENTDECK_REQUIRE_CLUSTER=1`` turns every "skip: no Ray / no Slurm" into a failure (CI).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
FAKE_SLURM = HERE / "fake_slurm"
REQUIRE = os.environ.get("AGENTDECK_REQUIRE_CLUSTER") == "1"
RAY_GPUS = 2
RAY_CPUS = 4
SLURM_MARKER = "# agentdeck test cluster (tests/setup_slurm.sh)"


def skip_or_fail(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (AGENTDECK_REQUIRE_CLUSTER=1 requires it)")
    pytest.skip(reason)


# ============================================================================ Ray
def ray_missing() -> str | None:
    """Why the Ray tests cannot run here, or None."""
    try:
        import ray.job_submission  # noqa: F401 - only whether it imports
    except ImportError:
        return "Ray is not installed (pip install 'agentdeck[ray]')"
    if shutil.which("ray") is None:
        return "the `ray` command is not on PATH"
    return None


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _run_id() -> str:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    return run[:10] if run else f"p{os.getpid()}"


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 3 and int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def stop_ray(pid: int, wait_s: float = 30.0) -> None:
    """Stop the cluster started by ``ray start --block`` (pid, also its session id)."""
    if pid <= 1:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    for other in _session_pids(pid):
        try:
            os.kill(other, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_ray(temp_dir: Path, log: Path, timeout: float = 120.0, watch_pid: int = 0,
              base: Path | None = None) -> dict[str, Any]:
    """Start a head node on 127.0.0.1 with free ports; return ``{"address", "pid", "temp_dir"}``.

    With *watch_pid*, a reaper process stops the cluster (and removes *base*) once that process is
    gone, even if it dies before the cluster is up.
    """
    from ray.job_submission import JobSubmissionClient

    (gcs, dash, agent_http, agent_grpc, renv, metrics, nm, om, client) = free_ports(9)
    argv = [
        "ray", "start", "--head", "--block", f"--num-gpus={RAY_GPUS}", f"--num-cpus={RAY_CPUS}",
        f"--port={gcs}", "--node-ip-address=127.0.0.1", "--include-dashboard=true",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--runtime-env-agent-port={renv}",
        f"--metrics-export-port={metrics}", f"--node-manager-port={nm}", f"--object-manager-port={om}",
        f"--ray-client-server-port={client}", f"--temp-dir={temp_dir}", "--disable-usage-stats",
        "--object-store-memory=100000000",
    ]
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, cwd="/")
    if watch_pid:
        _spawn_reaper(watch_pid, proc.pid, base or temp_dir)
    from ray.util.state import list_nodes

    address = f"http://127.0.0.1:{dash}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            JobSubmissionClient(address).list_jobs()
            # Ready once the head node is registered with its GPUs (the Jobs API answers earlier).
            nodes = list_nodes(address=address, detail=True, raise_on_missing_output=False)
            if any(n.state == "ALIVE" and n.resources_total.get("GPU") for n in nodes):
                break
            raise RuntimeError("no node yet")
        except Exception as exc:
            if time.monotonic() > deadline:
                stop_ray(proc.pid)
                raise RuntimeError(f"the Ray cluster did not answer within {timeout:g}s; see {log}") from exc
            time.sleep(0.25)
    return {"address": address, "pid": proc.pid, "temp_dir": str(temp_dir)}


def _spawn_reaper(watch_pid: int, ray_pid: int, base: Path) -> None:
    subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "reap", str(watch_pid), str(ray_pid), str(base)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _answers(address: str) -> bool:
    try:
        from ray.job_submission import JobSubmissionClient

        JobSubmissionClient(address).list_jobs()
        return True
    except Exception:
        return False


@contextmanager
def shared_ray_cluster() -> Iterator[dict[str, Any]]:
    """The run's Ray cluster (started by the first worker that needs it, stopped by the last)."""
    base = Path("/tmp") / f"adray-{_run_id()}"
    base.mkdir(parents=True, exist_ok=True)
    lock, info_path, holders_path = base / "lock", base / "cluster.json", base / "holders"
    me = os.getpid()
    with _locked(lock):
        info = json.loads(info_path.read_text()) if info_path.exists() else None
        if info is None or not _alive(info["pid"]) or not _answers(info["address"]):
            if info is not None:
                stop_ray(info["pid"])
            t0 = time.monotonic()
            watch = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else me
            info = start_ray(base / "r", base / "ray.log", watch_pid=watch, base=base)
            info["start_s"] = round(time.monotonic() - t0, 1)
            info_path.write_text(json.dumps(info))
        holders = {int(x) for x in holders_path.read_text().split()} if holders_path.exists() else set()
        holders_path.write_text(" ".join(str(p) for p in sorted({p for p in holders if _alive(p)} | {me})))
    try:
        yield info
    finally:
        with _locked(lock):
            holders = {int(x) for x in holders_path.read_text().split()} if holders_path.exists() else set()
            holders = {p for p in holders if p != me and _alive(p)}
            holders_path.write_text(" ".join(str(p) for p in sorted(holders)))
            if not holders:
                stop_ray(info["pid"])
                info_path.unlink(missing_ok=True)
                shutil.rmtree(base / "r", ignore_errors=True)
                last = True
            else:
                last = False
        if last:  # the run's last holder: nothing of the cluster is left behind
            shutil.rmtree(base, ignore_errors=True)


@contextmanager
def exclusive_ray_gpus() -> Iterator[None]:
    """Hold the shared cluster's GPUs for one test (xdist workers share the cluster; GPU tests queue)."""
    base = Path("/tmp") / f"adray-{_run_id()}"
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / "gpus.lock"):
        yield


def reap(watch_pid: int, ray_pid: int, base: str = "") -> None:
    """Stop the cluster once the test run (watch_pid) is gone."""
    while _alive(watch_pid) and _alive(ray_pid):
        time.sleep(1.0)
    if _alive(ray_pid):
        stop_ray(ray_pid)
        if base:
            shutil.rmtree(base, ignore_errors=True)


# ============================================================================ Slurm
def fake_slurm_env(monkeypatch, state_dir: Path, **knobs: Any) -> Path:
    """Put the fake Slurm commands first on PATH, state in *state_dir*; knobs: FAKE_SLURM_<NAME>."""
    state_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("PATH", f"{FAKE_SLURM}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state_dir))
    monkeypatch.setenv("FAKE_SLURM_PYTHON", sys.executable)
    for key in ("GPUS", "DELAY", "MINJOBAGE", "ACCOUNTING", "PRIVATE", "PARTITIONS", "NODE", "KILLWAIT"):
        monkeypatch.delenv(f"FAKE_SLURM_{key}", raising=False)
    for key, value in knobs.items():
        monkeypatch.setenv(f"FAKE_SLURM_{key.upper()}", str(value))
    return state_dir


def fake_calls(state_dir: Path, command: str | None = None) -> list[str]:
    path = state_dir / "calls.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line for line in lines if command is None or line.split(" ", 1)[0] == command]


def can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-m", "/bin/true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def real_slurm() -> str | None:
    """Why the real-Slurm tests cannot run here (None when tests/setup_slurm.sh's cluster answers)."""
    conf = Path("/etc/slurm/slurm.conf")
    if not conf.exists() or SLURM_MARKER not in conf.read_text(errors="replace"):
        return "no test Slurm cluster (run `bash tests/setup_slurm.sh` as root)"
    for exe in ("sbatch", "squeue", "scontrol", "scancel", "sinfo"):
        if shutil.which(exe) is None:
            return f"{exe} is not on PATH"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "scontrol ping did not answer"
    if "UP" not in ping.stdout:
        return f"the test Slurm controller is not up ({ping.stdout.strip() or ping.stderr.strip()})"
    return None


def slurm_conf_gpus() -> int:
    text = Path("/etc/slurm/slurm.conf").read_text(errors="replace")
    for line in text.splitlines():
        if line.startswith("NodeName=") and "Gres=gpu:" in line:
            return int(line.split("Gres=gpu:")[1].split()[0])
    return 0


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "reap":
    reap(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
