"""The sandbox: one module for everything agentdeck runs but does not trust.

Research jobs and evaluations use it now; unattended agents will use the same
parts.  It has four pieces:

- :mod:`~agentdeck.sandbox.probe` — does bubblewrap work here (user
  namespaces, or root)?  Probed once per process, with the real flags.
- :mod:`~agentdeck.sandbox.profile` — what a sandbox allows, as data
  (:class:`Profile`: writable, read-only, hidden paths, devices, network, the
  environment) and one pure function from a profile to bubblewrap's arguments.
- :mod:`~agentdeck.sandbox.profiles` — the profiles themselves (a research
  job, an evaluation), built from the same base: host read-only, homes, host
  sockets and root-only secrets hidden, a private ``/tmp`` and home, its own
  pid namespace (nothing outlives the command), no network.
- :mod:`~agentdeck.sandbox.env` — the environment allow-list (never
  agentdeck's own keys) and :mod:`~agentdeck.sandbox.reaper`, the launcher
  that kills every descendant of a command even without a sandbox (a child
  subreaper).

:func:`command` puts them together: the argv that runs *argv* under the
reaper, inside the profile's sandbox when one is given.  :func:`resolve`
turns a ``sandbox = "auto" | "bwrap" | "none"`` setting into what will
actually happen here, with the reason in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentdeck.sandbox import reaper
from agentdeck.sandbox.env import allowed_env
from agentdeck.sandbox.probe import Probe, inside_uid, probe
from agentdeck.sandbox.profile import Profile, ProfileError, bwrap_argv, path_facts

MODES = ("auto", "bwrap", "none")


@dataclass(frozen=True)
class Resolved:
    """What a ``sandbox`` setting means on this machine."""

    mode: str  # "bwrap" | "none"
    detail: str  # one line: why (shown by `research status` and `doctor`)
    error: str = ""  # set when the setting cannot be honoured ("bwrap" where bubblewrap fails)

    @property
    def sandboxed(self) -> bool:
        return self.mode == "bwrap"


def resolve(setting: str, *, supported: bool = True, why_unsupported: str = "") -> Resolved:
    """``auto``: bwrap where it works, else none (said so); ``bwrap``: bwrap or an error naming the
    fix; ``none``: none.  *supported* False (a cluster executor) makes ``auto`` none."""
    if setting == "none":
        return Resolved("none", "unsandboxed: sandbox = \"none\"")
    if not supported:
        if setting == "bwrap":
            return Resolved("none", why_unsupported, error=f"sandbox = \"bwrap\" is not available: {why_unsupported}")
        return Resolved("none", f"unsandboxed: {why_unsupported}")
    found = probe()
    if found.works:
        return Resolved("bwrap", found.describe())
    if setting == "bwrap":
        return Resolved("none", found.reason,
                        error=f"sandbox = \"bwrap\" but {found.reason}; fix that or set sandbox = \"auto\"")
    return Resolved("none", f"unsandboxed: {found.reason}")


def sandbox_argv(profile: Profile) -> list[str]:
    """bubblewrap's arguments for *profile* on this machine (``--`` last)."""
    found = probe()
    if not found.works:
        raise ProfileError(f"no sandbox: {found.reason}")
    facts = path_facts(profile.paths() + ([profile.home] if profile.home else []))
    return bwrap_argv(profile, facts, userns=found.userns, uid=inside_uid(),
                      disable_userns=found.disable_userns, bwrap=found.bwrap)


def command(argv: Sequence[str], profile: Profile | None = None, exit_file: str = "-") -> list[str]:
    """The argv that runs *argv* under the reaper (every descendant dies with it; the exit status
    goes to *exit_file*), inside *profile*'s sandbox when one is given."""
    inner = list(argv)
    if profile is not None:
        inner = sandbox_argv(profile) + inner
    return reaper.argv_prefix(exit_file) + inner


__all__ = ["MODES", "Probe", "Profile", "ProfileError", "Resolved", "allowed_env", "bwrap_argv", "command",
           "path_facts", "probe", "resolve", "sandbox_argv"]
