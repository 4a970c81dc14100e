"""The CLI's dispatcher (issue 13): one place loads a command's module lazily, and only that one.

Each test runs `agentdeck ...` in a fresh interpreter and reads back the modules it loaded."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, run_cli

from agentdeck import cli


def _modules_of(argv: list[str], cwd: Path) -> tuple[set[str], str]:
    code = (
        "import sys, json\n"
        "from agentdeck.cli import main\n"
        f"rc = main({argv!r})\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + ' RC ' + str(rc) + '\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=60)
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    modules = line[len("MODULES "):].rpartition(" RC ")[0]
    return {m for m in json.loads(modules) if m.startswith("agentdeck")}, proc.stdout + proc.stderr


def test_the_command_table_matches_what_each_module_registers():
    """EXTENSION_COMMANDS names every command of every extension module, and nothing else; each core
    command's module adds exactly that command."""
    registered: dict[str, str] = {}
    for module_name in cli.EXTENSIONS:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module_name).register(sub)
        registered.update(dict.fromkeys(sub.choices, module_name))
    assert registered == cli.EXTENSION_COMMANDS
    for name, module_name in cli.CORE_COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module_name).add(sub, name)
        assert list(sub.choices) == [name], (name, module_name)


def test_help_lists_every_command_in_order():
    parser = cli.build_parser()
    choices = list(parser._subparsers._group_actions[0].choices)
    assert choices == [*cli.CORE_COMMANDS, *cli.EXTENSION_COMMANDS]
    core = list(cli.build_parser(extensions=False)._subparsers._group_actions[0].choices)
    assert core == list(cli.CORE_COMMANDS)


@pytest.mark.parametrize(("argv", "own", "others"), [
    (["research", "status", "--json"], "agentdeck.research.cli",
     ("agentdeck.review.cli", "agentdeck.memory.cli", "agentdeck.serve", "agentdeck.usage_cli",
      "agentdeck.cli.agents")),
    (["diff", "nobody"], "agentdeck.review.cli",
     ("agentdeck.research.cli", "agentdeck.memory.cli", "agentdeck.serve", "agentdeck.usage_cli")),
    (["kill", "nobody"], "agentdeck.cli.agents",
     ("agentdeck.review.cli", "agentdeck.research.cli", "agentdeck.cli.upkeep", "agentdeck.cli.reads")),
])
def test_a_command_loads_its_own_module_and_no_other(git_repo, argv, own, others):
    modules, out = _modules_of(argv, git_repo)
    assert own in modules, out
    assert not modules & set(others), (sorted(modules & set(others)), out)


def test_an_unknown_command_gets_the_whole_parser_and_its_choices(git_repo):
    proc = run_cli("frobnicate", cwd=git_repo)
    assert proc.returncode == 2
    assert "invalid choice: 'frobnicate'" in proc.stderr
    for name in ("new", "research", "usage", "diff"):
        assert name in proc.stderr


def test_errors_of_a_lone_command_parser_read_as_before(git_repo):
    """A parser holding only `new` words its usage errors as the whole one did."""
    proc = run_cli("new", cwd=git_repo)
    assert proc.returncode == 2
    assert "usage: agentdeck new [-h]" in proc.stderr
    assert "the following arguments are required: name" in proc.stderr
    proc = run_cli("new", "x", "--bogus", cwd=git_repo)
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


def test_the_research_command_module_has_no_main_of_its_own():
    """research/cli.py reuses the one dispatcher (its detached loop runs `python -m agentdeck`)."""
    from agentdeck.research import cli as research_cli

    assert not hasattr(research_cli, "main")
    source = (ROOT / "agentdeck" / "research" / "__init__.py").read_text()
    assert '"-m", "agentdeck.research.cli"' not in source
