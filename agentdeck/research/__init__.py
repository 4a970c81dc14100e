"""Auto-research: agentdeck runs the experiment loop on the GPUs and keeps the winners.

:class:`Research` (:mod:`.facade`) is the facade the deck exposes as ``deck.research`` (and the
CLI, the TUI's Research tab and the MCP server call):

- ``start(tag=None, trials=None, proposer=None, gpus=None, budget_s=None) -> tag``
  creates a run (or prepares an existing one to continue) — validated first,
  nothing left behind on error;
- ``run(tag, ...)`` runs the loop in this process until done or stopped;
  ``run_detached(tag)`` starts it as a background process;
- ``status(tag=None)`` the contract's JSON object; ``trial``, ``log``, ``diff``;
- ``pause``, ``resume``, ``stop``, ``promote`` (a suspect trial only with ``accept_suspect``;
  never a tree whose editable files are not regular files).

The house: the rules are pure functions in :mod:`.policy` over the values of :mod:`.model`;
:mod:`.loop` (threads, dispatch, polling) gathers the facts and carries the decisions out;
:mod:`.ledger` records them; :mod:`.executors` run jobs and :mod:`.proposers` propose changes,
each chosen by name from its package's registry; :mod:`.runner` is all research asks of the deck.

Layout under the repository's state dir::

    research/ledger.db             every run and trial (SQLite, WAL)
    research/<tag>/results.tsv     autoresearch's columns + trial, kind, gpu, seconds
    research/<tag>/logs/<id>.log   each job's output (+ <id>.log.exit, its exit status)
    research/<tag>/logs/<id>.eval.log  the protected evaluation's output (with eval_command)
    research/eval.seed             the evaluation's secret (mode 0600; hidden from sandboxed jobs)
    research/<tag>/loop.lock       held by the run's loop process
    research/<tag>/loop.log        the detached loop's own output

Trial worktrees and artifacts live outside the state folder, out of the jobs' reach
(:mod:`agentdeck.research.isolation`): ``<cache>/research/<repo>-<id>/<tag>/wt/``,
``.../artifacts/<trial>/`` (removed once a trial is recorded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from agentdeck.research.facade import Research
    from agentdeck.research.submit import submit_from_agent

# This package stays light (every ``agentdeck.research.<module>`` import runs it): the facade and
# the MCP tool's side are loaded on first use.
_LAZY = {"Research": "agentdeck.research.facade", "submit_from_agent": "agentdeck.research.submit"}


def __getattr__(name: str):  # PEP 562
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["Research", "submit_from_agent"]
