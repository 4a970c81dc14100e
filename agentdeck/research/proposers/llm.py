"""The ``llm`` proposer: the ``[llm]`` model proposes one edit, as search/replace pairs.

It sends the lab's program, the editable files, the run's results so far and
the shared memory's notes to the model (through the anthropic SDK, or the
openai SDK with any OpenAI-compatible ``base_url``: vLLM, ollama, llama.cpp's
server) and asks for one JSON object::

    {"description": "one line", "edits": [{"path": "train.py", "search": "...", "replace": "..."}]}

Edits are validated before anything is written: every path must be an
editable file, every ``search`` text must occur exactly once (so the edit
applies cleanly), and the result must differ from the original.  When the
answer does not validate, the model is told why and asked again (twice at
most); then the proposal fails and the loop asks for another.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

from agentdeck.errors import UsageError
from agentdeck.research.proposers.base import (
    Proposal,
    ProposalFailed,
    ProposalRequest,
    Proposer,
    history_table,
)

MAX_FILE_CHARS = 60_000
MAX_PROGRAM_CHARS = 20_000
MAX_TOKENS = 4096
RETRIES = 2

SYSTEM = (
    "You are a careful machine-learning research engineer running one experiment at a time. "
    "A harness runs each experiment with a fixed time budget and keeps a change only when the metric "
    "improves beyond the measured noise. Propose exactly one focused change to the editable files. "
    "Do not repeat experiments that were already tried (see the results). Never touch files that are not "
    "editable. Reply with exactly one JSON object and nothing else."
)

FORMAT = """Reply with exactly one JSON object, no prose, no code fence:
{"description": "<one line: what you change and why>",
 "edits": [{"path": "<an editable file>", "search": "<exact text copied from the file, unique in it>",
            "replace": "<the new text>"}]}
Each "search" must occur exactly once in its file as it is after the previous edits."""


def build_prompt(request: ProposalRequest) -> str:
    parts = []
    if request.program.strip():
        parts.append("# The lab's program\n\n" + request.program[:MAX_PROGRAM_CHARS])
    base = request.baseline or {}
    best = request.best or {}
    direction = "lower" if request.direction == "min" else "higher"
    parts.append(
        f"# Goal\n\nMetric `{request.metric}` ({direction} is better). Baseline: {base.get('metric')} "
        f"over {base.get('runs')} run(s), noise (std) {base.get('noise')}. Current best: {best.get('metric')} "
        f"(trial {best.get('id')})."
    )
    for rel, text in request.read_editable().items():
        parts.append(f"# Editable file `{rel}`\n\n```\n{text[:MAX_FILE_CHARS]}\n```")
    if request.history:
        parts.append("# Results so far\n\n" + history_table(request.history, request.metric))
    if request.notes:
        lines = [f"- {n.get('title', '')}: {n.get('snippet', '')}" for n in request.notes[:8]]
        parts.append("# Notes from the shared memory\n\n" + "\n".join(lines))
    parts.append("# Your answer\n\n" + FORMAT)
    return "\n\n".join(parts)


def extract_json(text: str) -> dict[str, Any]:
    """The first JSON object in *text* (code fences and surrounding prose tolerated)."""
    text = text.strip()
    fence = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    if fence:
        text = fence.group(1)
    start = text.find("{")
    if start < 0:
        raise ValueError("the answer holds no JSON object")
    decoder = json.JSONDecoder()
    try:
        obj, _ = decoder.raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer's JSON does not parse ({exc.msg} at char {exc.pos})") from None
    if not isinstance(obj, dict):
        raise ValueError("the answer's JSON is not an object")
    return obj


def validate_edits(answer: dict[str, Any], request: ProposalRequest) -> tuple[str, dict[str, str]]:
    """(description, {path: new text}); ValueError naming the first problem."""
    description = answer.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ValueError('"description" is missing or empty')
    description = " ".join(description.split())[:300]
    edits = answer.get("edits")
    if not isinstance(edits, list) or not edits:
        raise ValueError('"edits" must be a non-empty list')
    editable = set(request.editable)
    originals: dict[str, str] = {}
    current: dict[str, str] = {}
    for i, edit in enumerate(edits):
        if not isinstance(edit, dict):
            raise ValueError(f"edit {i} is not an object")
        path = str(edit.get("path", "")).strip().removeprefix("./")
        if path not in editable:
            raise ValueError(f"edit {i}: {path!r} is not an editable file (editable: {', '.join(sorted(editable))})")
        if path not in current:
            originals[path] = current[path] = request.read(path)
        if "content" in edit and "search" not in edit:
            if not isinstance(edit["content"], str):
                raise ValueError(f"edit {i}: \"content\" must be a string")
            current[path] = edit["content"]
            continue
        search, replace = edit.get("search"), edit.get("replace")
        if not isinstance(search, str) or not search or not isinstance(replace, str):
            raise ValueError(f'edit {i}: needs "search" (non-empty) and "replace" strings')
        count = current[path].count(search)
        if count != 1:
            raise ValueError(
                f"edit {i}: the search text occurs {count} times in {path} (it must occur exactly once; "
                "copy it exactly from the file, with more context)"
            )
        current[path] = current[path].replace(search, replace, 1)
    changed = {p: t for p, t in current.items() if t != originals[p]}
    if not changed:
        raise ValueError("the edits change nothing")
    return description, changed


class LlmProposer(Proposer):
    name = "llm"
    uses_notes = True

    def __init__(self, ctx, complete: Callable[[str, list[dict[str, str]]], str] | None = None):
        super().__init__(ctx)
        self._complete = complete
        self._client: Any = None  # an anthropic.Anthropic or openai.OpenAI, made on first use

    # ------------------------------------------------------------------ setup
    def _api_key(self) -> str:
        llm = self.ctx.llm
        env = llm.api_key_env or ("ANTHROPIC_API_KEY" if llm.provider == "anthropic" else "OPENAI_API_KEY")
        key = os.environ.get(env, "")
        if not key and llm.base_url:
            return "unused"  # local OpenAI-compatible servers take any key
        return key

    def check(self) -> None:
        if self._complete is not None:
            return
        llm = self.ctx.llm
        if not llm.model:
            raise UsageError("proposer \"llm\" needs a model: "
                             "set [llm] model (and provider, base_url) in .agentdeck.toml")
        if not self._api_key():
            env = llm.api_key_env or ("ANTHROPIC_API_KEY" if llm.provider == "anthropic" else "OPENAI_API_KEY")
            raise UsageError(f"proposer \"llm\" needs an API key: set {env} (or [llm] api_key_env, or a base_url)")

    def client(self):
        if self._client is None:
            llm = self.ctx.llm
            kwargs: dict[str, Any] = {"api_key": self._api_key(), "max_retries": 2, "timeout": 600.0}
            if llm.base_url:
                kwargs["base_url"] = llm.base_url
            if llm.provider == "anthropic":
                import anthropic

                self._client = anthropic.Anthropic(**kwargs)
            else:
                import openai

                self._client = openai.OpenAI(**kwargs)
        return self._client

    def complete(self, system: str, messages: list[dict[str, str]]) -> str:
        if self._complete is not None:
            return self._complete(system, messages)
        llm = self.ctx.llm
        client = self.client()
        try:
            if llm.provider == "anthropic":
                resp = client.messages.create(model=llm.model, max_tokens=MAX_TOKENS, system=system,
                                              messages=messages)
                return "".join(getattr(b, "text", "") for b in resp.content if getattr(b, "type", "") == "text")
            resp = client.chat.completions.create(
                model=llm.model, max_tokens=MAX_TOKENS,
                messages=[{"role": "system", "content": system}, *messages],
            )
            return resp.choices[0].message.content or ""
        except Exception as exc:  # the SDKs' errors: connection, status, rate limits
            raise ProposalFailed(f"{llm.provider} request failed: {type(exc).__name__}: {str(exc)[:200]}") from None

    # ------------------------------------------------------------------ proposing
    def propose(self, request: ProposalRequest) -> Proposal:
        messages = [{"role": "user", "content": build_prompt(request)}]
        problem = ""
        for attempt in range(RETRIES + 1):
            if request.stop.is_set():
                raise ProposalFailed("stopped")
            answer = self.complete(SYSTEM, messages)
            try:
                description, changed = validate_edits(extract_json(answer), request)
            except (ValueError, OSError) as exc:
                problem = str(exc)
                messages = messages + [
                    {"role": "assistant", "content": answer or "(empty)"},
                    {"role": "user", "content": f"That answer was rejected: {problem}. Reply again with the "
                                                 "corrected JSON object only."},
                ]
                continue
            for path, text in changed.items():
                (request.workdir / path).write_text(text, encoding="utf-8")
            return Proposal(description, {"proposer": "llm", "model": self.ctx.llm.model, "attempts": attempt + 1,
                                          "files": sorted(changed)})
        raise ProposalFailed(f"the model's edits did not validate after {RETRIES + 1} tries: {problem}")
