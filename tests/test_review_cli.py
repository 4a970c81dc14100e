"""Review commands end to end: `python -m agentdeck ...` on agents made by the real Deck (generic `bash`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support import git, make_repo, run_cli

CONFIG = """
[deck]
default_agent = "sh"
setup_copy = [".env"]

[agents.sh]
kind = "generic"
command = "bash"

[review]
merge_strategy = "squash"
test_command = "test -f DONE"
"""

LINES = "".join(f"line {i}\n" for i in range(1, 21))


@pytest.fixture
def repo(tmp_path) -> Path:
    root = make_repo(tmp_path / "repo", {
        "README.md": "# t\n", ".agentdeck.toml": CONFIG, ".gitignore": ".env\n", "f.txt": LINES,
    })
    (root / ".env").write_text("SECRET=1\n")  # copied into every worktree; never the agent's change
    return root


def cli(repo: Path, *args: str, code: int = 0, env: dict[str, str] | None = None):
    out = run_cli(*args, cwd=repo, env=env)
    assert out.returncode == code, f"{args}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def new(repo: Path, name: str) -> Path:
    cli(repo, "new", name)
    agents = {a["name"]: a for a in json.loads(cli(repo, "ls", "--json").stdout)}
    wt = Path(agents[name]["worktree"])
    assert (wt / ".env").exists()
    return wt


def test_diff_commit_merge_cleanup_through_the_cli(repo):
    wt = new(repo, "alpha")
    (wt / "f.txt").write_text(LINES.replace("line 4\n", "line four\n"))
    (wt / "ünïcode name.txt").write_text("hello\n")
    (wt / "pic.bin").write_bytes(b"\x00\x01\x02" * 50)

    data = json.loads(cli(repo, "diff", "alpha", "--json").stdout)
    files = {f["path"]: f for f in data["files"]}
    assert set(files) == {"f.txt", "ünïcode name.txt", "pic.bin"}  # .env (copied) is not a change
    assert files["pic.bin"]["binary"] and files["f.txt"]["hunks"][0]["lines"]
    assert (data["added"], data["removed"], data["uncommitted"]) == (2, 1, True)
    stat = cli(repo, "diff", "alpha", "--stat").stdout
    assert "3 files changed, +2 -1" in stat and "binary" in stat
    assert "+line four" in cli(repo, "diff", "alpha").stdout

    refused = cli(repo, "merge", "alpha", code=1)
    assert "agentdeck commit alpha" in refused.stderr and refused.stderr.count("\n") == 1
    assert json.loads(cli(repo, "merge", "alpha", "--json", code=1).stdout)["error"]
    dry = cli(repo, "merge", "alpha", "--dry-run", code=1)
    assert "uncommitted" in dry.stdout

    committed = json.loads(cli(repo, "commit", "alpha", "--json").stdout)
    assert committed["message_source"] == "summary" and ".env" not in committed["files"]
    assert git(wt, "status", "--porcelain") == ""  # .env is ignored, everything else committed

    main_before = git(repo, "rev-parse", "main")
    merged = json.loads(cli(repo, "merge", "alpha", "--cleanup", "--json").stdout)
    assert merged["strategy"] == "squash" and merged["merged"] and merged["cleaned_up"]
    assert merged["recovery_ref"].startswith("refs/agentdeck/trash/")
    assert git(repo, "rev-list", "--parents", "-n", "1", "main").split()[1:] == [main_before]
    assert (repo / "ünïcode name.txt").read_text() == "hello\n" and (repo / "pic.bin").exists()
    assert git(repo, "status", "--porcelain") == ""
    assert not wt.exists() and git(repo, "branch", "--list", "agentdeck/alpha") == ""
    assert json.loads(cli(repo, "ls", "--json").stdout) == []
    cli(repo, "diff", "alpha", code=2)  # unknown agent now


def test_conflicts_merge_refusal_and_compare(repo):
    a = new(repo, "a")
    b = new(repo, "b")
    (a / "f.txt").write_text(LINES.replace("line 2\n", "line 2 by a\n"))
    (b / "f.txt").write_text(LINES.replace("line 2\n", "line 2 by b\n"))
    (b / "DONE").write_text("")
    entries = json.loads(cli(repo, "conflicts", "--json").stdout)
    assert entries == [{"agents": ["a", "b"], "files": ["f.txt"], "conflict": True}]
    assert "CONFLICT in f.txt" in cli(repo, "conflicts").stdout

    rows = {r["agent"]: r for r in json.loads(cli(repo, "compare", "a", "b", "--json").stdout)}
    assert rows["a"]["test"]["passed"] is False and rows["b"]["test"]["passed"] is True
    assert rows["b"]["files"] == 2 and rows["a"]["added"] == 1
    assert "pass" in cli(repo, "compare", "a", "b").stdout

    cli(repo, "commit", "a", "-m", "a's line 2")
    cli(repo, "commit", "b", "-m", "b's line 2")
    cli(repo, "merge", "a", "--strategy", "merge")
    before = git(repo, "rev-parse", "main")
    refused = cli(repo, "merge", "b", code=1)
    assert "would conflict" in refused.stderr and "f.txt" in refused.stderr
    assert git(repo, "rev-parse", "main") == before and git(repo, "status", "--porcelain") == ""
    assert json.loads(cli(repo, "conflicts", "--json").stdout) == [
        {"agents": ["b", "<base>"], "files": ["f.txt"], "conflict": True},
    ]
    git(repo, "branch", "release", before + "~1")
    out = json.loads(cli(repo, "merge", "b", "--into", "release", "--strategy", "rebase", "--json").stdout)
    assert out["target"] == "release" and out["checkout"] is None
    assert git(repo, "rev-parse", "release") == git(repo, "rev-parse", "agentdeck/b")  # fast-forward


def test_push_and_pr_messages(repo, tmp_path):
    new(repo, "p")
    out = cli(repo, "push", "p", code=2)
    assert "no remote 'origin'" in out.stderr
    env = {"PATH": f"{tmp_path / 'nobin'}{os.pathsep}{os.path.dirname(os.__file__)}/../../bin:/usr/bin:/bin"}
    if not any(Path(d, t).exists() for d in ("/usr/bin", "/bin") for t in ("gh", "glab")):
        out = cli(repo, "pr", "p", code=2, env=env)
        assert "gh" in out.stderr and "glab" in out.stderr
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    assert "pushed agentdeck/p to origin" in cli(repo, "push", "p").stdout
    assert git(origin, "rev-parse", "agentdeck/p")
