"""Chatting through the generated page, as a visitor does: load, type, stream, stop, reply again.

The site is served by the real `webllm_build serve`, the page is driven only through its UI
(clicks and keys), and replies are compared with transformers on the CPU.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from checkpoints import IM_END_ID, make_llama, write_tokenizer
from conftest import CI_SCHEDULES

from webllm_build.artifacts import read_model_index
from webllm_build.reference import hf_greedy, load_reference
from webllm_build.serve import serve_in_background
from webllm_build.site import SiteOptions, build_site

TINY = "tiny-llama-q4f32_1"
HOSTILE = "hostile-q4f32_1"
# Whole tokens of the hostile model's tokenizer, so the model can emit them one at a time.
HOSTILE_TOKENS = ['<img src=x onerror="window.pwned=1">', " and <script>window.pwned=2</script>"]


def _make_hostile(directory: Path) -> Path:
    """A tiny Llama whose greedy reply is HOSTILE_TOKENS then end-of-turn, whatever it is asked.

    Every layer's output projections are zero, so the last hidden state is the current token's
    embedding; the lm_head row of token B is the direction of token A's embedding exactly when B
    should follow A. Random 64-d embeddings are near-orthogonal, so that row wins by a wide margin.
    """
    from tokenizers import Tokenizer

    make_llama(directory, seed=11, vocab_size=520, num_hidden_layers=1)
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.add_tokens(HOSTILE_TOKENS)
    write_tokenizer(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    hostile_ids = [tokenizer.token_to_id(t) for t in HOSTILE_TOKENS]
    # The generation prompt ends with "assistant\n"; its last token starts the chain.
    last = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False).ids[-1]
    chain = [last, *hostile_ids, IM_END_ID]

    from safetensors.torch import load_file, save_file

    weights = load_file(str(directory / "model.safetensors"))
    for name in weights:
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name].zero_()
    embed = weights["model.embed_tokens.weight"]
    head = torch.zeros_like(weights["lm_head.weight"])
    for current, following in zip(chain, chain[1:], strict=False):
        head[following] = 4 * embed[current] / embed[current].norm()
    weights["lm_head.weight"] = head
    weights["model.norm.weight"] = torch.ones_like(weights["model.norm.weight"])
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("chat_checkpoints")
    return {
        TINY: make_llama(root / "tiny-llama", seed=3, initializer_range=0.2),
        HOSTILE: _make_hostile(root / "hostile"),
    }


@pytest.fixture(scope="module")
def served_site(tmp_path_factory, checkpoints, wasm_runtime):
    out = tmp_path_factory.mktemp("chat_site") / "dist"
    # A prefill chunk of 4 matches the other browser tests' tiny Llama, so its library is cached.
    build_site(
        SiteOptions(
            models=[str(p) for p in checkpoints.values()], out=out, prefill_chunk=4, schedules=CI_SCHEDULES
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "webllm_build", "serve", str(out), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(
                        f"webllm_build serve exited: {server.stderr.read().decode()}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


class ChatPage:
    """The chat page, driven through its controls only."""

    def __init__(self, browser, url: str) -> None:
        self.page, self.log = browser.open(url, ready="window.webllmAppReady === true")

    def settings(self, temperature: float, max_tokens: int) -> None:
        self.page.click("#settings summary")
        self.page.fill("#temperature", str(temperature))
        self.page.fill("#max-tokens", str(max_tokens))

    def load(self, model_id: str) -> None:
        self.page.select_option("#model", model_id)
        self.page.click("#load")
        self.page.wait_for_function(
            "document.getElementById('progress-text').textContent.endsWith('is ready.') ||"
            " !document.getElementById('error').hidden",
            timeout=120_000,
        )
        assert self.page.is_hidden("#error"), self.page.inner_text("#error")

    def send(self, text: str) -> None:
        self.page.fill("#prompt", text)
        self.page.press("#prompt", "Enter")
        self.page.wait_for_function("!document.getElementById('stop').disabled", timeout=30_000)

    def wait_for_reply(self) -> str:
        self.page.wait_for_function("document.getElementById('stop').disabled", timeout=300_000)
        assert self.page.is_hidden("#error"), self.page.inner_text("#error")
        return self.page.eval_on_selector_all(".message.assistant", "els => els.at(-1).dataset.raw")

    def usage(self) -> dict:
        return self.page.evaluate("window.webllmApp.lastUsage")


def test_chat_streams_greedy_reply_and_reuses_the_cache(served_site, checkpoints, browser):
    reference = load_reference(str(checkpoints[TINY]), "q4f32_1")
    chat = ChatPage(browser, served_site)
    assert chat.page.evaluate("window.webllmApp.engineKind") == "worker"
    chat.settings(temperature=0, max_tokens=12)
    chat.load(TINY)
    # Count how often the reply is redrawn while it streams in.
    chat.page.evaluate(
        """() => { window.redraws = 0; new MutationObserver(() => window.redraws++)
            .observe(document.getElementById('conversation'), {subtree: true, childList: true}); }"""
    )

    first = [{"role": "user", "content": "Hello, world!"}]
    ids = reference.prompt_ids(first)
    expected = reference.decode(_greedy(reference, ids, 12))
    chat.send("Hello, world!")
    reply = chat.wait_for_reply()
    assert reply == expected
    assert chat.page.evaluate("window.redraws") > 3  # streamed, not painted once at the end
    usage = chat.usage()
    assert (usage["prompt_tokens"], usage["prefill_tokens"]) == (len(ids), len(ids))
    assert usage["completion_tokens"] == 12
    assert "tokens/s" in chat.page.inner_text("#stats")

    # The second turn prefills only what follows the tokens already in the KV cache.
    second = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "How are you?"}]
    ids2 = reference.prompt_ids(second)
    generated = _greedy(reference, ids, 12)
    cached = ids + generated[:-1]  # the last sampled token was never fed back
    reused = next((i for i, (a, b) in enumerate(zip(cached, ids2, strict=False)) if a != b), len(cached))
    chat.send("How are you?")
    reply2 = chat.wait_for_reply()
    assert reply2 == reference.decode(_greedy(reference, ids2, 12))
    usage = chat.usage()
    assert usage["prompt_tokens"] == len(ids2)
    # A random model's reply rarely re-tokenizes the same, but the whole first prompt is reused.
    assert reused >= len(ids)
    assert usage["prefill_tokens"] == len(ids2) - reused
    assert not chat.log.errors, chat.log.tail()


def test_stop_ends_the_reply_midway(served_site, checkpoints, browser):
    reference = load_reference(str(checkpoints[TINY]), "q4f32_1")
    chat = ChatPage(browser, served_site)
    chat.settings(temperature=0, max_tokens=200)
    chat.load(TINY)
    # A prompt whose reference reply runs the full 200 tokens, so only Stop can end it early.
    prompt, full = next(
        (text, ids)
        for text in ("Count", "Hello", "Tell me a story", "Go on", "Why?", "More", "List numbers")
        if len(ids := _greedy(reference, reference.prompt_ids([{"role": "user", "content": text}]), 200))
        == 200
    )
    chat.send(prompt)
    chat.page.wait_for_function(
        "(document.querySelector('.message.assistant:last-child')?.dataset.raw || '').length > 0"
    )
    chat.page.click("#stop")
    reply = chat.wait_for_reply()
    usage = chat.usage()
    assert 0 < usage["completion_tokens"] < 200
    assert reference.decode(full).startswith(reply)
    # The page is usable again, and the stopped reply is part of the conversation.
    assert chat.page.is_enabled("#send") and chat.page.is_enabled("#new-chat")
    chat.page.click("#new-chat")
    assert chat.page.eval_on_selector_all(".message", "els => els.length") == 0


def test_model_output_cannot_inject_html(served_site, checkpoints, browser):
    reference = load_reference(str(checkpoints[HOSTILE]), "q4f32_1")
    ids = reference.prompt_ids([{"role": "user", "content": "Hi"}])
    hostile = reference.decode(_greedy(reference, ids, 8))
    assert hostile == "".join(HOSTILE_TOKENS)  # the reference really writes the markup

    chat = ChatPage(browser, served_site)
    chat.settings(temperature=0, max_tokens=8)
    chat.load(HOSTILE)
    chat.send("Hi")
    assert chat.wait_for_reply() == hostile
    chat.page.wait_for_timeout(200)  # an onerror handler would have run by now
    conversation = chat.page.locator("#conversation")
    assert conversation.locator("img, script, [onerror]").count() == 0
    assert chat.page.evaluate("window.pwned") is None
    assert "<script>window.pwned=2</script>" in conversation.inner_text()


def _greedy(reference, ids: list[int], steps: int) -> list[int]:
    eos = reference.model.generation_config.eos_token_id
    return hf_greedy(reference.model, ids, steps, eos if isinstance(eos, list) else [eos])


@pytest.fixture(scope="module")
def variants_site(tmp_path_factory, checkpoints, wasm_runtime):
    out = tmp_path_factory.mktemp("variants_site") / "dist"
    options = SiteOptions(
        models=[str(checkpoints[TINY])],
        quantization="q4f16_1,q4f32_1",
        out=out,
        prefill_chunk=4,
        schedules=CI_SCHEDULES,
    )
    build_site(options)
    with serve_in_background(out) as url:
        yield url


def test_page_offers_the_f32_build_when_the_gpu_lacks_shader_f16(variants_site, browser):
    # SwiftShader has no shader-f16: the site's default (q4f16_1) cannot run here.
    chat = ChatPage(browser, variants_site)
    requests: list[str] = []
    chat.page.on("request", lambda r: requests.append(r.url))
    assert chat.page.evaluate("window.webllmApp.adapter.shaderF16") is False
    assert chat.page.input_value("#model") == "tiny-llama-q4f32_1"  # picked for the visitor
    labels = chat.page.eval_on_selector_all("#model option", "els => els.map(e => e.textContent)")
    assert "needs shader-f16" in labels[0] and "needs" not in labels[1]

    chat.page.select_option("#model", "tiny-llama-q4f16_1")
    chat.page.click("#load")
    error = chat.page.locator("#error")
    error.wait_for(state="visible")
    assert "shader-f16" in error.inner_text()
    assert not [url for url in requests if "q4f16_1" in url]  # refused before any download
    chat.page.click("#error .error-action")
    chat.page.wait_for_function("document.getElementById('progress-text').textContent.endsWith('is ready.')")
    assert chat.page.input_value("#model") == "tiny-llama-q4f32_1"
    assert chat.page.is_enabled("#prompt")


def test_a_tensor_larger_than_the_gpu_allows_is_refused_before_download(variants_site, browser):
    chat = ChatPage(browser, variants_site)
    requests: list[str] = []
    chat.page.on("request", lambda r: requests.append(r.url))

    def inflate(route):
        # The manifest of a model whose largest tensor exceeds SwiftShader's 1 GiB binding limit.
        manifest = json.loads(route.fetch().text())
        manifest["records"][0]["records"][0]["nbytes"] = 2 << 30
        route.fulfill(json=manifest)

    chat.page.route("**/tiny-llama-q4f32_1/tensor-cache.json", inflate)
    chat.page.click("#load")
    error = chat.page.locator("#error")
    error.wait_for(state="visible", timeout=60_000)
    text = error.inner_text()
    assert "2048 MiB" in text and "1024 MiB" in text and "cannot hold" in text
    assert not [url for url in requests if "/params-" in url]


def test_smollm2_site_reply_matches_transformers(tmp_path_factory, browser, wasm_runtime):
    """The real model through the real page: SmolLM2-135M-Instruct q4f32_1, greedy to its own eos."""
    out = tmp_path_factory.mktemp("smollm2_site") / "dist"
    site = build_site(
        SiteOptions(models=["smollm2-135m"], quantization="q4f32_1", out=out, schedules=CI_SCHEDULES)
    )
    model_dir = site.directory / "models" / site.models[0].id
    config = json.loads((model_dir / read_model_index(model_dir).files["config"].path).read_text())
    reference = load_reference("smollm2-135m", "q4f32_1")
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    expected = hf_greedy(reference.model, reference.prompt_ids(messages), 24, config["eos_token_ids"])
    assert expected[-1] in config["eos_token_ids"]  # the reply ended on its own

    with serve_in_background(site.directory) as url:
        chat = ChatPage(browser, url)
        chat.settings(temperature=0, max_tokens=24)
        chat.load(site.models[0].id)
        chat.send(messages[0]["content"])
        assert chat.wait_for_reply() == reference.decode(expected)
        assert chat.usage()["completion_tokens"] == len(expected)
