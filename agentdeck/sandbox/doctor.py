"""`agentdeck doctor`'s sandbox findings: does bubblewrap work here, and what the config gets.

Each finding has doctor's shape ``{"name", "level", "detail", "fix"}``.
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
    research = getattr(config, "research", None)
    if research is not None:
        from agentdeck.research.isolation import resolve_sandbox

        resolved = resolve_sandbox(research.sandbox, research.executor)
        if resolved.error:
            checks.append({"name": "research sandbox", "level": "error", "detail": resolved.error,
                           "fix": "make bubblewrap work here, or set [research] sandbox = \"auto\""})
        else:
            level = "ok" if resolved.sandboxed or research.sandbox == "none" else "warn"
            what = "jobs and evaluations run in bubblewrap" if resolved.sandboxed else resolved.detail
            source = ("metric from the protected evaluation" if (research.eval_command or "").strip()
                      else "metric self-reported by the job (no [research] eval_command)")
            checks.append({"name": "research sandbox", "level": level, "detail": f"{what}; {source}",
                           "fix": "" if level == "ok" else "install bubblewrap to sandbox research jobs"})
    return checks
