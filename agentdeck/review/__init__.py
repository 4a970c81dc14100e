"""Review and merge: diffs, commits, merges, the conflict radar, comparisons, push and PRs.

:class:`Review` is what every face uses (``deck.review``).  It looks agents up
through the Deck and hands plain inputs (repository root, worktree, branch,
base branch, base commit, copied setup files) to the core functions in
``diff``, ``commit``, ``merge``, ``conflicts``, ``compare`` and ``share``,
which are usable (and tested) on their own.

For the deck's screens:

- Diff tab: :meth:`Review.diff` (``DiffResult.files`` → ``FileDiff.hunks`` →
  ``DiffLine`` with old/new line numbers, ``FileDiff.language`` for the lexer,
  ``diff.rich_renderable(file)`` for a ready-made rich view);
  :meth:`Review.diff_size` / :meth:`Review.diff_sizes` for the list.
- Merge dialog: :meth:`Review.check_merge` (files that will change, conflicts,
  ``problems`` lines, ``ok``) then :meth:`Review.merge`.
- List marks: :meth:`Review.conflicts` and :meth:`Review.conflict_marks`.
- Compare view (``C``): :meth:`Review.compare`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agentdeck import git
from agentdeck.errors import Refused, UsageError
from agentdeck.review import _git
from agentdeck.review import commit as _commit
from agentdeck.review import compare as _compare
from agentdeck.review import conflicts as _conflicts
from agentdeck.review import merge as _merge
from agentdeck.review import share as _share
from agentdeck.review.commit import CommitResult
from agentdeck.review.compare import CompareRow
from agentdeck.review.conflicts import BASE, ConflictEntry
from agentdeck.review.diff import DiffResult, FileDiff, Side, compute_diff
from agentdeck.review.diff import diff_size as _diff_size
from agentdeck.review.merge import STRATEGIES, MergeCheck, MergeResult

__all__ = [
    "BASE",
    "STRATEGIES",
    "CommitResult",
    "CompareRow",
    "ConflictEntry",
    "DiffResult",
    "FileDiff",
    "MergeCheck",
    "MergeResult",
    "Review",
    "Side",
]


class Review:
    """The review engine for one Deck: ``Review(deck)``, exposed as ``deck.review``."""

    def __init__(self, deck: Any, llm_client_factory: Callable[[Any], Any] | None = None):
        self.deck = deck
        self.llm_client_factory = llm_client_factory

    # ------------------------------------------------------------------ lookups
    @property
    def root(self) -> Path:
        return Path(self.deck.repo.root)

    def _side(self, rec: Any) -> Side:
        from agentdeck.sandbox.agent_bwrap import sync_branch

        sync_branch(self.root, rec.branch)  # a sandboxed agent's commits come back to its branch first
        ignore = frozenset(self.deck.copied_files(rec.name) or ())
        return Side(
            root=self.root, worktree=Path(rec.worktree) if rec.worktree else None, branch=rec.branch,
            base_branch=rec.base_branch, base_commit=rec.base_commit, ignore=ignore,
        )

    def side(self, name: str) -> Side:
        """The plain inputs of agent *name* (UsageError if unknown)."""
        return self._side(self.deck.get(name))

    def live_records(self) -> list[Any]:
        """Agents whose work is live: not killed-and-kept, worktree present."""
        records = self.deck.store.list_agents()
        return [r for r in records if not r.kept and r.worktree and Path(r.worktree).is_dir()]

    # ------------------------------------------------------------------ diff
    def diff(self, name: str, patch: bool = True, paths: Iterable[str] | None = None) -> DiffResult:
        """Branch + uncommitted work against the merge-base with the base branch."""
        return compute_diff(self.side(name), patch=patch, paths=paths)

    def diff_size(self, name: str) -> tuple[int, int]:
        """(lines added, lines removed): fast, for the deck's list."""
        return _diff_size(self.side(name))

    def diff_sizes(self, names: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
        """diff_size for several agents at once (all live agents by default), in parallel."""
        records = [self.deck.get(n) for n in names] if names is not None else self.live_records()
        sides = [(r.name, self._side(r)) for r in records]

        def one(item: tuple[str, Side]) -> tuple[str, tuple[int, int] | None]:
            try:
                return item[0], _diff_size(item[1])
            except Exception:
                return item[0], None

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(sides)))) as pool:
            return {name: size for name, size in pool.map(one, sides) if size is not None}

    # ------------------------------------------------------------------ commit
    def suggest_message(self, name: str) -> tuple[str, str, str]:
        """(message, source "llm"|"summary", warning) for the agent's current changes."""
        result = self.diff(name, patch=True)
        return _commit.write_message(result, self.deck.config.llm, self.llm_client_factory)

    def commit(self, name: str, message: str | None = None) -> CommitResult:
        """Commit everything in the agent's worktree (hooks run; copied files never committed)."""
        side = self.side(name)
        source, warning = "given", ""
        if message is None:
            if not _git.uncommitted(side.worktree, set(side.ignore)):
                raise Refused(f"{name} has nothing to commit")
            message, source, warning = self.suggest_message(name)
        result = _commit.commit_worktree(side.worktree, message, side.ignore, agent=name)  # type: ignore[arg-type]
        result.message_source = source
        result.warning = "; ".join(w for w in (warning, result.warning) if w)
        self._record(name, "commit", {"commit": result.commit, "subject": result.subject})
        return result

    # ------------------------------------------------------------------ merge
    def _target(self, rec: Any, into: str | None) -> str:
        target = into or rec.base_branch
        if not target or not git.branch_exists(self.root, target):
            raise UsageError(
                f"the target branch {target!r} of {rec.name} does not exist; name one with --into BRANCH"
            )
        return target

    def check_merge(self, name: str, strategy: str | None = None, into: str | None = None,
                    message: str | None = None, no_ff: bool = False) -> MergeCheck:
        """The merge dialog's content: files that will change, conflicts, blocking problems."""
        rec = self.deck.get(name)
        side = self._side(rec)
        return _merge.check_merge(
            self.root, agent=name, branch=rec.branch, worktree=side.worktree, target=self._target(rec, into),
            strategy=strategy or self.deck.config.review.merge_strategy, ignore=side.ignore,
            message=message, no_ff=no_ff,
        )

    def merge(self, name: str, strategy: str | None = None, into: str | None = None, cleanup: bool = False,
              message: str | None = None, no_ff: bool = False) -> MergeResult:
        """Merge the agent's branch into *into* (default: its base branch). Refused: nothing changed."""
        rec = self.deck.get(name)
        side = self._side(rec)
        target = self._target(rec, into)
        kwargs = {"agent": name, "branch": rec.branch, "worktree": side.worktree, "target": target,
                  "ignore": side.ignore}
        result = _merge.merge(
            self.root, strategy=strategy or self.deck.config.review.merge_strategy, message=message,
            no_ff=no_ff, **kwargs,
        )
        if result.merged:
            self._record(name, "merge", {
                "into": target, "strategy": result.check.strategy, "old": result.check.target_old,
                "commit": result.commit, "at": time.time(),
            }, extra_key="last_merge")
        if cleanup:
            _merge.ensure_cleanup_safe(self.root, **kwargs)
            before = {r["ref"] for r in git.list_recovery_refs(self.root)}
            ret = self.deck.kill(name, discard=True)
            ref = getattr(ret, "recovery_ref", ret)  # Deck.kill's KillResult (a test double may give the ref)
            if isinstance(ref, str) and ref.startswith("refs/"):
                result.recovery_ref = ref
            else:
                new = [r["ref"] for r in git.list_recovery_refs(self.root) if r["ref"] not in before]
                result.recovery_ref = new[-1] if new else None
            result.cleaned_up = True
        return result

    # ------------------------------------------------------------------ conflict radar
    def conflicts(self, names: Sequence[str] | None = None, include_base: bool = True) -> list[ConflictEntry]:
        """Overlapping agents and whether each pair (and agent vs. base) would conflict now."""
        records = [self.deck.get(n) for n in names] if names is not None else self.live_records()
        return _conflicts.radar([(r.name, self._side(r)) for r in records], include_base=include_base)

    def conflict_marks(self, entries: Sequence[ConflictEntry] | None = None) -> dict[str, dict[str, Any]]:
        """Per agent: {"overlaps": [...], "conflicts": [...]} for marks in the deck's list."""
        return _conflicts.marks(self.conflicts() if entries is None else entries)

    # ------------------------------------------------------------------ compare
    def compare(self, names: Sequence[str], run_tests: bool = True, timeout: float | None = None) -> list[CompareRow]:
        """Files, lines and ``[review] test_command`` (pass/fail, time) for each agent."""
        if not names:
            raise UsageError("compare needs at least one agent name")
        items = [(n, self.side(n)) for n in names]
        command = self.deck.config.review.test_command if run_tests else ""
        return _compare.compare(items, command, timeout)

    # ------------------------------------------------------------------ share
    def push(self, name: str, remote: str = "origin") -> str:
        rec = self.deck.get(name)
        return _share.push(self.root, rec.branch, remote)

    def pr(self, name: str, title: str | None = None, body: str | None = None, draft: bool = False,
           into: str | None = None) -> tuple[str, str]:
        """Push and open a pull (gh) or merge (glab) request into the base branch: (tool, output)."""
        rec = self.deck.get(name)
        base = into or rec.base_branch
        cwd = rec.worktree if rec.worktree and Path(rec.worktree).is_dir() else self.root
        return _share.open_pr(self.root, cwd, rec.branch, base, title, body, draft)

    # ------------------------------------------------------------------ bookkeeping
    def _record(self, name: str, kind: str, detail: dict[str, Any], extra_key: str | None = None) -> None:
        """Best effort: an event (and an ``extra`` key) in the store; never fails the operation."""
        store = getattr(self.deck, "store", None)
        if store is None:
            return
        try:
            store.add_event(name, kind, "review", detail=detail)
            if extra_key:
                store.merge_extra(name, **{extra_key: detail})
        except Exception:
            pass
