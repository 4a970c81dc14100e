"""The search space of the ``search`` proposer: the editable files' top-level numeric constants.

Standard library only (``research space``, ``research status`` and the deck
read it without importing Optuna).  The constants are found by the parser the ``mutate``
proposer shares (:func:`agentdeck.research.constants.find_constants`: top-level
``NAME = <number>`` lines, ``_private`` names and names containing ``SEED``
skipped), and each gets a range derived from its value at the space's origin:

=====================  ======================================================
value                  range
=====================  ======================================================
power-of-two integer   powers of two, six doublings either way (at least 1)
other integer >= 1     ``[max(1, v/100), v*100]``, log scale
integer 0              ``[0, 10]``
float in (0, 0.5)      ``[v/100, min(1, v*100)]``, log scale (a fraction stays <= 1)
float in [0.5, 1)      the distance to 1 on a log scale, ``[gap/100, min(0.5, gap*100)]`` (betas)
float >= 1             ``[v/100, v*100]``, log scale
float 0.0              ``[0, 1]``
negative               not searched (often a sentinel such as ``-1``)
=====================  ======================================================

``[research.space]`` narrows, widens or adds a constant: ``NAME = { low,
high, log, step, choices }`` (any subset; ``choices`` alone makes it
categorical).  A power of two stays a power of two when both bounds are
powers of two and no ``step`` is given.  A key naming no searchable constant
is a :class:`UsageError` naming ``research.space.NAME``.

The space also defines a *skeleton*: the editable files with the searched
numbers masked.  Two commits with the same skeleton differ only in the
searched constants, so one study covers both (:func:`skeleton`).

The files come from the caller (path -> text); reading them from a commit, and
``research space``'s report, are :mod:`agentdeck.research.space_commit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentdeck.errors import UsageError
from agentdeck.research.constants import Constant, find_constants, format_number, replace_constant

SEED = re.compile(r"seed", re.IGNORECASE)
DECADES = 2.0  # derived ranges span this many decades either way of the origin's value
DOUBLINGS = 6  # ... and this many doublings for powers of two
SPACE_KEYS = ("low", "high", "log", "step", "choices")
@dataclass
class Param:
    """One searched constant and its range (bounds in the constant's own units)."""

    name: str  # the parameter's name: the constant's, or ``path:NAME`` when two files share it
    const: str
    path: str  # relative to the lab's workdir
    value: float | int  # at the origin
    text: str  # the number as written at the origin
    line: int
    is_int: bool
    kind: str  # float | int | pow2 | gap | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: list[float | int] = field(default_factory=list)
    source: str = "derived"  # derived | [research.space]
    why: str = ""

    def bounds(self) -> tuple[float | int, float | int]:
        """``(low, high)``, which every kind but ``choice`` has."""
        assert self.low is not None and self.high is not None, f"a {self.kind} parameter without bounds"
        return self.low, self.high

    # ------------------------------------------------------------------ Optuna's view
    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.choices))
        low, high = self.bounds()
        if self.kind == "pow2":
            return IntDistribution(int(math.log2(low)), int(math.log2(high)))
        if self.kind == "gap":
            return FloatDistribution(1.0 - float(high), 1.0 - float(low), log=True)
        if self.kind == "int":
            return IntDistribution(int(low), int(high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(low), float(high), log=self.log,
                                 step=None if self.step is None else float(self.step))

    def from_param(self, p: Any) -> float | int:
        """The constant's value for the Optuna parameter *p*."""
        if self.kind == "pow2":
            return 2 ** int(p)
        if self.kind == "gap":
            return 1.0 - float(p)
        if self.kind == "int" or self.is_int:
            return int(round(p))
        return float(p)

    def to_param(self, value: float | int) -> Any:
        """The Optuna parameter for the constant's *value*; None when the value is outside the space.

        Values a hair outside a bound (a proposal rounded to three digits) count as the bound."""
        if self.kind == "choice":
            for c in self.choices:
                if math.isclose(float(c), float(value), rel_tol=1e-9, abs_tol=1e-12):
                    return c
            return None
        low, high = self.bounds()
        if self.kind == "pow2":
            v = int(value)
            if v != value or v <= 0 or v & (v - 1):
                return None
            return int(math.log2(v)) if low <= v <= high else None
        if self.kind == "gap":
            gap = 1.0 - float(value)
            lo, hi = 1.0 - float(high), 1.0 - float(low)
            return _clamp(gap, lo, hi, True)
        got = _clamp(float(value), float(low), float(high), self.log)
        if got is None:
            return None
        if self.kind == "int":
            if int(value) != value:
                return None
            return int(round(got))
        if self.step:
            k = (got - float(low)) / float(self.step)
            if abs(k - round(k)) > 1e-6:
                return None
        return got

    def format(self, value: float | int, like: str | None = None) -> str:
        """The value written the way the origin (or *like*) writes it."""
        like = like if like is not None else self.text
        if self.is_int:
            return format_number(int(value), like, True)
        if self.kind == "gap":
            gap = 1.0 - float(value)
            digits = max(3, 3 - int(math.floor(math.log10(gap))) - 1) if gap > 0 else 3
            return repr(round(1.0 - float(f"{gap:.3g}"), digits + 1))
        if self.step:
            decimals = max(0, -int(math.floor(math.log10(float(self.step)))) + 2)
            return repr(round(float(value), decimals))
        return format_number(float(value), like, False)

    def bounds_text(self) -> str:
        if self.kind == "choice":
            return "{" + ", ".join(_num(c) for c in self.choices) + "}"
        scale = {"pow2": "powers of two", "gap": "log of 1 - x"}.get(self.kind, "log" if self.log else "linear")
        step = f", step {_num(self.step)}" if self.step else ""
        return f"[{_num(self.low)}, {_num(self.high)}] {scale}{step}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "constant": self.const, "path": self.path, "line": self.line,
                "value": self.value, "text": self.text, "kind": self.kind, "low": self.low, "high": self.high,
                "log": self.log, "step": self.step, "choices": list(self.choices) or None, "source": self.source,
                "range": self.bounds_text(), "derivation": self.why}


@dataclass
class Space:
    params: list[Param]
    skipped: list[dict[str, Any]]  # {"name", "path", "line", "value", "reason"}

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def keys(self) -> set[tuple[str, str]]:
        return {(p.path, p.const) for p in self.params}

    def distributions(self) -> dict[str, Any]:
        return {p.name: p.distribution() for p in self.params}

    def to_json(self) -> dict[str, Any]:
        return {"params": [p.to_json() for p in self.params], "skipped": self.skipped}


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _clamp(value: float, low: float, high: float, log: bool) -> float | None:
    if low <= value <= high:
        return value
    tol = 0.01  # a relative hair: proposals are written with three significant digits
    if log and value > 0:
        if low * (1 - tol) <= value < low:
            return low
        if high < value <= high * (1 + tol):
            return high
        return None
    span = (high - low) or 1.0
    if low - tol * span <= value < low:
        return low
    if high < value <= high + tol * span:
        return high
    return None


def _is_pow2(v: int) -> bool:
    return v > 0 and v & (v - 1) == 0


def _round_sig(value: float) -> float:
    return float(f"{value:.3g}")


def derive(c: Constant) -> tuple[dict[str, Any] | None, str]:
    """The derived range of constant *c* (keyword arguments of :class:`Param`) and why; None = not searched."""
    v = c.value
    if c.is_int:
        v = int(v)
        if v < 0:
            return None, "negative (a sentinel?); add it to [research.space] to search it"
        if v == 0:
            return {"kind": "int", "low": 0, "high": 10, "log": False}, "integer 0: [0, 10]"
        if v >= 2 and _is_pow2(v):
            k = int(math.log2(v))
            lo, hi = 2 ** max(0, k - DOUBLINGS), 2 ** (k + DOUBLINGS)
            return ({"kind": "pow2", "low": lo, "high": hi, "log": True},
                    f"power of two: stays one, {DOUBLINGS} doublings either way")
        lo, hi = max(1, int(math.ceil(v / 10 ** DECADES))), int(v * 10 ** DECADES)
        return ({"kind": "int", "low": lo, "high": hi, "log": True},
                f"integer: {DECADES:g} decades either way, log scale")
    v = float(v)
    if v < 0:
        return None, "negative; add it to [research.space] to search it"
    if v == 0.0:
        return {"kind": "float", "low": 0.0, "high": 1.0, "log": False}, "float 0.0: [0, 1]"
    if 0.5 <= v < 1.0:
        gap = 1.0 - v
        lo_gap, hi_gap = gap / 10 ** DECADES, min(0.5, gap * 10 ** DECADES)
        return ({"kind": "gap", "low": 1.0 - hi_gap, "high": 1.0 - lo_gap, "log": True},
                "fraction near 1 (a beta, a decay): its distance to 1 on a log scale")
    lo = _round_sig(v / 10 ** DECADES)
    if v < 1.0:
        return ({"kind": "float", "low": lo, "high": min(1.0, _round_sig(v * 10 ** DECADES)), "log": True},
                f"float below 1: {DECADES:g} decades either way on a log scale, at most 1")
    return ({"kind": "float", "low": lo, "high": _round_sig(v * 10 ** DECADES), "log": True},
            f"float: {DECADES:g} decades either way, log scale")


def _override_fields(raw: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(raw) and not isinstance(raw, type):
        raw = dataclasses.asdict(raw)
    return {k: v for k, v in dict(raw or {}).items() if k in SPACE_KEYS and v not in (None, [])}


def _apply_override(c: Constant, derived: dict[str, Any] | None, over: dict[str, Any], key: str
                    ) -> tuple[dict[str, Any], str]:
    def bad(sub: str, problem: str) -> UsageError:
        return UsageError(f"research.space.{key}{'.' + sub if sub else ''}: {problem}")

    if "choices" in over:
        extra = [k for k in ("low", "high", "step", "log") if k in over]
        if extra:
            raise bad("choices", f"give choices or low/high, not both (remove {', '.join(extra)})")
        choices = list(over["choices"])
        if c.is_int and any(float(x) != int(x) for x in choices):
            raise bad("choices", f"{c.name} is an integer; give integer choices")
        choices = [int(x) for x in choices] if c.is_int else [float(x) for x in choices]
        return {"kind": "choice", "choices": choices, "log": False}, "choices from [research.space]"
    base = dict(derived or {})
    if not base and ("low" not in over or "high" not in over):
        raise bad("", f"{c.name} = {c.text} is not searched by default; give both low and high")
    low, high = over.get("low", base.get("low")), over.get("high", base.get("high"))
    if low is None or high is None:
        raise bad("", f"{c.name} = {c.text} has no default range; give both low and high")
    if base.get("kind") == "gap" and ("low" in over or "high" in over):
        base["kind"] = "float"
    if c.is_int:
        for sub, value in (("low", low), ("high", high), ("step", over.get("step"))):
            if value is not None and float(value) != int(value):
                raise bad(sub, f"{c.name} is an integer; give an integer")
        low, high = int(low), int(high)
    else:
        low, high = float(low), float(high)
    if low >= high:
        raise bad("high", f"must exceed low ({_num(low)})")
    step = over.get("step")
    if step is not None and step <= 0:
        raise bad("step", "must be positive")
    if "log" in over:
        log = bool(over["log"])
    elif "low" in over or "high" in over:
        log = low > 0 and high / low >= 10 and step is None
    else:
        log = bool(base.get("log")) and step is None
    if log and low <= 0:
        raise bad("log", f"a log scale needs low > 0 (low is {_num(low)})")
    if log and step is not None:
        raise bad("step", "a step needs a linear scale (set log = false)")
    kind = base.get("kind") or ("int" if c.is_int else "float")
    pow2_bounds = isinstance(low, int) and isinstance(high, int) and _is_pow2(low) and _is_pow2(high)
    if kind == "pow2" and not (step is None and pow2_bounds and over.get("log") is not False):
        kind = "int"
    if kind == "gap" and (step is not None or not log):
        kind = "float"
    if kind == "int" and not c.is_int:
        kind = "float"
    out = {"kind": kind, "low": low, "high": high, "log": log, "step": step}
    return out, "range from [research.space]"


def build_space(sources: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> Space:
    """The space of the editable files *sources* (path -> text), with ``[research.space]`` *overrides*.

    Raises UsageError naming ``research.space.NAME`` for a key that names no searchable constant."""
    overrides = dict(overrides or {})
    for key in overrides:
        if SEED.search(key):
            raise UsageError(f"research.space.{key}: constants named *SEED* are never searched; remove the key")
    consts: list[Constant] = []
    all_names: set[str] = set()
    for path in sorted(sources):
        if not path.endswith(".py"):
            continue
        found = find_constants(sources[path], path)
        consts.extend(found)
        all_names.update(c.name for c in found)
    unknown = [k for k in overrides if k not in all_names]
    if unknown:
        files = ", ".join(p for p in sorted(sources) if p.endswith(".py")) or "none"
        raise UsageError(f"research.space.{unknown[0]}: no top-level numeric constant {unknown[0]} in the editable "
                         f"files ({files}); remove the key or fix its name")
    counts: dict[str, int] = {}
    for c in consts:
        counts[c.name] = counts.get(c.name, 0) + 1
    params, skipped = [], []
    for c in consts:
        line = sources[c.path].encode("utf-8")[: c.start].count(b"\n") + 1
        derived, why = derive(c)
        over = _override_fields(overrides[c.name]) if c.name in overrides else None
        if over:
            derived, why = _apply_override(c, derived, over, c.name)
            source = "[research.space]"
        else:
            source = "derived"
        if derived is None:
            skipped.append({"name": c.name, "path": c.path, "line": line, "value": c.value, "reason": why})
            continue
        name = c.name if counts[c.name] == 1 else f"{c.path}:{c.name}"
        params.append(Param(name=name, const=c.name, path=c.path, value=c.value, text=c.text, line=line,
                            is_int=c.is_int, source=source, why=why, **derived))
    return Space(params, skipped)


# ---------------------------------------------------------------------- points and skeletons


def constants_by_key(sources: Mapping[str, str]) -> dict[tuple[str, str], Constant]:
    out: dict[tuple[str, str], Constant] = {}
    for path in sorted(sources):
        if path.endswith(".py"):
            for c in find_constants(sources[path], path):
                out[(c.path, c.name)] = c
    return out


def skeleton(sources: Mapping[str, str], keys: Iterable[tuple[str, str]]) -> str | None:
    """A hash of *sources* with the searched numbers masked; None when a searched constant is missing.

    Two commits with the same skeleton differ only in the searched constants' values."""
    keys = set(keys)
    found = constants_by_key(sources)
    if not keys <= set(found):
        return None
    h = hashlib.sha256()
    for path in sorted(sources):
        data = sources[path].encode("utf-8")
        spans = sorted((found[k].start, found[k].end) for k in keys if k[0] == path)
        pos = 0
        h.update(f"{path}\0".encode())
        for start, end in spans:
            h.update(data[pos:start])
            h.update(b"\0#\0")
            pos = end
        h.update(data[pos:].rstrip(b"\n"))  # trailing newlines do not count (git.run strips them)
        h.update(b"\0\0")
    return h.hexdigest()


def point_of(sources: Mapping[str, str], space: Space,
             found: Mapping[tuple[str, str], Constant] | None = None) -> dict[str, float | int] | None:
    """The searched constants' values in *sources* (or in its constants *found*); None when one is missing."""
    found = constants_by_key(sources) if found is None else found
    point = {}
    for p in space.params:
        c = found.get((p.path, p.const))
        if c is None:
            return None
        point[p.name] = c.value
    return point


def point_key(point: Mapping[str, float | int]) -> tuple:
    return tuple(sorted((k, float(v)) for k, v in point.items()))


def apply_point(sources: Mapping[str, str], space: Space, point: Mapping[str, float | int]
                ) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Write *point* into *sources* by changing only the numbers' own characters.

    Returns the changed files (path -> text) and the changes (``mutate``'s meta shape:
    path, name, old, new, old_text, dir), in file order."""
    found = constants_by_key(sources)
    out = dict(sources)
    changes = []
    edits: dict[str, list[tuple[Constant, str, Param]]] = {}
    for p in space.params:
        c = found[(p.path, p.const)]
        new_text = p.format(point[p.name], like=c.text)
        try:
            same = float(new_text.replace("_", "")) == float(c.value)
        except ValueError:
            same = False
        if new_text != c.text and not same:
            edits.setdefault(p.path, []).append((c, new_text, p))
    for path, items in edits.items():
        text = out[path]
        for c, new_text, _param in sorted(items, key=lambda item: -item[0].start):
            text = replace_constant(text, c, new_text)
        out[path] = text
        for c, new_text, p in sorted(items, key=lambda item: item[0].start):
            new_value = float(new_text.replace("_", ""))
            changes.append({"path": p.path, "name": p.const, "old": str(c.value), "new": new_text,
                            "old_text": c.text, "dir": "+" if new_value > float(c.value) else "-"})
    return {k: v for k, v in out.items() if v != sources[k]}, changes


def describe(changes: list[dict[str, Any]]) -> str:
    """One line: ``LR 3e-4 -> 6.1e-4, WARMUP 100 -> 40``."""
    return ", ".join(f"{ch['name']} {ch['old_text']} -> {ch['new']}" for ch in changes)
