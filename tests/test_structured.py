"""Structured output (`response_format`) in headless Chromium, against Python xgrammar.

A tiny random-weights Llama, whose free output is noise, must still answer in the format asked
for, on every seed: a JSON Schema with nested objects, arrays, enums and required fields, an
EBNF grammar, JSON mode. Greedy constrained replies (the mask applied on the GPU before the
library's argmax) equal transformers' logits masked by Python xgrammar, step by step; the page's
masks equal Python xgrammar's on SmolLM2's real tokenizer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import jsonschema
import numpy as np
import pytest
import xgrammar
from chat_page import ChatPage
from checkpoints import make_llama, tokenizer_json
from conftest import CI_SCHEDULES
from reference import requantize_

from webllm_build.build import plan_and_build
from webllm_build.loaders import load_without_weights
from webllm_build.loaders.tokenizer_kind import tokenizer_kind
from webllm_build.plan import BuildOptions
from webllm_build.serve import serve_in_background
from webllm_build.site import SiteOptions, build_site
from webllm_build.verify.check import CheckOptions, run_check
from webllm_build.verify.golden import GOLDEN_VERSION
from webllm_build.verify.sitepage import SitePage
from webllm_build.verify.testing import PageModel, stage_models

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Z][a-z]{1,8}$"},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,5}$"}, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "pattern": "^[A-Za-z ]{1,10}$"},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "role", "tags", "address"],
    "additionalProperties": False,
}
# Length-bounded free strings, which xgrammar 0.1.27 spells loosely (web/src/grammar.ts). Not in
# the seeds' schema: a random model's bytes are often not UTF-8, and xgrammar counts a sequence
# such as C1 BF as one character where JSON.parse reads two U+FFFD.
NOTE = {
    "type": "object",
    "properties": {"title": {"type": "string", "maxLength": 12}, "person": PERSON},
    "required": ["title", "person"],
}
ANSWER_EBNF = 'root ::= answer " because " reason\nanswer ::= "yes" | "no"\nreason ::= [a-z]{1,12}'
ANSWER_RE = re.compile(r"(yes|no) because [a-z]{1,12}")
SEEDS = range(20)
MESSAGES = [{"role": "user", "content": "Describe a person."}]

CREATE = """async (request) => {
    try {
        return await window.engine.chat.completions.create(request);
    } catch (e) {
        return {error: {code: e.code ?? null, message: String(e.message ?? e)}};
    }
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory, wasm_runtime):
    root = tmp_path_factory.mktemp("structured")
    # A context of 1024: tools described in a system message take ~300 of the tiny tokenizer's tokens.
    checkpoint = make_llama(root / "ckpt", seed=7, initializer_range=0.2, max_position_embeddings=1024)
    compiled = plan_and_build(
        BuildOptions(model=str(checkpoint), quantization="q4f32_1", schedules=CI_SCHEDULES), root / "out"
    )
    site = stage_models(root / "site", {"llama": compiled.directory})
    with serve_in_background(site) as url:
        yield url, checkpoint, compiled


@pytest.fixture(scope="module")
def engine_page(served, browser):
    url, _, _ = served
    return PageModel(browser, url, "llama").start_engine()


def _reply(page, **request) -> dict:
    response = page.evaluate(CREATE, {"messages": MESSAGES, "max_tokens": 200, **request})
    assert "error" not in response, response
    return response["choices"][0]


def test_json_schema_replies_validate_on_every_seed(engine_page):
    format_ = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    for seed in SEEDS:
        choice = _reply(engine_page, response_format=format_, temperature=1.0, seed=seed)
        assert choice["finish_reason"] == "stop", choice
        jsonschema.validate(json.loads(choice["message"]["content"]), PERSON)


def test_grammar_replies_parse_on_every_seed(engine_page):
    for seed in SEEDS:
        choice = _reply(
            engine_page,
            response_format={"type": "grammar", "grammar": ANSWER_EBNF},
            temperature=1.0,
            seed=seed,
        )
        assert choice["finish_reason"] == "stop"
        assert ANSWER_RE.fullmatch(choice["message"]["content"]), choice["message"]["content"]


def test_json_mode_replies_are_objects_on_every_seed(engine_page, served):
    """JSON mode bounds nothing: a random model would pick one of the ~500 tokens of a string for
    hundreds of steps before a quote. logit_bias (OpenAI's) favours the tokens that close
    strings and objects, so replies end within the budget; what they hold is still noise."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(served[2].tokenizer))
    closing = {
        str(i): 4.0 for i in range(tokenizer.get_vocab_size()) if {'"', "}"} & set(tokenizer.decode([i]))
    }
    for seed in SEEDS:
        choice = _reply(
            engine_page,
            response_format={"type": "json_object"},
            logit_bias=closing,
            temperature=1.0,
            seed=seed,
            max_tokens=400,
        )
        assert choice["finish_reason"] == "stop", choice
        assert isinstance(json.loads(choice["message"]["content"]), dict)


def test_free_output_of_the_model_is_not_json(engine_page):
    """The control: without a format the same model's replies do not parse."""
    for seed in range(3):
        content = _reply(engine_page, temperature=1.0, seed=seed, max_tokens=40)["message"]["content"]
        with pytest.raises(json.JSONDecodeError):
            json.loads(content)


def schema_grammar(schema: dict) -> xgrammar.Grammar:
    """xgrammar's grammar of `schema` as the page compiles it (web/src/grammar.ts): one line, no
    free whitespace, and strings of JSON's characters only (xgrammar 0.1.27's length-bounded
    strings let control characters in)."""
    text = str(xgrammar.Grammar.from_json_schema(json.dumps(schema), any_whitespace=False))
    return xgrammar.Grammar.from_ebnf(text.replace(r"[^\"\\\r\n]", r"[^\0-\x1f\"\\\r\n]"))


def _hf_constrained_greedy(checkpoint, compiled, schema, steps: int) -> list[int]:
    """transformers' logits, masked by Python xgrammar's bitmask, argmax: token by token."""
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    config = compiled.config
    # The library's weights are 4-bit: transformers gets the same weights, dequantized.
    hf = requantize_(AutoModelForCausalLM.from_pretrained(checkpoint).eval())
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(compiled.tokenizer))
    info = xgrammar.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=config["vocab_size"], stop_token_ids=config["eos_token_ids"]
    )
    matcher = xgrammar.GrammarMatcher(xgrammar.GrammarCompiler(info).compile_grammar(schema_grammar(schema)))
    bitmask = xgrammar.allocate_token_bitmask(1, config["vocab_size"])
    text = tokenizer.apply_chat_template(
        MESSAGES, tokenize=False, add_generation_prompt=True, chat_template=config["chat_template"]
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    out: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            logits = hf(torch.tensor([ids + out])).logits[0, -1:].float()
            matcher.fill_next_token_bitmask(bitmask)
            xgrammar.apply_token_bitmask_inplace(logits, bitmask)
            out.append(int(torch.argmax(logits[0])))
            assert matcher.accept_token(out[-1])
            if matcher.is_terminated():
                break
    return out


def test_greedy_under_a_schema_equals_transformers_masked_by_python_xgrammar(engine_page, served):
    """The GPU path: the page uploads the mask and the library's argmax_masked picks the token."""
    _, checkpoint, compiled = served
    response = engine_page.evaluate(
        CREATE,
        {
            "messages": MESSAGES,
            "max_tokens": 200,
            "logprobs": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": "note", "schema": NOTE}},
        },
    )
    choice = response["choices"][0]
    expected = _hf_constrained_greedy(checkpoint, compiled, NOTE, 200)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(compiled.tokenizer))
    assert choice["message"]["content"] == tokenizer.decode(expected, skip_special_tokens=True)
    assert response["usage"]["completion_tokens"] == len(expected)


def test_properties_named_like_keywords_are_fine(engine_page):
    """`not` and `if` as property names are data, not keywords."""
    schema = {
        "type": "object",
        "properties": {"not": {"enum": ["x"]}, "if": {"enum": ["y"]}},
        "required": ["not", "if"],
    }
    choice = _reply(engine_page, response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    assert json.loads(choice["message"]["content"]) == {"not": "x", "if": "y"}


@pytest.mark.parametrize(
    "response_format, message",
    [
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}},
            "not a JSON Schema",
        ),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "needs a `schema` object"),
        ({"type": "grammar", "grammar": "root ::= ("}, "does not parse as EBNF"),
        ({"type": "grammar", "grammar": 'start ::= "a"'}, "does not parse as EBNF"),
        ({"type": "xml"}, 'Unknown response_format type "xml"'),
        (
            {"type": "json_schema", "json_schema": {"schema": {"type": "array", "uniqueItems": True}}},
            "uses `uniqueItems` at /, which the grammar engine cannot enforce",
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {"schema": {"properties": {"a": {"not": {"type": "null"}}}}},
            },
            "uses `not` at /properties/a",
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": {"type": "string", "format": "iri"}}},
            "`format: iri` at / (enforced formats: date,",
        ),
    ],
)
def test_bad_formats_are_refused_before_any_token(engine_page, response_format, message):
    response = engine_page.evaluate(CREATE, {"messages": MESSAGES, "response_format": response_format})
    assert response["error"]["code"] == "invalid-request"
    assert message in response["error"]["message"], response["error"]["message"]


@pytest.mark.parametrize(
    "logit_bias, message",
    [({"-1": 1}, "not a token id"), ({"5": 101}, "in [-100, 100]"), ([1, 2], "must be an object")],
)
def test_bad_logit_bias_is_refused(engine_page, logit_bias, message):
    response = engine_page.evaluate(CREATE, {"messages": MESSAGES, "logit_bias": logit_bias})
    assert response["error"]["code"] == "invalid-request"
    assert message in response["error"]["message"], response["error"]["message"]


# --- tools ------------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "pattern": "^[A-Z][a-z]{1,10}$"},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, CLOCK)}


def _assert_tool_call(choice: dict, names: set[str]) -> dict:
    assert choice["finish_reason"] == "tool_calls", choice
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and re.fullmatch(r"[A-Za-z0-9]{9}", call["id"])
    assert call["function"]["name"] in names
    jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[call["function"]["name"]])
    return call


def test_a_named_tool_choice_yields_a_call_whose_arguments_validate(engine_page):
    named = {"type": "function", "function": {"name": "get_weather"}}
    for seed in range(5):
        choice = _reply(engine_page, tools=[WEATHER, CLOCK], tool_choice=named, temperature=1.0, seed=seed)
        _assert_tool_call(choice, {"get_weather"})


def test_required_tool_choice_calls_one_of_the_tools(engine_page):
    names = set()
    for seed in range(8):
        choice = _reply(
            engine_page, tools=[WEATHER, CLOCK], tool_choice="required", temperature=3.0, seed=seed
        )
        names.add(_assert_tool_call(choice, {"get_weather", "get_time"})["function"]["name"])
    assert names == {"get_weather", "get_time"}  # the model's choice, not always the first


STREAM = """async (request) => {
    const chunks = [];
    const stream = await window.engine.chat.completions.create({...request, stream: true});
    for await (const chunk of stream) chunks.push(chunk);
    return chunks;
}"""


def test_a_tool_call_streams_as_openai_streams_it(engine_page):
    request = {"messages": MESSAGES, "tools": [CLOCK], "tool_choice": "required", "max_tokens": 100}
    chunks = engine_page.evaluate(STREAM, request)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0]["role"] == "assistant"
    assert not any(d.get("content") for d in deltas)  # the call is not streamed as text
    (with_call,) = [d for d in deltas if "tool_calls" in d]
    assert (
        with_call["tool_calls"][0]["index"] == 0
        and with_call["tool_calls"][0]["function"]["name"] == "get_time"
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls" and "usage" in chunks[-1]


def test_tool_results_continue_the_conversation(engine_page):
    """The call and its result go back in as an assistant message with tool_calls and a `tool`
    message; the tiny model's ChatML template has no tools section, so they are described in
    a system message (web/src/tools.ts)."""
    first = _reply(engine_page, tools=[CLOCK], tool_choice="required")
    call = first["message"]["tool_calls"][0]
    history = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"time": "12:00"}'},
    ]
    plain = engine_page.evaluate(CREATE, {"messages": history, "max_tokens": 4})
    with_tools = engine_page.evaluate(
        CREATE, {"messages": history, "tools": [CLOCK], "tool_choice": "none", "max_tokens": 4}
    )
    for reply in (plain, with_tools):
        assert "error" not in reply, reply
        assert reply["choices"][0]["finish_reason"] in ("stop", "length")
    # The tools' description is in the prompt only when tools are offered.
    assert with_tools["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"] + 20


READ = """(texts) => texts.map(
    (t) => webllm.readToolCall(t, [{type: 'function', function: {name: 'get_time'}}]) ?? null)"""


def test_auto_replies_are_read_as_calls_only_when_they_are_one(engine_page):
    texts = [
        '{"name": "get_time", "arguments": {"zone": "UTC"}}',
        '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>',
        '{"name": "get_time", "parameters": {"zone": "UTC"}}',  # Llama 3.x's word
        '{"name": "get_date", "arguments": {}}',  # not offered
        'It is {"name": "get_time", "arguments": {}}',  # text around it
        '{"name": "get_time", "arguments": [1]}',
        "The time is noon.",
    ]
    calls = engine_page.evaluate(READ, texts)
    assert [c and json.loads(c["function"]["arguments"]) for c in calls] == [
        {"zone": "UTC"},
        {"zone": "CET"},
        {"zone": "UTC"},
        None,
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"tools": [CLOCK], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            'names "nope", which is not among the tools: get_time',
        ),
        ({"tool_choice": "required"}, "tool_choice needs tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "must be 1-64 letters"),
        ({"tools": [CLOCK, CLOCK]}, 'Two tools are named "get_time"'),
        (
            {"tools": [CLOCK], "tool_choice": "required", "response_format": {"type": "json_object"}},
            "cannot be combined",
        ),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}],
                "tool_choice": "required",
            },
            "not a JSON Schema",
        ),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 'Unknown message role "robot"'),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"if": {}}}}],
                "tool_choice": "required",
            },
            'The parameters of tool "f" use `if` at /',
        ),
    ],
)
def test_bad_tool_requests_are_refused_before_any_token(engine_page, extra, message):
    response = engine_page.evaluate(CREATE, {"messages": MESSAGES} | extra)
    assert response["error"]["code"] == "invalid-request"
    assert message in response["error"]["message"], response["error"]["message"]


def test_smollm2_extracts_name_and_age_under_a_schema(default_site, browser):
    """The real default model, in the site's own worker engine: the schema holds its reply to
    the fields, and the fields hold what the sentence says."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    (model,) = default_site.models
    with serve_in_background(default_site.directory) as url:
        page = SitePage(browser, url, timeout_s=300)
        try:
            assert page.load(model.id)["error"] is None
            for sentence, name, age in EXTRACTIONS:
                prompt = f"Give the person's name and age as JSON. {sentence}"
                reply = page.create(
                    {
                        "messages": [{"role": "user", "content": prompt}],
                        "max_tokens": 40,
                        "response_format": {
                            "type": "json_schema",
                            "json_schema": {"name": "person", "schema": schema},
                        },
                    }
                )
                assert reply["error"] is None, reply["error"]
                fields = json.loads(reply["content"])
                jsonschema.validate(fields, schema)
                assert (fields["name"], fields["age"]) == (name, age), (sentence, fields)
        finally:
            page.close()


EXTRACTIONS = [
    ("Maria Lopez is 34 years old.", "Maria Lopez", 34),
    ("My neighbour, John Smith, turned 61 yesterday.", "John Smith", 61),
    ("Aiko Tanaka, a 29-year-old engineer, moved to Lyon.", "Aiko Tanaka", 29),
]


# --- the site: `check` golden cases and the chat page's Tools panel -----------------------------


@dataclass
class Site:
    url: str
    model: str


@pytest.fixture(scope="module")
def site(served, tmp_path_factory):
    """The same model as a generated site (its library from the cache), served."""
    _, checkpoint, _ = served
    out = tmp_path_factory.mktemp("structured_site") / "dist"
    built = build_site(
        SiteOptions(models=[str(checkpoint)], quantization="q4f32_1", out=out, schedules=CI_SCHEDULES)
    )
    with serve_in_background(built.directory) as url:
        yield Site(url, built.models[0].id)


def test_check_cases_carry_response_format_and_tools(site, tmp_path):
    """A golden file written by hand with a JSON-mode case and a tool-call case: recorded, then
    checked; an edited expected call fails the check."""
    cases = [
        {
            "name": "json",
            "messages": [{"role": "user", "content": "A JSON object, please."}],
            "response_format": {"type": "json_object"},
            "max_tokens": 30,
        },
        {
            "name": "tool",
            "messages": [{"role": "user", "content": "What time is it?"}],
            "tools": [CLOCK],
            "tool_choice": "required",
            "max_tokens": 60,  # the call is ~45 of the tiny tokenizer's tokens
        },
    ]
    path = tmp_path / "golden.json"
    path.write_text(
        json.dumps(
            {
                "format": "webllm_build-golden",
                "version": GOLDEN_VERSION,
                "models": {site.model: {"cases": cases}},
            }
        )
    )
    recording = run_check(CheckOptions(target=site.url, golden=path, record=True))
    assert recording.passed, recording.summary()
    document = json.loads(path.read_text())
    recorded = document["models"][site.model]["cases"]
    assert recorded[0]["response_format"] == {"type": "json_object"}
    assert recorded[0]["expected"]["text"].startswith("{")
    (call,) = recorded[1]["expected"]["tool_calls"]
    assert call["name"] == "get_time" and call["arguments"]["zone"] in ("UTC", "CET")
    assert recorded[1]["expected"]["finish_reason"] == "tool_calls"
    report = run_check(CheckOptions(target=site.url, golden=path))
    assert report.passed, report.summary()

    call["arguments"]["zone"] = "PST"
    path.write_text(json.dumps(document))
    report = run_check(CheckOptions(target=site.url, golden=path))
    assert [c.status for c in report.models[0].cases] == ["pass", "fail"]
    assert "tool calls" in report.models[0].cases[1].problems[0]


def test_the_page_shows_a_tool_call_and_runs_nothing(site, browser):
    """Tools pasted in the Tools panel go with the message; the call comes back as its name and
    arguments, copyable as JSON, and the chat goes on after it."""
    chat = ChatPage(browser, site.url)
    chat.settings(temperature=0, max_tokens=60)
    chat.load(site.model)
    chat.tools("not json", choice="required")
    before = chat.assistant_count()
    chat.page.fill("#prompt", "What time is it?")
    chat.page.click("#send")
    assert "Tools are not valid JSON" in chat.page.inner_text("#tools-error")
    assert chat.assistant_count() == before  # nothing was sent

    chat.tools(json.dumps([CLOCK]), choice="required")
    chat.send("What time is it?")
    (call,) = json.loads(chat.wait_for_reply())
    assert call["function"]["name"] == "get_time"
    assert json.loads(call["function"]["arguments"])["zone"] in ("UTC", "CET")
    shown = chat.page.locator(".message.assistant").last.locator(".tool-call")
    assert shown.locator("code").first.inner_text() == "get_time"
    assert json.loads(shown.locator("pre").inner_text()) == json.loads(call["function"]["arguments"])

    chat.tools("", choice="auto")
    chat.send("Thanks!")
    chat.wait_for_reply()
    assert chat.usage()["completion_tokens"] > 0
    assert not chat.log.errors, chat.log.tail()


# --- the page's masks against Python xgrammar's, on SmolLM2's real tokenizer -----------------

MASKS = """async ([tokenizerJson, config, format, tokens]) => {
    const tokenizer = await webllm.Tokenizer.fromJSON(tokenizerJson);
    const grammars = new webllm.Grammars(tokenizer, config);
    const constraint = await grammars.constraint(format);
    const masks = [];
    for (const token of tokens) {
        masks.push(Array.from(await constraint.nextMask()));
        constraint.accept(token);
    }
    const finished = constraint.finished;
    constraint.dispose();
    grammars.dispose();
    tokenizer.dispose();
    return {masks, finished};
}"""


def test_page_masks_equal_python_xgrammars_on_smollm2(served, browser):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    url, _, _ = served
    checkpoint = load_without_weights("smollm2-135m")
    text = checkpoint.tokenizer_json
    vocab_size, eos = int(checkpoint.config["vocab_size"]), [2]
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(text))
    tokens = tokenizer('{"name": "Ada Lovelace", "age": 36}', add_special_tokens=False)["input_ids"] + eos

    # Python xgrammar's own route from schema to matcher (the schema has no length-bounded
    # string, where the page's grammar differs on purpose: schema_grammar).
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=eos)
    compiled = xgrammar.GrammarCompiler(info).compile_json_schema(json.dumps(schema), any_whitespace=False)
    matcher = xgrammar.GrammarMatcher(compiled)
    bitmask = xgrammar.allocate_token_bitmask(1, vocab_size)
    expected = []
    for token in tokens:
        matcher.fill_next_token_bitmask(bitmask)
        expected.append(bitmask[0].numpy().astype(np.int32))
        assert matcher.accept_token(token)

    page = PageModel(browser, url, "llama").page
    config = {"vocab_size": vocab_size, "eos_token_ids": eos, "tokenizer_kind": tokenizer_kind(text)}
    format_ = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    result = page.evaluate(MASKS, [text, config, format_, tokens])
    assert result["finished"] and matcher.is_terminated()
    assert len(result["masks"]) == len(expected) == len(tokens)
    for step, (ours, theirs) in enumerate(zip(result["masks"], expected, strict=True)):
        assert np.array_equal(np.asarray(ours, dtype=np.int32), theirs), f"step {step}"


# --- how the tokenizer spells its vocabulary, against xgrammar's own detection ----------------

_LLAMA2_DECODER = {
    "type": "Sequence",
    "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0},
    ],
}
_PREPEND = {"type": "Prepend", "prepend": "\u2581"}
_REPLACE = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}


def _metaspace(scheme: str) -> dict:
    return {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme, "split": True}


@pytest.mark.parametrize(
    "decoder, normalizer, pre_tokenizer",
    [
        (_LLAMA2_DECODER, {"type": "Sequence", "normalizers": [_PREPEND, _REPLACE]}, None),  # Llama 2, Phi-3
        (_LLAMA2_DECODER, _REPLACE, None),  # Gemma
        (_LLAMA2_DECODER, _PREPEND, None),
        ({"type": "ByteFallback"}, None, None),
        (_metaspace("always"), None, _metaspace("always")),
        (_metaspace("first"), None, _metaspace("first")),
        (_metaspace("never"), None, _metaspace("never")),
        ({"type": "Sequence", "decoders": [{"type": "ByteLevel"}]}, None, None),
        ({"type": "WordPiece"}, None, None),
        (_LLAMA2_DECODER, None, {"type": "Sequence", "pretokenizers": [_metaspace("first")]}),
    ],
)
def test_tokenizer_kind_agrees_with_xgrammar(decoder, normalizer, pre_tokenizer):
    spec = json.loads(tokenizer_json()) | {
        "decoder": decoder,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
    }
    _assert_same_kind(json.dumps(spec))


def test_tokenizer_kind_of_real_and_test_tokenizers_agrees_with_xgrammar():
    _assert_same_kind(load_without_weights("smollm2-135m").tokenizer_json)
    _assert_same_kind(tokenizer_json())


def _assert_same_kind(text: str) -> None:
    theirs = xgrammar.TokenizerInfo._detect_metadata_from_hf(text)
    ours = tokenizer_kind(text)
    assert ours == {
        "vocab_type": theirs["vocab_type"].name.lower(),
        "prepend_space": theirs["add_prefix_space"],
    }
