"""Token usage (agentdeck.usage, `agentdeck usage`).

Unit tests read small files copied from real transcripts (tests/fixtures/usage/, made
by the real-CLI tests below with AGENTDECK_USAGE_FIXTURE_DIR set); the real-CLI tests run
Claude Code and Codex through agentdeck against stubs that report known usage, and check
that agentdeck's numbers equal what the stub reported.  Those are skipped when the CLIs
are not installed, unless AGENTDECK_REQUIRE_REAL_CLIS=1.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from realcli_support import claude_env, codex_env, require_cli, seed_claude_home, seed_codex_home, write_agent_config
from stubs.anthropic_stub import Reply as AReply
from stubs.openai_stub import Reply as OReply
from support import retry_until, run_cli
from usage_support import (
    FIXTURES,
    MeteredAnthropicStub,
    MeteredOpenAIStub,
    claude_expected,
    codex_expected,
    numbers,
    run_usage_cli,
    save_fixtures,
    usage_json,
    usage_row,
)

from agentdeck import usage as usage_mod
from agentdeck.agents.claude.usage import ClaudeTranscript
from agentdeck.agents.codex.usage import CodexSession
from agentdeck.deck import Deck
from agentdeck.store import AgentRecord
from agentdeck.usage import UsageCache, price_for, usage_for

FIX = json.loads((FIXTURES / "reported.json").read_text()) if (FIXTURES / "reported.json").exists() else {}


def agent(repo: Path, name: str) -> dict:
    proc = run_cli("ls", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return {a["name"]: a for a in json.loads(proc.stdout)}[name]


def wait_status(repo: Path, name: str, *wanted: str, timeout: float = 90) -> dict:
    def check():
        a = agent(repo, name)
        return a if a["status"] in wanted else None

    try:
        return retry_until(check, timeout=timeout, interval=0.2, what=f"{name} {wanted}")
    except AssertionError as exc:
        screen = run_cli("peek", name, cwd=repo).stdout
        raise AssertionError(f"{exc}\n--- screen:\n{screen}") from None


def wait_turn(repo: Path, stub, before: int, name: str, timeout: float = 90) -> None:
    """Until the stub answered a new main request and the agent is idle again."""
    try:
        retry_until(lambda: len(stub.main_reported()) > before, timeout=timeout, what=f"a model request from {name}")
    except AssertionError as exc:
        screen = run_cli("peek", name, cwd=repo).stdout
        events = run_cli("events", name, "--json", cwd=repo).stdout
        raise AssertionError(f"{exc}\n--- screen:\n{screen}\n--- events:\n{events}") from None
    wait_status(repo, name, "idle", timeout=timeout)


# ====================================================================== unit: parsers on real files
def tally_of(path: Path, kind: str, tmp_path: Path) -> SimpleNamespace:
    cache = UsageCache(tmp_path / "cache.json")
    state = cache.read(path, kind)
    parser = ClaudeTranscript if kind == "claude" else CodexSession
    tally = parser.tally(state)
    return SimpleNamespace(cache=cache, state=state, tally=tally, tokens=tally.tokens())


def as_numbers(tokens) -> dict[str, int]:
    return {"input_tokens": tokens.input, "output_tokens": tokens.output, "cache_read_tokens": tokens.cache_read,
            "cache_creation_tokens": tokens.cache_creation}



def naive_sum(path: Path) -> int:
    """Output tokens of every assistant entry, repeats included (what a naive reader counts)."""
    total = 0
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("type") == "assistant":
            total += entry["message"]["usage"]["output_tokens"]
    return total


def test_claude_transcript_counts_each_answer_once(tmp_path):
    path = FIXTURES / "claude_alpha.jsonl"
    got = tally_of(path, "claude", tmp_path)
    expected = {k: FIX["claude_alpha"][k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                    "cache_creation_tokens")}
    assert as_numbers(got.tokens) == expected
    assert naive_sum(path) > expected["output_tokens"]  # one answer was written as two entries
    assert got.tally.last_model == FIX["claude_alpha"]["model"]


def test_claude_fork_does_not_count_what_it_inherited(tmp_path):
    source = tally_of(FIXTURES / "claude_fork_source.jsonl", "claude", tmp_path)
    fork_state = source.cache.read(FIXTURES / "claude_fork.jsonl", "claude")
    everything = ClaudeTranscript.tally(fork_state).tokens()
    own = ClaudeTranscript.tally(fork_state, exclude=ClaudeTranscript.ids(source.state)).tokens()
    expected = {k: FIX["claude_fork"][k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                   "cache_creation_tokens")}
    assert as_numbers(own) == expected
    assert as_numbers(source.tokens) == {k: FIX["claude_fork_source"][k] for k in expected}
    assert everything.output == own.output + source.tokens.output  # the copy holds the source's answer


def test_claude_synthetic_answers_and_1h_cache_writes(tmp_path):
    path = tmp_path / "t.jsonl"
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 1000,
             "cache_creation_input_tokens": 400,
             "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 300}}
    lines = [
        {"type": "assistant", "timestamp": "2026-01-01T00:00:00.000Z",
         "message": {"id": "m1", "model": "claude-sonnet-4-5", "usage": usage}},
        {"type": "assistant", "timestamp": "2026-01-01T00:00:01.000Z",
         "message": {"id": "m2", "model": "<synthetic>", "usage": usage}},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    got = tally_of(path, "claude", tmp_path)
    assert as_numbers(got.tokens) == {"input_tokens": 10, "output_tokens": 5, "cache_read_tokens": 1000,
                                      "cache_creation_tokens": 400}
    # Sonnet: $3 in, $15 out, $0.30 cache read, $3.75 5-minute and $6 1-hour cache writes per million.
    cost, unpriced = got.tally.cost()
    assert cost == pytest.approx((10 * 3 + 5 * 15 + 1000 * 0.3 + 100 * 3.75 + 300 * 6) / 1e6, abs=1e-6)
    assert unpriced == []


def test_codex_cumulative_totals_across_a_resume(tmp_path):
    got = tally_of(FIXTURES / "codex_gamma.jsonl", "codex", tmp_path)
    expected = {k: FIX["codex_gamma"][k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                   "cache_creation_tokens")}
    assert as_numbers(got.tokens) == expected
    assert got.tally.last_model == "stub-model" and len(got.state["events"]) == 3


def test_codex_fork_starts_from_the_sources_totals(tmp_path):
    source = tally_of(FIXTURES / "codex_gamma.jsonl", "codex", tmp_path)
    fork = source.cache.read(FIXTURES / "codex_delta_fork.jsonl", "codex")
    meta = fork["meta"]
    assert meta["forked_from_id"] == FIX["codex_gamma"]["session_id"]
    baseline = CodexSession.total_before(source.state, meta["cut_ordinal"], meta["cut_offset"])
    expected = {k: FIX["codex_delta_fork"][k] for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                                        "cache_creation_tokens")}
    assert as_numbers(CodexSession.tally(fork, baseline).tokens()) == expected
    # Without the source's file, the first answer's own usage gives the same baseline.
    assert as_numbers(CodexSession.tally(fork).tokens()) == expected
    # Reading the fork's totals as if they were its own would count gamma's answers again.
    assert CodexSession.tally(fork, [0, 0, 0, 0]).tokens().output > expected["output_tokens"]


def codex_line(ts: str, total: tuple[int, int, int], last: tuple[int, int, int], ordinal: int) -> str:
    def usage(v):
        return {"input_tokens": v[0], "cached_input_tokens": v[1], "cache_write_input_tokens": 0,
                "output_tokens": v[2], "reasoning_output_tokens": 0, "total_tokens": v[0] + v[2]}

    return json.dumps({"timestamp": ts, "ordinal": ordinal, "type": "event_msg", "payload": {
        "type": "token_count", "info": {"total_token_usage": usage(total), "last_token_usage": usage(last)}}}) + "\n"


def test_codex_repeated_and_reset_totals(tmp_path):
    path = tmp_path / "rollout-x.jsonl"
    path.write_text(
        json.dumps({"type": "session_meta", "payload": {"id": "x", "cwd": "/w"}}) + "\n"
        + json.dumps({"type": "turn_context", "payload": {"model": "gpt-5-codex"}}) + "\n"
        + codex_line("2026-01-01T00:00:00Z", (100, 20, 10), (100, 20, 10), 2)
        + codex_line("2026-01-01T00:00:01Z", (100, 20, 10), (100, 20, 10), 3)  # repeated: nothing new
        + json.dumps({"type": "event_msg", "payload": {"type": "token_count", "info": None}}) + "\n"
        + codex_line("2026-01-01T00:01:00Z", (250, 70, 30), (150, 50, 20), 5)
        + codex_line("2026-01-01T00:02:00Z", (40, 0, 5), (40, 0, 5), 6)  # went down: a new run
    )
    got = tally_of(path, "codex", tmp_path)
    assert as_numbers(got.tokens) == {"input_tokens": 80 + 100 + 40, "output_tokens": 35,
                                      "cache_read_tokens": 70, "cache_creation_tokens": 0}
    cost, unpriced = got.tally.cost()
    assert cost == pytest.approx((220 * 1.25 + 70 * 0.125 + 35 * 10) / 1e6, abs=1e-6) and unpriced == []


def test_prices_by_family_and_unknown_models():
    assert price_for("claude-opus-4-8").input == 5.0
    assert price_for("claude-opus-4-1-20250805").input == 15.0
    assert price_for("claude-opus-4-20250514").input == 15.0
    assert price_for("claude-sonnet-4-5-20250929").output == 15.0
    assert price_for("claude-haiku-4-5").input == 1.0
    assert price_for("claude-3-5-haiku-20241022").input == 0.8
    assert price_for("gpt-5-codex").input == 1.25 and price_for("gpt-5-mini").input == 0.25
    assert price_for("o3").input == 2.0 and price_for("o4-mini").input == 1.1
    assert price_for("stub-model") is None and price_for("") is None


def test_tokens_per_minute_windows():
    tally = usage_mod.Tally()
    now = 10_000.0
    tally.add(now - 3600, "m", usage_mod.Tokens(input=6000))  # an hour ago
    tally.add(now - 120, "m", usage_mod.Tokens(output=500))  # two minutes ago
    tally.add(now - 10, "m", usage_mod.Tokens(cache_read=1000))
    rates = tally.rates(now - 7200, now)
    assert rates == {"last_5m": 1500 / 5, "since_start": 7500 / 120}
    # An agent started 30 s ago: both rates over one minute, not over 30 s or 5 minutes.
    young = usage_mod.Tally()
    young.add(now - 5, "m", usage_mod.Tokens(input=600))
    assert young.rates(now - 30, now) == {"last_5m": 600.0, "since_start": 600.0}


# ---------------------------------------------------------------------- the cache
def test_a_repeated_read_reads_only_appended_whole_lines(tmp_path, monkeypatch):
    data = (FIXTURES / "claude_alpha.jsonl").read_bytes()
    path = tmp_path / "live.jsonl"
    cut = data.index(b'"assistant"', data.index(b'"assistant"') + 1) + 5  # inside the 2nd answer entry
    path.write_bytes(data[:cut])
    cache = UsageCache(tmp_path / "cache.json")
    cache.read(path, "claude")
    first_offset = cache.data["files"][str(path)]["offset"]
    assert first_offset == data.rindex(b"\n", 0, cut) + 1  # the half-written line waits

    read_sizes = []
    real_open = open

    def counting_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if str(file) == str(path):
            original = fh.read

            def read(n=-1):
                out = original(n)
                read_sizes.append(len(out))
                return out

            fh.read = read
        return fh

    monkeypatch.setattr(usage_mod, "open", counting_open, raising=False)
    with real_open(path, "ab") as fh:
        fh.write(data[cut:])
    state = cache.read(path, "claude")
    assert read_sizes == [len(data) - first_offset]  # from the half-written line on, nothing before
    assert as_numbers(ClaudeTranscript.tally(state).tokens())["output_tokens"] == FIX["claude_alpha"]["output_tokens"]
    # Unchanged: not even opened; and the same from the file on disk in a new process.
    read_sizes.clear()
    cache.read(path, "claude")
    cache.save()
    UsageCache._memory.clear()
    again = UsageCache(tmp_path / "cache.json")
    assert again.data["files"][str(path)]["offset"] == len(data)
    again.read(path, "claude")
    assert read_sizes == []


def test_a_replaced_or_truncated_file_is_read_again(tmp_path):
    path = tmp_path / "t.jsonl"
    shutil.copyfile(FIXTURES / "claude_fork_source.jsonl", path)
    cache = UsageCache(tmp_path / "cache.json")
    first = ClaudeTranscript.tally(cache.read(path, "claude")).tokens()
    replacement = tmp_path / "new.jsonl"
    shutil.copyfile(FIXTURES / "claude_alpha.jsonl", replacement)
    os.replace(replacement, path)
    second = ClaudeTranscript.tally(cache.read(path, "claude")).tokens()
    assert second.output == FIX["claude_alpha"]["output_tokens"] != first.output
    path.write_text("")
    assert ClaudeTranscript.tally(cache.read(path, "claude")).tokens().output == 0
    path.unlink()
    assert cache.read(path, "claude") is None and str(path) not in cache.data["files"]


# ---------------------------------------------------------------------- usage_for on a deck
def put_claude(root: Path, session_id: str, fixture: str, folder: str = "-w-alpha") -> Path:
    path = root / "projects" / folder / f"{session_id}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / fixture, path)
    return path


def put_codex(root: Path, session_id: str, fixture: str) -> Path:
    path = root / "sessions" / "2026" / "11" / "26" / f"rollout-2026-11-26T07-14-00-{session_id}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / fixture, path)
    return path


def add_agent(deck: Deck, name: str, kind: str, session_id: str = "", extra: dict | None = None,
              created_at: str = "2026-11-26T07:00:00Z") -> None:
    wt = deck.repo.root.parent / "wt" / name
    deck.store.insert_agent(AgentRecord(
        name=name, slug=name, definition=kind, kind=kind, branch=f"agentdeck/{name}", base_branch="main",
        base_commit="0" * 40, worktree=str(wt), session=f"ad-x-{name}", created_at=created_at,
        session_id=session_id, extra=extra or {}))


@pytest.fixture
def fixture_deck(git_repo, tmp_path, monkeypatch):
    """A deck whose agents' records are the fixture files (no tmux, no CLI needed)."""
    claude_root, codex_root = tmp_path / "claude-config", tmp_path / "codex-home"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(claude_root))
    monkeypatch.setenv("CODEX_HOME", str(codex_root))
    put_claude(claude_root, FIX["claude_alpha"]["session_id"], "claude_alpha.jsonl")
    put_claude(claude_root, FIX["claude_fork_source"]["session_id"], "claude_fork_source.jsonl", "-w-src")
    put_claude(claude_root, FIX["claude_fork"]["session_id"], "claude_fork.jsonl", "-w-fork")
    put_codex(codex_root, FIX["codex_gamma"]["session_id"], "codex_gamma.jsonl")
    put_codex(codex_root, FIX["codex_delta_fork"]["session_id"], "codex_delta_fork.jsonl")
    deck = Deck.open(git_repo)
    add_agent(deck, "alpha", "claude", FIX["claude_alpha"]["session_id"])
    add_agent(deck, "src", "claude", FIX["claude_fork_source"]["session_id"])
    # The fork's SessionStart hook recorded the source's id; its own id is kept in extra.
    add_agent(deck, "fork", "claude", FIX["claude_fork_source"]["session_id"],
              {"fork_session_id": FIX["claude_fork_source"]["session_id"], "forked_from": "src",
               "fork_own_session_id": FIX["claude_fork"]["session_id"]})
    add_agent(deck, "gamma", "codex", FIX["codex_gamma"]["session_id"])
    add_agent(deck, "delta", "codex", FIX["codex_delta_fork"]["session_id"],
              {"fork_session_id": FIX["codex_gamma"]["session_id"], "forked_from": "gamma"})
    add_agent(deck, "fresh", "claude", "00000000-0000-4000-8000-000000000000")
    add_agent(deck, "old-codex", "codex", "")
    add_agent(deck, "helper", "aider")
    yield deck
    deck.close()


def expected_of(key: str) -> dict[str, int]:
    return {k: FIX[key][k] for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")}


def test_usage_for_every_agent_and_the_total(fixture_deck):
    now = parse_iso("2026-11-26T07:16:00Z")
    report = usage_for(fixture_deck, now=now)
    by = {a["name"]: a for a in report["agents"]}
    assert numbers(by["alpha"]) == expected_of("claude_alpha")
    assert numbers(by["src"]) == expected_of("claude_fork_source")
    assert numbers(by["fork"]) == expected_of("claude_fork")
    assert numbers(by["gamma"]) == expected_of("codex_gamma")
    assert numbers(by["delta"]) == expected_of("codex_delta_fork")
    for name in ("fresh", "old-codex", "helper"):
        row = by[name]
        assert row["input_tokens"] is None and row["cost_usd"] is None and row["tokens_per_minute"] is None
        assert row["reason"]
    assert "transcript" in by["fresh"]["reason"] and "aider" in by["helper"]["reason"]
    assert "conversation id" in by["old-codex"]["reason"]
    counted = ("alpha", "src", "fork", "gamma", "delta")
    for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"):
        assert report["total"][key] == sum(by[n][key] for n in counted)
    assert report["total"]["agents"] == 8 and report["total"]["agents_counted"] == 5
    # Claude answers are priced (Opus 4.8 as Opus 4.5+), the stub's Codex model is not.
    assert by["alpha"]["cost_usd"] > 0 and by["gamma"]["cost_usd"] is None
    assert by["gamma"]["unpriced_models"] == ["stub-model"]
    assert report["total"]["cost_usd"] == pytest.approx(sum(by[n]["cost_usd"] or 0 for n in counted), abs=1e-5)
    assert report["total"]["unpriced_models"] == ["stub-model"]
    alpha = expected_of("claude_alpha")
    one_hour = sum({e["message"]["id"]: e["message"]["usage"]["cache_creation"]["ephemeral_1h_input_tokens"]
                    for e in map(json.loads, (FIXTURES / "claude_alpha.jsonl").read_text().splitlines())
                    if e.get("type") == "assistant"}.values())
    assert 0 < one_hour < alpha["cache_creation_tokens"]
    # Opus 4.5+: $5 in, $25 out, $0.50 cache read, $6.25 5-minute and $10 1-hour cache writes per million.
    assert by["alpha"]["cost_usd"] == pytest.approx(
        (alpha["input_tokens"] * 5 + alpha["output_tokens"] * 25 + alpha["cache_read_tokens"] * 0.5
         + (alpha["cache_creation_tokens"] - one_hour) * 6.25 + one_hour * 10) / 1e6, abs=1e-6)
    assert by["alpha"]["model"] == FIX["claude_alpha"]["model"]
    assert by["alpha"]["source"] == "claude-code transcript" and by["gamma"]["source"] == "codex session file"
    # All fixture answers fell within the 16 minutes since 07:00.
    total_tokens = sum(by[n]["total_tokens"] for n in counted)
    assert report["total"]["tokens_per_minute"]["since_start"] == pytest.approx(total_tokens / 16, abs=0.1)
    assert by["alpha"]["tokens_per_minute"]["last_5m"] == 0  # its answers are from 07:10
    assert by["fork"]["tokens_per_minute"]["last_5m"] > 0  # 07:15


def parse_iso(text: str) -> float:
    return usage_mod.parse_ts(text)


def test_usage_for_named_agents_and_unknown_names(fixture_deck):
    from agentdeck.errors import UsageError

    report = usage_for(fixture_deck, ["gamma"])
    assert [a["name"] for a in report["agents"]] == ["gamma"]
    assert numbers(report["total"]) == expected_of("codex_gamma")
    with pytest.raises(UsageError):
        usage_for(fixture_deck, ["nobody"])


def test_a_clear_or_new_conversation_reported_by_hooks_keeps_counting(fixture_deck):
    """An agent's conversations are its recorded id plus those its hooks reported."""
    add_agent(fixture_deck, "cleared", "claude", FIX["claude_fork_source"]["session_id"])
    fixture_deck.store.add_event("cleared", "hook", "hook", detail={"event": "SessionStart",
                                                                    "session_id": FIX["claude_alpha"]["session_id"]})
    row = usage_for(fixture_deck, ["cleared"])["agents"][0]
    expected = expected_of("claude_alpha")
    source = expected_of("claude_fork_source")
    assert numbers(row) == {k: expected[k] + source[k] for k in expected}
    assert len(row["files"]) == 2


def test_thirty_agents_second_call_reads_nothing(git_repo, tmp_path, monkeypatch):
    root = tmp_path / "claude-config"
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(root))
    deck = Deck.open(git_repo)
    for n in range(30):
        sid = f"00000000-0000-4000-8000-{n:012d}"
        put_claude(root, sid, "claude_alpha.jsonl", f"-w-a{n}")
        add_agent(deck, f"a{n}", "claude", sid)
    opened = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(usage_mod, "open", counting_open, raising=False)
    first = usage_for(deck)
    assert first["total"]["output_tokens"] == 30 * FIX["claude_alpha"]["output_tokens"]
    assert len([p for p in opened if p.endswith(".jsonl")]) == 30
    opened.clear()
    UsageCache._memory.clear()  # as a new process would: the cache file on disk is enough
    second = usage_for(deck)
    # "reads nothing" is the opened files, not the clock (a wall-time bound flakes on a loaded machine)
    assert [p for p in opened if p.endswith(".jsonl")] == []
    assert second["total"] == first["total"] or numbers(second["total"]) == numbers(first["total"])
    deck.close()


def test_usage_cli_table_json_and_errors(fixture_deck):
    repo = fixture_deck.repo.root
    proc = run_usage_cli("usage", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    for row in data["agents"]:
        for key in ("name", "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens",
                    "cost_usd", "tokens_per_minute", "model", "source"):
            assert key in row
    assert numbers({a["name"]: a for a in data["agents"]}["gamma"]) == expected_of("codex_gamma")
    proc = run_usage_cli("usage", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["AGENT", "MODEL", "INPUT"]
    alpha = next(line for line in lines if line.startswith("alpha "))
    assert FIX["claude_alpha"]["model"] in alpha and "$" in alpha
    assert any(line.startswith("TOTAL") for line in lines)
    assert any(line.strip().startswith("helper:") and "aider" in line for line in lines)
    assert any("no price known for stub-model" in line for line in lines)
    proc = run_usage_cli("usage", "nobody", "--json", cwd=repo)
    assert proc.returncode == 2 and "nobody" in proc.stderr and "error" in json.loads(proc.stdout)


# ====================================================================== real CLIs
@pytest.mark.slow
@pytest.mark.realcli
@pytest.mark.timeout(240)
def test_real_claude_usage_equals_what_the_stub_reported(git_repo, isolated_home, tmp_path):
    claude = require_cli("claude")
    home = tmp_path / "claude-home"
    seed_claude_home(home)
    with MeteredAnthropicStub() as stub:
        write_agent_config(isolated_home, "claude", claude, claude_env(home, stub.url))
        # One answer with two content blocks (text + a tool call that needs no permission), the
        # tool turn's answer, then a second prompt's answer.
        stub.when(lambda r: r.is_tool_turn, AReply.text("Found README.md."))
        stub.when("list the markdown files", AReply.tool("Glob", {"pattern": "*.md"}, text="Looking for them."))
        stub.when("say goodbye", AReply.text("Goodbye."))
        proc = run_cli("new", "alpha", "--agent", "claude", "--prompt", "please list the markdown files",
                       "--json", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        session_id = json.loads(proc.stdout)["session_id"]
        retry_until(lambda: len(stub.main_reported()) >= 2, timeout=90, what="the tool turn")
        wait_status(git_repo, "alpha", "idle")
        before = len(stub.main_reported())
        assert run_cli("send", "alpha", "now say goodbye", cwd=git_repo).returncode == 0
        wait_turn(git_repo, stub, before, "alpha")

        reported = stub.main_reported()
        assert len(reported) == 3, [r.prompt for r in reported]
        transcript = next((home / ".claude" / "projects").glob(f"*/{session_id}.jsonl"))
        row = retry_until(lambda: (lambda r: r if r["output_tokens"] == claude_expected(reported)["output_tokens"]
                                   else None)(usage_row(git_repo, "alpha")), timeout=20, what="all answers written")
        assert numbers(row) == claude_expected(reported)
        assert row["model"] == reported[-1].model and row["source"] == "claude-code transcript"
        assert row["files"] == [str(transcript)]
        assert row["cost_usd"] > 0 and row["reason"] is None
        assert row["tokens_per_minute"]["last_5m"] > 0 and row["tokens_per_minute"]["since_start"] > 0
        # The two-block answer was written as two entries with one message id: counted once.
        ids = [json.loads(line)["message"]["id"] for line in transcript.read_text().splitlines()
               if '"assistant"' in line and json.loads(line).get("type") == "assistant"]
        assert len(ids) > len(set(ids)) == 3, ids
        # The stub's side requests (no tools) are not in the transcript, and not counted.
        total = usage_json(git_repo)["total"]
        assert numbers(total) == numbers(row) and total["agents_counted"] == 1
        save_fixtures({"claude_alpha.jsonl": transcript},
                      {"claude_alpha": {"session_id": session_id, **claude_expected(reported),
                                        "model": reported[-1].model}})


@pytest.mark.slow
@pytest.mark.realcli
@pytest.mark.timeout(300)
def test_real_codex_usage_across_resume_and_fork_equals_what_the_stub_reported(git_repo, isolated_home, tmp_path):
    """Codex's token_count totals are cumulative per thread, go on after `codex resume`, and
    start from the source's totals in a `codex fork`: each agent counts only its own answers."""
    codex = require_cli("codex")
    home = tmp_path / "codex-home"
    with MeteredOpenAIStub() as stub:
        seed_codex_home(home, stub.url)
        write_agent_config(isolated_home, "codex", codex, codex_env(home))
        for word in ("first", "second", "third", "fourth"):
            stub.when(f"{word} question", OReply.text(f"{word.capitalize()} answer."))

        proc = run_cli("new", "gamma", "--agent", "codex", "--prompt", "first question", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        wait_turn(git_repo, stub, 0, "gamma")
        session_id = retry_until(lambda: agent(git_repo, "gamma")["session_id"], timeout=20, what="session id")
        before = len(stub.main_reported())
        assert run_cli("send", "gamma", "second question", cwd=git_repo).returncode == 0
        wait_turn(git_repo, stub, before, "gamma")
        # Restart: `codex resume` appends to the same file; its totals go on from the old ones.
        assert run_cli("restart", "gamma", cwd=git_repo).returncode == 0
        wait_status(git_repo, "gamma", "idle")
        before = len(stub.main_reported())
        assert run_cli("send", "gamma", "third question", cwd=git_repo).returncode == 0
        wait_turn(git_repo, stub, before, "gamma")
        gamma_reported = stub.main_reported()
        assert [r.prompt for r in gamma_reported] == ["first question", "second question", "third question"]

        # Fork: the new thread's totals start at gamma's.
        before = len(stub.main_reported())
        proc = run_cli("fork", "gamma", "delta", "--prompt", "fourth question", "--json", cwd=git_repo)
        assert proc.returncode == 0, proc.stderr
        wait_turn(git_repo, stub, before, "delta")
        delta_reported = stub.main_reported()[before:]
        assert [r.prompt for r in delta_reported] == ["fourth question"]
        # The fork's request carried gamma's conversation.
        history = json.dumps(stub.requests[-1].body.get("input")) if stub.requests else ""
        assert "first question" in history and "third question" in history

        files = sorted((home / ".codex" / "sessions").glob("*/*/*/rollout-*.jsonl"))
        gamma_file = next(f for f in files if session_id in f.name)
        delta_id = retry_until(lambda: agent(git_repo, "delta")["session_id"], timeout=20, what="fork's id")
        assert delta_id != session_id
        delta_file = next(f for f in files if delta_id in f.name)

        def rows():
            data = usage_json(git_repo)
            by = {a["name"]: a for a in data["agents"]}
            ok = (by["gamma"]["output_tokens"] == codex_expected(gamma_reported)["output_tokens"]
                  and by["delta"]["output_tokens"] == codex_expected(delta_reported)["output_tokens"])
            return (by, data["total"]) if ok else None

        by, total = retry_until(rows, timeout=20, what="usage of both agents")
        assert numbers(by["gamma"]) == codex_expected(gamma_reported)
        assert numbers(by["delta"]) == codex_expected(delta_reported)
        assert numbers(total) == codex_expected(gamma_reported + delta_reported)
        assert by["gamma"]["files"] == [str(gamma_file)] and by["delta"]["files"] == [str(delta_file)]
        assert by["gamma"]["model"] == "stub-model" and by["gamma"]["cost_usd"] is None
        assert by["gamma"]["unpriced_models"] == ["stub-model"]
        save_fixtures({"codex_gamma.jsonl": gamma_file, "codex_delta_fork.jsonl": delta_file},
                      {"codex_gamma": {"session_id": session_id, **codex_expected(gamma_reported)},
                       "codex_delta_fork": {"session_id": delta_id, **codex_expected(delta_reported)}})
