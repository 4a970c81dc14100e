"""Deterministic fault points: a test hook, never tripped in normal use.

``fault_point("name")`` kills the calling process with SIGKILL when the
environment variable ``AGENTDECK_FAULT`` equals *name*; otherwise it does
nothing (one environment lookup).  The fault-matrix tests set the variable on
one CLI run to stop a multi-step operation exactly between two steps (as
``kill -9`` would), then check that agentdeck detects and finishes or undoes
what was left, without ``sleep`` races.

Standard library only: the hook path may import it.
"""

from __future__ import annotations

import os
import signal

ENV_FAULT = "AGENTDECK_FAULT"


def fault_point(name: str) -> None:
    """Die here, as ``kill -9`` would, when ``AGENTDECK_FAULT`` is *name* (tests only)."""
    if os.environ.get(ENV_FAULT) == name:
        os.kill(os.getpid(), signal.SIGKILL)
