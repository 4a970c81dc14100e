"""The profiles agentdeck runs untrusted commands in (research jobs and evaluations; agents next).

Every profile starts from the same base (:func:`base_hidden`): the host file
system read-only, with the homes (``/home``, ``/root``, ``$HOME``), the
host's unix sockets (``/run``, a private ``/tmp``) and its secret files
(``/etc/shadow``, ``/etc/ssh``...) hidden, its own pid namespace, and no
network.  Each profile then names what its command needs:

- :func:`research_job` — the trial's worktree read-only (the proposal was
  committed before the job starts: nothing in it needs to change), the
  trial's artifact folder writable (the only place a write reaches the host);
  the repository, its ``.git``, agentdeck's state (ledger, ``results.tsv``,
  memory), the other trials and the evaluation's secrets hidden; the GPUs
  passed through; the network only with ``[research] network = true``.
- :func:`research_eval` — a fresh copy of the trial's committed files and the
  artifact folder, both read-only; nothing writable but its private /tmp and
  home; never the network.

What the command needs from a hidden home comes back read-only by rule
(:func:`path_binds`): a virtualenv or interpreter on ``PATH``.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from agentdeck.sandbox.profile import Profile

#: The host's unix sockets and runtime state (dbus, docker, systemd, the user's /run/user/UID).
HOST_SOCKETS = ("/run", "/var/run")
#: Files only root should read: hidden, since a sandbox run by root maps the host's root-owned
#: files to the uid inside.
HOST_SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/ssh", "/etc/sudoers",
                "/etc/sudoers.d", "/var/lib/sudo")
#: Where a sandboxed command's private home is (inside the private /tmp).
PRIVATE_HOME = "/tmp/home"
#: Folders every sandbox replaces with private, empty ones.
PRIVATE = ("/tmp", "/var/tmp")


def base_hidden(home: str | None = None) -> list[str]:
    """Paths every profile hides: the homes, the host's sockets, root-only secrets."""
    home = home if home is not None else os.path.expanduser("~")
    hidden = ["/home", "/root", *HOST_SOCKETS, *HOST_SECRETS]
    if home and home not in ("/", ""):
        hidden.append(home)
    return hidden


def _under(path: str, roots: Iterable[str]) -> bool:
    real = os.path.realpath(path)
    for root in roots:
        r = os.path.realpath(root).rstrip("/") or "/"
        if real == r or real.startswith(r + "/"):
            return True
    return False


def path_binds(path_env: str, hidden: Iterable[str]) -> list[str]:
    """Folders on *path_env* (a PATH) that a hidden path would take away, shown again read-only:
    a ``.../bin`` folder brings its parent (a virtualenv's ``lib``), and the real location of
    ``python``/``python3`` its installation (a venv's interpreter links to one)."""
    hidden = list(hidden)
    out: list[str] = []
    for entry in path_env.split(os.pathsep):
        if not entry or not os.path.isabs(entry) or not _under(entry, hidden):
            continue
        real = os.path.realpath(entry)
        out.append(os.path.dirname(real) if os.path.basename(real) == "bin" else real)
    for name in ("python3", "python"):
        found = shutil.which(name, path=path_env)
        if found and _under(found, hidden):
            real = os.path.realpath(found)
            out.append(os.path.dirname(os.path.dirname(real)))
    out = list(dict.fromkeys(out))
    return [p for p in out if not any(q != p and _under(p, [q]) for q in out)]  # one bind per tree


def gpu_devices() -> list[str]:
    """Every NVIDIA device node (the driver's control nodes included)."""
    return sorted(glob.glob("/dev/nvidia*") + glob.glob("/dev/nvidia-caps/*"))


def _readable_extras(network: bool, devices: list[str]) -> list[str]:
    extras = []
    if network:  # name resolution: /etc/resolv.conf often links into the hidden /run
        resolv = os.path.realpath("/etc/resolv.conf")
        if resolv != "/etc/resolv.conf":
            extras.append(resolv)
    if devices and os.path.isdir("/run/nvidia-persistenced"):
        extras.append("/run/nvidia-persistenced")
    return extras


def research_job(*, cwd: str | Path, worktree: str | Path, artifact_dir: str | Path, hidden: Iterable[str],
                 env: Mapping[str, str], network: bool = False, gpus: bool = True) -> Profile:
    """A trial's job: see the module docstring.  *hidden*: the repository's own secrets (its root,
    ``.git``, agentdeck's state and trial folders), added to :func:`base_hidden`."""
    return _trial_profile(cwd=cwd, writable=(str(artifact_dir),), read_only=(str(worktree),), hidden=hidden,
                          env=env, network=network, gpus=gpus)


def research_eval(*, cwd: str | Path, tree: str | Path, artifact_dir: str | Path, hidden: Iterable[str],
                  env: Mapping[str, str], gpus: bool = True) -> Profile:
    """A trial's evaluation: its committed files (*tree*) and the job's artifacts, read-only."""
    return _trial_profile(cwd=cwd, writable=(), read_only=(str(tree), str(artifact_dir)), hidden=hidden,
                          env=env, network=False, gpus=gpus)


def _trial_profile(*, cwd: str | Path, writable: tuple[str, ...], read_only: tuple[str, ...],
                   hidden: Iterable[str], env: Mapping[str, str], network: bool, gpus: bool) -> Profile:
    """What a trial's job and its evaluation share: :func:`base_hidden` plus *hidden*, the folders
    on ``PATH`` and the readable extras shown again after *read_only*, the GPUs when *gpus*, the
    private home, the environment *env*."""
    all_hidden = [*base_hidden(), *hidden]
    devices = gpu_devices() if gpus else []
    return Profile(
        cwd=str(cwd),
        writable=writable,
        read_only=(*read_only, *path_binds(env.get("PATH", ""), [*all_hidden, *PRIVATE]),
                   *_readable_extras(network, devices)),
        hidden=tuple(all_hidden),
        devices=tuple(devices),
        network=network,
        home=PRIVATE_HOME,
        env=dict(env),
    ).resolved()
