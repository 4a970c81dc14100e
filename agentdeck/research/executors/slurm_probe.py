"""The Slurm executor's shared-filesystem probe: a tiny job (no GPU) that reads a token written in the
research folder and writes an answer back; a probe that cannot means the nodes do not share it."""

from __future__ import annotations

import shlex
import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agentdeck.research.executors.slurm_states import DONE, LOST, SlurmUnreachable, exit_code_of

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.config import SlurmSettings


class SlurmCommands(Protocol):
    """What the probe runs through: the :class:`~agentdeck.research.executors.slurm.SlurmExecutor`'s
    settings and command plumbing (a protocol, so this module never imports the executor)."""

    @property
    def slurm(self) -> SlurmSettings: ...
    def _run(self, *argv: str, input: str | None = None,
             timeout: float | None = None) -> subprocess.CompletedProcess[str]: ...
    def _first_line(self, proc: subprocess.CompletedProcess[str]) -> str: ...
    def _query_one(self, job_id: str) -> tuple[str, str, str] | None: ...


def probe(ex: SlurmCommands, research_dir: Path, timeout_s: float) -> tuple[bool | None, str]:
    """Send the probe job: can a node read a token written in *research_dir*, and write back?"""
    probe_dir = research_dir / ".probe"
    probe_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    token_file, answer = probe_dir / f"{token}.token", probe_dir / f"{token}.answer"
    token_file.write_text(token + "\n")
    script = "\n".join([
        "#!/bin/sh",
        "# agentdeck: is the research folder on a filesystem this node shares?",
        f'[ "$(cat {shlex.quote(str(token_file))} 2>/dev/null)" = {shlex.quote(token)} ] || exit 3',
        f"hostname > {shlex.quote(str(answer))} || exit 4",
        "exit 0",
        "",
    ])
    argv = ["sbatch", "--parsable", "--job-name=agentdeck-fs-probe", "--output=/dev/null", "--chdir=/",
            "--time=0:01:00"]
    if ex.slurm.partition:
        argv.append(f"--partition={ex.slurm.partition}")
    argv += list(ex.slurm.sbatch_args)
    not_shared = (f"the research folder {research_dir} is not on a filesystem the Slurm nodes share "
                  "(a probe job could not {what}); put the repository on a shared filesystem (NFS, Lustre, "
                  "BeeGFS...) that every compute node mounts at the same path, or use executor = \"local\"")
    try:
        try:
            proc = ex._run(*argv, input=script)
        except SlurmUnreachable as exc:
            return None, f"the shared-filesystem probe could not be submitted ({exc})"
        if proc.returncode != 0:
            return None, f"the shared-filesystem probe could not be submitted: {ex._first_line(proc)}"
        job_id = proc.stdout.strip().split(";")[0]
        deadline = time.monotonic() + timeout_s
        final: tuple[str, str, str] | None = None
        while time.monotonic() < deadline:
            if answer.exists():
                node = answer.read_text(errors="replace").strip()
                return True, f"{research_dir} is shared with the nodes (a probe job on {node or 'a node'} read it)"
            info = ex._query_one(job_id)
            if info is not None and (info[0] in DONE or info[0] in LOST):
                final = info
                break
            time.sleep(0.1)
        if final is None:
            ex._run("scancel", job_id, timeout=20)
            return None, (f"the shared-filesystem probe (job {job_id}) did not run within {timeout_s:g}s; "
                          "the queue is busy, so it is unverified")
        state, node, code = final
        rc = exit_code_of(state, code)
        if rc == 0:
            # A shared filesystem may show the answer a moment after the job ended (attribute caches).
            settle = time.monotonic() + 5.0
            while time.monotonic() < settle and not answer.exists():
                time.sleep(0.1)
        if answer.exists():
            return True, f"{research_dir} is shared with the nodes (probe job {job_id} on {node or 'a node'})"
        if state == "COMPLETED" or rc == 4:
            return False, not_shared.format(what=f"write back into it from node {node or '?'}")
        if rc == 3:
            return False, not_shared.format(what=f"read a file written there, from node {node or '?'}")
        return None, f"the shared-filesystem probe (job {job_id}) ended {state} (exit {code}); unverified"
    finally:
        token_file.unlink(missing_ok=True)
        answer.unlink(missing_ok=True)
