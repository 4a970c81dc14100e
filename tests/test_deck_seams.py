"""The deck's seams (issue 13): the package's layout, ``DeckLike`` over one and several
repositories, ``KillResult``'s JSON, and a ``Notifier`` that needs no deck."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from support import make_repo, retry_until, run_cli

import agentdeck
from agentdeck.config import NotifySettings
from agentdeck.deck import Deck, DeckLike, KillResult
from agentdeck.notify import Notifier
from agentdeck.store import AgentRecord, Store, utc_iso
from agentdeck.tmux import Tmux
from agentdeck.tui.multideck import MultiDeck, is_multi, plain_decks

DECK_DIR = Path(agentdeck.__file__).parent / "deck"


def test_every_deck_module_stays_under_500_lines():
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in DECK_DIR.glob("*.py")}
    assert {"base.py", "launch.py", "lifecycle.py", "removal.py", "maintenance.py"} <= set(sizes), sizes
    assert max(sizes.values()) <= 500, sizes


def test_notify_does_not_import_the_deck():
    """Not even for type checking (that import made a cycle: deck -> status -> notify -> deck)."""
    source = Path(agentdeck.__file__).with_name("notify.py").read_text(encoding="utf-8")
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not {m for m in imported if m == "agentdeck.deck" or m.startswith("agentdeck.deck.")}, imported
    code = "import sys, agentdeck.notify; print(sorted(m for m in sys.modules if m.startswith('agentdeck.deck')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_notifier_works_from_a_store_and_tmux_alone(tmp_path):
    store = Store(tmp_path / "state.db")
    tmux = Tmux(os.environ["AGENTDECK_TMUX_SOCKET"], tmp_path)
    tmux.new_session("notify-test", tmp_path, ["sleep", "30"])
    store.insert_agent(AgentRecord(name="alpha", slug="alpha", definition="fake", kind="fake",
                                   branch="agentdeck/alpha", base_branch="main", base_commit="0" * 40,
                                   worktree=str(tmp_path / "wt"), session="ad-x-alpha", created_at=utc_iso()))
    notifier = Notifier(store, tmux, NotifySettings(desktop=False, tmux_status=True))
    store.set_status("alpha", "waiting", "test")
    notifier.update()
    line = tmux.cmd("show-options", "-gv", "status-right")
    assert any("1 waiting: alpha" in part for part in line), line
    store.set_status("alpha", "idle", "test")
    notifier.update()
    assert tmux.cmd("show-options", "-gv", "status-right") == ["agentdeck · detach: C-b d"]
    store.close()


def _protocol_members() -> set[str]:
    return {n for n in vars(DeckLike) if not n.startswith("_")} | set(getattr(DeckLike, "__annotations__", {}))


def test_deck_and_multideck_have_every_decklike_member(git_repo, tmp_path):
    other = make_repo(tmp_path / "other", {"README.md": "# other\n"})
    one, two = Deck.open(git_repo), Deck.open(other)
    multi = MultiDeck([one, two])
    try:
        members = _protocol_members()
        assert {"multi", "by_repo", "kill", "new", "data_version", "reopen"} <= members
        for deck in (one, multi):
            missing = sorted(m for m in members if not hasattr(deck, m))
            assert not missing, (type(deck).__name__, missing)
    finally:
        multi.close()


def test_one_repository_and_several_answer_the_same_questions(git_repo, tmp_path):
    other = make_repo(tmp_path / "other", {"README.md": "# other\n"})
    single = Deck.open(git_repo)
    try:
        assert not is_multi(single) and single.multi is False
        assert plain_decks(single) == [("", single)] and single.deck_of("x") is single
        assert (single.key("", "a/b"), single.plain_name("a/b"), single.label_of("a/b")) == ("a/b", "a/b", "")
        assert single.title() == git_repo.name and len(single.data_version()) == 1
        again = single.reopen()
        assert type(again) is Deck and again is not single and again.repo.root == single.repo.root
        again.close()
    finally:
        single.close()
    decks = [Deck.open(git_repo), Deck.open(other)]
    multi = MultiDeck(decks, labels=["repo", "other"])
    try:
        assert is_multi(multi) and plain_decks(multi) == [("repo", decks[0]), ("other", decks[1])]
        key = multi.key("other", "a/b")
        assert key == "other/a/b" and multi.plain_name(key) == "a/b" and multi.label_of(key) == "other"
        assert multi.deck_of(key) is decks[1]
        assert multi.current is decks[0]
        multi.focus_on(key)
        assert multi.current is decks[1] and multi.repo.root == other.resolve()
        assert len(multi.data_version()) == 2
        copy = multi.reopen()  # another thread's: new Decks, the same labels and focus
        assert copy.labels == multi.labels and copy.focus is multi.focus
        assert all(a is not b for a, b in zip(copy.decks.values(), decks))
        copy.close()
    finally:
        multi.close()


def test_kill_json_is_the_contracts_object(fake_repo):
    assert run_cli("new", "solo", cwd=fake_repo).returncode == 0
    out = run_cli("kill", "solo", "--json", cwd=fake_repo)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert list(data) == ["name", "removed", "kept", "recovery_ref", "uncommitted", "commits"]
    assert data == {"name": "solo", "removed": True, "kept": False, "recovery_ref": None, "uncommitted": 0,
                    "commits": 0}
    assert KillResult(name="solo", removed=True).to_json() == data


def test_kill_result_through_the_multideck_keeps_the_plain_name(fake_repo):
    deck = Deck.open(fake_repo)
    multi = MultiDeck([deck], labels=["repo"])
    try:
        rec = multi.new("mk")
        assert rec.name == "repo/mk"
        retry_until(lambda: multi.get("repo/mk").status != "starting", timeout=15, what="mk started")
        result = multi.kill("repo/mk")
        assert isinstance(result, KillResult) and result.name == "mk" and result.removed
    finally:
        multi.close()


def test_gc_json_keeps_its_keys(git_repo):
    out = run_cli("gc", "--yes", "--json", cwd=git_repo)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert list(data["plan"]) == ["worktrees", "sessions", "refs", "prune", "agents", "trash"]
    assert list(data["done"]) == ["worktrees", "sessions", "refs", "pruned", "agents", "trash", "saved"]
    assert all(v == [] for part in data.values() for v in part.values()), data
