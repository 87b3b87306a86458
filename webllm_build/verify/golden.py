"""Golden files: the expected outputs `webllm_build check` compares a built site against.

A golden file is JSON (documented in the README, "Golden files"):

    {
      "format": "webllm_build-golden", "version": 1,
      "source": "browser" | "transformers",        how the expectations were recorded
      "defaults": {"max_tokens": 16, "top_logprobs": 5, "logprob_tolerance": 0.05, "timeout_s": 600},
      "models": {
        "<site model id>": {
          "spec": "...", "quantization": "q4f32_1",  the checkpoint spec the build came from
          "cases": [{
            "name": "greeting",
            "messages": [{"role": "user", "content": "Hello"}],
            "sampling": {"temperature": 0},        any create() field; greedy when absent
            "max_tokens": 16,                      optional, else defaults
            "logprob_tolerance": 0.05,             optional, else defaults
            "timeout_s": 600,                      optional, else defaults (or check --timeout)
            "expected": {                          absent: `check --record` fills it in
              "prompt_tokens": 23,
              "token_ids": [...], "text": "...", "finish_reason": "length",
              "top_logprobs": [[[id, logprob], ...], ...]   per step, most likely first
            }
          }]
        }
      }
    }

Token ids are compared exactly; top-k log-probabilities within the tolerance, up to the first
diverging token.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webllm_build.atomic import atomic_write_text
from webllm_build.errors import VerifyError

GOLDEN_FORMAT = "webllm_build-golden"
GOLDEN_VERSION = 1
DEFAULTS: dict[str, Any] = {"max_tokens": 16, "top_logprobs": 5, "logprob_tolerance": 0.05, "timeout_s": 600}

# What `check --record` asks when a model has no cases yet: short, so slow adapters finish.
DEFAULT_CASES: list[dict[str, Any]] = [
    {"name": "greeting", "messages": [{"role": "user", "content": "Hello! How are you today?"}]},
    {
        "name": "system-and-question",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
    },
    {
        "name": "multi-turn",
        "messages": [
            {"role": "user", "content": "Give me a number."},
            {"role": "assistant", "content": "Seven."},
            {"role": "user", "content": "And another one?"},
        ],
    },
]


@dataclass
class Expected:
    token_ids: list[int]
    text: str
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None
    # A reply that is a tool call: each call's {name, arguments} (arguments parsed; ids differ
    # from run to run).
    tool_calls: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "token_ids": self.token_ids,
            "text": self.text,
            "finish_reason": self.finish_reason,
        }
        if self.tool_calls is not None:
            document["tool_calls"] = self.tool_calls
        if self.top_logprobs is not None:
            document["top_logprobs"] = [[[i, round(lp, 6)] for i, lp in step] for step in self.top_logprobs]
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Expected:
        top = document.get("top_logprobs")
        return cls(
            token_ids=[int(t) for t in document["token_ids"]],
            text=str(document["text"]),
            finish_reason=document.get("finish_reason"),
            prompt_tokens=document.get("prompt_tokens"),
            top_logprobs=None if top is None else [[(int(i), float(lp)) for i, lp in step] for step in top],
            tool_calls=document.get("tool_calls"),
        )


# Request fields a case may carry as they are: structured output and tool calls.
STRUCTURE_KEYS = ("response_format", "tools", "tool_choice")


@dataclass
class Case:
    name: str
    messages: list[dict[str, str]]
    sampling: dict[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None
    logprob_tolerance: float | None = None
    timeout_s: float | None = None
    expected: Expected | None = None
    # response_format / tools / tool_choice, passed to create() unchanged.
    structure: dict[str, Any] = field(default_factory=dict)

    @property
    def greedy(self) -> bool:
        return not self.sampling.get("temperature")

    def request(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The create() request for this case, asking for logprobs (greedy unless `sampling` says)."""
        top = int(defaults["top_logprobs"])
        return {
            "messages": self.messages,
            "temperature": 0,
            **self.sampling,
            "max_tokens": self.max_tokens or defaults["max_tokens"],
            "logprobs": True,
            "top_logprobs": top,
            **self.structure,
        }

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"name": self.name, "messages": self.messages, **self.structure}
        if self.sampling:
            document["sampling"] = self.sampling
        if self.max_tokens is not None:
            document["max_tokens"] = self.max_tokens
        if self.logprob_tolerance is not None:
            document["logprob_tolerance"] = self.logprob_tolerance
        if self.timeout_s is not None:
            document["timeout_s"] = self.timeout_s
        if self.expected is not None:
            document["expected"] = self.expected.to_json()
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Case:
        expected = document.get("expected")
        return cls(
            name=str(document["name"]),
            messages=list(document["messages"]),
            sampling=dict(document.get("sampling") or {}),
            max_tokens=document.get("max_tokens"),
            logprob_tolerance=document.get("logprob_tolerance"),
            timeout_s=document.get("timeout_s"),
            expected=Expected.from_json(expected) if expected else None,
            structure={key: document[key] for key in STRUCTURE_KEYS if key in document},
        )


@dataclass
class ModelGolden:
    spec: str | None
    quantization: str | None
    cases: list[Case]


@dataclass
class Golden:
    source: str = "browser"
    defaults: dict[str, Any] = field(default_factory=lambda: dict(DEFAULTS))
    models: dict[str, ModelGolden] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": GOLDEN_FORMAT,
            "version": GOLDEN_VERSION,
            "source": self.source,
            "defaults": self.defaults,
            "models": {
                model_id: {
                    "spec": model.spec,
                    "quantization": model.quantization,
                    "cases": [case.to_json() for case in model.cases],
                }
                for model_id, model in self.models.items()
            },
        }

    def write(self, path: Path) -> None:
        atomic_write_text(path, dumps(self.to_json()))

    def cases_for(self, model_id: str, spec: str | None, quantization: str | None) -> ModelGolden:
        """This model's entry, made from the default cases if the file has none (for --record)."""
        if model_id not in self.models:
            cases = [Case.from_json(case) for case in DEFAULT_CASES]
            self.models[model_id] = ModelGolden(spec, quantization, cases)
        return self.models[model_id]


# Lists json.dumps spread over lines ("[" then a newline: never inside a string, where newlines
# are escaped) holding only numbers, or only one-line lists.
_NUMBERS = re.compile(r"\[\n([-+\d.eE,\s]*?)\n\s*\]")
_LISTS = re.compile(r"\[\n\s*(\[[^\[\]\n]*\](?:,\n\s*\[[^\[\]\n]*\])*)\n\s*\]")


def _one_line(match: re.Match[str]) -> str:
    return "[" + ", ".join(part.strip() for part in match.group(1).split(",\n")) + "]"


def dumps(document: dict[str, Any]) -> str:
    """Indented JSON with lists of numbers (ids, [id, logprob] pairs, one step's top-k) on one line."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    return _LISTS.sub(_one_line, _NUMBERS.sub(_one_line, text)) + "\n"


def read_golden(path: Path) -> Golden:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerifyError(
            f"The golden file {path} does not exist. Record one from this build with: "
            f"webllm_build check SITE --golden {path} --record"
        ) from None
    except (OSError, ValueError) as exc:
        raise VerifyError(f"The golden file {path} is not readable JSON: {exc}") from None
    if document.get("format") != GOLDEN_FORMAT:
        raise VerifyError(f"{path} is not a webllm_build golden file (format is not {GOLDEN_FORMAT!r}).")
    if document.get("version") != GOLDEN_VERSION:
        raise VerifyError(
            f"{path} is golden-file version {document.get('version')}; this webllm_build reads version "
            f"{GOLDEN_VERSION}. Record it again with --record."
        )
    try:
        return Golden(
            source=str(document.get("source", "browser")),
            defaults={**DEFAULTS, **(document.get("defaults") or {})},
            models={
                model_id: ModelGolden(
                    spec=entry.get("spec"),
                    quantization=entry.get("quantization"),
                    cases=[Case.from_json(case) for case in entry["cases"]],
                )
                for model_id, entry in document["models"].items()
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VerifyError(f"The golden file {path} is malformed ({type(exc).__name__}: {exc})") from None


def expected_from_completion(completion: dict[str, Any]) -> Expected:
    """What a browser completion (SitePage.create with logprobs) would be expected to give again."""
    usage = completion.get("usage") or {}
    return Expected(
        token_ids=list(completion["token_ids"] or []),
        text=completion["content"],
        finish_reason=completion.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        top_logprobs=[
            [(t["token_id"], t["logprob"]) for t in entry.get("top_logprobs", [])]
            for entry in completion["logprobs"] or []
        ],
        tool_calls=[
            {"name": call["function"]["name"], "arguments": json.loads(call["function"]["arguments"])}
            for call in completion.get("tool_calls") or []
        ]
        or None,
    )


def _short(text: str, limit: int = 200) -> str:
    text = json.dumps(text, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def compare(expected: Expected, actual: Expected, tolerance: float) -> list[str]:
    """Readable differences between what a case expected and what the build gave; [] when equal."""
    problems: list[str] = []
    if expected.prompt_tokens is not None and actual.prompt_tokens != expected.prompt_tokens:
        problems.append(
            f"prompt is {actual.prompt_tokens} tokens, expected {expected.prompt_tokens} "
            f"(the chat template or tokenizer changed)"
        )
    want, got = expected.token_ids, actual.token_ids
    diverge = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
    if diverge is None and len(want) != len(got):
        diverge = min(len(want), len(got))
    if diverge is not None:
        problems.append(
            f"tokens differ from index {diverge} (expected {len(want)} tokens, got {len(got)}):\n"
            f"    expected ids[{diverge}:]: {want[diverge : diverge + 8]}\n"
            f"    actual   ids[{diverge}:]: {got[diverge : diverge + 8]}\n"
            f"    expected text: {_short(expected.text)}\n"
            f"    actual text:   {_short(actual.text)}"
        )
    elif expected.text != actual.text:
        problems.append(
            f"same tokens, different text (the detokenizer changed):\n"
            f"    expected text: {_short(expected.text)}\n    actual text:   {_short(actual.text)}"
        )
    if expected.tool_calls != actual.tool_calls and diverge is None:
        problems.append(f"tool calls {actual.tool_calls}, expected {expected.tool_calls}")
    if expected.finish_reason and actual.finish_reason != expected.finish_reason and diverge is None:
        problems.append(f"finish_reason {actual.finish_reason!r}, expected {expected.finish_reason!r}")
    if expected.top_logprobs and actual.top_logprobs is not None:
        compared = diverge if diverge is not None else len(expected.top_logprobs)
        steps = min(len(expected.top_logprobs), len(actual.top_logprobs), compared)
        for step in range(steps):
            problem = _compare_top(expected.top_logprobs[step], actual.top_logprobs[step], tolerance)
            if problem:
                problems.append(f"step {step}: {problem}")
                break
    return problems


def _compare_top(want: list[tuple[int, float]], got: list[tuple[int, float]], tolerance: float) -> str | None:
    got_by_id = dict(got)
    # A token missing from the actual top-k is fine only when it could have ranked just below it.
    floor = min(got_by_id.values()) if got_by_id else -math.inf
    for token_id, logprob in want:
        if token_id in got_by_id:
            if abs(got_by_id[token_id] - logprob) > tolerance:
                return (
                    f"logprob of token {token_id} is {got_by_id[token_id]:.4f}, expected {logprob:.4f} "
                    f"(tolerance {tolerance:g})"
                )
        elif logprob > floor + tolerance:
            return (
                f"token {token_id} (expected logprob {logprob:.4f}) is missing from the top "
                f"{len(got)} (lowest there: {floor:.4f}; tolerance {tolerance:g})"
            )
    return None
