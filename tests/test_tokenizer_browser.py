"""The browser engine's tokenizer and chat templates, identical to Python.

Each tokenizer.json is fetched by URL into headless Chromium and run by the real bundle. Ids,
decodes and every streaming step are compared with Python `tokenizers`; chat templates with
transformers' own rendering (`render_jinja_template`, what `apply_chat_template` calls).

The streaming rule (web/src/tokenizer.ts): after k tokens the decoder has emitted exactly
Python's `decode(ids[:j])` less its trailing U+FFFD run, where j is k less any trailing run of
<0xNN> tokens when the decoder has a ByteFallback step; `flush()` adds the rest, so the pieces
concatenate to `decode(ids)`.
"""

from __future__ import annotations

import json
import random
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import pytest
from checkpoints import CHATML_TEMPLATE, tokenizer_json
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers.utils.chat_template_utils import render_jinja_template

from webllm_build.loaders import load_checkpoint, resolve_model
from webllm_build.serve import serve_in_background
from webllm_build.verify.browser import evaluate, write_harness

CORPUS = [
    "",
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n\treturn a + b\n\n\tif x:\n\t\tpass  # two tabs\n",
    "class A:\n    def f(self):\n        return {'k': [1, 2, 3]}\n",
    "   leading spaces, trailing spaces   ",
    "runs:  two   three    four\t\t\ttabs\n\n\nnewlines\r\n\r\nCRLF",
    " ",
    "\n",
    "日本語のテキストと中文字符，以及한국어 문장。",
    "emoji 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇯🇵 and a lone 🙂",
    "skin tones 👋🏻👋🏼👋🏽👋🏾👋🏿 and ZWJ 🧑‍💻👩🏽‍🚀",
    "combining: e\u0301 a\u0308 n\u0303 Z\u0351\u0352\u0353 precomposed: é ä ñ",
    "Arabic: مرحبا بالعالم. Hebrew: שלום עולם. Mixed: abc مرحبا 123",
    "digits 0123456789 1234567890123 3.14159 -42 1e10 ٠١٢٣ ０１２",
    "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><s></s><unk>[INST] text with specials <|im_end|>",
    "Café naïve résumé — “quotes” ‘apostrophes’ don't it's …",
    "ﬁ ﬂ ½ ① Ⅻ ｈｅｌｌｏ",  # NFKC changes these
    "a\u200bb\u200cc\u200dd\ufeffe zero-width and BOM",
    "replacement char \ufffd in text",
    "mathematical 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐛𝐨𝐥𝐝 and a 4-byte CJK 𠜎𠜱",
]

BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")

_TRAIN = [
    "The quick brown fox jumps over the lazy dog. Hello, world! café naïve",
    "def add(a, b):\n    return a + b  # 0123456789\n\tindented with a tab",
    "for i in range(10): print(i * i)  ... and    spaces",
] * 30


def llama2_style_json() -> str:
    """A SentencePiece-style BPE as Llama 2's tokenizer.json has it: ▁ for spaces in the
    normalizer, byte fallback to <0xNN> pieces, a Replace/ByteFallback/Fuse/Strip decoder.
    Trained on ASCII, so CJK and emoji fall back to bytes."""
    specials = ["<unk>", "<s>", "</s>"]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    byte_pieces = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials + byte_pieces, show_progress=False)
    tokenizer.train_from_iterator(_TRAIN, trainer=trainer)
    data = json.loads(tokenizer.to_str())
    # Byte pieces are ordinary vocabulary in Llama 2, not added tokens matched in the text.
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] in specials]
    return json.dumps(data)


def unigram_json() -> str:
    """A Unigram model (T5 / ALBERT style): NFKC, Metaspace, <unk> for unseen characters."""
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(_TRAIN, trainer=trainer)
    return tokenizer.to_str()


@pytest.fixture(scope="module")
def smollm2():
    return load_checkpoint(resolve_model("smollm2-135m"))


@pytest.fixture(scope="module")
def tokenizer_files(smollm2) -> dict[str, str]:
    return {
        "smollm2": smollm2.tokenizer_json,
        "tiny_bpe": tokenizer_json(),
        "llama2_style": llama2_style_json(),
        "unigram": unigram_json(),
    }


# The engine is meant to run in a module worker too, where the wasm loader takes another path.
WORKER_SCRIPT = """import * as webllm from './webllm_build.js';
onmessage = async (e) => {
    const tok = await webllm.Tokenizer.load(e.data.name + '.json');
    postMessage(tok.encode(e.data.text));
    tok.dispose();
};
"""


@pytest.fixture(scope="module")
def page(browser, tmp_path_factory, tokenizer_files):
    root = write_harness(tmp_path_factory.mktemp("tokenizer_site"))
    for name, text in tokenizer_files.items():
        (root / f"{name}.json").write_text(text, encoding="utf-8")
    (root / "broken.json").write_text('{"model": 3}', encoding="utf-8")
    (root / "worker.js").write_text(WORKER_SCRIPT, encoding="utf-8")
    model_dir = root / "model"
    model_dir.mkdir()
    (model_dir / "tokenizer-0123456789abcdef.json").write_text(tokenizer_files["smollm2"], encoding="utf-8")
    tokenizer_entry = {"path": "tokenizer-0123456789abcdef.json", "nbytes": 0, "sha256": ""}
    (model_dir / "webllm-model.json").write_text(
        json.dumps({"format": 1, "files": {"tokenizer": tokenizer_entry}})
    )
    with serve_in_background(root) as url:
        page, log = browser.open(url)
        yield lambda js, arg=None: evaluate(page, log, js, arg)
        page.context.close()


TOKENIZE_SCRIPT = """async ({name, texts, extraIds}) => {
    const tok = await webllm.Tokenizer.load(name + '.json');
    const stream = (ids, skipSpecialTokens) => {
        const decoder = tok.streamingDecoder({skipSpecialTokens});
        const steps = ids.map((id) => decoder.push(id));
        return {steps, rest: decoder.flush()};
    };
    try {
        const encoded = texts.map((t) => tok.encode(t));
        return {
            vocabSize: tok.vocabSize,
            encoded,
            decoded: encoded.concat(extraIds).map((ids) => tok.decode(ids)),
            skipped: encoded.concat(extraIds).map((ids) => tok.decode(ids, {skipSpecialTokens: true})),
            streams: encoded.concat(extraIds).map((ids) => stream(ids, false)),
            skippedStreams: encoded.map((ids) => stream(ids, true)),
            batched: encoded.map((ids) => {
                const decoder = tok.streamingDecoder();
                return decoder.push(ids.slice(0, 3)) + decoder.push(ids.slice(3)) + decoder.flush();
            }),
        };
    } finally {
        tok.dispose();
    }
}"""


def _has_byte_fallback(decoder: dict[str, Any] | None) -> bool:
    if not decoder:
        return False
    return decoder["type"] == "ByteFallback" or any(map(_has_byte_fallback, decoder.get("decoders", [])))


def expected_stream(tokenizer: Tokenizer, ids: list[int], byte_fallback: bool) -> list[str]:
    """The text a streaming decoder may have emitted after each token (the module docstring's rule)."""
    shown = []
    for k in range(1, len(ids) + 1):
        end = k
        while byte_fallback and end > 0 and BYTE_TOKEN.fullmatch(tokenizer.id_to_token(ids[end - 1]) or ""):
            end -= 1
        shown.append(tokenizer.decode(ids[:end], skip_special_tokens=False).rstrip("\ufffd"))
    return shown


def random_ids(tokenizer: Tokenizer, byte_fallback: bool, seed: int) -> list[list[int]]:
    """Id sequences a model could sample: half of the ids are partial UTF-8 (lone bytes, or byte
    pieces, where the vocabulary has them), so characters split, never complete, or come out invalid."""
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if byte_fallback:
        partial = [i for i in range(size) if BYTE_TOKEN.fullmatch(tokenizer.id_to_token(i) or "")]
    else:
        partial = [i for i in range(size) if "\ufffd" in tokenizer.decode([i], skip_special_tokens=False)]
    partial = partial or list(range(size))
    rng = random.Random(seed)
    return [
        [rng.choice(partial) if rng.random() < 0.5 else rng.randrange(size) for _ in range(40)]
        for _ in range(6)
    ]


@pytest.mark.parametrize("name", ["smollm2", "tiny_bpe", "llama2_style", "unigram"])
def test_ids_decodes_and_streaming_match_python(page, tokenizer_files, name):
    tokenizer = Tokenizer.from_str(tokenizer_files[name])
    byte_fallback = _has_byte_fallback(json.loads(tokenizer_files[name]).get("decoder"))
    extra = random_ids(tokenizer, byte_fallback, seed=len(name))
    got = page(TOKENIZE_SCRIPT, {"name": name, "texts": CORPUS, "extraIds": extra})

    assert got["vocabSize"] == tokenizer.get_vocab_size(with_added_tokens=True)
    expected_ids = [tokenizer.encode(text, add_special_tokens=False).ids for text in CORPUS]
    for text, ids, want in zip(CORPUS, got["encoded"], expected_ids, strict=True):
        assert ids == want, f"{name}: ids differ for {text!r}"

    all_ids = expected_ids + extra
    for ids, decoded, skipped in zip(all_ids, got["decoded"], got["skipped"], strict=True):
        assert decoded == tokenizer.decode(ids, skip_special_tokens=False), f"{name}: decode of {ids}"
        assert skipped == tokenizer.decode(ids, skip_special_tokens=True), (
            f"{name}: skip-special decode of {ids}"
        )

    for ids, stream in zip(all_ids, got["streams"], strict=True):
        shown, emitted = expected_stream(tokenizer, ids, byte_fallback), ""
        for k, piece in enumerate(stream["steps"]):
            emitted += piece
            assert emitted == shown[k], f"{name}: after {k + 1} of {ids}"
        assert emitted + stream["rest"] == tokenizer.decode(ids, skip_special_tokens=False)

    for text, stream in zip(CORPUS, got["streams"][: len(CORPUS)], strict=True):
        if "\ufffd" not in text:  # valid text never shows a replacement character mid-stream
            assert not any("\ufffd" in piece for piece in stream["steps"]), f"{name}: {text!r}"

    for ids, stream in zip(expected_ids, got["skippedStreams"], strict=True):
        assert "".join(stream["steps"]) + stream["rest"] == tokenizer.decode(ids, skip_special_tokens=True)
    assert got["batched"] == [tokenizer.decode(ids, skip_special_tokens=False) for ids in expected_ids]


def test_model_directory_and_errors(page, tokenizer_files):
    got = page(
        """async (text) => {
            const code = async (f) => {
                try { await f(); return null; } catch (e) { return e.code ?? String(e); }
            };
            const tok = await webllm.Tokenizer.fromModelDirectory(new URL('model/', location.href).href);
            const ids = tok.encode(text);
            tok.dispose();
            return {
                ids,
                disposed: await code(() => tok.encode(text)),
                missing: await code(() => webllm.Tokenizer.load('nope.json')),
                broken: await code(() => webllm.Tokenizer.load('broken.json')),
                notJson: await code(() => webllm.Tokenizer.fromJSON('{')),
            };
        }""",
        CORPUS[14],
    )
    want = Tokenizer.from_str(tokenizer_files["smollm2"]).encode(CORPUS[14], add_special_tokens=False).ids
    assert got == {
        "ids": want,
        "disposed": "disposed",
        "missing": "fetch-failed",
        "broken": "bad-tokenizer",
        "notJson": "bad-tokenizer",
    }


def test_tokenizer_runs_in_a_module_worker(page, tokenizer_files):
    got = page(
        """(arg) => new Promise((resolve, reject) => {
            const worker = new Worker('worker.js', {type: 'module'});
            worker.onmessage = (e) => { resolve(e.data); worker.terminate(); };
            worker.onerror = (e) => reject(new Error(e.message));
            worker.postMessage(arg);
        })""",
        {"name": "llama2_style", "text": CORPUS[9]},
    )
    want = Tokenizer.from_str(tokenizer_files["llama2_style"]).encode(CORPUS[9], add_special_tokens=False).ids
    assert got == want


# --- chat templates ---------------------------------------------------------------------------------

# Meta-Llama-3-8B-Instruct's template.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Llama 3.1 / 3.2's layout without tools: multi-line, whitespace controlled by {%- and {{-.
LLAMA31_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}
    {{- message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

# Phi-3.5-mini-instruct's template.
PHI35_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

# Zephyr's layout: one tag a line, relying on trim_blocks to drop the newline after each tag.
ZEPHYR_TEMPLATE = """{% for message in messages %}
{% if message['role'] == 'user' %}
{{ '<|user|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'system' %}
{{ '<|system|>\n' + message['content'] + eos_token }}
{% elif message['role'] == 'assistant' %}
{{ '<|assistant|>\n'  + message['content'] + eos_token }}
{% endif %}
{% if loop.last and add_generation_prompt %}
{{ '<|assistant|>' }}
{% endif %}
{% endfor %}"""

# Mistral-style: refuses conversations that do not alternate, through raise_exception.
ALTERNATING_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)

SPECIAL_TOKENS = {
    "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>"},
    "chatml": {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "llama31": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "phi35": {
        "bos_token": "<s>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<unk>",
        "pad_token": "<|endoftext|>",
    },
    "zephyr": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "alternating": {"bos_token": "<s>", "eos_token": "</s>"},
    "qwen3": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "llama-3.2": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "smollm3": {"eos_token": "<|im_end|>"},
    "gemma-3": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"},
    "mistral-v0.3": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
}
# Published templates, as files (tests/chat_templates/README.md says where each comes from).
TEMPLATE_FILES = Path(__file__).resolve().parent / "chat_templates"
# Template variables a caller may set (`chat_template_kwargs`), each rendered both ways.
TEMPLATE_VARIABLES = {
    "llama31": [{}, {"date_string": "01 Jan 2025"}],
    "llama-3.2": [{}, {"date_string": "01 Jan 2025"}],
    "qwen3": [{}, {"enable_thinking": False}],
    "smollm3": [{}, {"enable_thinking": False}],
}
# Templates that print today's date when no date is given (strftime_now).
TODAY = re.compile(r"Today Date: \d\d \w+ \d{4}")

HARD = "日本語 👨‍👩‍👧 e\u0301 مرحبا\n\tcode {{ not_a_tag }} {% raw %} <|im_end|> 'quotes' \"double\" \\ "
CONVERSATIONS = {
    "user": [{"role": "user", "content": "What is the capital of France?"}],
    "system_user": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "  Hi!  "},
    ],
    "multi_turn": [
        {"role": "system", "content": "You are a helpful assistant.\nAnswer briefly."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ],
    "no_system_multi_turn": [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi! How can I help?"},
        {"role": "user", "content": HARD},
        {"role": "assistant", "content": HARD},
    ],
    "empty_system": [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
}


@pytest.fixture(scope="module")
def templates(smollm2) -> dict[str, str]:
    return {
        "smollm2": smollm2.chat_template,
        "chatml": CHATML_TEMPLATE,
        "llama3": LLAMA3_TEMPLATE,
        "llama31": LLAMA31_TEMPLATE,
        "phi35": PHI35_TEMPLATE,
        "zephyr": ZEPHYR_TEMPLATE,
        "alternating": ALTERNATING_TEMPLATE,
    } | {
        name: (TEMPLATE_FILES / f"{name}.jinja").read_text(encoding="utf-8")
        for name in ("qwen3", "llama-3.2", "smollm3", "gemma-3", "mistral-v0.3")
    }


def transformers_render(template: str, messages: list[dict[str, str]], **kwargs: Any) -> str:
    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template, **kwargs)
    return rendered[0]


RENDER_SCRIPT = """(cases) => cases.map(({template, messages, ...options}) => {
    try {
        return new webllm.ChatTemplate(template).render(messages, options);
    } catch (e) {
        return {code: e.code ?? null, message: String(e.message ?? e)};
    }
})"""


def test_chat_templates_render_as_transformers_does(page, templates):
    cases = []
    for name, template in templates.items():
        for conversation, messages in CONVERSATIONS.items():
            for add_generation_prompt in (True, False):
                for variables in TEMPLATE_VARIABLES.get(name, [{}]):
                    cases.append(
                        {
                            "name": name,
                            "conversation": conversation,
                            "template": template,
                            "messages": messages,
                            "addGenerationPrompt": add_generation_prompt,
                            "specialTokens": SPECIAL_TOKENS[name],
                            "variables": variables,
                        }
                    )
    got = page(RENDER_SCRIPT, cases)
    refused = []
    for case, js in zip(cases, got, strict=True):
        label = (
            f"{case['name']} / {case['conversation']} / add_generation_prompt={case['addGenerationPrompt']}"
        )
        kwargs = {
            "add_generation_prompt": case["addGenerationPrompt"],
            **case["specialTokens"],
            **case["variables"],
        }
        try:
            want = transformers_render(case["template"], case["messages"], **kwargs)
        except jinja2.TemplateError as exc:
            assert js == {
                "code": "chat-template",
                "message": f"The chat template refused the conversation: {exc}",
            }
            refused.append(label)
            continue
        if "date_string" not in case["variables"]:
            # Today's date from strftime_now: Python's clock and the page's may straddle midnight.
            js, want = TODAY.sub("Today Date: <today>", js), TODAY.sub("Today Date: <today>", want)
        assert js == want, label
    # The alternating template refuses system messages and two users in a row, and nothing else.
    assert {label.split(" / ")[1] for label in refused} == {"system_user", "multi_turn", "empty_system"}
    assert {label.split(" / ")[0] for label in refused} == {"alternating"}


def test_plain_jinja2_differs_from_transformers_only_on_trim_blocks(templates):
    """What our Python side's `jinja2.Environment().from_string(t).render(...)` gets wrong:
    transformers renders with trim_blocks and lstrip_blocks, and so does the browser."""
    differ = set()
    for name, template in templates.items():
        if name == "alternating" or (TEMPLATE_FILES / f"{name}.jinja").exists():
            continue  # plain jinja2 has no raise_exception, strftime_now or {% generation %}
        for messages in CONVERSATIONS.values():
            kwargs = {"add_generation_prompt": True, **SPECIAL_TOKENS[name], "date_string": "01 Jan 2025"}
            plain = jinja2.Environment().from_string(template).render(messages=messages, **kwargs)
            if plain != transformers_render(template, messages, **kwargs):
                differ.add(name)
    assert differ == {"zephyr"}


def test_strftime_now_matches_python_in_the_c_locale(page):
    fmt = "%a %A %b %B %d %-d %e %H %I %j %m %M %p %S %y %Y %% %-m/%-d %-H:%M"
    moments = [
        datetime(2024, 1, 5, 0, 7, 9),
        datetime(2024, 12, 31, 12, 0, 0),
        datetime(2023, 3, 1, 13, 59, 59),
        datetime(2025, 10, 9, 23, 30, 1),
        datetime(1999, 7, 4, 9, 5, 0),
    ]
    got = page(
        """({fmt, moments}) => moments.map((m) => new webllm.ChatTemplate("{{ strftime_now(fmt) }}").render(
            [], {variables: {fmt}, now: () => new Date(m[0], m[1] - 1, m[2], m[3], m[4], m[5])}))""",
        {"fmt": fmt, "moments": [[m.year, m.month, m.day, m.hour, m.minute, m.second] for m in moments]},
    )
    assert got == [m.strftime(fmt) for m in moments]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# A turn with a tool call and its result, as the engine hands them to the template (web/src/tools.ts:
# arguments as an object, as transformers takes them).
TOOL_TURN = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "a1B2c3D4e",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "a1B2c3D4e", "content": '{"celsius": 21}'},
]


def test_smollm3s_tools_need_a_filter_the_browser_lacks(page, templates):
    """SmolLM3's template prints each tool with `tool | string`, Python's dict repr, which
    @huggingface/jinja does not have: a request with tools fails with a chat-template error that
    names the filter (not a silently different prompt)."""
    case = {
        "template": templates["smollm3"],
        "messages": TOOL_TURN[:1],
        "addGenerationPrompt": True,
        "tools": [WEATHER_TOOL],
    }
    (js,) = page(RENDER_SCRIPT, [case])
    assert js["code"] == "chat-template" and "filter: string" in js["message"], js


@pytest.mark.parametrize("name", ["qwen3", "llama-3.2", "mistral-v0.3"])
def test_templates_lay_out_tools_and_tool_turns_as_transformers_does(page, templates, name):
    """`tools` and the tool-call turn of the engine's tools support render as in Python."""
    cases = [
        {
            "template": templates[name],
            "messages": messages,
            "addGenerationPrompt": True,
            "tools": [WEATHER_TOOL],
            "specialTokens": SPECIAL_TOKENS[name],
            "variables": {},
        }
        for messages in (TOOL_TURN[:1], TOOL_TURN)
    ]
    for case, js in zip(cases, page(RENDER_SCRIPT, cases), strict=True):
        want = transformers_render(
            case["template"],
            case["messages"],
            tools=[WEATHER_TOOL],
            add_generation_prompt=True,
            **case["specialTokens"],
        )
        assert isinstance(js, str), js
        js, want = TODAY.sub("Today Date: <today>", js), TODAY.sub("Today Date: <today>", want)
        assert js == want
        assert "get_weather" in js
