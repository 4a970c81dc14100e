"""``agentdeck mcp`` driven by the real ``mcp`` client (ClientSession + stdio_client)."""

from __future__ import annotations

import json

import anyio
import pytest
from memory_support import _no_memory_env, error_text, mcp_session, result_data, server_params  # noqa: F401

MEMORY_TOOLS = {"memory_search", "memory_read", "memory_write", "memory_update", "memory_append_journal",
                "memory_recent"}


def test_stdio_server_lists_writes_searches_reads_updates(git_repo):
    async def main():
        async with mcp_session(server_params(git_repo, agent="north-star")) as s:
            tools = {t.name: t for t in (await s.list_tools()).tools}
            assert MEMORY_TOOLS <= set(tools)
            for name in ("memory_search", "memory_read", "memory_recent"):
                assert tools[name].annotations.read_only_hint is True
            assert tools["memory_write"].annotations.read_only_hint is False
            assert tools["memory_write"].annotations.destructive_hint is False
            assert tools["memory_update"].annotations.destructive_hint is True
            assert all(t.annotations.open_world_hint is False for n, t in tools.items() if n in MEMORY_TOOLS)
            assert "expected_version" in tools["memory_update"].input_schema["required"]

            written = result_data(await s.call_tool("memory_write", {
                "title": "GPU tests need CUDA_VISIBLE_DEVICES", "body": "Without it the suite grabs all GPUs.",
                "tags": ["gpu", "tests"], "kind": "gotcha"}))
            assert written["version"] == 1 and written["path"].endswith(f"/notes/{written['id']}.md")

            hits = result_data(await s.call_tool("memory_search", {"query": "cuda gpus", "limit": 5}))
            assert [h["id"] for h in hits] == [written["id"]]
            assert hits[0]["kind"] == "gotcha" and hits[0]["tags"] == ["gpu", "tests"] and hits[0]["snippet"]

            note = result_data(await s.call_tool("memory_read", {"id": written["id"]}))
            assert note["author"] == "north-star" and note["branch"] == "main" and note["version"] == 1
            assert note["body"] == "Without it the suite grabs all GPUs.\n"

            updated = result_data(await s.call_tool("memory_update", {
                "id": written["id"], "body": "Set CUDA_VISIBLE_DEVICES=0 per worker.", "expected_version": 1}))
            assert updated["version"] == 2
            stale = error_text(await s.call_tool("memory_update", {
                "id": written["id"], "body": "stale", "expected_version": 1}))
            assert "at version 2, not 1" in stale
            assert result_data(await s.call_tool("memory_read", {"id": written["id"]}))["body"].startswith("Set CUDA")

            journal = result_data(await s.call_tool("memory_append_journal", {"text": "wrote the GPU note"}))
            assert journal["id"] == "journal/north-star"
            recent = result_data(await s.call_tool("memory_recent", {"limit": 5}))
            assert [r["id"] for r in recent] == [written["id"]]
            return written

    written = anyio.run(main)
    # The note is a plain file in the repository's store.
    path = git_repo / ".git" / "agentdeck" / "memory" / "notes" / f"{written['id']}.md"
    assert "CUDA_VISIBLE_DEVICES=0" in path.read_text()


def test_escapes_and_bad_input_are_refused(git_repo, tmp_path):
    secret = tmp_path / "secret.md"
    secret.write_text("---\ntitle: secret\n---\nTOP SECRET\n")
    notes = git_repo / ".git" / "agentdeck" / "memory" / "notes"
    notes.mkdir(parents=True)
    (notes / "link.md").symlink_to(secret)
    outside_before = sorted(p.name for p in tmp_path.iterdir())

    async def main():
        async with mcp_session(server_params(git_repo, agent="mallory")) as s:
            for bad in ["../../../etc/passwd", "/etc/passwd", str(secret), "notes/../../config", "..",
                        "journal/../../config", "a/b/c"]:
                text = error_text(await s.call_tool("memory_read", {"id": bad}))
                assert "bad note id" in text or "Id" in text, text
            linked = error_text(await s.call_tool("memory_read", {"id": "link"}))
            assert "symlink" in linked and "TOP SECRET" not in linked
            assert "symlink" in error_text(await s.call_tool("memory_update", {
                "id": "link", "body": "overwrite", "expected_version": 1}))
            assert error_text(await s.call_tool("memory_update", {
                "id": "../../x", "body": "b", "expected_version": 1}))
            assert error_text(await s.call_tool("memory_write", {"title": "", "body": "x"}))
            assert "bad tag" in error_text(await s.call_tool("memory_write", {
                "title": "t", "body": "x", "tags": ["../../etc"]}))
            assert "bad kind" in error_text(await s.call_tool("memory_write", {
                "title": "t", "body": "x", "kind": "../evil"}))
            assert error_text(await s.call_tool("memory_search", {"query": "x", "limit": 0}))
            assert error_text(await s.call_tool("memory_update", {"id": "x", "body": "b"}))  # no version
            assert error_text(await s.call_tool("memory_append_journal", {"text": ""}))
            assert "no note" in error_text(await s.call_tool("memory_read", {"id": "20990101-missing"}))
            hits = result_data(await s.call_tool("memory_search", {"query": "secret"}))
            assert hits == []

    anyio.run(main)
    assert secret.read_text() == "---\ntitle: secret\n---\nTOP SECRET\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == outside_before
    assert sorted(p.name for p in notes.iterdir()) == ["link.md"]


def test_server_finds_the_repository_from_the_agent_env(git_repo, tmp_path):
    """Started outside the repository (as some agents do), AGENTDECK_STATE_DIR leads to the store."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = git_repo / ".git" / "agentdeck"

    async def main():
        params = server_params(elsewhere, agent="east-wind", env={"AGENTDECK_STATE_DIR": str(state)})
        async with mcp_session(params) as s:
            return result_data(await s.call_tool("memory_write", {"title": "From afar", "body": "hello"}))

    written = anyio.run(main)
    assert written["path"].startswith(str(state / "memory" / "notes"))


def test_server_outside_any_repository_reports_per_call(tmp_path):
    async def main():
        async with mcp_session(server_params(tmp_path)) as s:
            assert MEMORY_TOOLS <= {t.name for t in (await s.list_tools()).tools}
            return error_text(await s.call_tool("memory_search", {"query": "x"}))

    assert "git repository" in anyio.run(main)


def test_tool_groups_are_registered_in_one_place(git_repo, monkeypatch):
    """Later issues add research and deck tools by appending a register(server, context) function."""
    from mcp.client import Client

    from agentdeck.mcp import server as mcp_server

    seen = {}

    def register_extra(server, context):
        seen["agent"] = context.agent

        def extra_ping(word: str) -> dict:
            """A tool from another group."""
            return {"echo": word, "memory_root": str(context.memory.root)}

        server.add_tool(extra_ping)

    monkeypatch.setattr(mcp_server, "TOOL_GROUPS", [*mcp_server.TOOL_GROUPS, register_extra])
    context = mcp_server.ServerContext(cwd=git_repo, agent="tester")
    server = mcp_server.build_server(context)

    async def main():
        async with Client(server) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            out = await client.call_tool("extra_ping", {"word": "hi"})
            written = await client.call_tool("memory_write", {"title": "In process", "body": "b"})
            return names, json.loads(out.content[0].text), written.structured_content

    names, out, written = anyio.run(main)
    assert MEMORY_TOOLS | {"extra_ping"} <= names
    assert out["echo"] == "hi" and out["memory_root"].endswith("agentdeck/memory")
    assert seen["agent"] == "tester"
    note_text = (git_repo / ".git" / "agentdeck" / "memory" / "notes" / f"{written['id']}.md").read_text()
    assert "author: tester" in note_text
    context.close()


@pytest.mark.parametrize("limit", [1, 3])
def test_search_limit_is_honoured_in_process(git_repo, limit):
    from mcp.client import Client

    from agentdeck.mcp import server as mcp_server

    context = mcp_server.ServerContext(cwd=git_repo, agent="a")
    for i in range(4):
        context.memory.add(f"Walrus fact {i}", "walrus")

    async def main():
        async with Client(mcp_server.build_server(context)) as client:
            return result_data(await client.call_tool("memory_search", {"query": "walrus", "limit": limit}))

    assert len(anyio.run(main)) == limit
    context.close()
