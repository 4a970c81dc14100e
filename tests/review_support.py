"""Helpers for the review tests: agent worktrees made with plain git, a stand-in Deck, a stub LLM server."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from support import git

from agentdeck.review.diff import Side


def add_agent(root: Path, name: str, base: str = "main", ignore: frozenset[str] = frozenset()) -> Side:
    """A worktree + branch ``agentdeck/NAME`` from *base*, next to the repository (as the deck makes them)."""
    wt = root.parent / f"wt-{name}"
    branch = f"agentdeck/{name}"
    base_commit = git(root, "rev-parse", base)
    git(root, "worktree", "add", "-q", "-b", branch, str(wt), base_commit)
    return Side(root=root, worktree=wt, branch=branch, base_branch=base, base_commit=base_commit, ignore=ignore)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def commit_all(cwd: Path, message: str = "work", exclude: tuple[str, ...] = ()) -> str:
    git(cwd, "add", "-A", "--", ".", *[f":(exclude,literal){e}" for e in exclude])
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD")


def rev(cwd: Path, spec: str) -> str:
    return git(cwd, "rev-parse", spec)


def state_of(root: Path, *worktrees: Path) -> dict[str, Any]:
    """Every ref, plus HEAD/status/index bytes of each checkout: to prove nothing changed."""
    out: dict[str, Any] = {"refs": git(root, "for-each-ref", "--format=%(refname) %(objectname)")}
    for wt in (root, *worktrees):
        index = Path(git(wt, "rev-parse", "--absolute-git-dir")) / "index"
        out[str(wt)] = (
            git(wt, "rev-parse", "HEAD"),
            git(wt, "status", "--porcelain", "--untracked-files=all"),
            index.read_bytes() if index.exists() else b"",
        )
    return out


# --------------------------------------------------------------------------- a stand-in Deck


@dataclass
class _Paths:
    root: Path


class FakeDeck:
    """Just what ``Review`` uses of the Deck, over a real Store (used until/besides the real Deck)."""

    def __init__(self, root: Path, tmp: Path):
        from agentdeck.config import load_config
        from agentdeck.store import Store

        self.repo = _Paths(root)
        self.config = load_config(root)
        self.store = Store(tmp / "state.db")
        self.copied: dict[str, set[str]] = {}
        self.killed: list[tuple[str, bool]] = []

    def add(self, name: str, side: Side, copied: set[str] | None = None) -> None:
        from agentdeck.store import AgentRecord

        self.store.insert_agent(AgentRecord(
            name=name, slug=name, definition="sh", kind="generic", branch=side.branch,
            base_branch=side.base_branch, base_commit=side.base_commit, worktree=str(side.worktree),
            session=f"s-{name}", created_at="2026-01-01T00:00:00Z",
        ))
        self.copied[name] = set(copied or ())

    def get(self, name: str):
        from agentdeck.errors import UsageError

        rec = self.store.get_agent(name)
        if rec is None:
            raise UsageError(f"unknown agent {name!r}")
        return rec

    def copied_files(self, name: str) -> set[str]:
        return self.copied.get(name, set())

    def kill(self, name: str, discard: bool = False) -> str:
        from agentdeck import git as agit
        from agentdeck import snapshots

        rec = self.get(name)
        self.killed.append((name, discard))
        ref = snapshots.save_recovery_ref(self.repo.root, name, Path(rec.worktree), rec.branch)
        agit.remove_worktree(self.repo.root, Path(rec.worktree), force=True)
        agit.delete_branch(self.repo.root, rec.branch)
        self.store.delete_agent(name)
        return ref


# --------------------------------------------------------------------------- stub LLM server


@dataclass
class StubLLM:
    """A local HTTP server answering the Anthropic Messages and OpenAI Chat Completions APIs."""

    reply: str = "Add a greeting\n\nThe body."
    status: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: Any = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StubLLM:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                if stub.status != 200:
                    payload: dict[str, Any] = {"error": {"type": "api_error", "message": "stub failure"}}
                elif self.path.endswith("/messages"):
                    payload = {
                        "id": "msg_stub", "type": "message", "role": "assistant", "model": body.get("model"),
                        "content": [{"type": "text", "text": stub.reply}], "stop_reason": "end_turn",
                        "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5},
                    }
                elif self.path.endswith("/chat/completions"):
                    payload = {
                        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": body.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": stub.reply}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }
                else:
                    payload = {"error": {"message": f"unknown path {self.path}"}}
                data = json.dumps(payload).encode()
                self.send_response(stub.status if self.path.endswith(("/messages", "/chat/completions")) else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
