"""A ``bwrap`` agent through the deck's life cycle: kill, kill --discard, gc, commit, restart.

Real bubblewrap, real git, real tmux on the test's own socket, the generic agent (an
interactive bash inside the sandbox).  A sandboxed agent's commits live in its own
repository until agentdeck brings them back: every removal must bring them back (or keep
them under a recovery ref) before it decides or deletes anything, and leave no sandbox
folder behind — also after a ``kill -9`` at any of its steps.
"""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from support import git, make_repo, retry_until, run_cli

from agentdeck.sandbox import agent_bwrap as ab
from agentdeck.sandbox import probe

pytestmark = pytest.mark.skipif(not probe().works, reason=f"bubblewrap does not work here: {probe().reason}")

CONFIG = ('[deck]\ndefault_agent = "sh"\n\n[agents.sh]\nkind = "generic"\n'
          'command = "bash --norc --noprofile -i"\n')


@pytest.fixture
def repo_dir(tmp_path) -> Path:
    return make_repo(tmp_path / "repo", {"README.md": "# r\n", ".agentdeck.toml": CONFIG})


@pytest.fixture
def deck(repo_dir):
    from agentdeck.deck import Deck

    d = Deck.open(repo_dir)
    yield d
    d.close()


_runs = iter(range(1, 1_000_000))


def inside(deck, name: str, script: str) -> None:
    """Run *script* in agent *name*'s pane (inside its sandbox) and wait until it has finished."""
    n = next(_runs)
    deck.send(name, f"{script}; echo DONE-$((1000+{n}))", force=True)
    retry_until(lambda: f"DONE-{1000 + n}" in deck.peek(name), timeout=30, what=f"{script!r} in {name}")


def agent_commits(deck, name: str, filename: str, subject: str) -> None:
    inside(deck, name, f"echo {subject} > {filename} && git add {filename} && git commit -qm {subject}")


def subjects(repo_dir: Path, ref: str) -> list[str]:
    return git(repo_dir, "log", "--format=%s", ref).splitlines()


def branches(repo_dir: Path) -> set[str]:
    return set(git(repo_dir, "branch", "--format=%(refname:short)").split())


def sandbox_dir(repo_dir: Path, name: str) -> Path:
    return repo_dir / ".git" / "agentdeck" / ab.SANDBOXES / name


def refs_containing(repo_dir: Path, sha: str) -> list[str]:
    return git(repo_dir, "for-each-ref", "--contains", sha, "--format=%(refname)").split()


def test_kill_refuses_sandbox_commits_and_discard_keeps_a_ref_and_removes_the_sandbox(deck, repo_dir):
    rec = deck.new("w1", sandbox="bwrap")
    agent_commits(deck, "w1", "work.txt", "from-agent")
    assert "from-agent" not in subjects(repo_dir, rec.branch)  # still only in the sandbox

    result = deck.kill("w1")
    assert result.kept and not result.removed and result.commits == 1
    assert subjects(repo_dir, rec.branch)[0] == "from-agent"  # brought back before the check
    assert sandbox_dir(repo_dir, "w1").is_dir() and Path(rec.worktree).is_dir()

    result = deck.kill("w1", discard=True)
    assert result.removed and result.recovery_ref
    assert subjects(repo_dir, result.recovery_ref)[0] == "from-agent"
    assert git(repo_dir, "show", f"{result.recovery_ref}:work.txt") == "from-agent"
    assert rec.branch not in branches(repo_dir)  # deleted, and not brought back by the sandbox
    assert not sandbox_dir(repo_dir, "w1").exists() and not Path(rec.worktree).exists()
    assert ab.guard(rec.worktree) == [] and ab.load(deck.repo, "w1") is None


def test_a_diverged_sandbox_is_unmerged_work_and_its_own_tip_is_kept(deck, repo_dir):
    rec = deck.new("w1", sandbox="bwrap")
    agent_commits(deck, "w1", "mine.txt", "agent-side")
    sb = ab.load(deck.repo, "w1")
    agent_tip = (sb.git_dir / "refs" / "heads" / rec.branch).read_text().strip()
    # The host's branch moves elsewhere meanwhile (a commit made on the host, not the agent's).
    tree = git(repo_dir, "rev-parse", f"{rec.base_commit}^{{tree}}")
    other = git(repo_dir, "commit-tree", tree, "-p", rec.base_commit, "-m", "host-side")
    git(repo_dir, "update-ref", f"refs/heads/{rec.branch}", other)
    assert ab.sync_back(sb) == "diverged"

    assert deck.kill("w1").kept  # its own commits are nowhere else: refused without --discard
    assert sandbox_dir(repo_dir, "w1").is_dir()
    result = deck.kill("w1", discard=True)
    assert result.removed
    kept = [r for r in refs_containing(repo_dir, agent_tip) if r.startswith("refs/agentdeck/trash/w1-sandbox/")]
    assert kept and git(repo_dir, "show", f"{kept[0]}:mine.txt") == "agent-side"
    assert refs_containing(repo_dir, other)  # the host's side is in the recovery ref too
    assert not sandbox_dir(repo_dir, "w1").exists() and rec.branch not in branches(repo_dir)


def test_gc_removes_leftover_sandbox_folders_keeping_commits_no_ref_reaches(deck, repo_dir):
    rec = deck.new("w1", sandbox="bwrap")
    agent_commits(deck, "w1", "a.txt", "left-behind")
    tip = (ab.load(deck.repo, "w1").git_dir / "refs" / "heads" / rec.branch).read_text().strip()
    base = sandbox_dir(repo_dir, "w1").parent
    shutil.copytree(base / "w1", base / "ghost", symlinks=True)  # as a removal interrupted after its row went
    (base / "half").mkdir()  # as a first prepare interrupted before its record
    (base / "half" / "junk").write_text("x")
    (base / "half" / "ro").mkdir()
    (base / "half" / "ro" / "f").write_text("y")
    (base / "half" / "ro").chmod(0o500)  # the agent may chmod its own folders
    result = deck.kill("w1", discard=True)
    assert result.removed and not (base / "w1").exists()
    git(repo_dir, "update-ref", "-d", result.recovery_ref)  # now only the leftover holds that commit
    assert not refs_containing(repo_dir, tip)

    doctor = run_cli("doctor", cwd=repo_dir)
    assert str(base / "ghost") in doctor.stdout and str(base / "half") in doctor.stdout
    plan = deck.gc_plan()
    assert {str(base / "ghost"), str(base / "half")} <= set(plan.trash)
    done = deck.gc(plan)
    assert not (base / "ghost").exists() and not (base / "half").exists()
    saved = [r for r in done.saved if r.startswith("refs/agentdeck/trash/ghost-sandbox/")]
    assert saved and git(repo_dir, "show", f"{saved[0]}:a.txt") == "left-behind"
    assert rec.branch not in branches(repo_dir)  # gc never syncs an orphan (its branch was deleted)
    assert deck.gc_plan().total() == 0


def test_commit_on_the_host_then_the_agent_commits_again_fast_forward(deck, repo_dir):
    rec = deck.new("w1", sandbox="bwrap")
    inside(deck, "w1", "echo one > one.txt")
    result = deck.review.commit("w1", "host-commit")
    assert result.warning == "" and result.files == ["one.txt"]
    assert subjects(repo_dir, rec.branch)[0] == "host-commit"
    sb = ab.load(deck.repo, "w1")
    assert (sb.git_dir / "refs" / "heads" / rec.branch).read_text().strip() == result.commit  # followed
    inside(deck, "w1", "git status --porcelain | wc -l | sed 's/^/DIRTY-/' > /tmp/st; cat /tmp/st")
    assert "DIRTY-0" in deck.peek("w1")  # the agent's index followed the host's too
    agent_commits(deck, "w1", "two.txt", "agent-again")
    assert ab.sync_back(sb) == "fast-forward"
    assert subjects(repo_dir, rec.branch)[:2] == ["agent-again", "host-commit"]


def test_restart_keeps_the_sandbox_and_brings_commits_back(deck, repo_dir):
    rec = deck.new("w1", sandbox="bwrap")
    agent_commits(deck, "w1", "r.txt", "before-restart")
    sb = ab.load(deck.repo, "w1")
    (sb.home / "marker").write_text("kept\n")
    deck.restart("w1")
    again = ab.load(deck.repo, "w1")
    assert again is not None and again.token == sb.token and (again.home / "marker").read_text() == "kept\n"
    assert subjects(repo_dir, rec.branch)[0] == "before-restart"
    assert ab.guard(rec.worktree)
    inside(deck, "w1", 'echo "HOME-IS-$HOME UID-$(id -u)"')
    screen = deck.peek("w1")
    assert f"HOME-IS-{sb.home}" in screen and "UID-0" not in screen  # still inside its sandbox
    agent_commits(deck, "w1", "s.txt", "after-restart")
    assert ab.sync_back(again) == "fast-forward"


@pytest.mark.parametrize("point", ["kill.sandbox_synced", "kill.after_ref", "kill.worktree_moved",
                                   "kill.removing_files"])
def test_kill_9_at_any_step_loses_no_commit_and_the_next_run_finishes(deck, repo_dir, point):
    rec = deck.new("w1", sandbox="bwrap")
    agent_commits(deck, "w1", "k.txt", "precious")
    tip = (ab.load(deck.repo, "w1").git_dir / "refs" / "heads" / rec.branch).read_text().strip()
    out = run_cli("kill", "w1", "--discard", cwd=repo_dir, env={"AGENTDECK_FAULT": point})
    assert out.returncode == -signal.SIGKILL, out.stderr
    assert refs_containing(repo_dir, tip)  # on its branch or under a recovery ref
    if point == "kill.sandbox_synced":  # nothing decided yet: a plain kill refuses, --discard finishes
        assert json.loads(run_cli("kill", "w1", "--json", cwd=repo_dir).stdout)["kept"]
        out = run_cli("kill", "w1", "--discard", cwd=repo_dir)
    else:  # recorded as half removed: gc finishes it
        out = run_cli("gc", "--yes", cwd=repo_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [r for r in refs_containing(repo_dir, tip) if r.startswith("refs/agentdeck/trash/w1/")]
    assert "w1" not in {r.name for r in deck.store.list_agents()}
    assert not sandbox_dir(repo_dir, "w1").exists() and not Path(rec.worktree).exists()
    assert rec.branch not in branches(repo_dir)
    assert run_cli("gc", "--yes", cwd=repo_dir).stdout.strip() == "nothing to clean up"
