"""The llm proposer against local stub servers (both SDKs), the command and agent proposers."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from research_support import ScriptedProposer, by_desc, make_lab, research_for, set_constants
from support import git

from agentdeck.config import LlmSettings, ResearchSettings
from agentdeck.errors import UsageError
from agentdeck.research.proposers.base import ProposalFailed, ProposalRequest, ProposerContext
from agentdeck.research.proposers.llm import LlmProposer, extract_json

# ---------------------------------------------------------------------- stub LLM servers


class StubLLM:
    """A local HTTP server speaking the Anthropic Messages or OpenAI Chat Completions API."""

    def __init__(self, answers: list[str]):
        self.answers = list(answers)
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                stub.requests.append({"path": self.path, "body": body, "headers": headers})
                answer = stub.answers.pop(0) if stub.answers else "{}"
                if self.path.endswith("/v1/messages"):
                    payload = {
                        "id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                        "content": [{"type": "text", "text": answer}], "stop_reason": "end_turn",
                        "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 10},
                    }
                elif self.path.endswith("/chat/completions"):
                    payload = {
                        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer}}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
                    }
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _answer(description: str, edits: list[dict]) -> str:
    return json.dumps({"description": description, "edits": edits})


def _request(tmp_path: Path) -> ProposalRequest:
    wd = tmp_path / "wt" / "lab"
    wd.mkdir(parents=True)
    (wd / "train.py").write_text("LR = 0.1\nDEPTH = 2\n")
    (wd / "prepare.py").write_text("def evaluate(): ...\n")
    return ProposalRequest(
        tag="t", worktree=tmp_path / "wt", workdir=wd, editable=["train.py"], program="Make the score low.",
        metric="score", direction="min", best={"id": 1, "metric": 18.0, "commit": "abc"},
        baseline={"metric": 18.0, "runs": 2, "noise": 0.0},
        history=[{"id": 1, "kind": "baseline", "status": "keep", "metric": 18.0, "description": "baseline",
                  "reason": "baseline", "meta": {}}],
        notes=[{"title": "research t #0 discard: DEPTH 2 -> 4", "snippet": "worse"}],
    )


def _ctx(provider: str, base_url: str, key_env: str = "") -> ProposerContext:
    return ProposerContext(research=ResearchSettings(), llm=LlmSettings(provider=provider, model="stub-model",
                                                                          base_url=base_url, api_key_env=key_env),
                           repo_root=Path("."), state_dir=Path("."), tag="t")


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_llm_proposer_edits_after_a_rejected_answer(tmp_path, monkeypatch, provider):
    monkeypatch.setenv("STUB_KEY", "sk-test")
    answers = [
        "Let me think... " + _answer("bad", [{"path": "train.py", "search": "LR = 0.5", "replace": "LR = 0.2"}]),
        "```json\n" + _answer("raise the learning rate to 0.2",
                              [{"path": "train.py", "search": "LR = 0.1", "replace": "LR = 0.2"}]) + "\n```",
    ]
    with StubLLM(answers) as stub:
        base = stub.url + ("/v1" if provider == "openai" else "")
        proposer = LlmProposer(_ctx(provider, base, "STUB_KEY"))
        proposer.check()
        req = _request(tmp_path)
        proposal = proposer.propose(req)
    assert proposal.description == "raise the learning rate to 0.2"
    assert (req.workdir / "train.py").read_text() == "LR = 0.2\nDEPTH = 2\n"
    assert proposal.meta["attempts"] == 2
    first, second = stub.requests
    assert first["path"].endswith("/v1/messages" if provider == "anthropic" else "/v1/chat/completions")
    assert first["body"]["model"] == "stub-model"
    text = json.dumps(first["body"])
    # The prompt carries the program, the editable file, the results and the memory's notes.
    for needle in ("Make the score low.", "LR = 0.1", "baseline", "DEPTH 2 -> 4", "score"):
        assert needle in text
    assert "occurs 0 times" in json.dumps(second["body"])
    auth = first["headers"].get("x-api-key") or first["headers"].get("authorization", "")
    assert "sk-test" in auth


def test_llm_edits_are_validated(tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", "k")
    bad = [
        _answer("outside", [{"path": "prepare.py", "search": "def", "replace": "x"}]),
        _answer("ambiguous", [{"path": "train.py", "search": " = ", "replace": "="}]),
        "no json at all",
    ]
    with StubLLM(bad) as stub:
        proposer = LlmProposer(_ctx("openai", stub.url + "/v1", "STUB_KEY"))
        req = _request(tmp_path)
        with pytest.raises(ProposalFailed, match="did not validate"):
            proposer.propose(req)
    assert (req.workdir / "train.py").read_text() == "LR = 0.1\nDEPTH = 2\n"
    feedback = [json.dumps(r["body"]) for r in stub.requests[1:]]
    assert "not an editable file" in feedback[0] and "occurs 2 times" in feedback[1]


def test_llm_needs_a_model_and_a_key(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    ctx = _ctx("anthropic", "")
    ctx.llm.model = ""
    with pytest.raises(UsageError, match="model"):
        LlmProposer(ctx).check()
    ctx.llm.model = "m"
    with pytest.raises(UsageError, match="ANTHROPIC_API_KEY"):
        LlmProposer(ctx).check()
    ctx.llm.base_url = "http://127.0.0.1:1"  # a local server needs no key
    LlmProposer(ctx).check()


def test_extract_json_tolerates_prose_and_fences():
    assert extract_json('Sure! {"a": 1} hope it helps') == {"a": 1}
    assert extract_json('```json\n{"a": {"b": 2}}\n```') == {"a": {"b": 2}}
    with pytest.raises(ValueError):
        extract_json("[1, 2]")


def test_llm_proposer_in_a_real_run(tmp_path, monkeypatch):
    answer = _answer("move X towards 7", [{"path": "train.py", "search": "X = 3.0", "replace": "X = 6.5"}])
    with StubLLM([answer]) as stub:
        repo = make_lab(tmp_path / "repo", repeats=1, proposer="llm", extra=(
            f'[llm]\nprovider = "openai"\nmodel = "stub-model"\nbase_url = "{stub.url}/v1"\n'))
        research = research_for(repo)
        tag = research.start("llm", trials=1)
        research.run(tag)
    status = research.status(tag)
    t = by_desc(status, "move X towards 7")
    assert t["status"] == "keep" and t["metric"] == pytest.approx(2.25)
    assert "X = 6.5" in git(repo, "show", "research/llm:lab/train.py")


# ---------------------------------------------------------------------- command proposer


def test_command_proposer_edits_and_describes(tmp_path):
    script = tmp_path / "propose.py"
    script.write_text(
        "import os, re, sys\n"
        "p = 'train.py'\n"
        "s = open(p).read()\n"
        "s = re.sub(r'^X = .*$', 'X = 6.0', s, flags=re.M)\n"
        "open(p, 'w').write(s)\n"
        "print('noise on stdout')\n"
        "print(f\"X to 6 (seed {os.environ['AGENTDECK_SEED']}, editable {os.environ['AGENTDECK_EDITABLE']})\")\n"
    )
    repo = make_lab(tmp_path / "repo", repeats=1, proposer="command",
                    extra=f'proposer_command = "{sys.executable} {script}"')
    research = research_for(repo)
    tag = research.start("cmd", trials=1)
    research.run(tag)
    status = research.status(tag)
    proposal = next(t for t in status["trials"] if t["kind"] == "proposal")
    assert proposal["description"].startswith("X to 6 (seed ") and "editable train.py" in proposal["description"]
    assert proposal["status"] == "keep" and proposal["metric"] == pytest.approx(3.0)


def test_command_proposer_failure_is_counted_not_run(tmp_path, monkeypatch):
    from agentdeck.research import loop_proposals

    monkeypatch.setattr(loop_proposals, "BACKOFF_BASE_S", 0.01)  # the real back-off grows from 1 s
    monkeypatch.setattr(loop_proposals, "MAX_CONSECUTIVE_FAILURES", 3)
    repo = make_lab(tmp_path / "repo", repeats=1, proposer="command",
                    extra='proposer_command = "echo nope >&2; exit 4"')
    research = research_for(repo)
    tag = research.start("cmdfail", trials=1)
    result = research.run(tag)
    status = research.status(tag)
    assert result["state"] == "stopped"
    assert status["proposal_failures"] == 3 and status["proposals"] == 0
    assert "exited 4: nope" in status["message"]


def test_command_proposer_needs_its_command(tmp_path):
    repo = make_lab(tmp_path / "repo", proposer="command")
    with pytest.raises(UsageError, match="proposer_command"):
        research_for(repo).start("x")


# ---------------------------------------------------------------------- agent proposer


class FakeDeck:
    """Stands in for the deck: each 'agent' is a worktree plus a thread that acts on its prompt."""

    def __init__(self, repo: Path, actions: list[dict]):
        from agentdeck.config import load_config

        self.repo_root = repo
        self.config = load_config(repo)
        self.actions = actions
        self.agents: dict[str, SimpleNamespace] = {}
        self.prompts: list[tuple[str, str]] = []
        self.killed: list[str] = []

    def new(self, name, definition=None, prompt="", base=None, cwd_subdir=""):
        path = self.repo_root.parent / f"agent-{name}"
        git(self.repo_root, "worktree", "add", "-q", "-b", f"agentdeck/{name}", str(path), base)
        self.agents[name] = SimpleNamespace(name=name, worktree=str(path), definition=definition)
        self._act(name, prompt)
        return self.agents[name]

    def get(self, name):
        return self.agents[name]

    def wait(self, name, until, timeout=None):
        return "idle"

    def send(self, name, text, force=False):
        self._act(name, text)

    def kill(self, name, discard=False):
        self.killed.append(name)

    def _act(self, name, prompt):
        from agentdeck.research import submit_from_agent

        self.prompts.append((name, prompt))
        action = self.actions.pop(0)

        def work():
            wt = Path(self.agents[name].worktree)
            train = wt / "lab" / "train.py"
            train.write_text(set_constants(train.read_text(), action["set"]))
            submit_from_agent(action["desc"], agent=name, cwd=str(self.repo_root))

        threading.Thread(target=work, daemon=True).start()


def test_agent_proposer_uses_a_deck_agent_and_research_submit(tmp_path):
    repo = make_lab(tmp_path / "repo", repeats=1, proposer="agent")
    deck = FakeDeck(repo, [{"set": {"X": "6.0"}, "desc": "X to six"}, {"set": {"Y": "2.0"}, "desc": "Y to two"}])
    research = research_for(repo)
    tag = research.start("ag", trials=2)
    proposer = research.make_proposer("agent", tag, research.settings_from_run(research.ledger.run(tag)))
    proposer.ctx.runner = deck
    research.run(tag, proposer=proposer)
    status = research.status(tag)
    assert by_desc(status, "X to six")["status"] == "keep"
    assert by_desc(status, "Y to two")["status"] == "keep"
    assert status["best"]["metric"] == pytest.approx(2.0)
    # One agent, reused: its first instruction names the program, the next ones are sent to it.
    names = {n for n, _ in deck.prompts}
    assert names == {"research-ag-1"} and "program.md" in deck.prompts[0][1]
    assert "research_submit" in deck.prompts[1][1]
    assert deck.killed == ["research-ag-1"]


def test_submit_without_an_open_request_is_refused(tmp_path):
    from agentdeck.errors import Refused
    from agentdeck.research import submit_from_agent

    repo = make_lab(tmp_path / "repo")
    _ = research_for(repo).ledger  # creates the db
    with pytest.raises(Refused, match="no open research request"):
        submit_from_agent("something", agent="nobody", cwd=str(repo))
    with pytest.raises(UsageError):
        submit_from_agent("  ", agent="nobody", cwd=str(repo))


def test_scripted_proposer_is_a_proposer():
    # The tests' scripted proposer follows the interface the loop relies on.
    p = ScriptedProposer([])
    assert p.name and hasattr(p, "propose") and p.uses_notes is False
