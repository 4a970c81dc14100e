"""``agentdeck memory ...`` through the real CLI (``python -m agentdeck``)."""

from __future__ import annotations

import json
import sys
import textwrap

from memory_support import _no_memory_env, cli_json, memory_cli  # noqa: F401

from agentdeck.memory import frontmatter


def test_add_search_show_recent(git_repo):
    added = cli_json("add", "Ninja cache gotcha", "--body", "Set CCACHE_DIR or the build breaks.",
                     "--tag", "build", "--tag", "ci", "--kind", "gotcha", cwd=git_repo)
    assert added["version"] == 1 and added["id"].endswith("ninja-cache-gotcha")
    piped = memory_cli("add", "Flaky pytest", input="Body from stdin about xdist.\n", cwd=git_repo,
                       env={"AGENTDECK_AGENT": "north-star"})
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("added ")

    hits = cli_json("search", "ninja build", cwd=git_repo)
    assert [h["id"] for h in hits] == [added["id"]]
    hit = hits[0]
    assert {"id", "title", "kind", "tags", "path", "snippet"} <= set(hit)
    assert (hit["title"], hit["kind"], hit["tags"]) == ("Ninja cache gotcha", "gotcha", ["build", "ci"])
    assert hit["path"] == added["path"] and "**build**" in hit["snippet"]

    xdist = cli_json("search", "xdist", "--limit", "5", cwd=git_repo)
    assert xdist[0]["title"] == "Flaky pytest"
    assert cli_json("search", "nothing-matches-this", cwd=git_repo) == []

    shown = memory_cli("show", xdist[0]["id"], cwd=git_repo)
    meta, body, _ = frontmatter.parse(shown.stdout)
    assert meta["author"] == "north-star" and body == "Body from stdin about xdist.\n"
    as_json = cli_json("show", xdist[0]["id"], cwd=git_repo)
    assert as_json["body"] == body and as_json["version"] == 1

    recent = cli_json("recent", cwd=git_repo)
    assert {r["id"] for r in recent} == {added["id"], xdist[0]["id"]}
    text = memory_cli("recent", cwd=git_repo).stdout
    assert "north-star" in text and "Ninja cache gotcha" in text

    human = memory_cli("search", "ninja", cwd=git_repo).stdout
    assert added["id"] in human and "#build" in human


def _editor(tmp_path, code: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text(textwrap.dedent(code))
    return f"{sys.executable} {script}"


def test_edit_goes_through_editor_with_a_version_check(git_repo, tmp_path):
    note = cli_json("add", "Edit me", "--body", "first text", cwd=git_repo)
    editor = _editor(tmp_path, """
        import sys
        path = sys.argv[1]
        text = open(path).read().replace("first text", "second text").replace("title: Edit me", "title: Edited")
        open(path, "w").write(text)
    """)
    done = memory_cli("edit", note["id"], cwd=git_repo, env={"EDITOR": editor, "VISUAL": ""})
    assert done.returncode == 0, done.stderr
    shown = cli_json("show", note["id"], cwd=git_repo)
    assert (shown["version"], shown["title"], shown["body"]) == (2, "Edited", "second text\n")

    same = memory_cli("edit", note["id"], cwd=git_repo, env={"EDITOR": "true", "VISUAL": ""})
    assert same.returncode == 0 and "no change" in same.stdout
    assert cli_json("show", note["id"], cwd=git_repo)["version"] == 2

    # Someone else updates the note while the editor is open: the edit is refused, not lost.
    racing = _editor(tmp_path, f"""
        import subprocess, sys
        other = (
            "from agentdeck.memory.store import MemoryStore; s = MemoryStore.open(); n = s.get({note['id']!r}); "
            "s.update(n.id, body=n.body + 'other agent line\\\\n', expected_version=n.version)"
        )
        subprocess.run([sys.executable, "-c", other], check=True)
        open(sys.argv[1], "a").write("my late line\\n")
    """)
    refused = memory_cli("edit", note["id"], cwd=git_repo, env={"EDITOR": racing, "VISUAL": ""})
    assert refused.returncode == 1, refused.stderr
    assert "at version 3, not 2" in refused.stderr and "kept in" in refused.stderr
    kept = refused.stderr.split("kept in ")[1].split(")")[0]
    assert "my late line" in open(kept).read()
    final = cli_json("show", note["id"], cwd=git_repo)
    assert final["version"] == 3 and "other agent line" in final["body"] and "my late line" not in final["body"]


def test_supersede_forget_reindex(git_repo):
    old = cli_json("add", "Old way to deploy", "--body", "scp the tarball", cwd=git_repo)
    new = cli_json("add", "New way to deploy", "--body", "use the pipeline", cwd=git_repo)
    out = cli_json("supersede", old["id"], "--by", new["id"], cwd=git_repo)
    assert out == {"id": old["id"], "status": "superseded", "superseded_by": new["id"], "version": 2}
    assert [h["id"] for h in cli_json("search", "deploy", cwd=git_repo)] == [new["id"]]
    assert cli_json("forget", new["id"], cwd=git_repo)["status"] == "forgotten"
    assert cli_json("search", "deploy", cwd=git_repo) == []
    assert cli_json("recent", cwd=git_repo) == []
    assert {r["status"] for r in cli_json("recent", "--all", cwd=git_repo)} == {"superseded", "forgotten"}
    reindexed = cli_json("reindex", cwd=git_repo)
    assert reindexed["documents"] == 3  # two notes and CORE.md
    assert cli_json("search", "deploy", cwd=git_repo) == []


def test_errors_have_the_contract_exit_codes(git_repo, tmp_path):
    unknown = memory_cli("show", "20990101-nope", cwd=git_repo)
    assert unknown.returncode == 2 and "no note" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    escape = memory_cli("show", "../../config", "--json", cwd=git_repo)
    assert escape.returncode == 2
    assert "bad note id" in json.loads(escape.stdout)["error"]
    empty = memory_cli("add", "   ", cwd=git_repo)
    assert empty.returncode == 2 and "title" in empty.stderr
    note = cli_json("add", "Only one", cwd=git_repo)
    assert memory_cli("supersede", note["id"], "--by", note["id"], cwd=git_repo).returncode == 2
    assert memory_cli("search", "x", "--limit", "0", cwd=git_repo).returncode == 2
    outside = memory_cli("recent", cwd=tmp_path)
    assert outside.returncode == 2 and "git repository" in outside.stderr
    bare = memory_cli(cwd=git_repo)
    assert bare.returncode == 2 and "search" in bare.stdout


def test_journal_and_brief(git_repo):
    env = {"AGENTDECK_AGENT": "south-pole"}
    assert memory_cli("journal", "tried the thing", cwd=git_repo, env=env).returncode == 0
    shown = memory_cli("show", "journal/south-pole", cwd=git_repo)
    assert "tried the thing" in shown.stdout
    core = git_repo / ".git" / "agentdeck" / "memory" / "CORE.md"
    core.write_text("# Core\n\nThe product ships on Fridays.\n")
    brief = memory_cli("brief", cwd=git_repo, env=env)
    assert brief.returncode == 0
    assert "south-pole" in brief.stdout and "ships on Fridays" in brief.stdout


def test_memory_commands_import_light():
    """The CLI path never pulls in the MCP SDK, Textual, or filelock before a write."""
    import subprocess

    from memory_support import child_env

    code = (
        "import sys, agentdeck.memory.cli, agentdeck.memory.store, agentdeck.memory.index, "
        "agentdeck.memory.inject, agentdeck.memory.watch\n"
        "heavy = [m for m in ('mcp', 'textual', 'filelock', 'watchdog', 'pydantic') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env())
    assert proc.returncode == 0, proc.stderr
