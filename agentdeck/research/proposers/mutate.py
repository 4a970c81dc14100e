"""The ``mutate`` proposer: offline, no key — perturbs the numeric top-level constants.

It reads the editable Python files' top-level assignments of plain numbers
(``LR = 3e-4``, ``DEPTH: int = 8``, ``WARMUP = -1``), picks one (sometimes
two) and nudges it: powers of two double or halve, small integers step by one,
other integers by about a quarter, floats by a factor (fractions close to 1,
like Adam's betas, move their distance to 1 instead).  Only the number's own
characters change, so the file keeps its formatting and comments.

Guided by the ledger: every change it made is recorded in the trial's meta
(name, old, new, direction); a (constant, direction) pair that was kept scores
up, one that was discarded or crashed scores down, and pairs are drawn with
weights from those scores, so a direction that pays keeps being followed and
one that failed is tried less.  Values already tried from the same starting
value are avoided.  Names with ``SEED`` in them are never touched: "the best
change was the random seed" is the classic way auto-research fools itself.
"""

from __future__ import annotations

import math
import random
from typing import Any

# The constants themselves are found and rewritten in agentdeck.research.constants (the search
# space reads them there too); the names stay importable from here.
from agentdeck.research.constants import Constant, find_constants, format_number, replace_constant
from agentdeck.research.proposers.base import Proposal, ProposalFailed, ProposalRequest, Proposer

__all__ = ["Constant", "MutateProposer", "candidates", "find_constants", "format_number", "replace_constant"]


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def candidates(value: float | int, is_int: bool, direction: str) -> list[float | int]:
    """Values a constant may move to, in *direction* ("+" up, "-" down)."""
    up = direction == "+"
    if is_int:
        v = int(value)
        if v == 0:
            return [1, 2] if up else [-1]
        if _is_pow2(abs(v)) and abs(v) >= 4:
            return [v * 2] if up else [v // 2]
        if abs(v) <= 8:
            out = [v + 1, v + 2] if up else [v - 1, v - 2]
            return [o for o in out if (o > 0) == (v > 0) and o != 0] or ([v * 2] if up else [])
        step = max(1, round(abs(v) * 0.25))
        return [v + step] if up else [v - step]
    x = float(value)
    if x == 0.0:
        return [0.01, 0.1] if up else []
    factors = [1.25, 1.5, 2.0] if up else [0.8, 2 / 3, 0.5]
    if 0.5 <= abs(x) < 1.0:  # a fraction near 1 (betas, decay): move its distance to 1
        sign = 1 if x > 0 else -1
        gap = 1.0 - abs(x)
        fractions = [sign * (1.0 - gap / f) for f in factors]
        return [o for o in fractions if 0 < abs(o) < 1]
    return [x * f for f in factors]


class MutateProposer(Proposer):
    name = "mutate"

    def scores(self, history: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
        score: dict[tuple[str, str, str], float] = {}
        for trial in history:
            if trial.get("kind") != "proposal":
                continue
            weight = {"keep": 2.0, "discard": -0.5, "crash": -1.5}.get(trial.get("status", ""), 0.0)
            for change in (trial.get("meta") or {}).get("changes", []):
                key = (change.get("path", ""), change.get("name", ""), change.get("dir", ""))
                score[key] = score.get(key, 0.0) + weight
        return score

    def tried(self, history: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
        seen = set()
        for trial in history:
            for change in (trial.get("meta") or {}).get("changes", []):
                seen.add((change.get("path", ""), change.get("name", ""), str(change.get("old")),
                          str(change.get("new"))))
        return seen

    def propose(self, request: ProposalRequest) -> Proposal:
        rng = random.Random(f"{request.tag}:{request.seed}:{request.attempt}")
        sources: dict[str, str] = {}
        consts: list[Constant] = []
        for rel, text in request.read_editable(".py").items():
            found = find_constants(text, rel)
            if found:
                sources[rel] = text
                consts.extend(found)
        if not consts:
            raise ProposalFailed(
                "mutate found no numeric top-level constants in the editable files; "
                "use another proposer or add constants such as `LR = 3e-4`"
            )
        scores = self.scores(request.history)
        tried = self.tried(request.history)
        options = []
        for c in consts:
            for d in ("+", "-"):
                values = [v for v in candidates(c.value, c.is_int, d)
                          if (c.path, c.name, str(c.value), format_number(v, c.text, c.is_int)) not in tried]
                if values:
                    weight = math.exp(max(-4.0, min(4.0, scores.get((c.path, c.name, d), 0.0))))
                    options.append((weight, c, d, values))
        if not options:
            raise ProposalFailed("mutate has tried every nearby value of every constant from this best")
        count = 2 if (len(options) > 2 and rng.random() < 0.2) else 1
        chosen: list[tuple[Constant, str, list]] = []
        pool = list(options)
        while pool and len(chosen) < count:
            total = sum(w for w, *_ in pool)
            pick = rng.random() * total
            for i, (w, c, d, values) in enumerate(pool):
                pick -= w
                if pick <= 0 or i == len(pool) - 1:
                    chosen.append((c, d, values))
                    pool = [o for o in pool if o[1].name != c.name or o[1].path != c.path]
                    break
        changes: list[dict[str, Any]] = []
        # Apply from the end of each file backwards so earlier offsets stay valid.
        for c, d, values in sorted(chosen, key=lambda item: (item[0].path, -item[0].start)):
            new_value = rng.choice(values)
            new_text = format_number(new_value, c.text, c.is_int)
            if new_text == c.text:
                continue
            sources[c.path] = replace_constant(sources[c.path], c, new_text)
            changes.append({"path": c.path, "name": c.name, "old": c.value, "new": new_text, "dir": d,
                            "old_text": c.text})
        if not changes:
            raise ProposalFailed("mutate produced no change")
        for path in {ch["path"] for ch in changes}:
            (request.workdir / path).write_text(sources[path], encoding="utf-8")
        changes.sort(key=lambda ch: (ch["path"], ch["name"]))
        description = "; ".join(f"{ch['name']} {ch['old_text']} -> {ch['new']}" for ch in changes)
        for ch in changes:
            ch["old"] = str(ch["old"])
        return Proposal(description, {"proposer": "mutate", "changes": changes})
