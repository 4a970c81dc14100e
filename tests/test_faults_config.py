"""Bad configuration values and bad places: exit 2 naming the file, the key and the line.

Each setting declares what values it accepts once, beside its field (``config.setting(...)``); the
loader checks every value a file sets against it.  Also: the tmux socket override in the environment,
and a bare repository named as such.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import types
from pathlib import Path
from typing import Union, get_args, get_origin, get_type_hints

import pytest
from support import git, run_cli

from agentdeck import config as cfg
from agentdeck.config import loader
from agentdeck.errors import ConfigError


def write_config(repo: Path, text: str) -> Path:
    path = repo / ".agentdeck.toml"
    path.write_text(text)
    return path


BAD = [
    # (section, key = value, what the message must say)
    ("deck", 'tmux_socket = "../../tmp/x"', "a plain name"),
    ("deck", 'tmux_socket = ""', "a plain name"),
    ("deck", 'tmux_socket = ".hidden"', "not starting with '.'"),
    ("deck", 'tmux_socket = "a/b"', "a plain name"),
    ("deck", "status_interval = 0", "> 0"),
    ("deck", "status_interval = -0.5", "> 0"),
    ("deck", "status_interval = nan", "finite"),
    ("deck", "recovery_days = -1", ">= 0"),
    ("deck", 'branch_prefix = "../x"', "without '..'"),
    ("deck", 'branch_prefix = "-x/"', "starting with"),
    ("deck", 'worktree_dir = "a\\u0000b"', "without NUL"),
    ("research", "gpus = [-1]", "item 1: expected an integer >= 0"),
    ("research", "gpus = [0, 1, -2]", "item 3: expected an integer >= 0"),
    ("research", "gpus = []", "at least one item"),
    ("research", "workers = -3", ">= 0"),
    ("research", "repeats_baseline = 0", ">= 1"),
    ("research", "budget_s = 0", "> 0"),
    ("research", "timeout_s = -600", "> 0"),
    ("research", "timeout_s = inf", "finite"),
    ("research", 'workdir = "../elsewhere"', "relative path"),
    ("research", 'workdir = "/etc"', "relative path"),
    ("research", 'program = "~/notes.md"', "relative path"),
    ("research", 'editable = ["train.py", "../../x.py"]', "item 2: expected a relative path"),
    ("research", 'protected = ["/etc/passwd"]', "relative path"),
    ("research", 'metric = "val loss"', "a name such as val_bpb"),
    ("research", 'command = "  "', "a command"),
    ("research.ray", "num_gpus = -1", ">= 0"),
    ("research.ray", 'address = "not an address"', "HOST:PORT"),
    ("research.slurm", 'time = "tomorrow"', "Slurm time"),
    ("research.slurm", 'gres = "gpu 1"', "GRES"),
    ("research.slurm", 'partition = "gpu;rm -rf"', "partition name"),
    ("llm", 'base_url = "localhost:8000"', "http(s):// URL"),
    ("llm", 'api_key_env = "MY-KEY"', "environment variable name"),
    ("memory", 'dir = "a\\nb"', "without NUL or line breaks"),
    ("agents.x", 'command = "x"\nquiet_s = 0', "> 0"),
    ("agents.x", 'command = "x"\napprove_keys = ["y", ""]', "item 2: expected a tmux key name"),
    ("agents.x", 'command = "x"\nworking_pattern = "(["', "invalid regex"),
    ("research", "metric_floor = nan", "finite"),
    ("research.space", "lr = { low = -inf, high = 1.0 }", "finite"),
]


@pytest.mark.parametrize("section, line, expect", BAD, ids=[f"{s}.{v.splitlines()[-1]}" for s, v, _ in BAD])
def test_bad_values_name_file_key_and_line(tmp_path, section, line, expect):
    # two lines of padding, so the line number is not a coincidence
    path = write_config(tmp_path, f"# padding\n\n[{section}]\n{line}\n")
    key = line.splitlines()[-1].split("=")[0].strip()
    key_line = 4 + len(line.splitlines()) - 1
    with pytest.raises(ConfigError) as info:
        cfg.load_config(tmp_path)
    message = str(info.value)
    # (a key of an inline table is named in full, with the line of the table)
    where = rf"{re.escape(str(path))}: {re.escape(section)}\.{key}(\.\w+)?, line {key_line}: "
    assert re.match(where, message), message
    assert expect in message, message
    assert info.value.exit_code == 2 and "\n" not in message


GOOD = [
    ("deck", 'tmux_socket = "my_deck-2.x"'),
    ("deck", "recovery_days = 0"),
    ("deck", 'branch_prefix = "team/bots/"'),
    ("deck", 'worktree_dir = "../wt"'),  # a sibling folder of the checkout is a normal choice
    ("research", "gpus = [0, 3]"),
    ("research", 'gpus = "auto"'),
    ("research", "workers = 0"),
    ("research", 'workdir = "labs/nano"'),
    ("research", 'editable = ["src/*.py"]'),
    ("research.ray", 'address = "http://10.0.0.1:8265"'),
    ("research.ray", 'address = "10.0.0.1:6379"'),
    ("research.slurm", 'time = "2-00:00:00"'),
    ("research.slurm", 'gres = "gpu:a100:2"'),
    ("llm", 'base_url = "http://127.0.0.1:8000/v1"'),
    ("agents.x", 'command = "x"\nenv = { HTTPS_PROXY = "http://p:3128" }'),
]


@pytest.mark.parametrize("section, line", GOOD, ids=[f"{s}.{v.splitlines()[-1]}" for s, v in GOOD])
def test_sane_values_are_accepted(tmp_path, section, line):
    write_config(tmp_path, f"[{section}]\n{line}\n")
    cfg.load_config(tmp_path)


def test_agent_env_names_are_checked(tmp_path):
    path = write_config(tmp_path, '[agents.x]\ncommand = "x"\nenv = { "BAD=NAME" = "1" }\n')
    with pytest.raises(ConfigError, match=r"agents\.x\.env\.BAD=NAME.*environment variable name") as info:
        cfg.load_config(tmp_path)
    assert str(path) in str(info.value)


def test_the_user_config_is_checked_too(tmp_path, isolated_home):
    user = isolated_home / "config.toml"
    user.write_text("[deck]\nstatus_interval = -1\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(user))}: deck\.status_interval, line 2: "):
        cfg.load_config(tmp_path)


def _scalar_types(tp) -> set:
    origin = get_origin(tp)
    if origin in (list, dict, Union, types.UnionType):
        return set().union(*(_scalar_types(a) for a in get_args(tp)))
    return {tp}


def _tables(cls, name: str):
    """(dotted name, dataclass) for *cls* and every table under it."""
    yield name, cls
    for f in dataclasses.fields(cls):
        for sub in _scalar_types(get_type_hints(cls)[f.name]):
            if dataclasses.is_dataclass(sub):
                yield from _tables(sub, f"{name}.{f.name}".lstrip("."))


def test_every_number_declares_its_rule_and_every_default_respects_it():
    """A number setting without a rule would accept -3 (or nan) again: each declares one -- bounds, or
    ``setting(None)`` for a value that may be any finite number -- and no default breaks its rule."""
    unruled, broken = [], []
    for section, cls in _tables(cfg.Config, ""):
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            rule = f.metadata.get("rule")
            if _scalar_types(hints[f.name]) & {int, float} and rule is None:
                unruled.append(f"{section}.{f.name}")
            if rule is not None:
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                try:
                    loader._Loader(Path("<defaults>"), "").check(f"{section}.{f.name}", rule, default)
                except ConfigError as exc:
                    broken.append(str(exc))
    assert not unruled, f"number settings without a rule (config.setting): {unruled}"
    assert not broken, broken


def test_a_socket_outside_tmux_folder_is_refused_before_anything_starts(git_repo, tmp_path):
    target = tmp_path / "planted"
    rel = os.path.relpath(target, f"/tmp/tmux-{os.getuid()}")
    write_config(git_repo, f'[deck]\ntmux_socket = "{rel}"\n[agents.cat]\ncommand = "cat"\n')
    env = {"AGENTDECK_TMUX_SOCKET": ""}  # the test's own override would hide the file's value
    try:
        proc = run_cli("new", "a1", "--agent", "cat", cwd=git_repo, env=env)
        assert proc.returncode == 2, proc.stderr
        assert "deck.tmux_socket, line 2" in proc.stderr and str(git_repo / ".agentdeck.toml") in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not target.exists()  # before the check, tmux made its server socket there
        assert not git(git_repo, "branch", "--list", "agentdeck/*")  # nothing half done
    finally:
        if target.exists():
            subprocess.run(["tmux", "-S", str(target), "kill-server"], capture_output=True)


@pytest.mark.parametrize("value", ["../../tmp/x", ".x", "a b", "x" * 65])
def test_the_environment_override_of_the_socket_is_checked(git_repo, value):
    proc = run_cli("ls", cwd=git_repo, env={"AGENTDECK_TMUX_SOCKET": value})
    assert proc.returncode == 2, proc.stderr
    assert "AGENTDECK_TMUX_SOCKET" in proc.stderr and "a plain name" in proc.stderr


def test_a_bare_repository_is_named_as_bare(tmp_path, git_repo):
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(git_repo), str(bare)], check=True)
    proc = run_cli("ls", cwd=bare)
    assert proc.returncode == 2
    assert "is a bare git repository" in proc.stderr and "git worktree add" in proc.stderr, proc.stderr
    # the fix it names works: a worktree of the bare repository is a checkout agentdeck accepts
    git(bare, "worktree", "add", "-q", str(tmp_path / "work"))
    assert run_cli("ls", cwd=tmp_path / "work").returncode == 0
    # and a folder that is no repository at all still says so
    (tmp_path / "plain").mkdir()
    proc = run_cli("ls", cwd=tmp_path / "plain")
    assert proc.returncode == 2 and "not inside a git repository" in proc.stderr
