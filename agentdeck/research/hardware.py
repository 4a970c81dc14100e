"""Hardware classes: which lanes' results may be compared with each other.

A fixed time budget makes an A100 and an H100 incomparable (the faster card
trains more steps), so every trial records the class of the lane it ran on and
is judged against the best of its own class.  A lane's class is the GPU model
``nvidia-smi`` reports for its device (slugified: ``nvidia-h100-80gb-hbm3``),
``cpu`` for the CPU lane; with a cluster executor (which does not pin local
devices) every lane has the executor's name as its class.

``[research] hardware`` names the run's *primary* class: when a lane has that
class it is primary, else the first lane's class is renamed to it (a machine
or cluster whose GPUs nvidia-smi here cannot describe).  Without it the first
lane's class is primary.

``AGENTDECK_RESEARCH_SLOT_CLASSES`` (``"0=a100,1=h100"``) declares the class of
lanes by hand, over what nvidia-smi says: tests use it to give two lanes of one
CPU machine two classes, and it serves a machine whose ``nvidia-smi`` cannot
be run by agentdeck.  The classes are fixed when a run starts (stored with its
settings), so the loop process never reads it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from agentdeck.paths import slugify
from agentdeck.research.gpus import CPU_SLOT

ENV_SLOT_CLASSES = "AGENTDECK_RESEARCH_SLOT_CLASSES"


def class_slug(name: str) -> str:
    """A class name fit for a branch name and a table key (``NVIDIA H100 80GB`` -> ``nvidia-h100-80gb``)."""
    return slugify(name) if name.strip() else "unknown"


def gpu_models(timeout: float = 10.0) -> dict[str, str]:
    """Device index -> GPU model, from ``nvidia-smi --query-gpu=index,name``; {} when there is none."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        out = subprocess.run([exe, "--query-gpu=index,name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if out.returncode != 0:
        return {}
    models = {}
    for line in out.stdout.splitlines():
        index, _, name = line.partition(",")
        if index.strip() and name.strip():
            models[index.strip()] = name.strip()
    return models


def declared_classes(text: str | None = None) -> dict[str, str]:
    """The lanes' classes declared in ``AGENTDECK_RESEARCH_SLOT_CLASSES`` (``slot=class,...``)."""
    text = os.environ.get(ENV_SLOT_CLASSES, "") if text is None else text
    out = {}
    for part in text.split(","):
        slot, sep, cls = part.partition("=")
        if sep and slot.strip() and cls.strip():
            out[slot.strip()] = class_slug(cls)
    return out


def slot_classes(slots: list[str], pins_devices: bool, executor: str = "local",
                 hardware: str = "") -> tuple[dict[str, str], str]:
    """({slot: class}, the primary class) for a run's lanes (see the module docstring)."""
    declared = declared_classes()
    models: dict[str, str] | None = None
    classes: dict[str, str] = {}
    for slot in slots:
        if slot in declared:
            classes[slot] = declared[slot]
        elif not pins_devices:
            classes[slot] = class_slug(executor)
        elif slot == CPU_SLOT:
            classes[slot] = "cpu"
        else:
            if models is None:
                models = gpu_models()
            classes[slot] = class_slug(models.get(slot, "gpu"))
    if not slots:
        return classes, class_slug(hardware) if hardware.strip() else "cpu"
    first = classes[slots[0]]
    if hardware.strip():
        wanted = class_slug(hardware)
        if wanted not in classes.values():
            classes = {s: (wanted if c == first else c) for s, c in classes.items()}
        return classes, wanted
    return classes, first


def class_branch(branch: str, cls: str, primary: str) -> str:
    """The branch a class's kept trials advance: the run's own for the primary class, else
    ``<branch>@<class>`` (``research/<tag>/<class>`` cannot exist beside the branch ``research/<tag>``:
    git stores a branch as a file, and that name would need it to be a folder)."""
    return branch if cls == primary else f"{branch}@{cls}"
