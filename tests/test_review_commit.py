"""commit: hooks run (and can refuse, leaving everything as it was); messages from [llm] or a summary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from review_support import FakeDeck, StubLLM, add_agent, state_of, write
from support import git, make_repo

from agentdeck.config import LlmSettings
from agentdeck.errors import Refused
from agentdeck.review import Review
from agentdeck.review.commit import (
    clean_message,
    commit_worktree,
    default_client_factory,
    llm_message,
    summary_message,
    write_message,
)
from agentdeck.review.diff import compute_diff


def _hook(root: Path, name: str, script: str) -> None:
    hooks = Path(git(root, "rev-parse", "--git-common-dir"))
    if not hooks.is_absolute():
        hooks = root / hooks
    path = hooks / "hooks" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def _work(tmp_path: Path, ignore=frozenset({".env"})):
    root = make_repo(tmp_path / "repo", {"README.md": "# t\n", "src/a.py": "x = 1\n"})
    side = add_agent(root, "one", ignore=ignore)
    write(side.worktree / "src/a.py", "x = 2\n")
    write(side.worktree / "src/b.py", "y = 1\n")
    write(side.worktree / ".env", "SECRET=1\n")
    return root, side


def test_commit_takes_everything_but_copied_files_and_leaves_a_clean_index(tmp_path):
    _root, side = _work(tmp_path)
    git(side.worktree, "add", "src/a.py")  # partly staged beforehand: still all committed
    result = commit_worktree(side.worktree, "Agent work\n", side.ignore, agent="one")
    assert result.commit == git(side.worktree, "rev-parse", "HEAD")
    assert sorted(result.files) == ["src/a.py", "src/b.py"]
    assert git(side.worktree, "log", "-1", "--format=%s") == "Agent work"
    assert git(side.worktree, "status", "--porcelain", "--untracked-files=all") == "?? .env"
    assert git(side.worktree, "ls-files", ".env") == ""
    with pytest.raises(Refused, match="nothing to commit"):
        commit_worktree(side.worktree, "again", side.ignore, agent="one")


def test_hooks_run(tmp_path):
    root, side = _work(tmp_path)
    _hook(root, "commit-msg", 'printf "\\nReviewed-by: hook\\n" >> "$1"\n')
    _hook(root, "pre-commit", 'echo ran > "$(git rev-parse --git-common-dir)/pre-commit-ran"\n')
    commit_worktree(side.worktree, "With hooks", side.ignore)
    assert "Reviewed-by: hook" in git(side.worktree, "log", "-1", "--format=%B")
    assert (Path(git(root, "rev-parse", "--absolute-git-dir")) / "pre-commit-ran").exists()


def test_a_rejecting_hook_refuses_with_its_message_and_nothing_is_half_done(tmp_path):
    root, side = _work(tmp_path)
    git(side.worktree, "add", "src/a.py")
    _hook(root, "pre-commit", 'echo "lint: src/b.py: line too long" >&2\nexit 1\n')
    before = state_of(root, side.worktree)
    with pytest.raises(Refused, match=r"refused: lint: src/b\.py: line too long; nothing was committed"):
        commit_worktree(side.worktree, "Will be rejected", side.ignore, agent="one")
    assert state_of(root, side.worktree) == before  # HEAD, refs, status and the index bytes
    leftovers = [p.name for p in Path(git(side.worktree, "rev-parse", "--absolute-git-dir")).iterdir()
                 if p.name.startswith("agentdeck") or p.name.endswith(".lock")]
    assert leftovers == []


def test_summary_messages(tmp_path):
    _root, side = _work(tmp_path)
    (side.worktree / "README.md").unlink()
    message = summary_message(compute_diff(side, patch=False).files)
    subject, _, body = message.partition("\n\n")
    assert subject == "Update README.md, a.py and b.py"
    assert "Added: src/b.py" in body and "Modified: src/a.py" in body and "Deleted: README.md" in body
    root2 = make_repo(tmp_path / "r2")
    side2 = add_agent(root2, "two")
    write(side2.worktree / "new.txt", "n\n")
    assert summary_message(compute_diff(side2).files) == "Add new.txt\n"
    assert clean_message("```\nFix it\n```") == "Fix it\n"
    assert clean_message('"Fix it"') == "Fix it\n"


def test_llm_message_anthropic_through_the_default_factory_and_a_stub(tmp_path, monkeypatch):
    _root, side = _work(tmp_path)
    monkeypatch.setenv("STUB_KEY", "sk-test-123")
    with StubLLM(reply="```\nSwitch x to 2 and add b\n\nBecause.\n```") as stub:
        settings = LlmSettings(provider="anthropic", model="claude-stub", base_url=stub.url, api_key_env="STUB_KEY")
        message = llm_message(settings, compute_diff(side))
    assert message == "Switch x to 2 and add b\n\nBecause.\n"
    (req,) = stub.requests
    assert req["path"] == "/v1/messages" and req["body"]["model"] == "claude-stub"
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert "sk-test-123" in (headers.get("x-api-key", "") + headers.get("authorization", ""))
    prompt = req["body"]["messages"][0]["content"]
    assert "src/a.py" in prompt and "+x = 2" in prompt and "SECRET" not in prompt


def test_llm_message_openai_through_an_injected_factory(tmp_path):
    import openai

    _root, side = _work(tmp_path)
    made = []
    with StubLLM(reply="Add b.py") as stub:
        def factory(settings):
            made.append(settings.provider)
            return openai.OpenAI(api_key="k", base_url=stub.url + "/v1", max_retries=0)

        settings = LlmSettings(provider="openai", model="gpt-stub")
        message, source, warning = write_message(compute_diff(side), settings, factory)
    assert (message, source, warning) == ("Add b.py\n", "llm", "")
    assert made == ["openai"]
    assert stub.requests[0]["path"] == "/v1/chat/completions"
    assert stub.requests[0]["body"]["messages"][0]["role"] == "system"


def test_llm_failure_falls_back_to_the_summary(tmp_path):
    _root, side = _work(tmp_path)
    with StubLLM(status=500) as stub:
        settings = LlmSettings(provider="openai", model="m", base_url=stub.url + "/v1")
        message, source, warning = write_message(compute_diff(side), settings,
                                                 lambda s: __import__("openai").OpenAI(
                                                     api_key="k", base_url=s.base_url, max_retries=0))
    assert source == "summary" and message.startswith("Update a.py and b.py")
    assert "[llm] could not write the message" in warning
    assert write_message(compute_diff(side), LlmSettings(), None)[1] == "summary"  # no model configured


def test_default_factory_needs_a_key_without_base_url(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(Refused, match=r"\$ANTHROPIC_API_KEY"):
        default_client_factory(LlmSettings(provider="anthropic", model="m"))


def test_review_commit_without_message_uses_the_configured_model(tmp_path, monkeypatch):
    root, side = _work(tmp_path)
    with StubLLM(reply="Bump x and add b") as stub:
        write(root / ".agentdeck.toml",
              f'[llm]\nprovider = "anthropic"\nmodel = "claude-stub"\nbase_url = "{stub.url}"\n')
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        deck = FakeDeck(root, tmp_path)
        deck.add("one", side, copied={".env"})
        result = Review(deck).commit("one")
    assert result.message_source == "llm" and result.subject == "Bump x and add b"
    assert git(side.worktree, "log", "-1", "--format=%s") == "Bump x and add b"
    assert [e["type"] for e in deck.store.events("one")][-1] == "commit"
    with pytest.raises(Refused, match="one has nothing to commit"):
        Review(deck).commit("one")
    assert os.environ.get("ANTHROPIC_API_KEY") == "k"


def test_review_commit_without_model_uses_a_summary(tmp_path):
    root, side = _work(tmp_path)
    deck = FakeDeck(root, tmp_path)
    deck.add("one", side, copied={".env"})
    result = Review(deck).commit("one")
    assert result.message_source == "summary" and result.subject == "Update a.py and b.py"
    result_m = None
    write(side.worktree / "c.txt", "c\n")
    result_m = Review(deck).commit("one", "Given message")
    assert result_m.message_source == "given" and result_m.files == ["c.txt"]


def test_copied_files_ignored_by_git_or_not_are_never_committed(tmp_path):
    root = make_repo(tmp_path / "repo", {"README.md": "# t\n", ".gitignore": ".env\n"})
    side = add_agent(root, "one", ignore=frozenset({".env", "local.cfg"}))
    write(side.worktree / ".env", "SECRET=1\n")  # ignored by .gitignore
    write(side.worktree / "local.cfg", "mine\n")  # not ignored
    write(side.worktree / "work.txt", "w\n")
    assert compute_diff(side).paths == ["work.txt"]
    result = commit_worktree(side.worktree, "Work", side.ignore)
    assert result.files == ["work.txt"]
    assert git(side.worktree, "status", "--porcelain") == "?? local.cfg"
