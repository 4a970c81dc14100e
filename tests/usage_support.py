"""Helpers for the usage and fork tests: API stubs that report known token usage.

The stubs of tests/stubs compute usage from the request size; these subclasses replace
it, in the streamed events and in plain JSON answers, with numbers from a fixed plan
(different for every request) and remember what they reported, so that a test can check
that agentdeck's totals equal what "the API" said.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stubs.anthropic_stub import AnthropicStub
from stubs.openai_stub import OpenAIStub
from support import ROOT

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "usage"
#: Set to a folder to keep the transcripts a real-CLI test made (how tests/fixtures/usage was made).
SAVE_ENV = "AGENTDECK_USAGE_FIXTURE_DIR"


@dataclass
class Reported:
    """What a stub reported for one request."""

    main: bool
    model: str
    input: int  # Anthropic: uncached input; OpenAI: all input (cached included)
    output: int
    cache_read: int
    cache_creation: int
    cache_creation_1h: int = 0
    reasoning: int = 0
    prompt: str = ""


class _Metered:
    def _setup_meter(self) -> None:
        self.reported: list[Reported] = []
        self._local = threading.local()
        self._meter_lock = threading.Lock()

    def _plan(self, req: Any) -> Reported:
        with self._meter_lock:
            n = len(self.reported) + 1
            plan = self.plan(n, req)
            self.reported.append(plan)
        return plan

    def main_reported(self) -> list[Reported]:
        with self._meter_lock:
            return [r for r in self.reported if r.main]


class MeteredAnthropicStub(_Metered, AnthropicStub):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._setup_meter()

    @staticmethod
    def plan(n: int, req: Any) -> Reported:
        return Reported(main=req.is_main, model=req.model, input=100 + 7 * n, output=20 + 3 * n,
                        cache_read=1000 + 11 * n, cache_creation=300 + 5 * n, cache_creation_1h=40 + n,
                        prompt=req.prompt)

    def _usage(self, plan: Reported, output: int) -> dict[str, Any]:
        return {"input_tokens": plan.input, "output_tokens": output,
                "cache_read_input_tokens": plan.cache_read, "cache_creation_input_tokens": plan.cache_creation,
                "cache_creation": {"ephemeral_5m_input_tokens": plan.cache_creation - plan.cache_creation_1h,
                                   "ephemeral_1h_input_tokens": plan.cache_creation_1h}}

    def _answer(self, h, req, reply) -> None:
        self._local.plan = None if reply.error_status else self._plan(req)
        super()._answer(h, req, reply)

    def sse(self, h, event, data) -> None:  # an instance method shadowing the base's staticmethod
        plan = getattr(self._local, "plan", None)
        if plan is not None and event == "message_start":
            data["message"]["usage"] = self._usage(plan, 1)
        elif plan is not None and event == "message_delta":
            data["usage"] = self._usage(plan, plan.output)
        AnthropicStub.sse(h, event, data)

    def send_json(self, h, status, obj, headers=None) -> None:
        plan = getattr(self._local, "plan", None)
        if plan is not None and isinstance(obj, dict) and obj.get("type") == "message":
            obj["usage"] = self._usage(plan, plan.output)
        AnthropicStub.send_json(h, status, obj, headers)


class MeteredOpenAIStub(_Metered, OpenAIStub):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._setup_meter()

    @staticmethod
    def plan(n: int, req: Any) -> Reported:
        return Reported(main=req.is_main, model=req.model, input=2000 + 13 * n, output=30 + 5 * n,
                        cache_read=500 + 7 * n, cache_creation=0, reasoning=4 + n, prompt=req.prompt)

    @staticmethod
    def _usage(plan: Reported) -> dict[str, Any]:
        return {"input_tokens": plan.input, "input_tokens_details": {"cached_tokens": plan.cache_read},
                "output_tokens": plan.output, "output_tokens_details": {"reasoning_tokens": plan.reasoning},
                "total_tokens": plan.input + plan.output}

    def _answer_responses(self, h, req, reply) -> None:
        self._local.plan = None if reply.error_status else self._plan(req)
        super()._answer_responses(h, req, reply)

    def sse(self, h, event, data) -> None:
        plan = getattr(self._local, "plan", None)
        if plan is not None and event == "response.completed":
            data["response"]["usage"] = self._usage(plan)
        OpenAIStub.sse(h, event, data)

    def send_json(self, h, status, obj, headers=None) -> None:
        plan = getattr(self._local, "plan", None)
        if plan is not None and isinstance(obj, dict) and obj.get("object") == "response":
            obj["usage"] = self._usage(plan)
        OpenAIStub.send_json(h, status, obj, headers)


# ---------------------------------------------------------------------- expectations
def claude_expected(reported: list[Reported]) -> dict[str, int]:
    return {"input_tokens": sum(r.input for r in reported), "output_tokens": sum(r.output for r in reported),
            "cache_read_tokens": sum(r.cache_read for r in reported),
            "cache_creation_tokens": sum(r.cache_creation for r in reported)}


def codex_expected(reported: list[Reported]) -> dict[str, int]:
    """Codex (OpenAI) input includes cached input; agentdeck reports the uncached part."""
    return {"input_tokens": sum(r.input - r.cache_read for r in reported),
            "output_tokens": sum(r.output for r in reported),
            "cache_read_tokens": sum(r.cache_read for r in reported), "cache_creation_tokens": 0}


TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens")


def numbers(row: dict[str, Any]) -> dict[str, int]:
    return {key: row[key] for key in TOKEN_KEYS}


#: `agentdeck usage` through agentdeck's own main(), with agentdeck.usage_cli registered even
#: before the lead lists it in agentdeck.cli.EXTENSIONS.
_MAIN = ("import sys, agentdeck.cli as c\n"
         "if 'agentdeck.usage_cli' not in c.EXTENSIONS: c.EXTENSIONS = (*c.EXTENSIONS, 'agentdeck.usage_cli')\n"
         "raise SystemExit(c.main(sys.argv[1:]))")


def run_usage_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", _MAIN, *args], cwd=str(cwd), capture_output=True, text=True,
                          env=env, timeout=120)


def usage_json(repo: Path) -> dict[str, Any]:
    proc = run_usage_cli("usage", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def usage_row(repo: Path, name: str) -> dict[str, Any]:
    return {a["name"]: a for a in usage_json(repo)["agents"]}[name]


def save_fixtures(files: dict[str, Path], reported: dict[str, Any]) -> None:
    """Copy real transcripts (and what the stub reported) where SAVE_ENV points, if set."""
    target = os.environ.get(SAVE_ENV)
    if not target:
        return
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        shutil.copyfile(path, out / name)
    (out / "reported.json").write_text(json.dumps(reported, indent=2) + "\n")
