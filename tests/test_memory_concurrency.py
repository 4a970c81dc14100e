"""Many writers at once: no write is ever lost, and a stale update is refused, never silent."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio
import pytest
from memory_support import (  # noqa: F401
    _no_memory_env,
    cli_json,
    concurrent_body,
    error_text,
    mcp_session,
    result_data,
    server_params,
    start_writer,
)

from agentdeck.memory import frontmatter
from agentdeck.memory.store import MemoryStore

WRITERS = 8
PER_WRITER = 25


@pytest.mark.slow
def test_eight_processes_write_200_notes_through_cli_and_mcp(git_repo, tmp_path):
    go = tmp_path / "go"
    procs = []
    for w in range(WRITERS):
        kind = "cli" if w < 2 else "mcp"  # 50 CLI processes + 6 MCP servers writing at once
        procs.append((f"{kind}{w}", start_writer(kind, git_repo, f"{kind}{w}", PER_WRITER, go)))
    go.touch()
    for name, proc in procs:
        _out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"

    notes_dir = git_repo / ".git" / "agentdeck" / "memory" / "notes"
    files = sorted(notes_dir.glob("*.md"))
    assert len(files) == WRITERS * PER_WRITER
    assert not [p for p in notes_dir.iterdir() if p.name.startswith(".")]  # no temp files left
    seen = set()
    for path in files:
        meta, body, _ = frontmatter.parse(path.read_text())
        assert meta["id"] == path.stem and meta["version"] == 1
        writer = meta["author"]
        i = int(re.search(r"fact (\d+)", body).group(1))
        assert body == concurrent_body(writer, i) + "\n" and meta["tags"] == [writer]
        seen.add((writer, i))
    assert len(seen) == WRITERS * PER_WRITER  # every (writer, note) exactly once

    # Every note is found: in process for all of them, through the CLI for a sample.
    store = MemoryStore.open(cwd=git_repo)
    assert store.sync() == set()  # the writers kept the index up to date themselves
    for writer, i in seen:
        hits = store.search(f"{writer}x{i} ", limit=3, sync=False)  # a trailing space: no prefix match
        assert [h["title"] for h in hits] == [f"Concurrent finding {i}"], (writer, i)
        assert hits[0]["tags"] == [writer]
    assert len(store.search("concurrent finding", limit=1000)) == WRITERS * PER_WRITER
    for writer, i in sorted(seen)[:: len(seen) // 5]:
        assert len(cli_json("search", f"{writer}x{i} ", cwd=git_repo)) == 1
    index_md = (git_repo / ".git" / "agentdeck" / "memory" / "INDEX.md").read_text()
    assert index_md.count("\n- [Concurrent finding") == WRITERS * PER_WRITER
    store.close()


def test_two_concurrent_updates_one_wins_the_other_is_told(git_repo, tmp_path):
    import subprocess

    from memory_support import ROOT, child_env

    store = MemoryStore.open(cwd=git_repo)
    for round_ in range(3):
        note = store.add(f"Contended note {round_}", "base\n")
        go = tmp_path / f"go{round_}"
        outs = [tmp_path / f"out{round_}-{k}" for k in range(2)]
        env = child_env({"PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"})
        procs = [
            subprocess.Popen([sys.executable, "-c",
                              f"import memory_support as m; m.update_racer({str(git_repo)!r}, {note.id!r}, "
                              f"'racer{k}', {str(go)!r}, {str(outs[k])!r})"], env=env, cwd=str(git_repo))
            for k in range(2)
        ]
        # Both have read version 1: only then the signal to update.
        from support import retry_until

        retry_until(lambda outs=outs: all(Path(f"{o}.ready").exists() for o in outs), timeout=60,
                    what="both racers ready")
        go.touch()
        for p in procs:
            assert p.wait(timeout=60) == 0
        results = sorted(o.read_text() for o in outs)
        assert results[1] == "won" and results[0].startswith("refused: note"), results
        assert "at version 2, not 1" in results[0]
        final = store.get(note.id)
        assert final.version == 2 and final.body.count("edit by") == 1


def test_two_mcp_servers_update_the_same_note(git_repo):
    """Two agents (two server processes) update one note with the version they both read."""
    store = MemoryStore.open(cwd=git_repo)
    note = store.add("Shared plan", "step 1\n")

    async def main():
        async with mcp_session(server_params(git_repo, agent="alpha")) as a, \
                mcp_session(server_params(git_repo, agent="beta")) as b:
            va = result_data(await a.call_tool("memory_read", {"id": note.id}))["version"]
            vb = result_data(await b.call_tool("memory_read", {"id": note.id}))["version"]
            results = {}

            async def update(name, session, version):
                results[name] = await session.call_tool("memory_update", {
                    "id": note.id, "body": f"step 1\nstep 2 by {name}\n", "expected_version": version})

            async with anyio.create_task_group() as tg:
                tg.start_soon(update, "alpha", a, va)
                tg.start_soon(update, "beta", b, vb)
            return results

    results = anyio.run(main)
    winners = [n for n, r in results.items() if not r.is_error]
    losers = [n for n, r in results.items() if r.is_error]
    assert len(winners) == 1 and len(losers) == 1
    assert "at version 2, not 1" in error_text(results[losers[0]])
    final = store.get(note.id)
    assert final.version == 2 and final.body == f"step 1\nstep 2 by {winners[0]}\n"
    assert final.updated_by == winners[0]
    store.close()
