"""Notifications: desktop (notify-send faked on PATH) and the status line of agentdeck's tmux server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support import git, retry_until, run_cli
from test_deck import wait_status

from agentdeck.notify import transitions


def test_transitions_worth_telling():
    before = {"a": "working", "b": "idle", "c": "working", "d": "idle"}
    after = {"a": "idle", "b": "waiting", "c": "exited", "d": "working", "e": "starting"}
    assert sorted(transitions(before, after)) == [("a", "idle"), ("b", "waiting"), ("c", "exited")]


def test_desktop_and_tmux_status_line(fake_repo, tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "notified.txt"
    fake = bindir / "notify-send"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    cfg = fake_repo / ".agentdeck.toml"
    cfg.write_text(cfg.read_text() + "\n[notify]\ndesktop = true\n")
    git(fake_repo, "commit", "-qam", "notify on")
    assert run_cli("new", "pinger", cwd=fake_repo).returncode == 0
    wait_status(fake_repo, "pinger", "idle")
    run_cli("send", "pinger", "ask n.txt", cwd=fake_repo)
    wait_status(fake_repo, "pinger", "waiting")
    retry_until(lambda: log.exists() and "pinger needs you" in log.read_text(), what="desktop notification")
    socket = os.environ["AGENTDECK_TMUX_SOCKET"]

    def status_right() -> str:
        return subprocess.run(["tmux", "-L", socket, "show-options", "-gv", "status-right"], capture_output=True,
                              text=True).stdout

    retry_until(lambda: "1 waiting: pinger" in status_right(), what="tmux status line")
    run_cli("approve", "pinger", cwd=fake_repo)
    retry_until(lambda: "waiting" not in status_right(), what="status line cleared")
    run_cli("send", "pinger", "crash", cwd=fake_repo)
    retry_until(lambda: "pinger exited" in log.read_text(), what="exit notification")
    assert Path(log).read_text().count("agentdeck: pinger") >= 2
