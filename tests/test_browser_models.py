"""Compiled models on real WebGPU (SwiftShader) in headless Chromium, against transformers."""

from __future__ import annotations

import numpy as np
import pytest
from checkpoints import (
    GEMMA3_WINDOW,
    make_gemma3,
    make_llama,
    make_mistral,
    make_phi,
    make_qwen2,
    make_qwen3,
    make_smollm3,
    write_gguf,
)
from reference import hf_greedy, hf_last_logits, requantize_

from webllm_build.build import plan_and_build
from webllm_build.plan import BuildOptions
from webllm_build.serve import serve_in_background
from webllm_build.verify.browser import evaluate
from webllm_build.verify.testing import PageModel, stage_models

PROMPT = [5, 17, 42, 7, 99, 3, 25, 11, 9, 301, 44]
# Every kernel schedule class is held to the same bounds; the page is told which library to use
# (SwiftShader would otherwise always pick cpu-emulated).
SCHEDULES = ("gpu", "cpu-emulated")


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory, wasm_runtime):
    """A tiny Llama, Qwen2 and Phi (q4f32_1) compiled for WebGPU, with the harness.

    Phi's biased fc1 + gelu and its residual adds are the 4-bit matmul epilogues that the
    cpu-emulated kernel folds into its store (unquantized q0f32 runs in test_engine_browser).
    """
    root = tmp_path_factory.mktemp("tiny_browser")
    # A wide init (0.2, not transformers' 0.02): with near-uniform attention and tiny logits a
    # 1e-3 bound could not tell a rotary bug from noise.
    checkpoints = {
        "llama": make_llama(root / "ckpt-llama", seed=3, initializer_range=0.2),
        "phi": make_phi(root / "ckpt-phi", seed=4, initializer_range=0.2),
        "qwen2": make_qwen2(root / "ckpt-qwen2", seed=2, initializer_range=0.2),
        "qwen3": make_qwen3(root / "ckpt-qwen3", seed=5, initializer_range=0.2),
        "smollm3": make_smollm3(root / "ckpt-smollm3", seed=5, initializer_range=0.2),
        "mistral": make_mistral(root / "ckpt-mistral", seed=7, initializer_range=0.2),
        "gemma3": make_gemma3(root / "ckpt-gemma3", seed=1, initializer_range=0.2),
    }
    # The Llama twice: also in the asymmetric scheme (a scale and a minimum per group). And as
    # the default model's file is: a GGUF of Q4_1 weights and a Q8_0 tied embedding, taken over
    # exactly (4-bit and 8-bit groups).
    tied = make_llama(root / "ckpt-llama-tied", seed=3, initializer_range=0.2, tie_word_embeddings=True)
    checkpoints["llama-gguf"] = write_gguf(
        tied, root / "gguf" / "llama.gguf", qtype="Q4_1", embedding_qtype="Q8_0"
    )
    # Heads of 64 values, as SmolLM2's (the others have 16): TVM's merge of cached and new
    # attention raced on SwiftShader from 32 values up (compiler/attention.py, merge_state).
    checkpoints["llama-wide-heads"] = make_llama(
        root / "ckpt-llama-wide-heads", seed=5, initializer_range=0.1, hidden_size=256, num_hidden_layers=1
    )
    builds = {name: (path, "q4f32_1") for name, path in checkpoints.items()}
    builds["llama-asym"] = (checkpoints["llama"], "q4f32_asym")
    # The new families unquantized too: their f32 matmuls, norms and rotary with no 4-bit kernel.
    for family in UNQUANTIZED_FAMILIES:
        builds[f"{family}-q0f32"] = (checkpoints[family], "q0f32")
    builds["llama-gguf"] = (checkpoints["llama-gguf"], "q4f32_asym")
    models = {
        name: plan_and_build(
            # A chunk smaller than the prompt: the browser's chunked prefill is exercised too.
            BuildOptions(
                model=str(path),
                quantization=quantization,
                prefill_chunk=4,
                target="webgpu",
                schedules=SCHEDULES,
            ),
            root / f"out-{name}",
        ).directory
        for name, (path, quantization) in builds.items()
    }
    site = stage_models(root / "site", models)
    with serve_in_background(site) as url:
        yield url, checkpoints


def _hf(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def _loaded(browser, url: str, name: str, schedule: str) -> PageModel:
    model = PageModel.loaded(browser, url, name, schedule=schedule)
    assert evaluate(model.page, model.log, "() => model.schedule") == schedule
    return model


# Every class, every family: within 1e-3 of transformers' prefill logits, then its greedy tokens.
LOGIT_BOUND = 1e-3


def _assert_matches(model: PageModel, reference, prompt: list[int], label: str) -> None:
    """The model's prefill logits within LOGIT_BOUND of `reference`'s, then exactly its 16 greedy
    tokens from a fresh sequence."""
    logits = np.asarray(model.prefill(prompt), dtype=np.float32)
    error = float(np.abs(logits - hf_last_logits(reference, prompt)).max())
    print(f"\n{label}: prefill max |logit error| {error:.2e}")
    assert error < LOGIT_BOUND
    model.reset()
    assert model.greedy(prompt, 16) == hf_greedy(reference, prompt, 16, eos_ids=[])


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_quantized_llama_matches_transformers_on_dequantized_weights(tiny_site, browser, schedule):
    url, checkpoints = tiny_site
    reference = requantize_(_hf(checkpoints["llama"]))
    model = _loaded(browser, url, "llama", schedule)
    _assert_matches(model, reference, PROMPT, f"llama q4f32_1 on WebGPU ({schedule})")


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_asymmetric_llama_matches_transformers_on_dequantized_weights(tiny_site, browser, schedule):
    """The asymmetric scheme in both kernel classes: the gpu class's tiled prompt matmul and
    dlight's GEMVs, the cpu-emulated class's hand-written kernel (minimum * sum(x) per group).

    The greedy tokens must match exactly."""
    url, checkpoints = tiny_site
    reference = requantize_(_hf(checkpoints["llama"]), asymmetric=True)
    model = _loaded(browser, url, "llama-asym", schedule)
    _assert_matches(model, reference, PROMPT, f"llama q4f32_asym on WebGPU ({schedule})")


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_gguf_blocks_taken_over_exactly_match_transformers_on_the_file(tiny_site, browser, schedule):
    """Q4_1 linears and a Q8_0 tied embedding / lm_head imported with no rounding: transformers
    on the GGUF file itself is the reference, in both classes (cpu-emulated: the hand-written
    kernel reads the 8-bit lm_head too)."""
    from transformers import AutoModelForCausalLM

    url, checkpoints = tiny_site
    path = checkpoints["llama-gguf"]
    reference = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    model = _loaded(browser, url, "llama-gguf", schedule)
    _assert_matches(model, reference, PROMPT, f"llama GGUF (Q4_1, Q8_0) as q4f32_asym ({schedule})")


@pytest.mark.parametrize("name", ["qwen2", "qwen3", "smollm3", "mistral"])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_quantized_qwen_and_smollm3_match_transformers_on_dequantized_weights(
    tiny_site, browser, schedule, name
):
    """Qwen2's q/k/v biases, tied embeddings and theta 1e6; Qwen3's per-head q/k norms and heads
    wider than hidden / heads; SmolLM3's layers without rotary (rotated by the model); Mistral
    v0.3 (a Llama by another name: GQA, theta 1e6, untied) on WebGPU.

    Before the rotary kernels computed sin and cos themselves (models/rotary.py), SwiftShader's
    (off by ~1.9e-4) left these 1.5e-3 (Qwen2, Qwen3) to 2.5e-3 (SmolLM3) from transformers'
    logits, against 1e-5 on the CPU; the greedy tokens must match exactly.
    """
    url, checkpoints = tiny_site
    reference = requantize_(_hf(checkpoints[name]))
    model = _loaded(browser, url, name, schedule)
    _assert_matches(model, reference, PROMPT, f"{name} q4f32_1 on WebGPU ({schedule})")


# Longer than Gemma 3's window: its local layers must drop the oldest positions.
LONG_PROMPT = [int(i) for i in np.random.default_rng(7).integers(3, 512, 3 * GEMMA3_WINDOW)]
UNQUANTIZED_FAMILIES = ("qwen3", "smollm3", "gemma3", "mistral")


@pytest.mark.parametrize("name", UNQUANTIZED_FAMILIES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_unquantized_new_families_match_transformers(tiny_site, browser, schedule, name):
    """q0f32: the checkpoint's own weights against transformers, Gemma 3 past its window."""
    url, checkpoints = tiny_site
    model = _loaded(browser, url, f"{name}-q0f32", schedule)
    prompt = LONG_PROMPT if name == "gemma3" else PROMPT
    _assert_matches(model, _hf(checkpoints[name]), prompt, f"{name} q0f32 on WebGPU ({schedule})")


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_quantized_gemma3_sliding_window_matches_transformers_on_dequantized_weights(
    tiny_site, browser, schedule
):
    """Gemma 3's local layers (a window of 16) beside a global one, with a 48-token prompt
    prefilled in chunks of 4 and 16 greedy steps: the window moves through both the prefill
    (cached pages beyond it dropped per chunk) and the decode steps."""
    url, checkpoints = tiny_site
    reference = requantize_(_hf(checkpoints["gemma3"]))
    model = _loaded(browser, url, "gemma3", schedule)
    _assert_matches(model, reference, LONG_PROMPT, f"gemma3 q4f32_1 on WebGPU ({schedule})")


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_quantized_phi_matches_transformers_on_dequantized_weights(tiny_site, browser, schedule):
    url, checkpoints = tiny_site
    reference = requantize_(_hf(checkpoints["phi"]))
    model = _loaded(browser, url, "phi", schedule)
    sequence = list(PROMPT)
    logits = model.prefill(sequence)
    for _ in range(4):
        expected = hf_last_logits(reference, sequence)
        assert np.abs(np.asarray(logits) - expected).max() < 1e-3
        sequence.append(int(np.argmax(expected)))
        logits = model.decode(sequence[-1])


# The library's `argmax` on logits uploaded from the page (what Model.greedy runs on its own
# logits), or with a grammar's bitmask its `argmax_masked` (structured output).
GPU_ARGMAX = """async ([values, mask]) => {
  const { tvm, device, vm } = model.lib;
  tvm.beginScope();
  try {
    const logits = tvm.empty([1, 1, values.length], "float32", device).copyFrom(Float32Array.from(values));
    const bits = mask && tvm.empty([mask.length], "int32", device).copyFrom(Int32Array.from(mask));
    const picked = mask === null
      ? vm.getFunction("argmax")(logits)
      : vm.getFunction("argmax_masked")(logits, bits);
    const token = tvm.empty([1], "int32", tvm.cpu()).copyFrom(picked);
    await device.sync();
    return token.toArray()[0];
  } finally {
    tvm.endScope();
  }
}"""


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_gpu_argmax_picks_numpys_token_ties_to_the_lowest_id(tiny_site, browser, schedule):
    """Greedy decoding reads back only the token the GPU picks; it must be numpy's argmax.

    The vocabulary (512) spans two strided passes of the 256-thread workgroup, so ties inside
    one thread (3 / 259) and across threads, where the lower id sits in the higher thread
    (200 / 300), are both decided.
    """
    url, _ = tiny_site
    model = _loaded(browser, url, "llama", schedule)
    rng = np.random.default_rng(0)
    cases = [rng.standard_normal(512).astype(np.float32) for _ in range(3)]
    cases.append(np.zeros(512, np.float32))
    for ties in ([3, 259], [200, 300], [511], [0, 511], [257, 40, 300]):
        values = rng.standard_normal(512).astype(np.float32)
        values[ties] = 9.0
        cases.append(values)
    for values in cases:
        expected = int(np.argmax(values))
        assert evaluate(model.page, model.log, GPU_ARGMAX, [values.tolist(), None]) == expected


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_gpu_masked_argmax_picks_the_best_allowed_token(tiny_site, browser, schedule):
    """xgrammar's layout: bit i % 32 of word i // 32 allows token i (bit 31 too: a negative word)."""
    url, _ = tiny_site
    model = _loaded(browser, url, "llama", schedule)
    rng = np.random.default_rng(1)
    for allowed in ([5], [31, 63], [0, 511], list(range(0, 512, 3)), [int(i) for i in rng.choice(512, 40)]):
        values = rng.standard_normal(512).astype(np.float32)
        values[np.setdiff1d(np.arange(512), allowed)[:8]] = 50.0  # the best tokens are not allowed
        bits = np.zeros(512, bool)
        bits[allowed] = True
        mask = np.packbits(bits.reshape(-1, 32)[:, ::-1], axis=1).view(">u4").astype(np.uint32).view(np.int32)
        expected = int(np.flatnonzero(bits)[np.argmax(values[bits])])
        got = evaluate(model.page, model.log, GPU_ARGMAX, [values.tolist(), mask.ravel().tolist()])
        assert got == expected


def test_fallback_adapter_gets_the_cpu_emulated_library(tiny_site, browser):
    url, _ = tiny_site
    model = PageModel.loaded(browser, url, "llama")
    assert evaluate(model.page, model.log, "() => webllm.probeWebGPU()")["isFallbackAdapter"]
    assert evaluate(model.page, model.log, "() => model.schedule") == "cpu-emulated"


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_prompt_onto_a_filled_cache_matches_transformers(tiny_site, browser, schedule):
    """New tokens prefilled after cached ones (a follow-up turn; every chunk after the first of a
    long prompt) attend to the cache and to themselves separately, merged by log-sum-exp. With
    head_dim 64 that merge raced and gave logits off by ~7 (the decode path was right)."""
    url, checkpoints = tiny_site
    reference = requantize_(_hf(checkpoints["llama-wide-heads"]))
    model = _loaded(browser, url, "llama-wide-heads", schedule)
    follow_up = [8, 61, 230]
    model.prefill(PROMPT)  # 11 tokens in chunks of 4
    logits = np.asarray(model.prefill(follow_up), dtype=np.float32)
    for name, got, sequence in (
        ("chunked prompt", model_prefill_fresh(model, PROMPT), PROMPT),
        ("follow-up", logits, PROMPT + follow_up),
    ):
        error = float(np.abs(got - hf_last_logits(reference, sequence)).max())
        print(f"\nhead_dim 64, {name} ({schedule}): max |logit error| {error:.2e}")
        assert error < 1e-3, name


def model_prefill_fresh(model: PageModel, ids: list[int]) -> np.ndarray:
    model.reset()
    return np.asarray(model.prefill(ids), dtype=np.float32)


def test_reset_starts_a_fresh_sequence(tiny_site, browser):
    url, _ = tiny_site
    model = PageModel.loaded(browser, url, "llama")
    first = model.greedy(PROMPT, 4)
    model.reset()
    assert model.greedy(PROMPT, 4) == first
