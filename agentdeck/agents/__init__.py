"""Agent adapters, one module per agent CLI.  ``get_adapter`` picks by kind."""

from __future__ import annotations

import importlib

from agentdeck.agents.base import Adapter, LaunchContext, PaneIO, ScreenVerdict
from agentdeck.config import Config
from agentdeck.errors import UsageError

# kind -> "module:Class"; modules are imported lazily (the hook path stays light).
ADAPTERS: dict[str, str] = {
    "generic": "agentdeck.agents.generic:GenericAdapter",
    "claude": "agentdeck.agents.claude:ClaudeAdapter",
    "codex": "agentdeck.agents.codex:CodexAdapter",
    "gemini": "agentdeck.agents.gemini:GeminiAdapter",
    "aider": "agentdeck.agents.aider:AiderAdapter",
    "opencode": "agentdeck.agents.opencode:OpenCodeAdapter",
}


def adapter_class(kind: str) -> type[Adapter]:
    target = ADAPTERS.get(kind)
    if target is None:
        raise UsageError(f"unknown agent kind {kind!r}; expected one of {', '.join(ADAPTERS)}")
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise UsageError(f"agent kind {kind!r} is not available in this version of agentdeck") from exc
    return getattr(module, cls_name)


def get_adapter(definition: str, config: Config) -> Adapter:
    agent_def = config.agent_def(definition)
    return adapter_class(agent_def.kind)(definition, agent_def, config)


__all__ = ["Adapter", "LaunchContext", "PaneIO", "ScreenVerdict", "get_adapter", "adapter_class", "ADAPTERS"]
