"""The install users get: a regular (non-editable) ``pip install .``, run from outside the checkout.

CI installs agentdeck with ``-e`` for the rest of the suite, which hides anything a regular install leaves
out (a folder without ``__init__.py``, a data file not declared). This test builds a regular install of the
working tree into a temporary folder and runs agentdeck from there, far from the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, make_repo

pytestmark = pytest.mark.slow


def _tracked_files() -> list[str]:
    """Files git tracks or would track (untracked but not ignored) in the checkout."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                         check=True, capture_output=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A regular install of the working tree (as ``git archive`` would give it) into a fresh folder."""
    work = tmp_path_factory.mktemp("install")
    src = work / "src"
    for rel in _tracked_files():
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest)
    site = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--target", str(site), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site)
    env.pop("PYTHONSAFEPATH", None)
    return env


def test_every_module_and_data_file_is_installed(installed):
    missing = []
    for rel in _tracked_files():
        if rel.startswith("agentdeck/") and rel.endswith((".py", ".tcss")):
            want = installed / rel
        elif rel.startswith("prompts/"):
            want = installed / "agentdeck" / rel
        else:
            continue
        if not want.is_file():
            missing.append(rel)
    assert not missing, f"left out of a regular install: {missing}"


def test_installed_cli_starts_outside_the_checkout(installed, tmp_path):
    env = _env(installed)
    where = subprocess.run([sys.executable, "-c", "import agentdeck, agentdeck.research.executors.local,"
                            " agentdeck.research.proposers.mutate; print(agentdeck.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout
    for args in (["--help"], ["research", "--help"], ["research", "run", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "agentdeck", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "usage" in proc.stdout.lower()
    # The console script the install wrote runs too.
    script = installed / "bin" / "agentdeck"
    assert script.is_file()
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_installed_mcp_server_answers_initialize_and_lists_tools(installed, tmp_path):
    repo = make_repo(tmp_path / "repo")
    env = _env(installed)
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": {"name": "install-test", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
    ]
    proc = subprocess.Popen([sys.executable, "-m", "agentdeck", "mcp"], cwd=repo, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        answers: dict[int, dict] = {}
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            if "id" not in request:
                continue
            while request["id"] not in answers:
                line = proc.stdout.readline()
                assert line, proc.stderr.read() if proc.stderr else "server closed stdout"
                message = json.loads(line)
                if "id" in message:
                    answers[message["id"]] = message
        assert answers[1]["result"]["serverInfo"]["name"] == "agentdeck"
        names = {tool["name"] for tool in answers[2]["result"]["tools"]}
        assert {"memory_search", "memory_write"} <= names
    finally:
        proc.kill()
        proc.wait(timeout=10)
