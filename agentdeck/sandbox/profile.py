"""What a sandbox allows, as data (:class:`Profile`) and one pure function (:func:`bwrap_argv`).

A profile names paths, never mount commands: the host file system is seen
read-only; ``hidden`` paths are replaced by empty, read-only ones (a folder by
an empty ``tmpfs``, a file by ``/dev/null``); ``read_only`` paths under a hidden one are
shown again, read-only; ``writable`` paths are the only places a write reaches
the host; ``devices`` are passed through (``/dev/nvidia*``).  ``/tmp`` and the
home are private and empty; ``/run`` (the host's unix sockets) is hidden by
every profile built in :mod:`agentdeck.sandbox.profiles`.

:func:`bwrap_argv` turns a profile plus what the disk says about its paths
(:func:`path_facts`) into bubblewrap's arguments.  The rule that makes nesting
work is one line: mounts are applied shallowest path first, so a worktree
bound back inside a hidden home, or a ``.git`` hidden inside a bound
worktree, both come out right.  The same path asked for in two ways (hidden
and writable, read-only and writable) is an error, not a guess.

The environment is not on the command line (``--setenv`` would show secrets
in ``ps``): the caller starts bwrap with ``profile.env`` as its whole
environment, which bwrap hands to the sandboxed command.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Profile:
    """One sandbox: what the command inside may see, write and reach."""

    cwd: str
    """Where the command starts (must be visible inside)."""
    writable: tuple[str, ...] = ()
    """Host paths bound read-write (the only writes that reach the host)."""
    read_only: tuple[str, ...] = ()
    """Host paths shown read-only again (they matter under a hidden path)."""
    hidden: tuple[str, ...] = ()
    """Host paths replaced by empty ones (folders: an empty tmpfs; files: /dev/null)."""
    devices: tuple[str, ...] = ()
    """Device nodes passed through (``/dev/nvidia0``...); the rest of /dev is a minimal private one."""
    network: bool = False
    """False: its own network namespace with only loopback."""
    home: str = ""
    """A private, empty, writable home at this path ("" = none)."""
    private_tmp: bool = True
    """An empty /tmp and /var/tmp of its own (host sockets live there: tmux, X11)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """The command's whole environment (see :mod:`agentdeck.sandbox.env`)."""

    def resolved(self) -> Profile:
        """The same profile with every path made absolute and free of symlinks (bwrap mounts on
        real paths; a hidden ``/var/run`` is the hidden ``/run``)."""
        def real(paths: Sequence[str]) -> tuple[str, ...]:
            return tuple(dict.fromkeys(os.path.realpath(p) for p in paths if p))

        return replace(self, cwd=os.path.realpath(self.cwd), writable=real(self.writable),
                       read_only=real(self.read_only), hidden=real(self.hidden), devices=real(self.devices),
                       home=os.path.realpath(self.home) if self.home else "")

    def paths(self) -> list[str]:
        return [*self.writable, *self.read_only, *self.hidden, *self.devices]


def path_facts(paths: Sequence[str]) -> dict[str, str]:
    """What each path is on the host: ``dir``, ``file``, ``device`` or ``missing``."""
    facts = {}
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            facts[p] = "missing"
            continue
        import stat as st_mod

        if st_mod.S_ISDIR(st.st_mode):
            facts[p] = "dir"
        elif st_mod.S_ISCHR(st.st_mode) or st_mod.S_ISBLK(st.st_mode):
            facts[p] = "device"
        else:
            facts[p] = "file"
    return facts


class ProfileError(ValueError):
    """A profile that asks for one path in two incompatible ways."""


def _depth(path: str) -> int:
    return len(Path(path).parts)


def mounts(profile: Profile, facts: Mapping[str, str]) -> list[tuple[str, str]]:
    """The mounts over the read-only host, in the order they are applied: ``(kind, path)`` with
    kind ``hide-dir``, ``hide-file``, ``tmpfs``, ``ro``, ``rw`` or ``dev``.  Pure: *facts* says
    what each path is (:func:`path_facts`); missing paths are skipped.  Paths must be resolved."""
    wanted: dict[str, str] = {}

    def want(path: str, kind: str) -> None:
        old = wanted.get(path)
        if old is not None and old != kind:
            same_kind = {old, kind} <= {"hide-dir", "tmpfs"}
            if not same_kind:
                raise ProfileError(f"{path} is asked to be both {_SAYS[old]} and {_SAYS[kind]} in one sandbox")
            kind = "tmpfs" if "tmpfs" in (old, kind) else kind
        wanted[path] = kind

    for p in profile.hidden:
        fact = facts.get(p, "missing")
        if fact == "dir":
            want(p, "hide-dir")
        elif fact in ("file", "device"):
            want(p, "hide-file")
    if profile.private_tmp:
        want("/tmp", "tmpfs")
        want("/var/tmp", "tmpfs")
    if profile.home:
        want(profile.home, "tmpfs")
    for p in profile.read_only:
        if facts.get(p, "missing") != "missing":
            want(p, "ro")
    for p in profile.writable:
        if facts.get(p, "missing") != "missing":
            want(p, "rw")
    for p in profile.devices:
        if facts.get(p, "missing") == "device":
            want(p, "dev")
    order = {"hide-dir": 0, "tmpfs": 0, "hide-file": 1, "ro": 2, "rw": 3, "dev": 4}
    ranked = sorted(wanted.items(), key=lambda item: (_depth(item[0]), order[item[1]], item[0]))
    return [(kind, path) for path, kind in ranked]


_SAYS = {"hide-dir": "hidden", "hide-file": "hidden", "tmpfs": "private", "ro": "read-only", "rw": "writable",
         "dev": "a device"}


def bwrap_argv(profile: Profile, facts: Mapping[str, str], *, userns: bool, uid: int = 1000,
               disable_userns: bool = False, bwrap: str = "bwrap") -> list[str]:
    """bubblewrap's arguments for *profile* (up to and including ``--``; the command follows).

    Pure: the same profile and facts give the same arguments.  *userns*: run in a user namespace
    as *uid* (no capabilities; nested user namespaces forbidden with *disable_userns*); without
    one (root where user namespaces are off) every capability is dropped instead.
    """
    argv = [bwrap]
    if userns:
        argv += ["--unshare-user", "--uid", str(uid), "--gid", str(uid)]
        if disable_userns:
            argv.append("--disable-userns")
    else:
        argv += ["--cap-drop", "ALL"]
    argv += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
             "--die-with-parent", "--new-session"]
    if not profile.network:
        argv.append("--unshare-net")
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    planned = mounts(profile, facts)
    for kind, path in planned:
        if kind in ("hide-dir", "tmpfs"):
            argv += ["--tmpfs", path]
        elif kind == "hide-file":
            argv += ["--ro-bind", "/dev/null", path]
        elif kind == "ro":
            argv += ["--ro-bind", path, path]
        elif kind == "rw":
            argv += ["--bind", path, path]
        elif kind == "dev":
            argv += ["--dev-bind", path, path]
    # A hidden folder is empty and read-only (what is bound inside it keeps its own mode).
    argv += [arg for kind, path in planned if kind == "hide-dir" for arg in ("--remount-ro", path)]
    argv += ["--chdir", profile.cwd, "--"]
    return argv
