"""Who is launching an agent, and whether that process is gone.

`new` marks its row ``launching`` while it creates branch, worktree, setup and pane; the row
records which process does it (:func:`agentdeck.procutil.process_identity`), so a launch that no
process is finishing any more (`new` killed during a slow setup_command) is seen at read time
(:func:`launch_abandoned`) and shown ``exited`` instead of ``starting`` forever.  A pid alone could
be reused: the process's start time (/proc/<pid>/stat field 22) makes the identity exact where
/proc exists.  Standard library only: the light commands use it too.
"""

from __future__ import annotations

import time
from typing import Any

# Who a process is, and whether it is gone, is agentdeck.procutil's (the merge journal asks too);
# re-exported for `agentdeck.status.process_identity` / `process_gone`.
from agentdeck.procutil import process_gone, process_identity

__all__ = ["LEGACY_LAUNCH_S", "launch_abandoned", "process_gone", "process_identity"]

LEGACY_LAUNCH_S = 6 * 3600  # a row from before launchers were recorded: given up after this long


def launch_abandoned(rec: Any) -> bool:
    """A row still marked ``launching`` whose launching process is gone."""
    if not rec.extra.get("launching"):
        return False
    ident = rec.extra.get("launcher")
    if isinstance(ident, dict):
        return process_gone(ident)
    return time.time() - (rec.status_at or 0) > LEGACY_LAUNCH_S
