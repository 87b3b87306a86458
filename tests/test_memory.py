"""The GPU memory estimate (webllm_build/memory.py) and the page's check of it before anything is
downloaded (web/src/page/memory_check.ts), in headless Chromium on SwiftShader, whose adapter
allows 1 GiB in one buffer. The estimate is held against tvmjs's own count of the GPU buffers it
allocated (test_random_weights_browser.py does so for four more model families)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from chat_page import ChatPage
from checkpoints import make_llama
from conftest import CI_SCHEDULES

from webllm_build.memory import estimate_memory, kv_cache_layer_bytes
from webllm_build.models import ModelConfig
from webllm_build.serve import serve_in_background
from webllm_build.site import SiteOptions, build_site
from webllm_build.verify.sitepage import SitePage

SWIFTSHADER_BUFFER_LIMIT = 1 << 30
# The tiny Llama's KV cache at 8M tokens: 2 layers of 2 GiB (2 KV heads of 16 values, f32).
HUGE_CONTEXT = 1 << 23


def config(**changes) -> ModelConfig:
    fields = dict(
        architecture="LlamaForCausalLM",
        vocab_size=1000,
        hidden_size=64,
        intermediate_size=128,
        num_layers=3,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        norm_eps=1e-5,
        rope_theta=1e4,
        rotary_dim=16,
        rope_scaling={},
        rope_ext_factors=None,
        max_position_embeddings=4096,
        tie_embeddings=False,
        context_window=1000,
        prefill_chunk=8,
    )
    return ModelConfig(**{**fields, **changes})


def test_the_kv_cache_is_whole_pages_of_keys_and_values_per_layer():
    # 1000 tokens take 63 pages of 16: each holds keys and values of 2 heads of 16 values.
    assert kv_cache_layer_bytes(config(), 16, "float32") == 63 * 2 * 2 * 16 * 16 * 4
    assert kv_cache_layer_bytes(config(), 16, "float16") == 63 * 2 * 2 * 16 * 16 * 2


def test_the_largest_buffer_is_the_biggest_tensor_or_a_kv_layer():
    params = [("embed", (1000, 128), "uint32"), ("norm", (64,), "float32")]
    small = estimate_memory(config(), params, 16, "float32")
    assert (small.largest_buffer_name, small.largest_buffer) == ("embed", 512_000)
    assert small.weights == 512_000 + 256
    assert small.kv_cache == 3 * kv_cache_layer_bytes(config(), 16, "float32")
    long = estimate_memory(config(context_window=100_000), params, 16, "float32")
    assert long.largest_buffer_name.startswith("KV cache")
    assert long.largest_buffer == kv_cache_layer_bytes(config(context_window=100_000), 16, "float32")


def test_the_estimate_bounds_what_the_engine_allocates(default_site, browser):
    (entry,) = json.loads((default_site.directory / "site.json").read_text())["models"]
    with serve_in_background(default_site.directory) as url:
        page = SitePage(browser, url, timeout_s=600)
        try:
            assert page.load(entry["id"])["error"] is None
            loaded = page.runtime_stats()
            reply = page.create(
                {"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 4}
            )
            stats = page.runtime_stats()
        finally:
            page.close()
    assert reply["error"] is None, reply["error"]
    memory = entry["memory"]
    # At load: the weights and the KV cache, nothing transient (a download, not random weights).
    assert loaded["gpu_peak_bytes"] == loaded["gpu_allocated_bytes"]
    assert memory["weights_bytes"] + memory["kv_cache_bytes"] <= loaded["gpu_allocated_bytes"]
    # After a reply: the workspace too. The estimate holds it, within 10%.
    assert stats["gpu_peak_bytes"] <= memory["total_bytes"] <= 1.1 * stats["gpu_peak_bytes"]


@pytest.fixture(scope="module")
def huge_context_site(tmp_path_factory, wasm_runtime) -> Path:
    """The tiny Llama with random weights and an 8M-token context: a KV cache layer of 2 GiB."""
    root = tmp_path_factory.mktemp("huge_context")
    checkpoint = make_llama(root / "tiny-llama", seed=3)
    options = SiteOptions(
        models=[str(checkpoint)],
        out=root / "dist",
        context_window=HUGE_CONTEXT,
        prefill_chunk=4,
        random_weights=True,
        schedules=CI_SCHEDULES,
    )
    return build_site(options).directory


def test_a_model_too_large_for_the_gpus_buffers_is_refused_before_any_download(huge_context_site, browser):
    (entry,) = json.loads((huge_context_site / "site.json").read_text())["models"]
    memory = entry["memory"]
    assert memory["largest_buffer_bytes"] == 2 * HUGE_CONTEXT * 2 * 16 * 4 > SWIFTSHADER_BUFFER_LIMIT
    # The context whose layer fits the limit, in whole multiples of 1024 tokens.
    fits = math.floor(SWIFTSHADER_BUFFER_LIMIT / (2 * 2 * 16 * 4) / 1024) * 1024
    requests: list[str] = []
    with serve_in_background(huge_context_site, on_request=lambda r: requests.append(r.path)) as url:
        chat = ChatPage(browser, url)
        page = chat.page
        assert page.evaluate("document.querySelector('#model').selectedOptions[0].textContent").endswith(
            "(too large for this GPU)"
        )
        page.click("#load")
        page.wait_for_selector("#error", state="visible")
        message = page.inner_text("#error")
        api = page.evaluate(
            "id => webllmApp.loadModel(id).then(() => null, (e) => ({code: e.code, message: e.message}))",
            entry["id"],
        )
        page.context.close()
    assert "needs 2.00 GB in one GPU buffer (one layer's KV cache for 8388608 tokens)" in message
    assert "allows at most 1.00 GB in one buffer" in message
    assert f"--context-window {fits}" in message
    assert api["code"] == "buffer-limit" and api["message"] in message
    assert not [path for path in requests if path.startswith("/models/")], requests


def test_too_little_device_memory_is_a_warning_the_visitor_can_override(tiny_site, browser):
    (entry,) = json.loads((tiny_site / "site.json").read_text())["models"]
    total = entry["memory"]["total_bytes"]
    with serve_in_background(tiny_site) as url:
        chat = ChatPage(browser, url)
        page = chat.page
        # A device reporting less memory than the model needs (Chromium reports at least 0.25 GB
        # in reality; the toy needs about 1 MB).
        gib = total / 2 / 2**30
        page.context.add_init_script(
            f"Object.defineProperty(Navigator.prototype, 'deviceMemory', {{ get: () => {gib} }})"
        )
        page.reload()
        page.wait_for_function("window.webllmAppReady === true")
        page.click("#load")
        page.wait_for_selector("#error", state="visible")
        assert "of GPU memory (weights" in page.inner_text("#error")
        page.click("#error button")  # Load anyway
        chat.wait_until_loaded()
        chat.send("Hi")
        assert chat.wait_for_reply()
        page.context.close()
