"""Every location agentdeck uses, decided in one place.

One environment override, ``AGENTDECK_HOME``, redirects everything that is not
inside a repository (user config, default worktree root, logs), so one test
fixture can isolate a whole run.  Per-repository state always lives under the
git *common* directory (``git rev-parse --git-common-dir``), shared by the main
checkout and every worktree and untouched by ``git clean -fdx``.

This module runs ``git rev-parse`` only through :mod:`agentdeck.git`, which knows nothing
of these locations: :func:`find_repo` builds them from what :func:`agentdeck.git.locate` says.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from agentdeck import git
from agentdeck.errors import NotARepository, UsageError

ENV_HOME = "AGENTDECK_HOME"
# Set in every agent pane and hook: where the repository's state lives.
ENV_STATE_DIR = "AGENTDECK_STATE_DIR"
ENV_AGENT = "AGENTDECK_AGENT"
ENV_WORKTREE = "AGENTDECK_WORKTREE"
ENV_REPO = "AGENTDECK_REPO"
ENV_TMUX_SOCKET = "AGENTDECK_TMUX_SOCKET"
# An agent's bearer token for the repository's MCP server (env only, never a command-line
# argument), and the name agents list that server under: the deck, the adapters' memory
# wiring and the server itself all read them here.
ENV_MCP_TOKEN = "AGENTDECK_MCP_TOKEN"
MCP_SERVER_NAME = "agentdeck"

CONFIG_FILENAME = ".agentdeck.toml"


def agentdeck_home() -> Path:
    """Root for per-user files: config, data (worktrees), logs."""
    override = os.environ.get(ENV_HOME)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "agentdeck"


def user_config_file() -> Path:
    return agentdeck_home() / "config.toml"


def user_data_dir() -> Path:
    override = os.environ.get(ENV_HOME)
    if override:
        return Path(override).expanduser() / "data"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "agentdeck"


class _InState:
    """A location in a repository's state folder: a class attribute of :class:`RepoPaths` that
    reads as ``<state_dir>/<name>``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, repo: RepoPaths, owner: type | None = None) -> Path:
        return repo.state_dir / self.name


@dataclass(frozen=True)
class RepoPaths:
    """The locations of one repository, wherever inside it a command runs."""

    root: Path  # the main worktree's top level
    common_dir: Path  # the git common directory (.git of the main checkout)

    @property
    def state_dir(self) -> Path:
        return self.common_dir / "agentdeck"

    db_path = _InState("state.db")
    logs_dir = _InState("logs")
    screens_dir = _InState("screens")  # last screens of exited agents (for ``peek``)
    memory_dir = _InState("memory")
    research_dir = _InState("research")

    @property
    def repo_id(self) -> str:
        """A short stable id: tmux session prefix and worktree folder key."""
        return hashlib.sha1(str(self.common_dir).encode()).hexdigest()[:6]

    @property
    def default_worktree_root(self) -> Path:
        return user_data_dir() / "worktrees" / f"{self.root.name}-{self.repo_id}"

    def ensure_state_dir(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return self.state_dir


def find_repo(cwd: str | os.PathLike[str] | None = None) -> RepoPaths:
    """Locate the repository containing *cwd* (a worktree finds the main repo).

    Raises :class:`agentdeck.errors.NotARepository` outside a git repository, and in a bare
    one (it has no checkout to branch worktrees from).
    """
    where = Path(cwd) if cwd else Path.cwd()
    try:
        found = git.locate(where)
    except NotARepository:
        if where.is_dir() and git.run(where, "rev-parse", "--is-bare-repository", check=False) == "true":
            raise NotARepository(
                f"{where} is a bare git repository (no checkout); run agentdeck inside a checkout of it "
                "(`git clone` it, or `git worktree add ../work` and cd there)"
            ) from None
        raise
    return RepoPaths(root=found.root, common_dir=found.common_dir)


def slugify(name: str, max_len: int = 48) -> str:
    """A safe slug for branch, folder and tmux names.

    Lower-case ASCII letters, digits and single dashes; unicode is transliterated
    where NFKD can, dropped otherwise; ``..``, ``/`` and shell metacharacters
    vanish.  Never empty: a name with nothing usable becomes ``agent-<hash>``.
    """
    normalized = unicodedata.normalize("NFKD", name)
    ascii_only = normalized.encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_only).strip("-")
    slug = slug[:max_len].strip("-")
    if not slug:
        slug = "agent-" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return slug


# ---------------------------------------------------------------------- agent names
# The name a user gives an agent is checked here, beside the slug made of it, so both the deck
# and adoption (which re-reads names from the environment of panes) hold names to one rule.

MAX_NAME = 64

# Control (Cc: \r, \x0c, \x1c-\x1f, \x85 ...), format (Cf: zero-width, bidi), line and paragraph
# separators (Zl, Zp: U+2028, U+2029) and lone surrogates (Cs): a name is written into note front
# matter, file names and screens, and any of these can split a line or hide text there.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def validate_name(name: str) -> str:
    """The agent name, stripped of surrounding spaces; UsageError (exit 2) for one that is empty,
    too long, or holds a control, format or line-separator character."""
    for ch in name:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise UsageError(
                f"agent name contains the control, format or line-separator character U+{ord(ch):04X}; "
                f"use letters, digits and dashes"
            )
    clean = name.strip(" ")
    if not clean:
        raise UsageError("agent name is empty; give a name such as `north-star`")
    if len(clean) > MAX_NAME:
        raise UsageError(f"agent name is longer than {MAX_NAME} characters; choose a shorter name")
    return clean
