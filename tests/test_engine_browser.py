"""The engine's OpenAI-style API in headless Chromium, against transformers.

Streaming and non-streaming completions, multi-turn KV-cache reuse (only new tokens are
prefilled, and the reply equals a fresh computation), stop strings, max_tokens, seeds,
interrupt and request validation.
"""

from __future__ import annotations

import jinja2
import pytest
from checkpoints import CHATML_TEMPLATE, make_llama, write_tokenizer
from conftest import CI_SCHEDULES
from reference import hf_greedy
from tokenizers import Tokenizer

from webllm_build.build import plan_and_build
from webllm_build.plan import BuildOptions
from webllm_build.serve import serve_in_background
from webllm_build.verify.testing import PageModel, stage_models

FIRST = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello there"}]
# ChatML, plus a variable a request may set (`chat_template_kwargs`), as Qwen3's enable_thinking.
TEMPLATE = CHATML_TEMPLATE + "{% if reply_prefix is defined %}{{ reply_prefix }}{% endif %}"

CREATE = """async (request) => {
    const response = await window.engine.chat.completions.create(request);
    if (!request.stream) return response;
    const chunks = [];
    for await (const chunk of response) chunks.push(chunk);
    return chunks;
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory, wasm_runtime):
    root = tmp_path_factory.mktemp("engine")
    checkpoint = make_llama(root / "ckpt", seed=5, initializer_range=0.2)
    write_tokenizer(checkpoint, chat_template=TEMPLATE)
    compiled = plan_and_build(
        BuildOptions(model=str(checkpoint), quantization="q0f32", prefill_chunk=8, schedules=CI_SCHEDULES),
        root / "out",
    )
    site = stage_models(root / "site", {"llama": compiled.directory})
    with serve_in_background(site) as url:
        yield url, checkpoint, compiled


@pytest.fixture
def engine_page(served, browser):
    url, _, _ = served
    return PageModel(browser, url, "llama").start_engine()


def prompt_ids(compiled, messages, **variables) -> list[int]:
    text = (
        jinja2.Environment()
        .from_string(TEMPLATE)
        .render(messages=messages, add_generation_prompt=True, **variables)
    )
    return Tokenizer.from_file(str(compiled.tokenizer)).encode(text, add_special_tokens=False).ids


def reference_reply(served, messages, max_tokens):
    from transformers import AutoModelForCausalLM

    _, checkpoint, compiled = served
    hf = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    ids = prompt_ids(compiled, messages)
    tokens = hf_greedy(hf, ids, max_tokens, compiled.config["eos_token_ids"])
    tokenizer = Tokenizer.from_file(str(compiled.tokenizer))
    content_tokens = [t for t in tokens if t not in compiled.config["eos_token_ids"]]
    return ids, tokens, tokenizer.decode(content_tokens, skip_special_tokens=True)


def test_streamed_greedy_reply_equals_transformers(served, engine_page):
    ids, tokens, text = reference_reply(served, FIRST, 12)
    chunks = engine_page.evaluate(CREATE, {"messages": FIRST, "stream": True, "max_tokens": 12})
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == text
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == len(ids) and usage["completion_tokens"] == len(tokens)
    finish = chunks[-1]["choices"][0]["finish_reason"]
    assert finish == ("stop" if tokens[-1] in served[2].config["eos_token_ids"] else "length")


def test_second_turn_prefills_only_new_tokens_and_matches_a_fresh_run(served, engine_page):
    first = engine_page.evaluate(CREATE, {"messages": FIRST, "max_tokens": 6})
    reply = first["choices"][0]["message"]["content"]
    second_messages = [*FIRST, {"role": "assistant", "content": reply}, {"role": "user", "content": "more"}]
    second = engine_page.evaluate(CREATE, {"messages": second_messages, "max_tokens": 8})
    ids, _, text = reference_reply(served, second_messages, 8)
    assert second["choices"][0]["message"]["content"] == text
    usage = second["usage"]
    assert usage["prompt_tokens"] == len(ids)
    assert usage["prefill_tokens"] < usage["prompt_tokens"] - first["usage"]["prompt_tokens"] // 2


def test_reset_chat_prefills_everything_again(served, engine_page):
    engine_page.evaluate(CREATE, {"messages": FIRST, "max_tokens": 3})
    engine_page.evaluate("() => window.engine.resetChat()")
    again = engine_page.evaluate(CREATE, {"messages": FIRST, "max_tokens": 3})
    assert again["usage"]["prefill_tokens"] == again["usage"]["prompt_tokens"]


def test_stop_string_and_max_tokens(served, engine_page):
    _, _, text = reference_reply(served, FIRST, 12)
    assert len(text) >= 4, "the reference reply is too short to cut"
    stop = text[2:4]
    cut = engine_page.evaluate(CREATE, {"messages": FIRST, "max_tokens": 12, "stop": [stop]})
    assert cut["choices"][0]["message"]["content"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    short = engine_page.evaluate(CREATE, {"messages": FIRST, "max_tokens": 2})
    assert short["usage"]["completion_tokens"] <= 2


def test_seed_makes_sampling_reproducible(engine_page):
    request = {"messages": FIRST, "max_tokens": 10, "temperature": 1.5, "top_p": 0.9, "seed": 7}
    first = engine_page.evaluate(CREATE, request)["choices"][0]["message"]["content"]
    second = engine_page.evaluate(CREATE, request)["choices"][0]["message"]["content"]
    assert first == second


def test_interrupt_ends_the_stream_with_abort(engine_page):
    finish = engine_page.evaluate(
        """async (messages) => {
            const request = {messages, stream: true, max_tokens: 50};
            const stream = await window.engine.chat.completions.create(request);
            let last = null;
            for await (const chunk of stream) { window.engine.interruptGenerate(); last = chunk; }
            return last.choices[0].finish_reason;
        }""",
        FIRST,
    )
    assert finish in ("abort", "stop")  # "stop" only if the model ended on its first token


def test_chat_template_kwargs_reach_the_template(served, engine_page):
    """`chat_template_kwargs` (Qwen3's enable_thinking, Llama's date_string) are template variables."""
    _, _, compiled = served
    kwargs = {"reply_prefix": "Sure, here it is:"}
    plain = engine_page.evaluate(CREATE, {"messages": FIRST, "max_tokens": 1})
    primed = engine_page.evaluate(
        CREATE, {"messages": FIRST, "max_tokens": 1, "chat_template_kwargs": kwargs}
    )
    assert plain["usage"]["prompt_tokens"] == len(prompt_ids(compiled, FIRST))
    assert primed["usage"]["prompt_tokens"] == len(prompt_ids(compiled, FIRST, **kwargs))
    assert primed["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    "request_patch, fragment",
    [
        ({"messages": []}, "non-empty"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
    ],
)
def test_invalid_requests_are_rejected(engine_page, request_patch, fragment):
    error = engine_page.evaluate(
        """async (request) => { try { await window.engine.chat.completions.create(request); return null; }
                                catch (e) { return {code: e.code, message: e.message}; } }""",
        {"messages": FIRST, **request_patch},
    )
    assert error["code"] == "invalid-request" and fragment in error["message"]
