"""Agent adapters, one package per agent CLI (``agents/<kind>/``); ``get_adapter`` picks by kind.

Each CLI's folder holds its adapter (``adapter.py``), its hook-event table (``events.py``,
standard library only), its usage reader (``usage.py``) and its memory wiring, as far as
the CLI has them; :mod:`agentdeck.agents.base` defines what each must provide.

This module stays light (no imports at module level beyond the standard library's
``__future__``): ``agentdeck hook`` imports ``agentdeck.agents.<kind>.events``, and with it
this package, on every agent event.  ``Adapter``, ``LaunchContext``, ``PaneIO`` and
``ScreenVerdict`` are loaded from :mod:`agentdeck.agents.base` on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing would cost the hook path
if TYPE_CHECKING:
    from typing import Any

    from agentdeck.agents.base import Adapter, LaunchContext, PaneIO, ScreenVerdict, UsageSource
    from agentdeck.config import Config

# kind -> "module:Class": one line per agent CLI; modules are imported on first use.
ADAPTERS: dict[str, str] = {
    "generic": "agentdeck.agents.generic.adapter:GenericAdapter",
    "claude": "agentdeck.agents.claude.adapter:ClaudeAdapter",
    "codex": "agentdeck.agents.codex.adapter:CodexAdapter",
    "gemini": "agentdeck.agents.gemini.adapter:GeminiAdapter",
    "aider": "agentdeck.agents.aider.adapter:AiderAdapter",
    "opencode": "agentdeck.agents.opencode.adapter:OpenCodeAdapter",
}

_BASE_NAMES = ("Adapter", "LaunchContext", "PaneIO", "ScreenVerdict")


def __getattr__(name: str) -> Any:  # PEP 562: the base classes without importing them on the hook path
    if name in _BASE_NAMES:
        from agentdeck.agents import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def adapter_class(kind: str) -> type[Adapter]:
    import importlib

    from agentdeck.errors import UsageError

    target = ADAPTERS.get(kind)
    if target is None:
        raise UsageError(f"unknown agent kind {kind!r}; expected one of {', '.join(ADAPTERS)}")
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name not in (module_name, module_name.rpartition(".")[0]):
            raise
        raise UsageError(f"agent kind {kind!r} is not available in this version of agentdeck") from exc
    cls: type[Adapter] = getattr(module, cls_name)
    return cls


def get_adapter(definition: str, config: Config) -> Adapter:
    agent_def = config.agent_def(definition)
    return adapter_class(agent_def.kind)(definition, agent_def, config)


def usage_source(kind: str) -> UsageSource | None:
    """The kind's token-usage source (None: unknown kind, or a CLI agentdeck cannot read)."""
    from agentdeck.errors import UsageError

    try:
        return adapter_class(kind).usage_source()
    except UsageError:
        return None


__all__ = [
    "ADAPTERS",
    "Adapter",
    "LaunchContext",
    "PaneIO",
    "ScreenVerdict",
    "adapter_class",
    "get_adapter",
    "usage_source",
]
