"""Reading a job's result off its output, and comparing results.

The metric is the *last* line of the job's output that matches
``^<metric>:\\s*<value>``.  ``nan`` and ``inf`` match too (so a diverged run is
recognised as such, not as "no metric") and make the trial a crash.  The other
summary lines autoresearch prints (``peak_vram_mb:``, ``training_seconds:`` ...)
are read as extras.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity)"
_SUMMARY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\s*(" + _NUMBER + r")\s*$", re.IGNORECASE | re.MULTILINE)


def metric_pattern(name: str) -> re.Pattern[str]:
    return re.compile(r"^" + re.escape(name) + r":\s*(" + _NUMBER + r")\b", re.IGNORECASE | re.MULTILINE)


@dataclass
class MetricReading:
    value: float | None  # None: no line matched
    finite: bool = True
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def memory_gb(self) -> float:
        """Peak accelerator memory in GB from ``peak_vram_mb:`` (autoresearch's line), else 0."""
        mb = self.extras.get("peak_vram_mb")
        if mb is None or not math.isfinite(mb):
            return 0.0
        return round(mb / 1024.0, 1)


def read_metric(text: str, name: str) -> MetricReading:
    """The last ``name: value`` line of *text* (plus the other summary lines)."""
    matches = metric_pattern(name).findall(text)
    extras: dict[str, float] = {}
    for key, raw in _SUMMARY.findall(text):
        try:
            extras[key] = float(raw)
        except ValueError:  # pragma: no cover - the pattern only admits floats
            continue
    if not matches:
        return MetricReading(None, True, extras)
    value = float(matches[-1])
    return MetricReading(value, math.isfinite(value), extras)


def improvement(value: float, best: float, direction: str) -> float:
    """How much better *value* is than *best* (positive = better)."""
    return (best - value) if direction == "min" else (value - best)


def beats(value: float, best: float, direction: str, noise: float) -> bool:
    """True when *value* beats *best* by more than the measured noise."""
    return improvement(value, best, direction) > max(noise, 0.0)


def noise_of(values: list[float]) -> float:
    """Run-to-run spread: the sample standard deviation (0 for a single run)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return 0.0
    return statistics.stdev(finite)


def mean(values: list[float]) -> float:
    return statistics.fmean(values)
