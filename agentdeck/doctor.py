"""`agentdeck doctor`: what is installed, what is configured, and what to fix."""

from __future__ import annotations

import shutil
import sys
from typing import Any


def _check(name: str, level: str, detail: str, fix: str = "") -> dict[str, Any]:
    return {"name": name, "level": level, "detail": detail, "fix": fix}


def run_checks(repo: str | None = None) -> list[dict[str, Any]]:
    from agentdeck import git, tmux
    from agentdeck.errors import AgentdeckError

    checks: list[dict[str, Any]] = []
    py = sys.version_info
    checks.append(_check("python", "ok" if py >= (3, 10) else "error", f"{py.major}.{py.minor}.{py.micro}",
                         "install Python >= 3.10"))
    if shutil.which("git"):
        v = git.version()
        ok = v >= git.MIN_GIT
        checks.append(_check("git", "ok" if ok else "error", f"{v[0]}.{v[1]}", "install git >= 2.38"))
    else:
        checks.append(_check("git", "error", "not found", "install git >= 2.38"))
    if shutil.which("tmux"):
        v = tmux.version()
        ok = v >= tmux.MIN_TMUX
        checks.append(_check("tmux", "ok" if ok else "error", f"{v[0]}.{v[1]}", "install tmux >= 3.2"))
    else:
        checks.append(_check("tmux", "error", "not found", "install tmux >= 3.2 (apt-get install tmux)"))
    try:
        from agentdeck.deck import Deck

        deck = Deck.open(repo)
    except AgentdeckError as err:
        checks.append(_check("repository", "warn" if "git repository" in str(err) else "error", str(err)))
        return checks
    checks.append(_check("repository", "ok", str(deck.repo.root)))
    sources = ", ".join(str(p) for p in deck.config.sources) or "defaults (no .agentdeck.toml)"
    checks.append(_check("config", "ok", sources))
    checks.append(_check("state", "ok", str(deck.repo.state_dir)))
    alive = deck.tmux.is_alive()
    checks.append(_check("tmux server", "ok", f"-L {deck.tmux.socket} " + ("running" if alive else "not running")))
    from agentdeck.agents import get_adapter

    for definition in deck.config.definitions():
        try:
            adapter = get_adapter(definition, deck.config)
            adapter.check_installed()
            checks.append(_check(f"agent {definition}", "ok", " ".join(adapter.command_argv()[:1])))
        except AgentdeckError as err:
            level = "error" if definition == deck.config.deck.default_agent else "warn"
            checks.append(_check(f"agent {definition}", level, str(err)))
    try:
        from agentdeck.research.cluster import doctor_checks  # added by the cluster work
    except ImportError:
        pass
    else:
        checks.extend(doctor_checks(deck))
    return checks
