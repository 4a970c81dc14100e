"""The control-mode client: one ``tmux -C attach`` per session, which tmux pushes to.

The status watcher keeps one per agent session; the deck one for the agent it previews.

A client attaches with ``-E`` and a small environment (:func:`client_env`):

* ``-E``: tmux does not apply ``update-environment`` from this client to the agent's session, so
  the environment of whichever process watches (the watcher, a deck) never leaks into the
  agent's later panes (a restart);
* a small environment: tmux reads one identify message per environment variable, and until
  the last one a control client is half made.  A notification broadcast in that window
  (another agent's session created or killed) dereferences its missing control state and
  crashes the server (tmux 3.3a ``control_write``, segfault at 0x20; tmux PR #4980 and #5004
  describe the same window in later versions).  Seen here as "server exited unexpectedly"
  under load while several agents started at once; a client that identifies in a handful of
  messages leaves that window all but closed.
"""

from __future__ import annotations

import os
import subprocess
import time

from agentdeck.errors import Refused
from agentdeck.tmux.server import Result, TmuxGone, capture_args


def quote(arg: str) -> str:
    """One argument for a command line sent to a control client (tmux's own parser)."""
    if "\n" in arg or "\r" in arg:
        raise ValueError("a tmux control command cannot hold a line break")
    if "'" not in arg:
        return f"'{arg}'"
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


#: What a control client keeps of the environment: where the socket is, and the locale.
CLIENT_ENV = ("PATH", "HOME", "TMUX_TMPDIR", "LANG", "LC_ALL", "LC_CTYPE")


def client_env() -> dict[str, str]:
    """The environment a control client runs with (see the module docstring)."""
    env = {key: os.environ[key] for key in CLIENT_ENV if key in os.environ}
    env["TERM"] = "dumb"
    return env


class ControlClient:
    """One ``tmux -C attach-session -t =SESSION`` client.

    :meth:`read` takes what tmux sent (call it when :meth:`fileno` is readable) and
    :meth:`events` hands out the notifications, reduced to what agentdeck uses:

    * ``("output", PANE_ID)`` — the pane drew something (``%output``; bytes are not kept);
    * ``("structure", "")`` — sessions or windows came or went (``%sessions-changed``...);
    * ``("session", NAME)`` — this client is now on session NAME;
    * ``("exit", REASON)`` / ``("eof", "")`` — the client is gone (session killed, server gone).

    :meth:`command` sends one command and returns its :class:`Result` (read synchronously;
    notifications met meanwhile are kept for :meth:`events`: check :attr:`pending` before
    sleeping on the descriptor again).  Output of a pane is not sent
    before the client attached: take a first look with a capture.
    """

    def __init__(self, socket: str, session: str):
        self.socket = socket
        self.session = session
        self.proc = subprocess.Popen(
            ["tmux", "-L", socket, "-C", "attach-session", "-E", "-t", f"={session}"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0, close_fds=True,
            env=client_env(),
        )
        self.fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self.closed = False
        self._buf = b""
        self._block: tuple[bytes, list[bytes], bool] | None = None  # (end guard, lines, ours)
        self._pending: list[bool] = []  # per command sent, in order: is its answer awaited?
        self._replies: list[Result] = []
        self._events: list[tuple[str, str]] = []

    def fileno(self) -> int:
        return self.fd

    # ------------------------------------------------------------------ reading
    def read(self) -> bool:
        """Consume what is available (one ``read``); False once the client is gone."""
        if self.closed:
            return False
        try:
            data = os.read(self.fd, 1 << 18)
        except OSError:
            data = b""
        if not data:
            self._gone("eof")
            return False
        self._feed(data)
        return True

    def _gone(self, kind: str, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self._events.append((kind, reason))

    def _feed(self, data: bytes) -> None:
        buf = self._buf + data
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        events = self._events
        for line in lines:
            block = self._block
            if block is not None:
                if line == block[0] or (line.startswith(b"%error ") and line[7:] == block[0][5:]):
                    self._block = None
                    if block[2] and (self._pending.pop(0) if self._pending else False):
                        ok = line == block[0]
                        text = [x.decode("utf-8", "backslashreplace") for x in block[1]]
                        self._replies.append(Result(0 if ok else 1, _trim(text), [] if ok else text))
                else:
                    block[1].append(line)
                continue
            if line.startswith((b"%output ", b"%extended-output ")):
                start = line.index(b" ") + 1
                end = line.find(b" ", start)
                events.append(("output", line[start:end if end > 0 else None].decode("ascii", "replace")))
            elif line.startswith(b"%begin "):
                parts = line.split(b" ")
                ours = len(parts) > 3 and parts[3].strip() == b"1"
                self._block = (b"%end " + line[7:], [], ours)
            elif line.startswith(b"%pause "):
                events.append(("output", line.split(b" ")[1].decode("ascii", "replace")))
                events.append(("pause", line.split(b" ")[1].decode("ascii", "replace")))
            elif line.startswith((b"%sessions-changed", b"%window-close", b"%unlinked-window-close",
                                  b"%window-add", b"%unlinked-window-add")):
                events.append(("structure", ""))
            elif line.startswith(b"%session-changed "):
                parts = line.split(b" ", 2)
                if len(parts) == 3:
                    self.session = parts[2].decode("utf-8", "replace")
                    events.append(("session", self.session))
            elif line.startswith(b"%exit"):
                self._gone("exit", line[6:].decode("utf-8", "replace"))

    def events(self) -> list[tuple[str, str]]:
        """The notifications read so far (and forgets them)."""
        out, self._events = self._events, []
        return out

    @property
    def pending(self) -> bool:
        """Notifications already read and not handed out: :meth:`command` reads them while it
        waits for its answer, so the descriptor will not turn readable for them again."""
        return bool(self._events)

    # ------------------------------------------------------------------ commands
    def send(self, *args: str) -> None:
        """Send one command without waiting for its answer (it is read and dropped later)."""
        self._write(args, track=False)

    def _write(self, args: tuple[str, ...], track: bool) -> None:
        if self.closed:
            raise TmuxGone(f"the control client of {self.session} is gone")
        line = " ".join(quote(a) for a in args) + "\n"
        try:
            self.proc.stdin.write(line.encode("utf-8"))  # type: ignore[union-attr]
        except (BrokenPipeError, OSError, ValueError) as exc:
            self._gone("eof")
            raise TmuxGone(f"the control client of {self.session} is gone") from exc
        self._pending.append(track)

    def command(self, *args: str, timeout: float = 5.0) -> Result:
        """Run one tmux command through this client and wait for its answer."""
        import select

        self._write(args, track=True)
        deadline = time.monotonic() + timeout
        while not self._replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TmuxGone(f"tmux did not answer {args[0]} within {timeout:g}s")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready and not self.read():
                raise TmuxGone(f"the control client of {self.session} is gone")
        return self._replies.pop(0)

    def capture(self, target: str, colors: bool = False) -> str:
        result = self.command(*capture_args(target, colors))
        if result.returncode != 0:
            raise Refused(f"tmux capture-pane failed: {' '.join(result.stderr)}")
        return "\n".join(result.stdout)

    def close(self) -> None:
        self.closed = True
        try:
            self.proc.stdin.close()  # type: ignore[union-attr]  # a control client detaches at EOF
        except OSError:
            pass
        try:
            self.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            self.proc.stdout.close()  # type: ignore[union-attr]
        except OSError:
            pass


def _trim(lines: list[str]) -> list[str]:
    while lines and lines[-1] == "":
        lines.pop()
    return lines
