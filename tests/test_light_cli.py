"""A CLI that starts at once (issue 16): `ls`, `peek`, `wait`, `events`, `send` and `hook` import only
what they use - asserted on the modules a real run loaded, not on how long it took - and the
light paths say exactly what the deck's paths say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import ROOT, retry_until, run_cli

from agentdeck import status
from agentdeck.deck import Deck

#: Never on a light command's path.
BANNED = ("textual", "libtmux", "anthropic", "openai", "mcp", "agentdeck.research", "agentdeck.review",
          "agentdeck.tui", "agentdeck.memory", "git", "watchdog", "rich")


def _modules_of(argv: list[str], cwd: Path, stdin: str = "", env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    """Run `agentdeck ARGV` in a fresh interpreter; (exit code, every module it imported)."""
    code = (
        "import sys, json\n"
        "from agentdeck.cli import main\n"
        f"rc = main({argv!r})\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + ' RC ' + str(rc) + '\\n')\n"
    )
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, input=stdin, capture_output=True, text=True,
                          env=full_env, timeout=60)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    modules, _, rc = line[len("MODULES "):].rpartition(" RC ")
    return int(rc), set(json.loads(modules))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in BANNED))


@pytest.fixture
def running(fake_repo):
    deck = Deck.open(fake_repo)
    deck.new("lite")
    retry_until(lambda: deck.get("lite").status == "idle", timeout=20, what="lite idle")
    retry_until(lambda: status.watcher_alive(deck), what="a watcher")
    yield deck
    deck.close()


@pytest.mark.parametrize("argv", [
    ["ls", "--json"],
    ["ls"],
    ["peek", "lite"],
    ["wait", "lite", "--until", "idle", "--timeout", "10"],
    ["events", "lite", "--json"],
])
def test_light_commands_never_build_the_deck(running, argv):
    """Read commands with a watcher running: the state database (and one tmux call for peek);
    no configuration, no adapters, no deck."""
    rc, modules = _modules_of(argv, running.repo.root)
    assert rc == 0
    assert _heavy(modules) == []
    ours = {m for m in modules if m.startswith("agentdeck")}
    assert not ours & {"agentdeck.deck", "agentdeck.config", "agentdeck.agents", "agentdeck.adopt"}, sorted(ours)


def test_send_and_hook_import_nothing_heavy(running, tmp_path):
    rc, modules = _modules_of(["send", "lite", "hello there"], running.repo.root)
    assert rc == 0 and _heavy(modules) == []
    rc, modules = _modules_of(["hook", "claude", "Stop"], tmp_path, stdin='{"hook_event_name": "Stop"}',
                              env={"AGENTDECK_STATE_DIR": str(tmp_path / "none"), "AGENTDECK_AGENT": "x"})
    assert rc == 0 and _heavy(modules) == []


def test_version_builds_no_parser(tmp_path):
    rc, modules = _modules_of(["--version"], tmp_path)
    assert rc == 0 and _heavy(modules) == []
    assert not {m for m in modules if m.startswith("agentdeck.")} - {"agentdeck.cli"}, sorted(modules)
    proc = run_cli("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("agentdeck ")


def test_core_commands_skip_the_extension_modules(running):
    """`kill --help` (a core command) builds a parser without review, memory, research...; the
    top-level help still lists every command."""
    rc, modules = _modules_of(["kill", "--help"], running.repo.root)
    assert rc == 0 and _heavy(modules) == []
    top = run_cli("--help", cwd=running.repo.root)
    assert top.returncode == 0 and "merge" in top.stdout and "memory" in top.stdout


def test_light_ls_says_what_the_deck_says(running):
    out = run_cli("ls", "--json", cwd=running.repo.root)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [v.to_json() for v in running.agents(refresh=False)]
    table = run_cli("ls", cwd=running.repo.root)
    assert "lite" in table.stdout and "idle" in table.stdout


def test_light_paths_hand_over_when_they_cannot_answer(fake_repo):
    """No watcher: the deck's path (it samples, then starts one); a server gone: the deck's path
    too, and the agents read `exited` at once."""
    deck = Deck.open(fake_repo)
    deck.new("solo")
    retry_until(lambda: deck.get("solo").status == "idle", timeout=20, what="solo idle")
    pid = retry_until(lambda: status.watcher_pid(deck), what="a watcher")
    os.kill(pid, 15)
    retry_until(lambda: not status.watcher_alive(deck), what="the watcher gone")
    rc, modules = _modules_of(["ls", "--json"], fake_repo)
    assert rc == 0 and "agentdeck.deck" in modules  # took the deck's path...
    retry_until(lambda: status.watcher_alive(deck), what="...which started a watcher again")
    subprocess.run(["tmux", "-L", os.environ["AGENTDECK_TMUX_SOCKET"], "kill-server"], check=True)
    out = run_cli("ls", "--json", cwd=fake_repo)
    assert [a["status"] for a in json.loads(out.stdout)] == ["exited"]


def test_light_wait_wakes_on_the_commit_and_times_out(running):
    root = running.repo.root
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    waiter = subprocess.Popen([sys.executable, "-m", "agentdeck", "wait", "lite", "--until", "waiting",
                               "--timeout", "30", "--json"], cwd=root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert waiter.poll() is None  # still waiting
    assert run_cli("send", "lite", "ask w.txt", cwd=root).returncode == 0
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert json.loads(out) == {"name": "lite", "status": "waiting"}
    late = run_cli("wait", "lite", "--until", "exited", "--timeout", "0.3", cwd=root)
    assert late.returncode == 1 and "still waiting after 0.3s" in late.stderr
    bad = run_cli("wait", "lite", "--until", "sleeping", cwd=root)
    assert bad.returncode == 2
    unknown = run_cli("peek", "nobody", cwd=root)
    assert unknown.returncode == 2 and "no agent named 'nobody'" in unknown.stderr
