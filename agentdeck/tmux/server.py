"""The tmux server agentdeck runs, one ``tmux`` command per call (see :mod:`agentdeck.tmux`).

Also the pieces the control-mode client shares: :class:`Result`, :class:`TmuxGone`,
:func:`capture_args` and the pane list's format (:data:`PANE_FORMAT`, :func:`parse_panes`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from agentdeck.errors import MissingTool, Refused

MIN_TMUX = (3, 2)

#: The ``wait-for`` channel agentdeck's server signals whenever a pane dies (the ``pane-died`` hook).
PANE_DIED = "agentdeck-pane-died"
PANE_DIED_HOOK = f"wait-for -S {PANE_DIED}"

SERVER_CONF = """\
# agentdeck's own tmux server (tmux -L {socket}); the user's tmux is never touched.
set -g remain-on-exit on
set -g history-limit 20000
set -g default-terminal "tmux-256color"
set -g status-style "bg=colour236,fg=colour250"
set -g status-right "agentdeck · detach: C-b d"
set -g status-right-length 60
set -g escape-time 10
set -g focus-events on
set-hook -g pane-died "{hook}"
"""

# One tmux call lists every pane with what the watcher needs.
PANE_FORMAT = "\t".join(
    [
        "#{session_name}", "#{pane_id}", "#{pane_dead}", "#{pane_dead_status}", "#{pane_pid}",
        "#{window_activity}", "#{history_size}", "#{cursor_x}", "#{cursor_y}", "#{pane_dead_time}",
        "#{pane_current_command}",
    ]
)


class PaneInfo:
    """One pane as ``list-panes`` describes it (a plain class: light commands import this module)."""

    __slots__ = (
        "activity",
        "command",
        "cursor",
        "dead",
        "dead_status",
        "dead_time",
        "history",
        "pane_id",
        "pid",
        "session",
    )

    def __init__(self, session: str, pane_id: str, dead: bool, dead_status: int | None, pid: int, activity: int,
                 history: int, cursor: tuple[int, int], command: str, dead_time: int = 0):
        self.session = session
        self.pane_id = pane_id
        self.dead = dead
        self.dead_status = dead_status
        self.pid = pid
        self.activity = activity
        self.history = history
        self.cursor = cursor
        self.command = command
        self.dead_time = dead_time  # when a dead pane died (whole seconds), 0 when alive or unknown

    def _key(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PaneInfo) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "PaneInfo(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    @property
    def fingerprint(self) -> str:
        """Changes whenever the pane produced output (activity second, scrollback, cursor)."""
        return f"{int(self.dead)}:{self.activity}:{self.history}:{self.cursor[0]},{self.cursor[1]}"


def parse_panes(lines: list[str]) -> dict[str, PaneInfo]:
    """``list-panes -a -F PANE_FORMAT`` output -> the first pane of each session, by session name."""
    panes: dict[str, PaneInfo] = {}
    for line in lines:
        parts = line.split("\t", 10)
        if len(parts) != 11:
            continue
        session, pane_id, dead, dead_status, pid, activity, history, cx, cy, dead_time, command = parts
        if session in panes:
            continue  # first pane of each session is the agent's
        panes[session] = PaneInfo(
            session=session, pane_id=pane_id, dead=dead == "1",
            dead_status=int(dead_status) if dead_status.lstrip("-").isdigit() else None,
            pid=int(pid) if pid.isdigit() else 0, activity=int(activity) if activity.isdigit() else 0,
            history=int(history) if history.isdigit() else 0,
            cursor=(int(cx) if cx.isdigit() else 0, int(cy) if cy.isdigit() else 0), command=command,
            dead_time=int(dead_time) if dead_time.isdigit() else 0,
        )
    return panes


class TmuxGone(Refused):
    """The agentdeck tmux server is not running."""


class Result:
    """One tmux command's outcome: stdout lines (trailing empty lines dropped), stderr lines."""

    __slots__ = ("returncode", "stderr", "stdout")

    def __init__(self, returncode: int, stdout: list[str], stderr: list[str]):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"Result(returncode={self.returncode!r}, stdout={self.stdout!r}, stderr={self.stderr!r})"


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def default_socket(configured: str) -> str:
    return os.environ.get("AGENTDECK_TMUX_SOCKET") or configured or "agentdeck"


def socket_path(socket: str) -> str:
    """Where tmux puts the server socket of ``tmux -L SOCKET`` (``$TMUX_TMPDIR`` or /tmp)."""
    base = os.environ.get("TMUX_TMPDIR") or "/tmp"
    return os.path.join(base, f"tmux-{os.getuid()}", socket)


def server_running(socket: str) -> bool:
    """True when a tmux server accepts connections on *socket* (no subprocess: one ``connect``)."""
    import socket as sockets

    s = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    try:
        s.connect(socket_path(socket))
        return True
    except OSError:
        return False
    finally:
        s.close()


def check_installed() -> None:
    if shutil.which("tmux") is None:
        raise MissingTool("tmux is not installed; install tmux >= 3.2 (e.g. `apt-get install tmux`) and try again")


def version() -> tuple[int, int]:
    out = subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout.strip()  # "tmux 3.3a"
    digits = out.split()[-1] if out else "0.0"
    major, _, rest = digits.partition(".")
    minor = "".join(ch for ch in rest if ch.isdigit()) or "0"
    try:
        return int("".join(ch for ch in major if ch.isdigit()) or 0), int(minor)
    except ValueError:  # pragma: no cover
        return (0, 0)


class _Server:
    """``tmux.server.cmd(...)``: a raw command on agentdeck's server (its Result, never raising)."""

    def __init__(self, tmux: Tmux):
        self._tmux = tmux

    def cmd(self, *args: str) -> Result:
        return self._tmux.run(*args)

    def is_alive(self) -> bool:
        return self._tmux.is_alive()


class Tmux:
    """agentdeck's tmux server."""

    def __init__(self, socket: str, conf_dir: Path):
        check_installed()
        self.socket = socket
        self.conf_path = conf_dir / "tmux.conf"
        self.server = _Server(self)

    # ------------------------------------------------------------------ plumbing
    def _ensure_conf(self) -> None:
        text = SERVER_CONF.format(socket=self.socket, hook=PANE_DIED_HOOK)
        if not self.conf_path.is_file() or self.conf_path.read_text() != text:
            self.conf_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.conf_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, self.conf_path)

    def run(self, *args: str) -> Result:
        """``tmux -L SOCKET ARGS`` (the config file applies only when this starts the server)."""
        try:
            proc = subprocess.run(
                ["tmux", "-L", self.socket, "-f", str(self.conf_path), *args],
                capture_output=True, text=True, encoding="utf-8", errors="backslashreplace",
            )
        except FileNotFoundError as exc:
            raise MissingTool("tmux is not installed; install tmux >= 3.2 and try again") from exc
        return Result(proc.returncode, _lines(proc.stdout), [x for x in proc.stderr.split("\n") if x])

    def cmd(self, *args: str, check: bool = True) -> list[str]:
        result = self.run(*args)
        if check and result.returncode != 0:
            message = " ".join(result.stderr) or f"exit {result.returncode}"
            if "no server running" in message or "error connecting" in message:
                raise TmuxGone(f"agentdeck's tmux server ({self.socket}) is not running")
            raise Refused(f"tmux {args[0]} failed: {message}")
        return result.stdout

    def is_alive(self) -> bool:
        return server_running(self.socket)

    # ------------------------------------------------------------------ sessions
    def new_session(self, name: str, start_dir: Path, argv: list[str], width: int = 200, height: int = 50) -> str:
        """Start *argv* in a new detached session; returns the pane id.

        No environment is passed here: ``-e K=V`` would show on the tmux client's command line
        (``ps``), and the server's own environment is that of whoever started it.  *argv* is the
        deck's launcher, which loads the agent's environment from a 0600 file (deck.LAUNCHER)."""
        self._ensure_conf()
        args = ["new-session", "-d", "-s", name, "-c", str(start_dir), "-x", str(width), "-y", str(height),
                "-P", "-F", "#{pane_id}"]
        args.append(shlex.join(argv))
        # In the same tmux call: a server started before agentdeck wrote its conf keeps the pane too.
        args += [";", "set-option", "-w", "-t", f"={name}:", "remain-on-exit", "on"]
        out = self.cmd(*args)
        return out[0].strip() if out else ""

    def respawn(self, name: str, start_dir: Path, argv: list[str]) -> str:
        """Run *argv* again in the session's pane (see :meth:`new_session` for the environment).

        The pane's screen and history are cleared first, in the same tmux call: ``respawn-pane``
        keeps what the old process drew, and the old CLI's prompt still on screen would read as the
        new one being ready (``idle``) before it has even started."""
        target = f"={name}:"
        args = ["send-keys", "-R", "-t", target, ";", "clear-history", "-t", target, ";",
                "respawn-pane", "-k", "-t", target, "-c", str(start_dir)]
        args.append(shlex.join(argv))
        self.cmd(*args)
        return self.pane_id(name) or ""

    def has_session(self, name: str) -> bool:
        if not self.is_alive():
            return False
        return self.run("has-session", "-t", f"={name}").returncode == 0

    def kill_session(self, name: str) -> None:
        if self.is_alive():
            self.run("kill-session", "-t", f"={name}")

    def session_names(self) -> list[str]:
        if not self.is_alive():
            return []
        result = self.run("list-sessions", "-F", "#{session_name}")
        return [line for line in result.stdout if line] if result.returncode == 0 else []

    def pane_id(self, name: str) -> str | None:
        if not self.is_alive():
            return None
        result = self.run("list-panes", "-t", f"={name}:", "-F", "#{pane_id}")
        return result.stdout[0] if result.returncode == 0 and result.stdout else None

    def panes(self) -> dict[str, PaneInfo]:
        """Every pane of the server by session name, in ONE tmux call (empty if the server is down)."""
        return self.list_panes() or {}

    def list_panes(self) -> dict[str, PaneInfo] | None:
        """Like :meth:`panes`, but None when the server is not running (at most one tmux call)."""
        if not self.is_alive():
            return None
        result = self.run("list-panes", "-a", "-F", PANE_FORMAT)
        if result.returncode != 0:
            return None
        return parse_panes(result.stdout)

    def ensure_hooks(self) -> None:
        """The ``pane-died`` signal on a server started before agentdeck's conf had it."""
        self.run("set-hook", "-g", "pane-died", PANE_DIED_HOOK)

    # ------------------------------------------------------------------ pane I/O
    def capture(self, target: str, colors: bool = False, history: int = 0) -> str:
        return "\n".join(self.cmd(*capture_args(target, colors, history)))

    def send_keys(self, target: str, *keys: str) -> None:
        if keys:
            self.cmd("send-keys", "-t", target, *keys)

    def send_text(self, target: str, text: str, enter: bool = True) -> None:
        """Put *text* in as one paste (bracketed when the program asked for it), then Enter.

        A paste, not typed keys: agent TUIs that detect fast typing as a paste
        (Codex) would otherwise turn the following Enter into a newline.
        """
        if text:
            buffer = f"agentdeck-{os.getpid()}-{time.monotonic_ns()}"
            self.cmd("set-buffer", "-b", buffer, "--", text)
            self.cmd("paste-buffer", "-p", "-d", "-b", buffer, "-t", target)
        if enter:
            # A short pause lets TUIs that debounce paste see Enter as a separate key.
            time.sleep(0.05)
            self.cmd("send-keys", "-t", target, "Enter")

    def pane_io(self, target: str) -> PaneHandle:
        return PaneHandle(self, target)

    def attach_argv(self, name: str) -> list[str]:
        return ["tmux", "-L", self.socket, "attach-session", "-t", f"={name}"]

    def set_status_right(self, text: str) -> None:
        if self.is_alive():
            self.run("set-option", "-g", "status-right", text)

    # ------------------------------------------------------------------ push
    def died_waiter(self) -> subprocess.Popen:
        """A ``tmux wait-for`` on :data:`PANE_DIED`: its stdout reaches EOF when a pane died (or the
        server went).  A signal sent while nobody waits is kept by tmux for the next waiter."""
        return subprocess.Popen(["tmux", "-L", self.socket, "wait-for", PANE_DIED], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, close_fds=True)


def capture_args(target: str, colors: bool = False, history: int = 0) -> list[str]:
    args = ["capture-pane", "-p", "-J", "-t", target]
    if colors:
        args.insert(2, "-e")
    if history:
        args += ["-S", str(-history)]
    return args


class PaneHandle:
    """The :class:`agentdeck.agents.base.PaneIO` given to adapters."""

    def __init__(self, tmux: Tmux, target: str):
        self.tmux = tmux
        self.target = target

    def send_text(self, text: str, enter: bool = True) -> None:
        self.tmux.send_text(self.target, text, enter=enter)

    def send_keys(self, *keys: str) -> None:
        self.tmux.send_keys(self.target, *keys)

    def capture(self) -> str:
        return self.tmux.capture(self.target)
