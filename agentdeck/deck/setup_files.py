"""A new worktree's setup: the ``[deck] setup_copy`` files and ``[deck] setup_command``.

The copy plan is checked before anything is created (a bad entry is a UsageError
and nothing exists yet); copied files are recorded in the row (``extra["copied"]``)
and never count as the agent's changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

from agentdeck import git
from agentdeck.errors import Refused, UsageError
from agentdeck.store import AgentRecord

from .launch import LaunchOps
from .names import inside


class SetupOps(LaunchOps):
    """Preparing a worktree after ``git worktree add`` (``new``, ``fork``, a restart that finishes a launch)."""

    def _setup_copy_plan(self) -> list[str]:
        """The files ``[deck] setup_copy`` names, relative to the repository, checked before anything
        is created: UsageError (exit 2) for an entry that is absolute, leaves the repository or
        reaches outside it through a symbolic link.  Files inside ``.git`` and the worktree folder
        are skipped; tracked files too (the checkout has them)."""
        patterns = self.config.deck.setup_copy
        if not patterns:
            return []
        root = self.repo.root.resolve()
        common = self.repo.common_dir.resolve()
        wt_root = self.worktree_root.resolve()

        def bad(entry: str, why: str) -> UsageError:
            return UsageError(f"[deck] setup_copy entry {entry!r} {why}; list only paths inside the repository, "
                              f"relative to its top (e.g. \".env\" or \"config/*.local\")")

        def skipped(real: Path, rel: PurePosixPath) -> bool:
            return ".git" in rel.parts or inside(real, common) or inside(real, wt_root)

        found: dict[str, None] = {}
        for entry in patterns:
            pure = PurePosixPath(entry)
            if not entry.strip():
                raise bad(entry, "is empty")
            if pure.is_absolute() or entry.startswith("~"):
                raise bad(entry, "is an absolute path")
            if ".." in pure.parts:
                raise bad(entry, "leaves the repository ('..')")
            if any(c in entry for c in "*?["):
                try:
                    matches = sorted(root.glob(entry))
                except (ValueError, NotImplementedError) as exc:
                    raise bad(entry, f"is not a valid pattern ({exc})") from exc
            else:
                matches = [root / entry]
            for src in matches:
                rel = PurePosixPath(src.relative_to(root).as_posix())
                if ".." in rel.parts or not os.path.lexists(src):
                    continue
                real = src.resolve()
                if not inside(real, root):
                    raise bad(entry, f"reaches {real}, outside the repository, through a symbolic link")
                if skipped(real, rel):
                    continue
                if not src.is_dir():
                    if src.is_file():
                        found[rel.as_posix()] = None
                    continue
                for dirpath, dirnames, filenames in os.walk(src):
                    here = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
                    dirnames[:] = [d for d in dirnames if d != ".git"]
                    for leaf in [*dirnames, *filenames]:
                        item = Path(dirpath) / leaf
                        target = item.resolve()
                        if not inside(target, root):
                            raise bad(entry, f"holds {here / leaf}, a link to {target} outside the repository")
                        if leaf in filenames and item.is_file() and not skipped(target, here / leaf):
                            found[(here / leaf).as_posix()] = None
        if not found:
            return []
        names = list(found)
        tracked: set[str] = set()
        for i in range(0, len(names), 500):
            out = git.run(root, "ls-files", "-z", "--", *names[i:i + 500], check=False)
            tracked.update(p for p in out.split("\0") if p)
        return [n for n in names if n not in tracked]

    def _copy_setup_files(self, worktree: Path, plan: list[str]) -> list[str]:
        """Copy the planned files (see :meth:`_setup_copy_plan`) into *worktree*, never outside it."""
        copied: list[str] = []
        wt_real = worktree.resolve()
        for rel in plan:
            dest = worktree / rel
            if not inside(dest.parent.resolve(), wt_real) or dest.is_symlink():
                raise UsageError(
                    f"[deck] setup_copy file {rel!r} would be written outside the new worktree (a link in the "
                    f"checkout); remove it from [deck] setup_copy"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.repo.root / rel, dest)
            copied.append(rel)
        return copied

    def _run_setup_command(self, rec: AgentRecord) -> None:
        command = self.config.deck.setup_command
        if not command:
            return
        env = dict(os.environ)
        env.pop("AGENTDECK_FAULT", None)
        env.update(self._agent_env(rec))
        proc = subprocess.run(command, shell=True, cwd=rec.worktree, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise Refused(
                f"setup_command failed in the new worktree (exit {proc.returncode}): {tail[0]}; "
                f"fix [deck] setup_command and try again"
            )
