"""The exceptions every face turns into an exit status and one clear line.

Contract: exit 0 done; 1 an operation refused or failed; 2 bad input or usage.
"""

from __future__ import annotations


class AgentdeckError(Exception):
    """Base class: ``str(err)`` is the one line shown to the user (problem and fix)."""

    exit_code = 1


class Refused(AgentdeckError):
    """An operation refused or failed (exit 1): a conflicting merge, nothing to approve..."""

    exit_code = 1


class UsageError(AgentdeckError):
    """Bad input or usage (exit 2): unknown agent, bad name, broken config, missing tool..."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file is broken (exit 2)."""


class NotARepository(UsageError):
    pass


class MissingTool(UsageError):
    pass
