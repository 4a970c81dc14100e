"""``results.tsv``: each run's table in autoresearch's shape, a view of the ledger.

Columns: ``commit``, the metric's name, ``memory_gb``, ``status``, ``description`` (autoresearch's)
plus ``trial``, ``kind``, ``gpu`` and ``seconds``.  A row is appended (and synced) when a trial is
decided, before anything of it is removed; when something else wrote to the file, the harness
rewrites it from the ledger instead of appending after the foreign rows.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from agentdeck.research.model import Trial


def tsv_header(metric: str) -> list[str]:
    return ["commit", metric, "memory_gb", "status", "description", "trial", "kind", "gpu", "seconds"]


def _clean(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").split())


def tsv_row(trial: Trial) -> list[str]:
    metric = trial.metric
    shown = f"{metric:.6f}" if isinstance(metric, (int, float)) and metric is not None else "0.000000"
    if trial.status == "crash":
        shown = "0.000000"
    seconds = trial.seconds
    return [
        (trial.commit or "")[:7],
        shown,
        f"{(trial.memory_gb or 0.0):.1f}",
        trial.status,
        _clean(trial.description),
        str(trial.id),
        trial.kind,
        str(trial.gpu or ""),
        f"{seconds:.1f}" if isinstance(seconds, (int, float)) else "",
    ]


class ResultsTsv:
    """``results.tsv``: a view of the ledger with one writer, the run's loop.

    Rows are appended (and synced) as trials are decided.  The writer remembers what
    the file holds; when something else changed it (a job appending a fake ``keep``
    row), :meth:`append` rewrites the whole file from the ledger's rows instead of
    appending after the foreign ones.
    """

    def __init__(self, path: Path, metric: str):
        self.path = Path(path)
        self.metric = metric
        self._lock = threading.Lock()
        self._expected: bytes | None = None  # what the file holds after our last write (None: not known)
        self.rewrites = 0  # times the file was found changed by someone else and rewritten

    def header(self) -> str:
        return "\t".join(tsv_header(self.metric)) + "\n"

    def ensure(self) -> None:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write(self.header())

    def intact(self) -> bool:
        """True when the file holds what this writer last left in it (or nothing is known yet)."""
        if self._expected is None:
            return True
        try:
            return self.path.read_bytes() == self._expected
        except OSError:
            return False

    def adopt(self) -> None:
        """Take the file as it is now as this writer's (after checking it against the ledger)."""
        try:
            self._expected = self.path.read_bytes()
        except OSError:
            self._expected = None

    def append(self, trial: Trial, ledger_rows: Callable[[], Iterable[Trial]] | None = None) -> bool:
        """Append *trial*'s row.  When the file changed behind this writer's back and
        *ledger_rows* (a callable returning every recorded trial, *trial* included) is given,
        the file is rewritten from those instead; True then."""
        if ledger_rows is not None and not self.intact():
            self.rewrite(ledger_rows())
            self.rewrites += 1
            return True
        self.ensure()
        self._write("\t".join(tsv_row(trial)) + "\n")
        return False

    def rewrite(self, trials: Iterable[Trial]) -> None:
        """Write the whole file from *trials* (in the order given), atomically."""
        text = self.header() + "".join("\t".join(tsv_row(t)) + "\n" for t in trials)
        data = text.encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._expected = data

    def _write(self, text: str) -> None:
        with self._lock:
            data = text.encode("utf-8")
            if self._expected is None and self.path.exists():
                try:
                    self._expected = self.path.read_bytes()
                except OSError:
                    pass
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._expected = (self._expected or b"") + data

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line]
