"""The search space of a commit: the lab's editable files read through git, and ``research space``.

:mod:`agentdeck.research.space` holds the rules (which constants are searched, over which range, and
how a point is read from and written into the files) and never runs git; this module gives it the
files: a commit's editable files (:func:`editable_sources`, shared by ``research space`` and the
``search`` proposer's check) or any one file of a commit (:func:`git_reader`, read once per commit
by the proposer).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agentdeck import git
from agentdeck.errors import UsageError
from agentdeck.research import gitops
from agentdeck.research.space import build_space


def read_sources(reader: Callable[[str], str | None], editable: Iterable[str]) -> dict[str, str] | None:
    """The editable files through *reader* (rel path -> text or None); None when one is missing."""
    out = {}
    for rel in editable:
        text = reader(rel)
        if text is None:
            return None
        out[rel] = text
    return out


def git_reader(root: Path | str, commit: str, workdir: str) -> Callable[[str], str | None]:
    """A reader of *commit*'s files by their path relative to *workdir* (None: not there)."""

    def read(rel: str) -> str | None:
        try:
            # (git.run strips trailing newlines; skeleton() ignores them too)
            return git.run(root, "show", f"{commit}:{gitops.join(workdir, rel)}")
        except Exception:  # a missing file is a different skeleton
            return None

    return read


def relative_to_workdir(workdir: str, repo_path: str) -> str:
    """*repo_path* (a repository path) relative to the lab's *workdir*."""
    if workdir in ("", "."):
        return repo_path
    prefix = workdir.strip("/") + "/"
    return repo_path[len(prefix):] if repo_path.startswith(prefix) else repo_path


def editable_sources(root: Path | str, commit: str, workdir: str, patterns: list[str]
                     ) -> tuple[list[str], dict[str, str]]:
    """The files of *commit* under *workdir* that the ``editable`` *patterns* name (paths relative to
    *workdir*), and their text ({} when one cannot be read)."""
    files = gitops.tree_files(Path(root), commit, workdir)
    editable = [relative_to_workdir(workdir, p) for p in gitops.match(workdir, patterns, files.keys())]
    return editable, read_sources(git_reader(root, commit, workdir), editable) or {}


def space_for(research: Any, tag: str | None = None) -> dict[str, Any]:
    """``research space``: HEAD with the current config, or (*tag*) a run's best with its settings:
    the space and how each range was derived (``research space --json``)."""
    root = research.repo.root
    if tag:
        tag = research.resolve_tag(tag)
        run = research.ledger.run(tag)
        settings = research.settings_from_run(run)
        commit, workdir = run.best_commit or run.base_commit, run.workdir
    else:
        settings = research.config.research
        commit = git.head_commit(root)
        if commit is None:
            raise UsageError("this repository has no commits yet; commit the lab first")
        workdir = posixpath.normpath(settings.workdir.strip() or ".")
    _, sources = editable_sources(root, commit, workdir, settings.editable)
    data = build_space(sources, getattr(settings, "space", None)).to_json()
    data.update(commit=commit, files=sorted(sources), sampler=getattr(settings, "sampler", "tpe"), tag=tag)
    return data
