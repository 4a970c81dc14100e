"""The real deck (``python -m agentdeck``) inside a tmux server of its own, driven with send-keys/capture-pane.

The deck's terminal is a pane of a wrapper tmux server (socket ``adwrap-*``),
separate from agentdeck's own server (``AGENTDECK_TMUX_SOCKET``) where the
agents run.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from support import ROOT, retry_until, run_cli

pytestmark = pytest.mark.slow


class Wrapper:
    """A tmux server whose one pane runs the deck."""

    def __init__(self, repo: Path, inside_tmux: bool = False, width: int = 140, height: int = 40):
        self.socket = f"adwrap-{uuid.uuid4().hex[:8]}"
        env = {
            "AGENTDECK_HOME": os.environ["AGENTDECK_HOME"],
            "AGENTDECK_TMUX_SOCKET": os.environ["AGENTDECK_TMUX_SOCKET"],
            "PYTHONPATH": str(ROOT),
        }
        # COLUMNS/LINES may leak in from the test runner's environment and would pin Textual's size.
        prefix = "env -u COLUMNS -u LINES " + ("" if inside_tmux else "-u TMUX ")
        command = (f"cd {shlex.quote(str(repo))} && {prefix}{shlex.quote(sys.executable)} -m agentdeck; "
                   f"echo DECK-EXITED-$?; sleep 600")
        args = ["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-s", "deck",
                "-x", str(width), "-y", str(height)]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        subprocess.run(args + [command], check=True)
        self.client: subprocess.Popen | None = None

    def tmux(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "deck").stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "deck", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "deck", "-l", text)

    def wait_for(self, *needles: str, timeout: float = 20) -> str:
        try:
            return retry_until(lambda: all(n in (s := self.screen()) for n in needles) and s, timeout=timeout,
                               interval=0.1, what=f"{needles} on the deck's screen")
        except AssertionError as exc:
            size = self.tmux("display", "-p", "-t", "deck", "#{pane_width}x#{pane_height}").stdout.strip()
            raise AssertionError(f"{exc}\n--- the deck's screen ({size}):\n{self.screen()}") from None

    def focused_field(self, *fields: str) -> str | None:
        """Which dialog field (named by text on its line) has the focus: the one whose left border (▊) is
        drawn in a colour no other field shares (capture-pane -e keeps the colours)."""
        out = self.tmux("capture-pane", "-p", "-e", "-t", "deck").stdout
        styles: dict[str, str] = {}
        for line in out.splitlines():
            plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
            for field in fields:
                match = re.search(r"((?:\x1b\[[0-9;]*m)*)▊", line)
                if field in plain and match:
                    styles[field] = match.group(1)
        odd = [f for f, style in styles.items() if list(styles.values()).count(style) == 1]
        return odd[0] if len(styles) == len(fields) >= 3 and len(odd) == 1 else None

    def attach_client(self) -> None:
        """A real client on the wrapper (popups need one), fed through a pty nobody looks at."""
        master, slave = pty.openpty()
        self.client = subprocess.Popen(["tmux", "-L", self.socket, "attach", "-t", "deck"], stdin=slave,
                                       stdout=slave, stderr=slave, env={**os.environ, "TERM": "xterm-256color"},
                                       close_fds=True)
        os.close(slave)

        def drain() -> None:
            try:
                while os.read(master, 65536):
                    pass
            except OSError:
                pass

        threading.Thread(target=drain, daemon=True).start()

    def close(self) -> None:
        self.tmux("kill-server")
        if self.client is not None:
            self.client.wait(timeout=10)


def agents(repo: Path) -> dict[str, dict]:
    out = run_cli("ls", "--json", cwd=repo)
    assert out.returncode == 0, out.stderr
    return {a["name"]: a for a in json.loads(out.stdout)}


def agent_tmux(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], *args], capture_output=True, text=True)


def user_clients(session: str) -> str:
    """The clients a person sees the agent through (control-mode clients are agentdeck's own: the
    status watcher's and the deck preview's)."""
    out = agent_tmux("list-clients", "-t", f"={session}", "-F", "#{client_control_mode} #{client_name}").stdout
    return "\n".join(line for line in out.splitlines() if line and not line.startswith("1 "))


def test_real_deck_in_tmux_lists_creates_attaches_and_quits(fake_repo):
    assert run_cli("new", "north-star", cwd=fake_repo).returncode == 0
    deck = Wrapper(fake_repo)
    try:
        deck.wait_for("north-star", "idle", "agentdeck/north-star", "? help")
        # a live status change, without a keypress
        assert run_cli("send", "north-star", "ask e2e.txt", cwd=fake_repo).returncode == 0
        deck.wait_for("◆ waiting", "1 waiting", "a approve")
        deck.keys("a")
        wt = Path(agents(fake_repo)["north-star"]["worktree"])
        retry_until(lambda: (wt / "e2e.txt").exists(), what="approved from the deck")
        deck.wait_for("○ idle", "+1 -0")
        # create an agent through the dialog (tab: name -> definition -> base -> prompt)
        deck.keys("n")
        deck.wait_for("New agent", "Initial prompt")
        deck.type("south-wind")
        deck.wait_for("▊  south-wind")
        fields = ("south-wind", "▼", "empty = the current branch", "what should it do?")
        retry_until(lambda: deck.focused_field(*fields) == "south-wind", what="focus on the name")
        for field in fields[1:]:
            # A key sent before Textual has moved the focus for the previous Tab goes to the old field:
            # wait for the focus to arrive, as a person typing would watch it.
            deck.keys("Tab")
            retry_until(lambda field=field: deck.focused_field(*fields) == field, what=f"focus on {field!r}")
        deck.type("write from-dialog.txt hi")
        deck.wait_for("▊  write from-dialog.txt hi")
        deck.keys("Enter")
        deck.wait_for("south-wind", "agentdeck/south-wind")
        retry_until(lambda: "New agent" not in deck.screen(), what="dialog closed")
        listed = agents(fake_repo)
        assert "south-wind" in listed, deck.screen()
        south = listed["south-wind"]
        retry_until(lambda: (Path(south["worktree"]) / "from-dialog.txt").exists(), what="initial prompt ran")
        # attach (the deck suspends; tmux draws the agent) and detach back to the deck
        deck.keys("Enter")
        deck.wait_for("agentdeck · detach: C-b d")
        assert user_clients(south["tmux_session"])
        deck.keys("C-b", "d")
        deck.wait_for("1 Preview", "north-star", "south-wind", "? help")
        assert not user_clients(south["tmux_session"])
        deck.keys("down")  # the deck answers keys again
        # quit: the deck exits 0, every agent keeps running
        deck.keys("q")
        deck.wait_for("DECK-EXITED-0")
        listed = agents(fake_repo)
        assert {listed[n]["status"] for n in ("north-star", "south-wind")} <= {"idle", "working"}
        for a in listed.values():
            assert agent_tmux("has-session", "-t", f"={a['tmux_session']}").returncode == 0
    finally:
        deck.close()


def test_attach_inside_the_users_tmux_opens_a_popup_and_returns(fake_repo):
    assert run_cli("new", "north-star", cwd=fake_repo).returncode == 0
    session = agents(fake_repo)["north-star"]["tmux_session"]
    deck = Wrapper(fake_repo, inside_tmux=True)
    try:
        deck.attach_client()
        deck.wait_for("north-star", "? help")
        deck.keys("Enter")
        # a client of agentdeck's server now shows the agent, in a popup of the user's (wrapper) tmux
        retry_until(lambda: user_clients(session), what="popup client")
        assert "north-star" in deck.screen()  # the deck itself was not suspended
        agent_tmux("detach-client", "-s", f"={session}")
        retry_until(lambda: not user_clients(session), what="detached")
        deck.keys("?")
        deck.wait_for("agentdeck keys")
    finally:
        deck.close()
