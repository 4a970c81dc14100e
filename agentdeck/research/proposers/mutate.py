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

import ast
import math
import random
import re
import threading
from dataclasses import dataclass
from typing import Any

from agentdeck.research.proposers.base import Proposal, ProposalFailed, ProposalRequest, Proposer

SKIP_NAME = re.compile(r"seed", re.IGNORECASE)


@dataclass
class Constant:
    path: str  # relative to workdir
    name: str
    value: float | int
    start: int  # byte offsets of the number's text (sign included)
    end: int
    text: str

    @property
    def is_int(self) -> bool:
        return isinstance(self.value, int)


def _number(node: ast.AST) -> tuple[float | int, ast.AST] | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value, node
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
        value = node.operand.value
        return (-value if isinstance(node.op, ast.USub) else value), node
    return None


# CPython 3.11 can fail ``ast.parse`` in two threads at once ("AST constructor recursion depth mismatch");
# proposal workers are threads.
_AST_LOCK = threading.Lock()


def find_constants(source: str, path: str = "") -> list[Constant]:
    """Top-level ``NAME = <number>`` assignments of *source* (offsets in UTF-8 bytes)."""
    try:
        with _AST_LOCK:
            tree = ast.parse(source)
    except SyntaxError:
        return []
    data = source.encode("utf-8")
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    found = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, value_node = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            name, value_node = stmt.target.id, stmt.value
        else:
            continue
        if name.startswith("_") or SKIP_NAME.search(name):
            continue
        got = _number(value_node)
        if got is None or value_node.end_lineno != value_node.lineno:
            continue
        value, node = got
        start = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        found.append(Constant(path, name, value, start, end, data[start:end].decode("utf-8")))
    return found


def replace_constant(source: str, const: Constant, new_text: str) -> str:
    data = source.encode("utf-8")
    return (data[: const.start] + new_text.encode("utf-8") + data[const.end:]).decode("utf-8")


def format_number(value: float | int, like: str, is_int: bool) -> str:
    if is_int:
        if "_" in like and abs(int(value)) >= 1000:
            return f"{int(value):_}"
        return str(int(value))
    v = float(f"{value:.3g}")
    if "e" in like.lower():
        mantissa, exp = f"{v:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp)}"
    text = repr(v)
    if "e" in text:  # repr chose scientific for a tiny or huge number
        mantissa, exp = f"{v:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exp)}"
    return text


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
    v = float(value)
    if v == 0.0:
        return [0.01, 0.1] if up else []
    factors = [1.25, 1.5, 2.0] if up else [0.8, 2 / 3, 0.5]
    if 0.5 <= abs(v) < 1.0:  # a fraction near 1 (betas, decay): move its distance to 1
        sign = 1 if v > 0 else -1
        gap = 1.0 - abs(v)
        out = [sign * (1.0 - gap / f) for f in factors]
        return [o for o in out if 0 < abs(o) < 1]
    return [v * f for f in factors]


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
        for rel in request.editable:
            if not rel.endswith(".py"):
                continue
            try:
                text = request.read(rel)
            except (OSError, UnicodeDecodeError):
                continue
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
        changes = []
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
