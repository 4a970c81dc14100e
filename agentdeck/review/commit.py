"""Committing an agent's work, with the repository's hooks, all or nothing.

The commit is prepared in a private copy of the worktree's index (every change,
untracked files included, copied setup files left out) and made with a plain
``git commit`` that runs the repository's hooks (never ``--no-verify``).  If a
hook rejects it, the private index is thrown away: the agent's own index, files
and branch are exactly as before.  On success the private index becomes the
worktree's index (under git's own ``index.lock`` protocol).

A ``bwrap`` agent's worktree (:mod:`agentdeck.sandbox.agent_bwrap`) is committed on the
host: the agent's own commits are brought onto its branch first (``sync_back``) and its own
repository then follows the host's new commit (``follow_host``), so that its next commit
continues from it instead of diverging.  Git runs there with hooks off (the worktree's
config and hook files are the agent's).

Messages without ``-m``: the ``[llm]`` model writes one from the diff when a
model is configured (anthropic or openai SDK, built by an injectable client
factory so tests can point it at a local stub server); otherwise — or when the
model cannot be reached — a plain summary of the files touched.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentdeck import git
from agentdeck.errors import Refused
from agentdeck.review import _git
from agentdeck.review.diff import DiffResult, FileDiff, stat_lines

ClientFactory = Callable[[Any], Any]  # (LlmSettings) -> anthropic.Anthropic | openai.OpenAI

SYSTEM_PROMPT = (
    "You write git commit messages. Reply with the commit message only: a summary line in the "
    "imperative mood under 72 characters, then (only if useful) a blank line and a short body "
    "wrapped at 72 characters explaining what changed and why. No code fences, no quotes."
)
MAX_PATCH_CHARS = 12_000


@dataclass
class CommitResult:
    commit: str
    message: str
    files: list[str] = field(default_factory=list)
    message_source: str = "given"  # given | llm | summary
    warning: str = ""

    @property
    def subject(self) -> str:
        return self.message.strip().splitlines()[0] if self.message.strip() else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit, "subject": self.subject, "message": self.message, "files": self.files,
            "message_source": self.message_source, "warning": self.warning or None,
        }


# --------------------------------------------------------------------------- committing


def commit_worktree(worktree: Path | str, message: str, ignore: set[str] | frozenset[str] | None = None,
                    agent: str = "") -> CommitResult:
    """Commit every change in *worktree* (minus *ignore*) with *message*, running the hooks."""
    label = agent or str(worktree)
    if not _git.worktree_ok(worktree):
        raise Refused(f"the worktree of {label} is missing ({worktree}); nothing to commit")
    if not message.strip():
        raise Refused("empty commit message; pass one with -m MESSAGE")
    wt = Path(worktree)
    from agentdeck.sandbox import agent_bwrap

    sandbox = agent_bwrap.for_worktree(wt)  # a bwrap agent's: its own commits onto its branch first
    diverged = sandbox is not None and agent_bwrap.sync_back(sandbox) == "diverged"
    files = _git.uncommitted(wt, set(ignore or ()))
    if not files:
        raise Refused(f"{label} has nothing to commit")
    index = Path(git.run(wt, "rev-parse", "--git-path", "index"))
    if not index.is_absolute():
        index = wt / index
    tmp = index.with_name(f"agentdeck-commit-{os.getpid()}-{threading.get_ident()}.index")
    head_before = git.head_commit(wt, "HEAD")
    try:
        if index.exists():
            shutil.copy2(index, tmp)  # keep the mtime: git's racy-clean check depends on it
        env = {"GIT_INDEX_FILE": str(tmp)}
        proc = git.run_proc(wt, "add", "-A", "--", ".", *_git.exclude_pathspecs(wt, ignore), env=env)
        if proc.returncode != 0:
            raise Refused(f"could not stage the changes of {label}: {_one_line(proc.stderr)}; nothing was committed")
        proc = git.run_proc(wt, "commit", "-q", "-F", "-", env=env,
                            input=message if message.endswith("\n") else message + "\n")
        if proc.returncode != 0 and git.head_commit(wt, "HEAD") == head_before:
            detail = _one_line(proc.stdout + "\n" + proc.stderr) or f"git commit exited {proc.returncode}"
            raise Refused(
                f"the commit of {label} was refused: {detail}; nothing was committed — "
                "fix what the hook reports and try again"
            )
        _install_index(tmp, index)
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".lock").unlink(missing_ok=True)
    warning = ""
    if sandbox is not None and not agent_bwrap.follow_host(sandbox) and diverged:
        # The agent's own repository continues from this commit, unless its history had diverged.
        warning = (f"{label}'s own commits in its sandbox have diverged from its branch; they stay there "
                   f"(`agentdeck kill {label} --discard` keeps them under a recovery ref)")
    commit = git.head_commit(wt, "HEAD") or ""
    committed = [p for p in git.run(wt, "diff-tree", "--root", "-r", "--no-commit-id", "--name-only", "-z", "HEAD")
                 .split("\0") if p]
    return CommitResult(commit=commit, message=message, files=committed, warning=warning)


def _install_index(tmp: Path, index: Path, timeout: float = 5.0) -> None:
    """Make *tmp* the worktree's index, holding ``index.lock`` as git does."""
    lock = Path(str(index) + ".lock")
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise Refused(
                    f"committed, but {lock} is held by another git process so the index could not be "
                    "refreshed; run `git reset -q` in the worktree"
                ) from None
            time.sleep(0.05)
    try:
        with os.fdopen(fd, "wb") as out, open(tmp, "rb") as src:
            shutil.copyfileobj(src, out)
        st = tmp.stat()
        os.utime(lock, ns=(st.st_atime_ns, st.st_mtime_ns))  # git's racy-clean check compares with it
        os.replace(lock, index)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


def _one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    joined = " / ".join(lines[-4:])
    return joined[:limit]


# --------------------------------------------------------------------------- messages


def summary_message(files: list[FileDiff]) -> str:
    """A plain message naming the files touched (used when no model is configured)."""
    if not files:
        return "Update files\n"
    groups: dict[str, list[str]] = {}
    for f in files:
        label = f"{f.old_path} → {f.path}" if f.status == "renamed" and f.old_path else f.path
        groups.setdefault(f.status, []).append(label)
    verbs = {"added": "Add", "modified": "Update", "deleted": "Remove", "renamed": "Rename",
             "copied": "Copy", "typechange": "Change type of"}
    if len(groups) == 1:
        status = next(iter(groups))
        verb = verbs.get(status, "Update")
    else:
        verb = "Update"
    names = [Path(f.path).name for f in files]
    if len(names) == 1:
        subject = f"{verb} {groups[next(iter(groups))][0] if len(groups) == 1 else files[0].path}"
    elif len(names) <= 3:
        subject = f"{verb} {', '.join(names[:-1])} and {names[-1]}"
    else:
        subject = f"{verb} {', '.join(names[:2])} and {len(names) - 2} more files"
    if len(subject) > 72:
        subject = f"{verb} {len(files)} files"
    body = []
    for status in ("added", "modified", "renamed", "copied", "typechange", "deleted"):
        if status in groups:
            body.append(f"{status.capitalize()}: {', '.join(groups[status])}")
    if len(files) == 1 and len(groups) == 1:
        return subject + "\n"
    return subject + "\n\n" + "\n".join(body) + "\n"


def default_client_factory(settings: Any) -> Any:
    """An SDK client for ``[llm]``: ``anthropic.Anthropic`` or ``openai.OpenAI``."""
    provider = settings.provider
    key_env = settings.api_key_env or ("ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY")
    key = os.environ.get(key_env, "")
    if not key and not settings.base_url:
        raise Refused(f"[llm] provider {provider} needs an API key in ${key_env}")
    # The SDKs are imported only when a message is written by a model (each costs ~0.5 s).
    if provider == "anthropic":
        import anthropic

        return anthropic.Anthropic(api_key=key or "unused", base_url=settings.base_url or None,
                                   timeout=60.0, max_retries=1)
    import openai

    return openai.OpenAI(api_key=key or "unused", base_url=settings.base_url or None, timeout=60.0, max_retries=1)


def llm_message(settings: Any, diff: DiffResult, client_factory: ClientFactory | None = None) -> str:
    """Ask the ``[llm]`` model for a commit message describing *diff*."""
    client = (client_factory or default_client_factory)(settings)
    prompt = _prompt(diff)
    if settings.provider == "anthropic":
        resp = client.messages.create(
            model=settings.model, max_tokens=400, system=SYSTEM_PROMPT,
            messages=[{"role": "user", "content": prompt}],
        )
        text = "".join(getattr(block, "text", "") for block in resp.content)
    else:
        resp = client.chat.completions.create(
            model=settings.model, max_tokens=400,
            messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}],
        )
        text = resp.choices[0].message.content or ""
    message = clean_message(text)
    if not message:
        raise Refused("the [llm] model returned an empty commit message")
    return message


def _prompt(diff: DiffResult) -> str:
    patch = diff.patch_text()
    if len(patch) > MAX_PATCH_CHARS:
        patch = patch[:MAX_PATCH_CHARS] + "\n[... diff truncated ...]\n"
    return "Files changed:\n" + "\n".join(stat_lines(diff)) + "\n\nDiff:\n" + patch


def clean_message(text: str) -> str:
    text = text.strip()
    text = re.sub(r"^```[a-zA-Z]*\n(.*?)\n?```$", r"\1", text, flags=re.S).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text + "\n" if text else ""


def write_message(diff: DiffResult, llm_settings: Any | None,
                  client_factory: ClientFactory | None = None) -> tuple[str, str, str]:
    """(message, source, warning): the model's message when configured and reachable, else a summary."""
    if llm_settings is not None and getattr(llm_settings, "model", None):
        try:
            return llm_message(llm_settings, diff, client_factory), "llm", ""
        except Exception as exc:  # the model is a convenience: never block a commit on it
            warning = f"[llm] could not write the message ({_one_line(str(exc), 160)}); used a summary instead"
            return summary_message(diff.files), "summary", warning
    return summary_message(diff.files), "summary", ""
