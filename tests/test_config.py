"""Configuration: typed settings, nearest-first files, errors that name file, key and line."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from support import ROOT

from agentdeck import config as cfg
from agentdeck.config import loader
from agentdeck.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_files(tmp_path):
    c = cfg.load_config(tmp_path)
    assert c.deck.branch_prefix == "agentdeck/" and c.research.gpus == "auto" and c.sources == []


def test_repo_file_overrides_user_file_table_by_table(tmp_path, isolated_home):
    write(isolated_home / "config.toml", '[deck]\nbranch_prefix = "me/"\ntmux_socket = "mine"\n'
                                         '[agents.claude]\nargs = ["--x"]\n')
    write(tmp_path / ".agentdeck.toml", '[deck]\nbranch_prefix = "team/"\n[research]\ngpus = [0, 1]\n')
    c = cfg.load_config(tmp_path)
    assert c.deck.branch_prefix == "team/" and c.deck.tmux_socket == "mine"
    assert c.research.gpus == [0, 1]
    assert c.agents["claude"].kind == "claude" and c.agents["claude"].args == ["--x"]
    assert len(c.sources) == 2


@pytest.mark.parametrize(
    "text, expect",
    [
        ('[deck]\nbranch_prefix = 3\n', r"deck\.branch_prefix, line 2: expected a string"),
        ('[deck]\n\nnope = 1\n', r"deck\.nope, line 3: unknown key 'nope'"),
        ('[nosection]\n', r"unknown section \[nosection\]"),
        ('[research]\ndirection = "up"\n', r"research\.direction, line 2: expected 'min' or 'max'"),
        ('[research]\ngpus = "all"\n', r"research\.gpus.*expected"),
        ('[agents.x]\nkind = "robot"\ncommand = "x"\n', r"agents\.x\.kind.*robot"),
        ('[agents.x]\nkind = "generic"\n', r"agents\.x\.command.*needs a command"),
        ('[agents.x]\ncommand = "x"\nwaiting_pattern = "("\n', r"agents\.x\.waiting_pattern.*invalid regex"),
        ('[notify]\nbell = "yes"\n', r"notify\.bell.*true or false"),
        ('[deck]\ndefault_agent = "ghost"\n', r"default_agent.*ghost"),
        ('[deck\n', r"TOML syntax error.*line 1"),
    ],
)
def test_errors_name_file_key_line_and_expectation(tmp_path, text, expect):
    path = write(tmp_path / ".agentdeck.toml", text)
    with pytest.raises(ConfigError) as info:
        cfg.load_config(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(expect, message), message
    assert info.value.exit_code == 2


def test_example_config_documents_every_key_and_is_valid():
    text = (ROOT / ".agentdeck.toml").read_text()
    loader._validate_file(ROOT / ".agentdeck.toml")
    for section, cls in cfg.SECTIONS.items():
        for field in dataclasses.fields(cls):
            if dataclasses.is_dataclass(field.type) or field.name in ("ray", "slurm"):
                continue
            assert re.search(rf"^#?\s*{field.name}\s*=", text, re.M), f"{section}.{field.name} undocumented"
        header = "[agents." if section == "agents.DEF" else f"[{section}]"
        assert header in text
