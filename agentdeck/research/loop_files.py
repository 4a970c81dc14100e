"""The facts the file rules judge (:func:`policy.tree_problems`, :func:`policy.disk_problems`): which
files a commit changed, their git modes, and what is on disk.

A part of :class:`agentdeck.research.loop.ResearchLoop` (a mixin: the state it uses is the loop's,
set up in ``ResearchLoop.__init__`` and declared, with its types, in :class:`.loop_state.LoopState`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from agentdeck.research import gitops, policy
from agentdeck.research.loop_state import LoopState
from agentdeck.research.model import Trial

log = logging.getLogger("agentdeck.research")


class FileFacts(LoopState):
    def _tree_problems(self, commit: str, modes: dict[str, str] | None = None) -> list[str]:
        """The committed tree's editable paths that are not regular files (policy.tree_problems)."""
        modes = modes if modes is not None else gitops.tree_modes(self.root, commit, self.workdir)
        editable = gitops.match(self.workdir, self.settings.editable, modes.keys())
        return policy.tree_problems({self._rel(p): modes[p] for p in editable})

    def _content_problems(self, blobs: dict[str, str], modes: dict[str, str], worktree: Path) -> list[str]:
        """Files of the workdir whose content on disk is not the commit's (an index flag such as
        skip-worktree keeps a change out of the commit while the job would still run it)."""
        regular = [p for p in blobs if modes.get(p) in policy.REGULAR_MODES]
        disk = gitops.disk_blob_ids(worktree, regular)
        return [f"{self._rel(p)} on disk differs from the commit" for p in regular if disk[p] != blobs[p]][:3]

    def _disk_problems(self, trial: Trial | None, worktree: Path,
                       editable: list[str] | None = None) -> list[str]:
        """The editable and protected files on disk that are not plain, unlinked regular files."""
        if editable is None:
            assert trial is not None
            editable = self.editables.get(trial.id)
            if editable is None:
                editable = self.editable_paths(gitops.tree_files(self.root, trial.commit, self.workdir))
                self.editables[trial.id] = editable
        facts = gitops.disk_facts(worktree, sorted(set(editable) | set(self.protected)))
        return policy.disk_problems({self._rel(p): facts[p] for p in editable if p not in self.protected},
                                    {self._rel(p): facts[p] for p in self.protected})

    def _change_problems(self, parent: str, commit: str) -> list[str]:
        """The files *commit* changed that a proposal may not change (:func:`policy.change_problems`)."""
        changed = gitops.changed_files(self.root, parent, commit)
        editable = self.editable_paths(dict.fromkeys(changed, ""))
        return policy.change_problems([self._rel(p) for p in changed], [self._rel(p) for p in editable],
                                      [self._rel(p) for p in self.protected])

    def _rel(self, repo_path: str) -> str:
        if self.workdir in ("", "."):
            return repo_path
        prefix = self.workdir.strip("/") + "/"
        return repo_path[len(prefix):] if repo_path.startswith(prefix) else repo_path
