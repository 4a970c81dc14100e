"""`agentdeck doctor`: what is installed, what is configured, what is broken, and what to fix.

Every finding is a dict ``{"name", "level": "ok|warn|error", "detail", "fix"}``:
``detail`` names what was found, ``fix`` what to do about it.  ``doctor --fix``
repairs what is safe to repair and adds ``"fixed"`` (what it did) to the
finding it repaired:

* **state** — the state folder and database must be writable (a read-only
  folder makes every change fail half way); only the user can fix that.
* **state database** — a file SQLite cannot read (``PRAGMA quick_check``, or
  the open itself failing) is moved aside as ``state.db.corrupt-<stamp>``
  (with its ``-wal``/``-shm``), and the agents are re-adopted from disk into a
  new database (:mod:`agentdeck.adopt`).
* **agents on disk** — this repository's tmux sessions and worktrees that no
  row claims (a database deleted, an adoption that failed): adopted, so
  ``gc`` never offers to delete live work.
* **merges** — a merge killed while it rewrote a checkout (its journal is
  left, often with a stale ``index.lock``): finished
  (:mod:`agentdeck.review.merge_journal`).  A stray ``index.lock`` no journal
  explains is only named: whose it is, only the user can tell.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _check(name: str, level: str, detail: str, fix: str = "") -> dict[str, Any]:
    return {"name": name, "level": level, "detail": detail, "fix": fix}


def _tool_check(name: str, version: Callable[[], tuple[int, ...]], minimum: tuple[int, ...], fix: str,
                missing_fix: str = "") -> dict[str, Any]:
    """A program agentdeck runs: on the PATH, and at least version *minimum*."""
    if not shutil.which(name):
        return _check(name, "error", "not found", missing_fix or fix)
    v = version()
    return _check(name, "ok" if v >= minimum else "error", f"{v[0]}.{v[1]}", fix)


def run_checks(repo: str | None = None, fix: bool = False) -> list[dict[str, Any]]:
    from agentdeck import git, tmux
    from agentdeck.errors import AgentdeckError

    checks: list[dict[str, Any]] = []
    py = sys.version_info
    checks.append(_check("python", "ok" if py >= (3, 10) else "error", f"{py.major}.{py.minor}.{py.micro}",
                         "install Python >= 3.10"))
    checks.append(_tool_check("git", git.version, git.MIN_GIT, "install git >= 2.38"))
    checks.append(_tool_check("tmux", tmux.version, tmux.MIN_TMUX, "install tmux >= 3.2",
                              missing_fix="install tmux >= 3.2 (apt-get install tmux)"))

    from agentdeck import paths
    from agentdeck.config import load_config

    try:
        repo_paths = paths.find_repo(repo)
    except AgentdeckError as err:
        checks.append(_check("repository", "warn" if "git repository" in str(err) else "error", str(err)))
        return checks
    checks.append(_check("repository", "ok", str(repo_paths.root)))
    try:
        config = load_config(repo_paths.root)
    except AgentdeckError as err:
        checks.append(_check("config", "error", str(err), "fix the file named above"))
        return checks
    sources = ", ".join(str(p) for p in config.sources) or "defaults (no .agentdeck.toml)"
    checks.append(_check("config", "ok", sources))

    state = _state_check(repo_paths)
    checks.append(state)
    database = _database_check(repo_paths, fix) if state["level"] != "error" else None
    if database is not None:
        checks.append(database)
    from agentdeck.tmux import Tmux, default_socket

    try:
        server = Tmux(default_socket(config.deck.tmux_socket), paths.agentdeck_home())
        alive = server.is_alive()
        checks.append(_check("tmux server", "ok", f"-L {server.socket} " + ("running" if alive else "not running")))
    except AgentdeckError:
        pass  # tmux itself is missing: said above
    deck = None
    if database is not None and database["level"] != "error":
        try:
            from agentdeck.deck import Deck

            deck = Deck(repo_paths, config)
        except AgentdeckError as err:
            checks.append(_check("deck", "error", str(err)))
    try:
        if deck is not None:
            checks.extend(_agents_on_disk(deck, fix))
            checks.extend(_merge_checks(deck, fix))
            # Agents and folders left by an interrupted `new`/`kill` (deck.stuck, issue 12), with their fix.
            for stuck in deck.stuck():
                checks.append(_check(stuck.name, "warn", stuck.detail, stuck.fix))
        from agentdeck.agents import get_adapter

        for definition in config.definitions():
            try:
                adapter = get_adapter(definition, config)
                adapter.check_installed()
                checks.append(_check(f"agent {definition}", "ok", " ".join(adapter.command_argv()[:1])))
            except AgentdeckError as err:
                level = "error" if definition == config.deck.default_agent else "warn"
                checks.append(_check(f"agent {definition}", level, str(err)))
        if deck is not None:
            try:
                from agentdeck.research.cluster import doctor_checks  # added by the cluster work
            except ImportError:
                pass
            else:
                checks.extend(doctor_checks(deck))
            from agentdeck.mcp_link.service import doctor_checks as mcp_checks  # the MCP server (issue 15)

            checks.extend(mcp_checks(deck))
        from agentdeck.sandbox.doctor import doctor_checks as sandbox_checks  # bubblewrap (issue 14)

        checks.extend(sandbox_checks(config))
        from agentdeck.research.isolation import doctor_checks as research_sandbox_checks

        checks.extend(research_sandbox_checks(config))
    finally:
        if deck is not None:
            deck.close()
    return checks


# ---------------------------------------------------------------------- state folder and database


def _unwritable(repo_paths) -> tuple[Path, str] | None:
    """The first state path that cannot be written, and why (a real write is tried: permission
    bits say nothing to root, and a read-only mount answers only to a write)."""
    state = repo_paths.state_dir
    folder = state if state.exists() else state.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".doctor-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return folder, exc.strerror or str(exc)
    db = repo_paths.db_path
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists() and not os.access(path, os.W_OK):
            return path, "no write permission"
    return None


def _state_check(repo_paths) -> dict[str, Any]:
    bad = _unwritable(repo_paths)
    if bad is None:
        return _check("state", "ok", f"{repo_paths.state_dir} (writable)")
    path, why = bad
    return _check(
        "state", "error", f"{path} is not writable ({why}): agentdeck cannot record or change agents",
        f"make it writable (`chmod u+w {path}`, fix its owner, or remount the file system read-write) "
        "and run `agentdeck doctor` again",
    )


def _database_check(repo_paths, fix: bool) -> dict[str, Any]:
    from agentdeck.store import CorruptState, Store

    db = repo_paths.db_path
    problem = ""
    try:
        store = Store(db)
    except CorruptState as err:
        problem = err.detail or "it cannot be opened"
    else:
        try:
            complaints = store.quick_check()
            problem = "; ".join(complaints[:3])
        except CorruptState as err:
            problem = err.detail or "it cannot be read"
        finally:
            store.close()
    if not problem:
        return _check("state database", "ok", f"{db} (quick_check ok)")
    found = _check(
        "state database", "error", f"{db} is corrupt ({problem})",
        "run `agentdeck doctor --fix`: it moves the file aside (state.db.corrupt-<stamp>) and rebuilds "
        "the agent list from the tmux sessions and worktrees on disk",
    )
    if fix:
        moved = move_aside(db)
        found["fixed"] = f"moved the corrupt database to {moved}; a new one re-adopts the agents on disk"
        found["level"] = "ok"
    return found


def move_aside(db: Path) -> Path:
    """Rename a broken database and its -wal/-shm to ``<name>.corrupt-<stamp>``; returns the new name.
    Processes that still have it open keep their files (and a watcher sees the change and stops)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db.with_name(f"{db.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = db.with_name(f"{db.name}.corrupt-{stamp}-{n}")
    # The -wal/-shm first: a database without them is whole, they without it are ignored.
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db}{suffix}")
        if side.exists():
            os.replace(side, f"{target}{suffix}")
    if db.exists():
        os.replace(db, target)
    return target


# ---------------------------------------------------------------------- agents and merges


def _agents_on_disk(deck, fix: bool) -> list[dict[str, Any]]:
    from agentdeck import adopt

    out = []
    adopted_now = [r.name for r in deck.store.list_agents()
                   if isinstance(r.extra.get("adopted"), dict) and _recent(r.extra["adopted"].get("at"))]
    try:
        found = adopt.scan(deck)
    except Exception as exc:  # a finding, not a crash
        return [_check("agents on disk", "warn", f"could not look for agents on disk: {exc}")]
    if found:
        item = _check(
            "agents on disk", "warn",
            f"{len(found)} not in the state database: " + "; ".join(f.describe() for f in found[:5]),
            "run `agentdeck doctor --fix` to adopt them (until then `gc` counts them as orphans)",
        )
        if fix:
            done = adopt.adopt(deck, found)
            if adopt.pending(deck):
                deck.store.set_meta(adopt.ADOPT_PENDING, "0")
            item["fixed"] = f"adopted {len(done)}: {', '.join(r.name for r in done)}"
            item["level"] = "ok"
        out.append(item)
    elif adopt.pending(deck):
        out.append(_check("agents on disk", "warn", "the state database is new and was not matched with "
                          "the agents on disk yet (see logs/adopt.log)", "run `agentdeck doctor --fix`"))
        if fix:
            adopt.adopt_if_pending(deck)
            out[-1].update(level="ok", fixed="looked for agents on disk: none to adopt")
    else:
        detail = "every tmux session and worktree of this repository has its agent row"
        if adopted_now:
            detail += f" (re-adopted from disk: {', '.join(adopted_now)})"
        out.append(_check("agents on disk", "ok", detail))
    return out


def _recent(stamp: Any, within_s: float = 600) -> bool:
    from datetime import datetime, timezone

    if not isinstance(stamp, str):
        return False
    try:
        at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return False
    return time.time() - at < within_s


def _merge_checks(deck, fix: bool) -> list[dict[str, Any]]:
    from agentdeck.errors import AgentdeckError
    from agentdeck.review import merge_journal

    root = deck.repo.root
    out = []
    for journal in merge_journal.read_journals(root):
        left = merge_journal.inspect(root, journal)
        if left.state == "running":
            out.append(_check("merge", "ok", left.describe()))
            continue
        item = _check("merge", "error" if left.state in ("half", "moved") else "warn", left.describe(), left.fix())
        if fix:
            try:
                item["fixed"] = merge_journal.finish(root, journal)
                item["level"] = "ok"
            except AgentdeckError as err:
                item["fix"] = str(err)
        out.append(item)
    for lock in merge_journal.stray_index_locks(root):
        age = time.time() - lock.stat().st_mtime if lock.exists() else 0
        out.append(_check(
            "git lock", "warn", f"{lock} is left over ({age:.0f}s old) and no git command runs there",
            f"if no git command of yours is running, delete it (`rm {lock}`); git refuses to change that "
            "checkout until then",
        ))
    if not out:
        out.append(_check("merge", "ok", "no interrupted merge"))
    return out
