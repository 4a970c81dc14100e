"""`agentdeck doctor`'s sandbox findings: does bubblewrap work here, and what the config gets.

Each finding has doctor's shape ``{"name", "level", "detail", "fix"}``.  What research's
``[research] sandbox`` gets is research's own finding (:func:`agentdeck.research.isolation.doctor_checks`).
"""

from __future__ import annotations

from typing import Any


def doctor_checks(config: Any = None) -> list[dict[str, Any]]:
    from agentdeck.sandbox import probe

    found = probe()
    checks = []
    if found.works:
        checks.append({"name": "sandbox", "level": "ok", "detail": found.describe(), "fix": ""})
    else:
        checks.append({"name": "sandbox", "level": "warn", "detail": found.reason,
                       "fix": "install bubblewrap (apt-get install bubblewrap) and allow user namespaces "
                              "(sysctl kernel.unprivileged_userns_clone=1), or run as root"})
    from agentdeck.sandbox.agent_mode import doctor_checks as agent_checks  # agents' sandbox modes (issue 17)

    checks.extend(agent_checks(config))
    return checks
