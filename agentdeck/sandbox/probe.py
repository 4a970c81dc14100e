"""Does bubblewrap work on this machine?  Asked once per process, then remembered.

bubblewrap needs either user namespaces (any user) or root; either may be
off (``kernel.unprivileged_userns_clone = 0``, a container without
``CAP_SYS_ADMIN``, seccomp).  The probe runs the real thing — a sandbox with the
flags every profile uses (its own pid, network and user namespaces, the host
file system read-only, a private ``/tmp``) running ``true`` — rather than
guessing from sysctls, and says why not in one line when it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from dataclasses import dataclass

PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Probe:
    """What bubblewrap can do here."""

    works: bool
    """A sandbox starts (with or without a user namespace)."""
    userns: bool = False
    """It can create a user namespace (a non-root uid inside, no capabilities)."""
    disable_userns: bool = False
    """``--disable-userns`` is understood (nested user namespaces can be forbidden)."""
    bwrap: str = ""
    """The bwrap binary used."""
    version: str = ""
    reason: str = ""
    """Why it does not work ("" when it does)."""

    def describe(self) -> str:
        if not self.works:
            return self.reason
        how = "user namespaces" if self.userns else "root without a user namespace"
        return f"bubblewrap {self.version} works ({how})".replace("  ", " ")


_lock = threading.Lock()
_cached: Probe | None = None

_BASE = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--die-with-parent", "--new-session",
         "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]


def _try(argv: list[str]) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT_S, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode == 0:
        return True, ""
    lines = [line.strip() for line in (proc.stderr or "").splitlines() if line.strip()]
    return False, (lines[-1] if lines else f"exit {proc.returncode}")


def _probe() -> Probe:
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return Probe(False, reason="bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    try:
        version = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                                 timeout=PROBE_TIMEOUT_S).stdout.strip().split()[-1]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        version = ""
    inside = str(inside_uid())
    user = ["--unshare-user", "--uid", inside, "--gid", inside]
    ok, why = _try([bwrap, *user, "--disable-userns", *_BASE, "true"])
    if ok:
        return Probe(True, userns=True, disable_userns=True, bwrap=bwrap, version=version)
    ok, why_user = _try([bwrap, *user, *_BASE, "true"])
    if ok:
        return Probe(True, userns=True, bwrap=bwrap, version=version)
    if os.geteuid() == 0:
        ok, why_root = _try([bwrap, "--cap-drop", "ALL", *_BASE, "true"])
        if ok:
            return Probe(True, userns=False, bwrap=bwrap, version=version)
        why_user = why_root or why_user
    return Probe(False, bwrap=bwrap, version=version,
                 reason=f"bubblewrap {version} cannot create a sandbox here: {why_user or why}".replace("  ", " "))


def probe(refresh: bool = False) -> Probe:
    """The probe's result, run on first use (or again with *refresh*)."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            _cached = _probe()
        return _cached


def inside_uid() -> int:
    """The uid a sandboxed process has: the caller's own, or 1000 for root (never 0 inside)."""
    uid = os.getuid()
    return uid if uid != 0 else 1000
