"""Compiled models on real WebGPU (SwiftShader) in headless Chromium, against transformers."""

from __future__ import annotations

import jinja2
import numpy as np
import pytest
from checkpoints import make_llama, make_phi
from reference import hf_greedy, hf_last_logits, requantize_
from tokenizers import Tokenizer

from webllm_build.compile import CompileOptions, compile_model
from webllm_build.loaders import resolve_model
from webllm_build.serve import serve_in_background
from webllm_build.testing import PageModel, stage_models

PROMPT = [5, 17, 42, 7, 99, 3, 25, 11, 9, 301, 44]


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory, wasm_runtime):
    """A tiny Llama (q4f32_1) and a tiny Phi (q0f32) compiled for WebGPU, served with the harness."""
    root = tmp_path_factory.mktemp("tiny_browser")
    # A wide init (0.2, not transformers' 0.02): with near-uniform attention and tiny logits a
    # 1e-3 bound could not tell a rotary bug from noise.
    checkpoints = {
        "llama": make_llama(root / "ckpt-llama", seed=3, initializer_range=0.2),
        "phi": make_phi(root / "ckpt-phi", seed=4, initializer_range=0.2),
    }
    quants = {"llama": "q4f32_1", "phi": "q0f32"}
    models = {
        name: compile_model(
            # A chunk smaller than the prompt: the browser's chunked prefill is exercised too.
            CompileOptions(model=str(path), quantization=quants[name], prefill_chunk=4, target="webgpu"),
            root / f"out-{name}",
        ).directory
        for name, path in checkpoints.items()
    }
    site = stage_models(root / "site", models)
    with serve_in_background(site) as url:
        yield url, checkpoints


def _hf(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def test_quantized_llama_matches_transformers_on_dequantized_weights(tiny_site, browser):
    url, checkpoints = tiny_site
    reference = requantize_(_hf(checkpoints["llama"]))
    model = PageModel.loaded(browser, url, "llama")
    logits = np.asarray(model.prefill(PROMPT), dtype=np.float32)
    expected = hf_last_logits(reference, PROMPT)
    assert np.abs(logits - expected).max() < 1e-3
    model.reset()
    assert model.greedy(PROMPT, 16) == hf_greedy(reference, PROMPT, 16, eos_ids=[])


def test_phi_matches_transformers(tiny_site, browser):
    url, checkpoints = tiny_site
    reference = _hf(checkpoints["phi"])
    model = PageModel.loaded(browser, url, "phi")
    sequence = list(PROMPT)
    logits = model.prefill(sequence)
    for _ in range(4):
        expected = hf_last_logits(reference, sequence)
        assert np.abs(np.asarray(logits) - expected).max() < 1e-3
        sequence.append(int(np.argmax(expected)))
        logits = model.decode(sequence[-1])


def test_reset_starts_a_fresh_sequence(tiny_site, browser):
    url, _ = tiny_site
    model = PageModel.loaded(browser, url, "llama")
    first = model.greedy(PROMPT, 4)
    model.reset()
    assert model.greedy(PROMPT, 4) == first


def test_smollm2_q4f32_chat_reply_matches_transformers(tmp_path_factory, browser, wasm_runtime):
    """The real model: SmolLM2-135M-Instruct, 4-bit, one chat turn, greedy to eos."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("smollm2_browser")
    compiled = compile_model(CompileOptions(model="smollm2-135m", quantization="q4f32_1"), root / "out")
    template = jinja2.Environment().from_string(compiled.config["chat_template"])
    prompt = template.render(
        messages=[{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True
    )
    ids = Tokenizer.from_file(str(compiled.tokenizer)).encode(prompt, add_special_tokens=False).ids

    gguf = resolve_model("smollm2-135m").path
    reference = requantize_(
        AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        ).eval()
    )
    expected = hf_greedy(reference, ids, 24, compiled.config["eos_token_ids"])

    site = stage_models(root / "site", {"smollm2": compiled.directory})
    with serve_in_background(site) as url:
        model = PageModel.loaded(browser, url, "smollm2")
        assert model.greedy(ids, 24) == expected
    assert expected[-1] in compiled.config["eos_token_ids"]  # the reply ended on its own
