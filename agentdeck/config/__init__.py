"""Typed settings from ``.agentdeck.toml`` (repository root) over the user config.

Every section of the contract is modelled here, so every part of agentdeck reads one typed object:

- :mod:`agentdeck.config.schema` -- the sections as dataclasses, each setting with its value rule
  (:func:`~agentdeck.config.schema.setting`); add a key there.
- :mod:`agentdeck.config.loader` -- finding, parsing, validating and merging the files
  (:func:`load_config`); every error is a one-line :class:`~agentdeck.errors.ConfigError` (exit 2).
"""

from __future__ import annotations

from agentdeck.config.loader import load_config
from agentdeck.config.schema import (
    BUILTIN_KINDS,
    ENV_NAME,
    PATH_TEXT,
    SECTIONS,
    SOCKET_MEANS,
    SOCKET_NAME,
    AgentDef,
    Config,
    DeckSettings,
    LlmSettings,
    McpSettings,
    MemorySettings,
    NotifySettings,
    RaySettings,
    ResearchSettings,
    ReviewSettings,
    Rule,
    SlurmSettings,
    SpaceParam,
    setting,
    socket_name_problem,
)

__all__ = [
    "BUILTIN_KINDS", "ENV_NAME", "PATH_TEXT", "SECTIONS", "SOCKET_MEANS", "SOCKET_NAME", "AgentDef", "Config",
    "DeckSettings", "LlmSettings", "McpSettings", "MemorySettings", "NotifySettings", "RaySettings",
    "ResearchSettings", "ReviewSettings", "Rule", "SlurmSettings", "SpaceParam", "load_config", "setting",
    "socket_name_problem",
]
