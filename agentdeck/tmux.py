"""tmux: the one module that talks to tmux (libtmux underneath).

agentdeck runs its own tmux server (``tmux -L <socket>``, default ``agentdeck``)
and never touches the user's.  One session per agent, one window, one pane; the
session name carries a per-repository prefix so one server can serve several
repositories.  The server is started with agentdeck's own config file, so that
``remain-on-exit`` holds from the first instant: an agent that exits at once
still leaves its last screen behind.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from agentdeck.errors import MissingTool, Refused

MIN_TMUX = (3, 2)

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
"""

# One tmux call lists every pane with what the watcher needs.
PANE_FORMAT = "\t".join(
    [
        "#{session_name}", "#{pane_id}", "#{pane_dead}", "#{pane_dead_status}", "#{pane_pid}",
        "#{window_activity}", "#{history_size}", "#{cursor_x}", "#{cursor_y}", "#{pane_current_command}",
    ]
)


@dataclass(frozen=True)
class PaneInfo:
    session: str
    pane_id: str
    dead: bool
    dead_status: int | None
    pid: int
    activity: int
    history: int
    cursor: tuple[int, int]
    command: str

    @property
    def fingerprint(self) -> str:
        """Changes whenever the pane produced output (activity second, scrollback, cursor)."""
        return f"{int(self.dead)}:{self.activity}:{self.history}:{self.cursor[0]},{self.cursor[1]}"


class TmuxGone(Refused):
    """The agentdeck tmux server is not running."""


def default_socket(configured: str) -> str:
    return os.environ.get("AGENTDECK_TMUX_SOCKET") or configured or "agentdeck"


def check_installed() -> None:
    if shutil.which("tmux") is None:
        raise MissingTool("tmux is not installed; install tmux >= 3.2 (e.g. `apt-get install tmux`) and try again")


def version() -> tuple[int, int]:
    import subprocess

    out = subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout.strip()  # "tmux 3.3a"
    digits = out.split()[-1] if out else "0.0"
    major, _, rest = digits.partition(".")
    minor = "".join(ch for ch in rest if ch.isdigit()) or "0"
    try:
        return int("".join(ch for ch in major if ch.isdigit()) or 0), int(minor)
    except ValueError:  # pragma: no cover
        return (0, 0)


class Tmux:
    """agentdeck's tmux server."""

    def __init__(self, socket: str, conf_dir: Path):
        import libtmux

        check_installed()
        self.socket = socket
        self.conf_path = conf_dir / "tmux.conf"
        self.server = libtmux.Server(socket_name=socket, config_file=str(self.conf_path))

    # ------------------------------------------------------------------ plumbing
    def _ensure_conf(self) -> None:
        text = SERVER_CONF.format(socket=self.socket)
        if not self.conf_path.is_file() or self.conf_path.read_text() != text:
            self.conf_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.conf_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, self.conf_path)

    def cmd(self, *args: str, check: bool = True) -> list[str]:
        result = self.server.cmd(*args)
        if check and result.returncode != 0:
            message = " ".join(result.stderr) or f"exit {result.returncode}"
            if "no server running" in message or "error connecting" in message:
                raise TmuxGone(f"agentdeck's tmux server ({self.socket}) is not running")
            raise Refused(f"tmux {args[0]} failed: {message}")
        return result.stdout

    def is_alive(self) -> bool:
        return self.server.is_alive()

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
        out = self.cmd(*args)
        pane = out[0].strip() if out else ""
        # A server started before agentdeck wrote its conf: make sure the option holds.
        self.cmd("set-option", "-w", "-t", f"={name}:", "remain-on-exit", "on", check=False)
        return pane

    def respawn(self, name: str, start_dir: Path, argv: list[str]) -> str:
        """Run *argv* again in the session's pane (see :meth:`new_session` for the environment)."""
        args = ["respawn-pane", "-k", "-t", f"={name}:", "-c", str(start_dir)]
        args.append(shlex.join(argv))
        self.cmd(*args)
        return self.pane_id(name) or ""

    def has_session(self, name: str) -> bool:
        if not self.is_alive():
            return False
        return self.server.cmd("has-session", "-t", f"={name}").returncode == 0

    def kill_session(self, name: str) -> None:
        if self.is_alive():
            self.server.cmd("kill-session", "-t", f"={name}")

    def session_names(self) -> list[str]:
        if not self.is_alive():
            return []
        result = self.server.cmd("list-sessions", "-F", "#{session_name}")
        return [line for line in result.stdout if line] if result.returncode == 0 else []

    def pane_id(self, name: str) -> str | None:
        result = self.server.cmd("list-panes", "-t", f"={name}:", "-F", "#{pane_id}")
        return result.stdout[0] if result.returncode == 0 and result.stdout else None

    def panes(self) -> dict[str, PaneInfo]:
        """Every pane of the server by session name, in ONE tmux call (empty if the server is down)."""
        return self.list_panes() or {}

    def list_panes(self) -> dict[str, PaneInfo] | None:
        """Like :meth:`panes`, but None when the server is not running (still one tmux call)."""
        result = self.server.cmd("list-panes", "-a", "-F", PANE_FORMAT)
        if result.returncode != 0:
            return None
        panes: dict[str, PaneInfo] = {}
        for line in result.stdout:
            parts = line.split("\t")
            if len(parts) != 10:
                continue
            session, pane_id, dead, dead_status, pid, activity, history, cx, cy, command = parts
            if session in panes:
                continue  # first pane of each session is the agent's
            panes[session] = PaneInfo(
                session=session, pane_id=pane_id, dead=dead == "1",
                dead_status=int(dead_status) if dead_status.lstrip("-").isdigit() else None,
                pid=int(pid) if pid.isdigit() else 0, activity=int(activity) if activity.isdigit() else 0,
                history=int(history) if history.isdigit() else 0,
                cursor=(int(cx) if cx.isdigit() else 0, int(cy) if cy.isdigit() else 0), command=command,
            )
        return panes

    # ------------------------------------------------------------------ pane I/O
    def capture(self, target: str, colors: bool = False, history: int = 0) -> str:
        args = ["capture-pane", "-p", "-J", "-t", target]
        if colors:
            args.insert(2, "-e")
        if history:
            args += ["-S", str(-history)]
        return "\n".join(self.cmd(*args))

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

    def pane_io(self, target: str) -> "PaneHandle":
        return PaneHandle(self, target)

    def attach_argv(self, name: str) -> list[str]:
        return ["tmux", "-L", self.socket, "attach-session", "-t", f"={name}"]

    def kill_server(self) -> None:
        if self.is_alive():
            self.server.cmd("kill-server")

    def set_status_right(self, text: str) -> None:
        if self.is_alive():
            self.server.cmd("set-option", "-g", "status-right", text)


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
