"""The Ray executor's helpers: its errors, stable submission ids, where the cluster runs (this
machine or not), the worktree a job runs in, log bookkeeping and the shared-filesystem probe."""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import shlex
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from agentdeck.research.executors.base import JobSpec
from agentdeck.research.gpus import CPU_SLOT


class RayUnreachable(Exception):
    """The cluster did not answer (refused, timed out, or an internal dashboard error)."""


class JobMissing(Exception):
    """The cluster answered that it has no such job."""


class DuplicateJob(Exception):
    """The cluster already has a job with this submission id."""


def submission_id_for(spec: JobSpec) -> str:
    name = spec.name or f"agentdeck-{spec.tag}-{spec.trial_id}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:120]


def is_local_address(address: str) -> bool:
    """True for no address (Ray discovers the local cluster) or one naming this machine."""
    if not address or address == "auto":
        return True
    host = urlparse(address if "://" in address else f"http://{address}").hostname or ""
    if not host:
        return True
    try:
        if ipaddress.ip_address(host).is_loopback or host in ("0.0.0.0", "::"):
            return True
    except ValueError:
        if host == "localhost":
            return True
    names = {socket.gethostname(), socket.getfqdn()}
    if host in names:
        return True
    try:
        local_ips = set(socket.gethostbyname_ex(socket.gethostname())[2])
        return host in local_ips or socket.gethostbyname(host) in local_ips
    except OSError:
        return False


def worktree_root(path: Path) -> Path:
    """The worktree holding *path* (the nearest folder with a ``.git`` entry), else *path*."""
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return path


class _LogSync:
    __slots__ = ("final", "head", "length", "path", "synced")

    def __init__(self, path: Path):
        self.path = path
        self.length = 0  # characters of Ray's log text already in the file
        self.head = ""
        self.synced = False  # False: the next sync rewrites the file (after a submit or reattach)
        self.final = False


def job_request(spec: JobSpec, submission_id: str, ray: Any, upload: bool) -> dict[str, Any]:
    """The keyword arguments of ``submit_job`` for *spec* under ``[research.ray]`` settings *ray*, the
    worktree uploaded (*upload*) or run in place (pure: no cluster needed)."""
    runtime_env = copy.deepcopy(ray.runtime_env or {})
    env_vars = {str(k): str(v) for k, v in (runtime_env.get("env_vars") or {}).items()}
    env_vars.setdefault("PYTHONUNBUFFERED", "1")
    env_vars.update({str(k): str(v) for k, v in spec.env.items()})
    runtime_env["env_vars"] = env_vars
    command = f"exec /bin/sh -c {shlex.quote(spec.command)}"
    if upload:
        root = worktree_root(Path(spec.cwd))
        runtime_env["working_dir"] = str(root)
        runtime_env["excludes"] = list(runtime_env.get("excludes") or []) + [".git"]
        rel = os.path.relpath(spec.cwd, root)
        entrypoint = command if rel == "." else f"cd {shlex.quote(rel)} && {command}"
    else:
        runtime_env.pop("working_dir", None)
        entrypoint = f"cd {shlex.quote(str(spec.cwd))} && {command}"
    gpus = 0.0 if spec.slot == CPU_SLOT else float(ray.num_gpus or 0)
    request: dict[str, Any] = {
        "entrypoint": entrypoint,
        "submission_id": submission_id,
        "runtime_env": runtime_env,
        "metadata": {"agentdeck_tag": spec.tag, "agentdeck_trial": str(spec.trial_id),
                     "agentdeck_cwd": str(spec.cwd)},
    }
    if gpus > 0:
        request["entrypoint_num_gpus"] = gpus
    return request


class RayCalls(Protocol):
    """What the probe calls through: the :class:`~agentdeck.research.executors.ray.RayExecutor`'s
    client and its deadline-bound call (a protocol, so this module never imports the executor)."""

    def client(self) -> Any: ...
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


def probe(ex: RayCalls, key: str, timeout_s: float) -> tuple[bool | None, str]:
    """Submit a job that reads a token written in the research folder *key*: (True | False | None, detail)."""
    probe_dir = Path(key) / ".probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    token_file = probe_dir / f"{token}.token"
    token_file.write_text(token + "\n")
    entry = f'test "$(cat {shlex.quote(str(token_file))} 2>/dev/null)" = {shlex.quote(token)} && hostname'
    deadline = time.monotonic() + timeout_s
    try:
        sid = ex._call(ex.client().submit_job, entrypoint=entry, submission_id=f"agentdeck-fs-probe-{token[:12]}")
        while time.monotonic() < deadline:
            info = ex._call(ex.client().get_job_info, sid)
            status = str(getattr(info.status, "value", info.status))
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                node = ex._call(ex.client().get_job_logs, sid).strip().splitlines()[-1:] or ["?"]
                if status == "SUCCEEDED":
                    result = (True, f"{key} is shared with the Ray nodes (a probe job on {node[0]} read it)")
                else:
                    result = (False, f"the research folder {key} is not visible to the Ray cluster's nodes (a "
                                     "probe job could not read a file written there); mount it at the same "
                                     "path on every node, or set [research.ray] shared_fs = false to upload "
                                     "each worktree")
                return result
            time.sleep(0.2)
        ex._call(ex.client().stop_job, sid)
        return None, "the shared-filesystem probe job did not run in time (a busy cluster); unverified"
    except (RayUnreachable, JobMissing, DuplicateJob) as exc:
        return None, f"the shared-filesystem probe failed ({exc}); unverified"
    finally:
        token_file.unlink(missing_ok=True)
