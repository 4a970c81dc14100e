"""GPU slots: which devices trials may lease, one timed job per slot at a time.

``gpus = "auto"`` means every GPU ``nvidia-smi -L`` lists (narrowed to
``CUDA_VISIBLE_DEVICES`` when that is set); with none, one CPU slot.  A list of
device ids gives one slot each.  Two timed runs never share a GPU: contention
halves the steps a job gets in a fixed budget and poisons the comparison.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable

from agentdeck.errors import UsageError

CPU_SLOT = "cpu"


def nvidia_smi_ids(timeout: float = 10.0) -> list[str]:
    """Device indices from ``nvidia-smi -L`` ("GPU 0: NVIDIA H100 ... (UUID: ...)"); [] when none."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    return re.findall(r"^GPU (\d+):", out.stdout, re.MULTILINE)


def parse_gpus_arg(text: str) -> str | list[int]:
    """``--gpus auto`` or ``--gpus 0,1,3``."""
    text = text.strip()
    if text.lower() == "auto":
        return "auto"
    if text.lower() == CPU_SLOT:
        return CPU_SLOT
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--gpus {text!r}: expected `auto` or device ids such as `0,1`") from None
    if not ids or any(i < 0 for i in ids):
        raise UsageError(f"--gpus {text!r}: expected `auto` or device ids such as `0,1`")
    return ids


def resolve_slots(setting: str | Iterable[int]) -> list[str]:
    """The slot ids for a ``gpus`` setting: device ids as strings, or ``["cpu"]``."""
    if isinstance(setting, str):
        if setting == CPU_SLOT:
            return [CPU_SLOT]
        if setting != "auto":
            raise UsageError(f"[research] gpus = {setting!r}: expected \"auto\" or a list of device ids")
        ids = nvidia_smi_ids()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if ids and visible:
            wanted = [v.strip() for v in visible.split(",") if v.strip()]
            narrowed = [v for v in wanted if v in ids]
            ids = narrowed or ids
        return ids or [CPU_SLOT]
    ids = [str(int(i)) for i in setting]
    if not ids:
        raise UsageError("[research] gpus is an empty list; use \"auto\" or device ids such as [0, 1]")
    if len(set(ids)) != len(ids):
        raise UsageError(f"[research] gpus lists a device twice ({', '.join(ids)}); one slot per GPU")
    return ids


def slot_env(slot: str) -> dict[str, str]:
    """Environment that pins a job to its slot (a CPU slot hides every GPU)."""
    return {"CUDA_VISIBLE_DEVICES": "" if slot == CPU_SLOT else slot}


class SlotPool:
    """Lease and release slots; a slot is never leased twice at once."""

    def __init__(self, slots: list[str]):
        self.slots = list(slots)
        self._busy: dict[str, int] = {}
        self._lock = threading.Lock()

    def free(self) -> list[str]:
        with self._lock:
            return [s for s in self.slots if s not in self._busy]

    def lease(self, trial: int, slot: str | None = None) -> str | None:
        with self._lock:
            candidates = [slot] if slot is not None else self.slots
            for s in candidates:
                if s in self.slots and s not in self._busy:
                    self._busy[s] = trial
                    return s
            return None

    def release(self, slot: str) -> None:
        with self._lock:
            self._busy.pop(slot, None)

    def holder(self, slot: str) -> int | None:
        with self._lock:
            return self._busy.get(slot)

    @property
    def busy(self) -> dict[str, int]:
        with self._lock:
            return dict(self._busy)
