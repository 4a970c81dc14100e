"""The environment a sandboxed (or merely untrusted) command gets: an allow-list, never a copy.

agentdeck's own environment holds keys (``ANTHROPIC_API_KEY``, cloud tokens,
``SSH_AUTH_SOCK``...) that a training job or an agent must not inherit.  A
command gets only what :func:`allowed_env` lets through — ``PATH``, the
locale, the time zone, the user's name, the CUDA/NVIDIA variables and the
library path GPUs need — plus what its caller sets on purpose (``HOME``, the
``AGENTDECK_*`` it needs) and the user's explicit extras
(``[research] env``), where ``"${NAME}"`` copies agentdeck's own ``NAME``
(left out when unset).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Variables passed through by name.
ALLOWED = frozenset({
    "PATH", "LANG", "LANGUAGE", "TZ", "USER", "LOGNAME", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
})
#: Variables passed through by prefix (the locale, CUDA and the NVIDIA container runtime).
ALLOWED_PREFIXES = ("LC_", "CUDA_", "NVIDIA_")

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def allowed(name: str) -> bool:
    """True when *name* may pass from agentdeck's environment to a job's."""
    return name in ALLOWED or name.startswith(ALLOWED_PREFIXES)


def expand(value: str, source: Mapping[str, str]) -> str | None:
    """*value* with each ``${NAME}`` replaced by ``source[NAME]``; None when the value is exactly
    one reference to an unset variable (the variable is then left out, not set empty)."""
    whole = _REF.fullmatch(value)
    if whole and whole.group(1) not in source:
        return None
    return _REF.sub(lambda m: source.get(m.group(1), ""), value)


def allowed_env(source: Mapping[str, str], *, extra: Mapping[str, str] | None = None,
                fixed: Mapping[str, str] | None = None) -> dict[str, str]:
    """A command's whole environment: the allowed part of *source*, then *extra* (the user's
    ``[research] env``, ``${NAME}`` expanded from *source*), then *fixed* (what the caller sets:
    ``HOME``, ``AGENTDECK_*``; it wins)."""
    env = {k: v for k, v in source.items() if allowed(k)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    for name, value in (extra or {}).items():
        out = expand(str(value), source)
        if out is not None:
            env[name] = out
    env.update(fixed or {})
    return env
