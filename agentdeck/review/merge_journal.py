"""A merge into a checked-out branch that was killed half way: recorded, recognised, finished.

Moving a checked-out branch means rewriting files on disk, thousands of them
for a large fast-forward, and no file system makes that one atomic step.  A
``kill -9`` in the middle leaves git's ``index.lock``, part of the files at the
new version and the branch at the old one; git then refuses every later
command in that checkout.  So the checkout update is journaled:

1. **Before** touching the checkout, ``merge`` writes a journal
   (``<state>/merges/<target>.json``: target, checkout, old and new commit, and
   the merging process's pid and start time).
2. It updates index and files with ``git read-tree -m -u OLD NEW`` (a two-tree
   merge: refused, changing nothing, if an untracked file or a local change is
   in the way), then moves the branch with ``update-ref TARGET NEW OLD``, then
   removes the journal.

A journal whose process is gone marks an interrupted merge.  :func:`inspect`
says what it left (``doctor`` shows it); :func:`finish` completes it (``doctor
--fix``, and the next ``merge`` into that target, do so):

* a leftover ``index.lock`` is removed only when no git process still works in
  that checkout;
* every path the merge touches is classified by what is on disk now: its old
  version, its new version, or something else (a file cut off by the kill, or
  the user's own edit since).  Those "something else" contents are kept first
  in a recovery ref (``refs/agentdeck/trash/merge-<target>/<stamp>``), so
  nothing is ever lost;
* the index is set to that on-disk state (``MID``), which makes the checkout
  clean against it, and ``git read-tree -m -u MID NEW`` writes only what is
  still missing; local changes to paths the merge does not touch and untracked
  files stay as they are.  Then the branch moves, and the journal goes.

Every step can itself be interrupted: the journal stays until the end and a
second run recomputes ``MID`` from the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat as stat_mod
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentdeck import git, paths
from agentdeck.errors import Refused
from agentdeck.fsutil import atomic_write
from agentdeck.procutil import process_gone, process_identity

JOURNAL_DIR = "merges"
LOCK_STALE_S = 10.0  # where running processes cannot be listed: a lock this old with no merger alive is stale


# ---------------------------------------------------------------------- the journal


def journal_dir(root: Path | str) -> Path:
    return paths.find_repo(root).state_dir / JOURNAL_DIR


def journal_path(root: Path | str, target: str) -> Path:
    key = hashlib.sha1(target.encode("utf-8")).hexdigest()[:8]
    return journal_dir(root) / f"{paths.slugify(target)}-{key}.json"


def write_journal(root: Path | str, *, target: str, checkout: Path | str, old: str, new: str,
                  agent: str = "", branch: str = "", strategy: str = "") -> Path:
    path = journal_path(root, target)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "target": target, "checkout": str(checkout), "old": old, "new": new, "agent": agent, "branch": branch,
        "strategy": strategy, "process": process_identity(), "started_at": time.time(),
    }
    atomic_write(path, json.dumps(data))
    return path


def read_journals(root: Path | str) -> list[dict[str, Any]]:
    folder = journal_dir(root)
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("target", "checkout", "old", "new")):
            data["path"] = str(path)
            out.append(data)
    return out


def journal_for(root: Path | str, target: str) -> dict[str, Any] | None:
    return next((j for j in read_journals(root) if j["target"] == target), None)


def remove_journal(journal: dict[str, Any]) -> None:
    Path(journal["path"]).unlink(missing_ok=True)


def merger_alive(journal: dict[str, Any]) -> bool:
    ident = journal.get("process")
    if not isinstance(ident, dict):
        return False
    if ident.get("pid") == os.getpid():
        return False  # this very process: an earlier step of it died with an exception
    return not process_gone(ident)


# ---------------------------------------------------------------------- what was left


@dataclass
class Leftover:
    """What an interrupted merge left in its checkout."""

    journal: dict[str, Any]
    state: str  # "running" | "finished" | "moved" | "half" | "missing"
    lock: Path | None = None  # a stale index.lock to remove
    touched: int = 0  # paths the merge changes
    at_new: int = 0
    at_old: int = 0
    other: list[str] = field(default_factory=list)  # neither version: kept in a recovery ref first
    blocked: list[str] = field(default_factory=list)  # cannot be captured (a folder where a file goes)
    head: str | None = None
    entries: list[tuple[str, str, str, str, str]] = field(default_factory=list, repr=False)
    disk: dict[str, tuple[str, str] | None] = field(default_factory=dict, repr=False)

    @property
    def target(self) -> str:
        return self.journal["target"]

    @property
    def checkout(self) -> str:
        return self.journal["checkout"]

    def describe(self) -> str:
        j = self.journal
        what = f"a merge of {j.get('branch') or 'an agent branch'} into {self.target}"
        if self.state == "running":
            return f"{what} is running (pid {j.get('process', {}).get('pid')}) in {self.checkout}"
        if self.state == "finished":
            return f"{what} was interrupted after it finished; only its journal is left"
        if self.state == "missing":
            return f"{what} was interrupted and its checkout {self.checkout} is gone"
        if self.state == "moved":
            return (f"{what} was interrupted in {self.checkout}, and {self.target} has moved since "
                    f"(now {(self.head or '?')[:10]}, expected {j['old'][:10]})")
        details = [f"{self.at_new} of {self.touched} changed files written"]
        if self.lock is not None:
            details.insert(0, f"stale {self.lock}")
        if self.other:
            details.append(f"{len(self.other)} neither old nor new: {', '.join(self.other[:3])}")
        if self.blocked:
            details.append(f"in the way: {', '.join(self.blocked[:3])}")
        return f"{what} was interrupted and left {self.checkout} half updated ({'; '.join(details)})"

    def fix(self) -> str:
        if self.state == "running":
            return "wait for it to finish"
        if self.state in ("finished", "missing"):
            return "`agentdeck doctor --fix` removes the journal"
        if self.state == "moved" or self.blocked:
            why = (f"{', '.join(self.blocked[:3])} cannot be captured" if self.blocked
                   else f"{self.target} moved")
            return (f"finish by hand ({why}): in {self.checkout}, remove a stale .git/index.lock, "
                    f"check `git status`, then delete {self.journal['path']}")
        kept = " (files that are neither version are kept in a recovery ref first)" if self.other else ""
        return (f"`agentdeck doctor --fix` (or `agentdeck merge` again) finishes the fast-forward to "
                f"{self.journal['new'][:10]}{kept}; your own uncommitted changes are kept")


def _git_path(checkout: Path, name: str) -> Path:
    out = git.run(checkout, "rev-parse", "--git-path", name)
    p = Path(out)
    return p if p.is_absolute() else checkout / p


def git_busy_in(checkout: Path, lock: Path | None = None) -> bool:
    """True when a git process still works in *checkout* (it may hold its index.lock)."""
    proc_dir = Path("/proc")
    if not (proc_dir / "self").is_dir():
        return lock is not None and lock.exists() and time.time() - lock.stat().st_mtime < LOCK_STALE_S
    try:
        target = checkout.resolve()
    except OSError:
        return False
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if not comm.startswith("git"):
                continue
            if Path(os.readlink(entry / "cwd")).resolve() == target:
                state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
                if state not in ("Z", "X"):
                    return True
        except OSError:
            continue
    return False


def _diff_entries(checkout: Path, old: str, new: str) -> list[tuple[str, str, str, str, str]]:
    """(old mode, new mode, old blob, new blob, path) for every path that differs."""
    out = git.run(checkout, "diff-tree", "-r", "-z", "--no-renames", "--raw", old, new)
    tokens = out.split("\0")
    entries = []
    i = 0
    while i + 1 < len(tokens):
        meta, path = tokens[i], tokens[i + 1]
        i += 2
        if not meta.startswith(":"):
            continue
        old_mode, new_mode, old_blob, new_blob, _status = meta[1:].split(" ")
        entries.append((old_mode, new_mode, old_blob, new_blob, path))
    return entries


def _disk_entries(checkout: Path, rel_paths: list[str]) -> tuple[dict[str, tuple[str, str] | None], list[str]]:
    """What is on disk for each path: (mode, blob id) written into the object database, None when
    absent; plus the paths that cannot be captured (a folder where a file goes)."""
    result: dict[str, tuple[str, str] | None] = {}
    blocked: list[str] = []
    files: list[tuple[str, str]] = []
    for rel in rel_paths:
        full = checkout / rel
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            result[rel] = None
            continue
        except NotADirectoryError:
            result[rel] = None  # a parent is now a file: this path is absent
            continue
        if stat_mod.S_ISLNK(st.st_mode):
            blob = git.run(checkout, "hash-object", "-w", "--stdin", input=os.readlink(full))
            result[rel] = ("120000", blob)
        elif stat_mod.S_ISREG(st.st_mode):
            files.append((rel, "100755" if st.st_mode & 0o100 else "100644"))
        else:
            blocked.append(rel)
    if files:
        # One process for every file; the path's attributes (filters, eol) apply as for `git add`.
        if any("\n" in rel for rel, _ in files):
            blobs = [git.run(checkout, "hash-object", "-w", "--", rel) for rel, _ in files]
        else:
            blobs = git.run(checkout, "hash-object", "-w", "--stdin-paths",
                            input="".join(rel + "\n" for rel, _ in files)).split()
        for (rel, mode), blob in zip(files, blobs):
            result[rel] = (mode, blob)
    return result, blocked


def inspect(root: Path | str, journal: dict[str, Any]) -> Leftover:
    """Classify what *journal*'s interrupted merge left (reads only; writes blobs of odd files)."""
    checkout = Path(journal["checkout"])
    if merger_alive(journal):
        return Leftover(journal, "running")
    if not checkout.is_dir():
        return Leftover(journal, "missing")
    head = git.head_commit(root, f"refs/heads/{journal['target']}")
    lock = _git_path(checkout, "index.lock")
    stale = lock if lock.exists() else None
    if stale is not None and git_busy_in(checkout, lock):
        return Leftover(journal, "running")
    if head == journal["new"]:
        return Leftover(journal, "finished", lock=stale, head=head)
    if head != journal["old"]:
        return Leftover(journal, "moved", lock=stale, head=head)
    entries = _diff_entries(checkout, journal["old"], journal["new"])
    disk, blocked = _disk_entries(checkout, [e[4] for e in entries])
    left = Leftover(journal, "half", lock=stale, touched=len(entries), blocked=blocked, head=head)
    for _old_mode, _new_mode, old_blob, new_blob, rel in entries:
        if rel in blocked:
            continue
        now = disk.get(rel)
        new_entry = None if set(new_blob) == {"0"} else new_blob
        old_entry = None if set(old_blob) == {"0"} else old_blob
        blob = now[1] if now else None
        if blob == new_entry:
            left.at_new += 1
        elif blob == old_entry:
            left.at_old += 1
        else:
            left.other.append(rel)
    left.entries, left.disk = entries, disk
    return left


# ---------------------------------------------------------------------- finishing


def finish(root: Path | str, journal: dict[str, Any]) -> str:
    """Complete an interrupted merge; returns one line saying what was done. Refused when it
    cannot be done safely (nothing changed then, except a stale lock removed)."""
    left = inspect(root, journal)
    checkout = Path(journal["checkout"])
    target, old, new = journal["target"], journal["old"], journal["new"]
    if left.state == "running":
        raise Refused(f"{left.describe()}; wait for it to finish and try again")
    if left.state in ("missing", "finished"):
        if left.lock is not None:
            left.lock.unlink(missing_ok=True)
        remove_journal(journal)
        return f"{left.describe()}: removed the journal" + (" and the stale index.lock" if left.lock else "")
    if left.state == "moved" or left.blocked:
        raise Refused(f"{left.describe()}; {left.fix()}")
    mid = _tree_with(checkout, old, {e[4]: left.disk.get(e[4]) for e in left.entries})
    kept = None
    if left.other:
        commit = git.run(checkout, "commit-tree", mid, "-p", old, "-m",
                         f"agentdeck: files found in the half-updated checkout of {target}")
        kept = _keep(root, f"merge-{paths.slugify(target)}", commit, target)
    if left.lock is not None:
        left.lock.unlink(missing_ok=True)
    # The index now says what the disk holds: clean against it; then write only what is missing.
    # --reset: like a single-tree -m (unchanged entries keep their stat data), without refusing
    # the entries whose file already differs from the old index (those are what MID records).
    git.run(checkout, "read-tree", "--reset", mid)
    git.run_proc(checkout, "update-index", "-q", "--refresh")
    proc = git.run_proc(checkout, "read-tree", "-m", "-u", mid, new)
    if proc.returncode != 0:
        git.run_proc(checkout, "read-tree", old)  # the index back at the branch, files as they were
        detail = " ".join(line.strip() for line in proc.stderr.strip().splitlines()[:3])
        raise Refused(f"could not finish the interrupted merge into {target} in {checkout}: {detail}; "
                      f"fix that and run `agentdeck doctor --fix` again")
    reflog = f"agentdeck: finish interrupted {journal.get('strategy') or 'merge'} of {journal.get('branch') or '?'}"
    proc = git.run_proc(checkout, "update-ref", "-m", reflog, f"refs/heads/{target}", new, old)
    if proc.returncode != 0:
        raise Refused(f"could not move {target} to {new[:10]}: {proc.stderr.strip()}; "
                      f"run `agentdeck doctor` to see what is left")
    remove_journal(journal)
    done = (f"finished the interrupted merge into {target} in {checkout}: {left.at_old} files written, "
            f"{target} -> {new[:10]}")
    if kept:
        done += f"; {len(left.other)} files that were neither version kept in {kept}"
    return done


def _tree_with(checkout: Path, base: str, entries: dict[str, tuple[str, str] | None]) -> str:
    """The tree of *base* with *entries* (path -> (mode, blob), or None to drop it)."""
    index = _git_path(checkout, f"agentdeck-finish-{os.getpid()}.index")
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        proc = git.run_proc(checkout, "read-tree", base, env=env)
        if proc.returncode != 0:
            raise Refused(f"git read-tree {base[:10]} failed: {proc.stderr.strip()}")
        zero = "0" * len(base)
        lines = "".join(
            (f"{e[0]} {e[1]}\t{rel}\0" if e else f"0 {zero}\t{rel}\0") for rel, e in sorted(entries.items())
        )
        if lines:
            proc = git.run_proc(checkout, "update-index", "-z", "--index-info", env=env, input=lines)
            if proc.returncode != 0:
                raise Refused(f"git update-index failed: {proc.stderr.strip()}")
        proc = git.run_proc(checkout, "write-tree", env=env)
        if proc.returncode != 0:
            raise Refused(f"git write-tree failed: {proc.stderr.strip()}")
        return proc.stdout.strip()
    finally:
        index.unlink(missing_ok=True)


def _keep(root: Path | str, label: str, commit: str, target: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    ref = f"{git.TRASH_PREFIX}{label}/{stamp}"
    n = 1
    while git.run_ok(root, "show-ref", "--verify", "--quiet", ref):
        n += 1
        ref = f"{git.TRASH_PREFIX}{label}/{stamp}-{n}"
    git.run(root, "update-ref", "-m", f"agentdeck recovery: half-updated checkout of {target}", ref, commit)
    return ref


def stray_index_locks(root: Path | str, older_than: float = LOCK_STALE_S) -> list[Path]:
    """``index.lock`` files of this repository's checkouts that no journal explains and no git
    process holds (doctor names them; only the user can tell whose they are)."""
    explained = {str(Path(j["checkout"]).resolve()) for j in read_journals(root)}
    out = []
    for wt in git.list_worktrees(root):
        if not wt.path.is_dir() or str(wt.path.resolve()) in explained:
            continue
        try:
            lock = _git_path(wt.path, "index.lock")
        except Refused:
            continue
        try:
            age = time.time() - lock.stat().st_mtime
        except OSError:
            continue
        if age >= older_than and not git_busy_in(wt.path):
            out.append(lock)
    return out
