"""The ``search`` proposer: model-based search over the lab's constants with Optuna's ask/tell.

The space is the editable files' top-level numeric constants
(:mod:`agentdeck.research.space`, narrowed or widened by ``[research.space]``);
the sampler is ``[research] sampler``: ``tpe`` (multivariate, with the
constant liar), ``cmaes`` (needs the ``cmaes`` package) or ``random``.

**The ledger is the only record.**  Each proposal first brings an in-memory
study up to date with the run's ledger, then asks it for a point:

* a trial is told when it is final with status keep, discard or crash (any
  other status, ``suspect`` included, is still pending); a crash is a failed
  trial, not a score; a trial that never ran (stopped, a duplicate, a change
  that no longer applied) is never told;
* the value told is noise-aware: the mean of the trial and its confirmation
  run, the kept value of a kept trial, the mean of the baseline's runs;
* only trials whose editable files equal the current best's except for the
  searched numbers (the same *skeleton*) are told: a change of code (by an LLM,
  an agent, a person) starts a new study, whose bounds come from the first
  trial with the new code, and which is seeded with what still applies: every
  earlier trial with that code, and the searched values of the best trials of
  the other code, asked first;
* one study per hardware class: only trials of the run's primary class (the
  ``hardware`` of its first baseline, when trials carry one) are told;
* pending trials are in the study as running trials, so the sampler lies about
  them (TPE's constant liar) and parallel workers do not ask for the same
  point; asks of this process not yet in the ledger count too, and a point
  that equals a known one is asked again.

A restarted loop, or a second process, rebuilds the same study from the
ledger (CMA-ES warm-starts from the finished trials).  The proposal writes
every searched constant's value into the current best's files by changing the
numbers' own characters only, and describes the change in one line
(``LR 3e-4 -> 6.1e-4, WARMUP 100 -> 40``).  With at least
``MIN_IMPORTANCE_TRIALS`` finished trials it computes the parameters'
importances and stores them in the ledger (``importances`` table) for
``research status`` and the Research tab, which never import Optuna.

Optuna is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentdeck import git
from agentdeck.errors import UsageError
from agentdeck.research import space as sp
from agentdeck.research import space_commit
from agentdeck.research.proposers.base import Proposal, ProposalFailed, ProposalRequest, Proposer
from agentdeck.research.proposers.search_record import (  # noqa: F401 - the record's names, re-exported
    FINISHED,
    Obs,
    latest_importances,
    observations,
    save_importances,
)

log = logging.getLogger("agentdeck.research")

SAMPLERS = ("tpe", "cmaes", "random")
MIN_IMPORTANCE_TRIALS = 8
ASK_TRIES = 100
ORPHAN_S = 600.0  # an ask that never reached the ledger (its proposal was dropped) stops counting
WARM_START_MIN = 10  # finished trials needed to warm-start CMA-ES after a restart
SEEDS_FROM_OTHER_CODE = 3
INSTALL = "pip install optuna cmaes (agentdeck's own dependencies: reinstall agentdeck)"


def require_optuna(sampler: str = "tpe") -> None:
    """UsageError (with the install command) when Optuna, or cmaes for ``sampler = "cmaes"``, is missing."""
    if sampler not in SAMPLERS:
        raise UsageError(f"[research] sampler {sampler!r} is unknown; use tpe, cmaes or random")
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise UsageError(f"proposer 'search' needs Optuna, which is not installed; {INSTALL}") from None
    if sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise UsageError('[research] sampler = "cmaes" needs the cmaes package; pip install cmaes '
                             '(or use sampler = "tpe")') from None


# ---------------------------------------------------------------------- the study


@dataclass
class _Ask:
    worker: int
    attempt: int
    at: float
    pkey: tuple


class _Study:
    def __init__(self, key: str, space: sp.Space, direction: str, sampler: str, seed: int,
                 source_trials: list[Any] | None = None):
        import optuna

        self.key = key
        self.space = space
        self.dists = space.distributions()
        self.sampler_name = sampler
        self.study = optuna.create_study(direction="maximize" if direction == "max" else "minimize",
                                         sampler=make_sampler(sampler, seed, space, source_trials))
        self.linked: dict[tuple, tuple[int, tuple]] = {}  # observation -> (optuna trial number, point)
        self.told: set[tuple] = set()
        self.asked: dict[int, _Ask] = {}  # asks of this process not yet seen in the ledger
        self.importance_n = 0

    def params_of(self, point: dict[str, Any]) -> dict[str, Any] | None:
        params = {}
        for p in self.space.params:
            got = p.to_param(point[p.name])
            if got is None:
                return None
            params[p.name] = got
        return params

    def add(self, params: dict[str, Any], *, value: float | None = None, failed: bool = False,
            pending: bool = False) -> int:
        from optuna.trial import TrialState, create_trial

        if pending:
            state = TrialState.RUNNING
        else:
            state = TrialState.FAIL if failed or value is None else TrialState.COMPLETE
        frozen = create_trial(params=params, distributions=self.dists, state=state,
                              value=value if state == TrialState.COMPLETE else None)
        self.study.add_trial(frozen)
        return self.study.get_trials(deepcopy=False)[-1].number

    def tell(self, number: int, value: float | None, failed: bool = False) -> None:
        from optuna.trial import TrialState

        if failed or value is None:
            self.study.tell(number, state=TrialState.FAIL)
        else:
            self.study.tell(number, value)


def make_sampler(name: str, seed: int, space: sp.Space, source_trials: list[Any] | None = None) -> Any:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature warnings (multivariate, warm start)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            margin = any(p.kind in ("int", "pow2") for p in space.params)
            if source_trials:
                try:
                    return optuna.samplers.CmaEsSampler(seed=seed, source_trials=source_trials, with_margin=margin,
                                                        warn_independent_sampling=False)
                except Exception:  # too few compatible trials: start afresh
                    log.debug("CMA-ES warm start failed", exc_info=True)
            return optuna.samplers.CmaEsSampler(seed=seed, with_margin=margin, warn_independent_sampling=False)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          warn_independent_sampling=False)


class SearchProposer(Proposer):
    name = "search"

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self._lock = threading.Lock()
        self._studies: dict[str, _Study] = {}
        self._sources: dict[tuple[str, tuple[str, ...]], dict[str, str] | None] = {}
        self._skeletons: dict[tuple[str, frozenset], str | None] = {}
        self._found: dict[str, dict[tuple[str, str], Any]] = {}
        self._token = uuid.uuid4().hex[:10]
        self.sampler = getattr(ctx.research, "sampler", "tpe") or "tpe"

    # ------------------------------------------------------------------ checks
    def check(self) -> None:
        require_optuna(self.sampler)
        root = Path(self.ctx.repo_root)
        settings = self.ctx.research
        workdir = (settings.workdir or ".").strip() or "."
        commit = None
        run = self.ctx.ledger.run(self.ctx.tag) if self.ctx.ledger is not None else None
        if run is not None:
            commit, workdir = run.best_commit or run.base_commit, run.workdir
        commit = commit or git.head_commit(root)
        if commit is None:
            return
        editable, sources = space_commit.editable_sources(root, commit, workdir, settings.editable)
        space = sp.build_space(sources, getattr(settings, "space", None))
        if not space.params:
            raise UsageError(f"proposer 'search' found no numeric top-level constant to search in "
                             f"{', '.join(editable) or 'the editable files'}; add constants such as `LR = 3e-4`, "
                             "a [research.space] entry, or use another proposer")

    # ------------------------------------------------------------------ reading the record
    def _trials(self, request: ProposalRequest) -> list[dict[str, Any]]:
        if self.ctx.ledger is not None:
            return [t.to_json() for t in self.ctx.ledger.trials(request.tag)]
        return [dict(t, state="final" if t.get("status") in FINISHED else "running") for t in request.history]

    def _commit_sources(self, commit: str, editable: tuple[str, ...], workdir: str) -> dict[str, str] | None:
        """The editable files at *commit* (read once: a commit never changes)."""
        key = (commit, editable)
        if key not in self._sources:
            reader = space_commit.git_reader(self.ctx.repo_root, commit, workdir)
            self._sources[key] = space_commit.read_sources(reader, editable)
        return self._sources[key]

    def _constants(self, commit: str, src: dict[str, str]) -> dict[tuple[str, str], Any]:
        if commit not in self._found:
            self._found[commit] = sp.constants_by_key(src)
        return self._found[commit]

    def _skeleton(self, commit: str, src: dict[str, str], keys: set[tuple[str, str]]) -> str | None:
        key = (commit, frozenset(keys))
        if key not in self._skeletons:
            self._skeletons[key] = sp.skeleton(src, keys)
        return self._skeletons[key]

    def _workdir(self, request: ProposalRequest) -> str:
        try:
            rel = request.workdir.resolve().relative_to(request.worktree.resolve())
        except ValueError:
            return "."
        return rel.as_posix() or "."

    # ------------------------------------------------------------------ proposing
    def _space(self, sources: dict[str, str]) -> sp.Space:
        """The space of the best's *sources* under ``[research.space]`` (a bad entry fails the proposal)."""
        try:
            return sp.build_space(sources, getattr(self.ctx.research, "space", None))
        except UsageError as exc:
            raise ProposalFailed(str(exc)) from None

    def propose(self, request: ProposalRequest) -> Proposal:
        best_sources = request.read_editable()
        editable = tuple(sorted(best_sources))
        space_b = self._space(best_sources)
        if not space_b.params:
            raise ProposalFailed("search found no numeric top-level constant to search in the editable files")
        _quiet_optuna()
        with self._lock:
            study, point, number = self._ask(request, best_sources, editable, space_b)
        changed, changes = sp.apply_point(best_sources, study.space, point)
        if not changes:  # pragma: no cover - _ask never returns the best's own point
            raise ProposalFailed("search asked for the current best's own values")
        for rel, text in changed.items():
            (request.workdir / rel).write_text(text, encoding="utf-8")
        return Proposal(sp.describe(changes), {
            "proposer": "search", "sampler": self.sampler, "changes": changes,
            "params": {p.name: point[p.name] for p in study.space.params},
            "search": {"study": study.key, "token": self._token, "number": number},
        })

    def redo(self, request: ProposalRequest, trial: dict[str, Any]) -> Proposal | None:
        """*trial*'s point written into the newer best in ``request.workdir`` (a search proposal is a point:
        it applies to any best with the same code, where a cherry-pick of its diff would conflict)."""
        params = (trial.get("meta") or {}).get("params")
        if not isinstance(params, dict) or (trial.get("meta") or {}).get("proposer") != "search":
            return None
        sources = request.read_editable()
        space = self._space(sources)
        if set(space.names) != set(params):
            raise ProposalFailed("the new best searches other constants; the point does not apply")
        changed, changes = sp.apply_point(sources, space, params)
        if not changes:
            raise ProposalFailed("the new best already has this point's values")
        for rel, text in changed.items():
            (request.workdir / rel).write_text(text, encoding="utf-8")
        return Proposal(sp.describe(changes), dict(trial.get("meta") or {}) | {"changes": changes})

    def _ask(self, request: ProposalRequest, best_sources: dict[str, str], editable: tuple[str, ...],
             space_b: sp.Space) -> tuple[_Study, dict[str, Any], int]:
        workdir = self._workdir(request)
        keys = space_b.keys()
        skel_b = sp.skeleton(best_sources, keys)
        trials = self._trials(request)
        primary = getattr(self.ctx.research, "hardware", "") or next(
            (t.get("hardware") for t in trials if t.get("kind") == "baseline" and t.get("hardware")), None)
        obs = [o for o in observations(trials) if not primary or not o.hardware or o.hardware == primary]
        mine: list[tuple[Obs, dict[str, str]]] = []
        others: list[tuple[Obs, dict[str, str]]] = []
        for o in obs:
            src = self._commit_sources(o.commit, editable, workdir)
            if src is None:
                continue
            (mine if self._skeleton(o.commit, src, keys) == skel_b else others).append((o, src))
        space = space_b
        if mine:
            try:
                origin = sp.build_space(mine[0][1], getattr(self.ctx.research, "space", None))
            except UsageError:
                origin = None
            if origin is not None and origin.keys() == keys:
                space = origin
        key = (skel_b or "")[:12] + (f"@{primary}" if primary else "")
        study = self._studies.get(key)
        if study is None:
            study = self._new_study(request, key, space, mine, others)
        self._sync(study, mine)
        self._expire(study, request)
        known = {pk for _, pk in study.linked.values()} | {a.pkey for a in study.asked.values()}
        for o, src in mine:
            point = sp.point_of(src, study.space, self._constants(o.commit, src))
            if point is not None:
                known.add(sp.point_key(point))
        best_point = sp.point_of(best_sources, study.space)
        if best_point is not None:
            known.add(sp.point_key(best_point))
        self._importances(request, study, primary)
        at_best = sp.constants_by_key(best_sources)
        like = {p.name: at_best[(p.path, p.const)].text for p in study.space.params
                if (p.path, p.const) in at_best}
        from optuna.trial import TrialState

        for _ in range(ASK_TRIES):
            trial = study.study.ask(study.dists)
            point = {}
            for p in study.space.params:
                text = p.format(p.from_param(trial.params[p.name]), like=like.get(p.name))
                value = float(text.replace("_", ""))
                point[p.name] = int(value) if p.is_int else value
            pk = sp.point_key(point)
            if pk in known or study.params_of(point) is None:
                study.study.tell(trial, state=TrialState.FAIL)
                continue
            study.asked[trial.number] = _Ask(request.worker, request.attempt, time.time(), pk)
            return study, point, trial.number
        raise ProposalFailed(f"search asked {ASK_TRIES} times and got only points already tried; the space "
                             "is exhausted: widen [research.space] or use another proposer")

    def _new_study(self, request: ProposalRequest, key: str, space: sp.Space,
                   mine: list[tuple[Obs, dict[str, str]]], others: list[tuple[Obs, dict[str, str]]]) -> _Study:
        seed = zlib.crc32(f"{request.tag}:{key}".encode()) & 0x7FFFFFFF
        source = None
        if self.sampler == "cmaes":
            source = self._frozen(space, mine)
            source = source if len(source) >= WARM_START_MIN else None
        study = _Study(key, space, self.ctx.research.direction, self.sampler, seed, source)
        # Seeded with what still applies: the best points measured on other code, where they fit.
        sign = -1.0 if self.ctx.research.direction == "max" else 1.0
        scored = sorted((o for o, _ in others if o.value is not None and not o.pending),
                        key=lambda o: sign * float(o.value))  # type: ignore[arg-type]
        sources = {o.key: src for o, src in others}
        seeded = 0
        for o in scored:
            if seeded >= SEEDS_FROM_OTHER_CODE:
                break
            found = sp.constants_by_key(sources[o.key])
            params = {}
            for p in space.params:
                c = found.get((p.path, p.const))
                got = p.to_param(c.value) if c is not None else None
                if got is not None:
                    params[p.name] = got
            if params:
                study.study.enqueue_trial(params, skip_if_exists=True)
                seeded += 1
        self._studies[key] = study
        return study

    def _frozen(self, space: sp.Space, mine: list[tuple[Obs, dict[str, str]]]) -> list[Any]:
        from optuna.trial import create_trial

        dists = space.distributions()
        out = []
        for o, src in mine:
            if o.pending or o.value is None:
                continue
            point = sp.point_of(src, space)
            params: dict[str, Any] | None = None
            if point is not None:
                params = {}
                for p in space.params:
                    got = p.to_param(point[p.name])
                    if got is None:
                        params = None
                        break
                    params[p.name] = got
            if params is not None:
                out.append(create_trial(params=params, distributions=dists, value=o.value))
        return out

    def _sync(self, study: _Study, mine: list[tuple[Obs, dict[str, str]]]) -> None:
        """Tell *study* what the ledger knows that it does not."""
        for o, src in mine:
            if o.key in study.told:
                continue
            point = sp.point_of(src, study.space, self._constants(o.commit, src))
            params = study.params_of(point) if point is not None else None
            link = study.linked.get(o.key)
            if link is None:
                tag = o.meta.get("search") or {}
                number = tag.get("number")
                if (tag.get("token") == self._token and tag.get("study") == study.key
                        and isinstance(number, int) and number in study.asked):
                    ask = study.asked.pop(number)
                    link = (number, ask.pkey)
                    study.linked[o.key] = link
            if o.skip or params is None:
                # Never evaluated, or outside the space: never told; an ask of ours stops counting.
                if link is not None:
                    study.tell(link[0], None, failed=True)
                    study.told.add(o.key)
                elif not o.pending:
                    study.told.add(o.key)
                continue
            pk = sp.point_key(point)  # type: ignore[arg-type]
            if link is not None and link[1] != pk:
                # The change moved (re-applied on a newer best): the ask is failed, the point is its own trial.
                study.tell(link[0], None, failed=True)
                link = None
                study.linked.pop(o.key, None)
            if link is None:
                if o.pending:
                    study.linked[o.key] = (study.add(params, pending=True), pk)
                else:
                    study.linked[o.key] = (study.add(params, value=o.value, failed=o.failed), pk)
                    study.told.add(o.key)
                continue
            if not o.pending:
                study.tell(link[0], o.value, failed=o.failed)
                study.told.add(o.key)

    def _expire(self, study: _Study, request: ProposalRequest) -> None:
        now = time.time()
        for number, ask in list(study.asked.items()):
            # The same worker asking again means its last proposal was dropped (a duplicate by content).
            if (ask.worker == request.worker and request.attempt > ask.attempt) or now - ask.at > ORPHAN_S:
                study.asked.pop(number)
                study.tell(number, None, failed=True)

    def _importances(self, request: ProposalRequest, study: _Study, primary: str | None) -> None:
        from optuna.trial import TrialState

        complete = [t for t in study.study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if len(complete) < MIN_IMPORTANCE_TRIALS or len(complete) == study.importance_n:
            return
        study.importance_n = len(complete)
        if self.ctx.ledger is None:
            return
        varied = [p.name for p in study.space.params if len({t.params.get(p.name) for t in complete}) > 1]
        if not varied:
            return
        try:
            import optuna

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = optuna.importance.get_param_importances(study.study, params=varied)
        except Exception as exc:  # importances are a display, never a reason to fail
            log.debug("importances failed: %s", exc)
            return
        params = {k: round(float(v), 4) for k, v in found.items() if math.isfinite(float(v))}
        save_importances(self.ctx.ledger, request.tag, {
            "trials": len(complete), "computed_at": time.time(), "study": study.key, "sampler": self.sampler,
            "hardware": primary, "params": dict(sorted(params.items(), key=lambda kv: -kv[1])),
        })


_QUIET: list[bool] = []  # [True] once Optuna was told to be quiet


def _quiet_optuna() -> None:
    """Optuna logs every trial at INFO; the loop has its own display."""
    if not _QUIET:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _QUIET.append(True)
