"""The model compiler on the CPU target against an independent reference: transformers on the CPU.

Every architecture variant is compiled for `cpu` and run through `CpuModel` (the same paged-KV-cache
protocol the browser follows); its logits and greedy tokens are compared with transformers' on the
same weights, or, for 4-bit presets, on the same weights quantized and dequantized by our own
`quantize_weight` / `dequantize_weight`. The bounds reached are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from checkpoints import (
    LLAMA3_ROPE_SCALING,
    PHI3_LONGROPE,
    VOCAB_SIZE,
    make_gemma3,
    make_llama,
    make_mistral,
    make_phi,
    make_phi3,
    make_qwen2,
    make_qwen3,
    make_smollm3,
)
from conftest import run_cli
from prompts import CHAT_PROMPTS, EVERYDAY_PROMPTS, chat_prompt_ids
from reference import hf_last_logits, requantize_
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM, GenerationConfig

from webllm_build.build import plan_and_build
from webllm_build.errors import WebLLMBuildError
from webllm_build.loaders import resolve_model
from webllm_build.plan import BuildOptions
from webllm_build.quantize import get_quantization
from webllm_build.verify.runner import CpuModel

LOGIT_TOLERANCE = 1e-3
DECODE_STEPS = 6
GREEDY_STEPS = 16
PREFILL_CHUNK = 4  # smaller than every prompt, so prefill always runs in several chunks
# transformers' default init (std 0.02) leaves tiny random models with near-uniform attention and
# logits of std ~0.16, where a 1e-3 bound would hide a wrong rotary embedding. With std 0.2 the
# logits have std ~1.6 and rope details matter: llama3 scaling vs plain rope moves them by ~3,
# Phi-3's partial rotary by ~7, longrope's short factors vs none by ~0.3, its attention factor by ~2.7.
INIT_STD = 0.2

PROMPTS = [
    [435, 327, 263, 140, 159, 23, 41, 11, 92, 416, 333],
    [243, 263, 387, 486, 20, 76, 421, 485, 129, 161, 445],
]
# Longer than PHI3_LONGROPE's original window (64), where transformers switches to the long factors.
LONG_PROMPT = [int(i) for i in np.random.default_rng(7).integers(3, VOCAB_SIZE, 70)]


@dataclass(frozen=True)
class Case:
    factory: Callable[..., Path]
    # Seeds and prompts of the quantized cases are chosen so that transformers' top-2 logit margin
    # stays well above f16 rounding over all greedy steps (the margins are printed).
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    context_window: int | None = None
    prompt: list[int] = field(default_factory=lambda: PROMPTS[0])


CASES = {
    "llama-gqa": Case(make_llama, seed=1),
    "llama3-rope": Case(make_llama, overrides={"rope_scaling": LLAMA3_ROPE_SCALING}),
    "llama-tied": Case(make_llama, overrides={"tie_word_embeddings": True}),
    "phi-partial-rotary": Case(make_phi, seed=4),
    "phi3": Case(make_phi3, seed=3, prompt=PROMPTS[1]),
    "phi3-partial-rotary": Case(make_phi3, overrides={"partial_rotary_factor": 0.5}),
    # Longrope takes its short factors when the compiled context fits the original window, as
    # transformers does for sequences that fit it; the long factors otherwise, which transformers
    # uses once a sequence outgrows that window (so the long case needs a 70-token prompt).
    "phi3-longrope-short": Case(make_phi3, overrides=PHI3_LONGROPE, context_window=64),
    "phi3-longrope-long": Case(make_phi3, overrides=PHI3_LONGROPE, prompt=LONG_PROMPT),
    # Qwen2.5-0.5B/1.5B's layout (tied embeddings), and 7B's (untied).
    "qwen2": Case(make_qwen2, seed=2),
    "qwen2-untied": Case(make_qwen2, seed=3, overrides={"tie_word_embeddings": False}),
    # Qwen3-0.6B's layout: q/k norms, heads wider than hidden / heads, tied embeddings.
    "qwen3": Case(make_qwen3, seed=5),
    # SmolLM3: rotary left out of every fourth layer; with Llama 3.1 rope, rotated by the model.
    "smollm3": Case(make_smollm3, seed=5),
    "smollm3-llama3-rope": Case(make_smollm3, overrides={"rope_scaling": LLAMA3_ROPE_SCALING}),
    "mistral": Case(make_mistral, seed=7),
    # Gemma 3: local layers (window 16) beside a global one; the 70-token prompt outruns the window.
    "gemma3": Case(make_gemma3, seed=1, prompt=LONG_PROMPT),
}
QUANTIZED_CASES = ["llama-gqa", "phi-partial-rotary", "phi3", "qwen2", "qwen3", "smollm3", "gemma3"]


class Builds:
    """Checkpoints and compiled directories, each made once per module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._checkpoints: dict[str, Path] = {}
        self._compiled: dict[tuple[str, str, int], Path] = {}

    def checkpoint(self, name: str) -> Path:
        if name not in self._checkpoints:
            case = CASES[name]
            self._checkpoints[name] = case.factory(
                self.root / f"ckpt-{name}", seed=case.seed, initializer_range=INIT_STD, **case.overrides
            )
        return self._checkpoints[name]

    def compiled(self, name: str, quantization: str, prefill_chunk: int = PREFILL_CHUNK) -> Path:
        key = (name, quantization, prefill_chunk)
        if key not in self._compiled:
            options = BuildOptions(
                model=str(self.checkpoint(name)),
                quantization=quantization,
                context_window=CASES[name].context_window,
                prefill_chunk=prefill_chunk,
                target="cpu",
            )
            out = self.root / f"out-{name}-{quantization}-{prefill_chunk}"
            self._compiled[key] = plan_and_build(options, out).directory
        return self._compiled[key]


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> Builds:
    return Builds(tmp_path_factory.mktemp("models"))


def transformers_model(path: Path, **kwargs: Any) -> Any:
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, **kwargs).eval()


@dataclass
class Greedy:
    tokens: list[int]
    margins: list[float]  # top-1 minus top-2 logit at each step
    first_logits: np.ndarray


def transformers_greedy(model: Any, ids: list[int], steps: int, eos_ids: list[int]) -> Greedy:
    """transformers' own greedy search, with no logits processors, stopping after an eos token
    as `CpuModel.greedy` does."""
    settings = GenerationConfig(
        do_sample=False,
        max_new_tokens=steps,
        eos_token_id=eos_ids,
        pad_token_id=eos_ids[0],
        output_logits=True,
        return_dict_in_generate=True,
    )
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            generation_config=settings,
        )
    top2 = [torch.topk(step[0], 2).values for step in out.logits]
    return Greedy(
        tokens=out.sequences[0, len(ids) :].tolist(),
        margins=[float(a - b) for a, b in top2],
        first_logits=out.logits[0][0].numpy(),
    )


def max_error(ours: np.ndarray, expected: np.ndarray) -> float:
    assert ours.shape == expected.shape
    return float(np.abs(ours - expected).max())


# --- 1. q0f32 logits of every architecture variant -----------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_transformers(builds, name):
    """Last-position logits after a chunked prefill, then after each decode step; transformers
    recomputes the full sequence each time and chooses the next token."""
    case = CASES[name]
    assert len(case.prompt) > PREFILL_CHUNK
    ours = CpuModel(builds.compiled(name, "q0f32"))
    reference = transformers_model(builds.checkpoint(name))
    sequence = list(case.prompt)
    logits = ours.prefill(sequence)
    errors = []
    for step in range(DECODE_STEPS + 1):
        expected = hf_last_logits(reference, sequence)
        errors.append(max_error(logits, expected))
        if step < DECODE_STEPS:
            sequence.append(int(np.argmax(expected)))
            logits = ours.decode(sequence[-1])
    print(f"\n{name}: q0f32 max |logit error| {max(errors):.2e} (logit std {expected.std():.2f})")
    assert max(errors) <= LOGIT_TOLERANCE, errors


def test_softmax_with_temperature_matches_numpy(builds):
    """The logits post-processing the browser samples from: softmax(logits / T)."""
    import tvm

    model = CpuModel(builds.compiled("llama-gqa", "q0f32", prefill_chunk=4))
    logits = model.prefill([5, 17, 42, 7]).astype(np.float32)
    for temperature in (0.3, 1.0, 1.7):
        probs = model.vm["softmax_with_temperature"](
            tvm.runtime.tensor(logits.reshape(1, 1, -1)), tvm.runtime.tensor(np.float32([temperature]))
        ).numpy()
        scaled = logits.astype(np.float64) / temperature
        expected = np.exp(scaled - scaled.max()) / np.exp(scaled - scaled.max()).sum()
        np.testing.assert_allclose(probs.reshape(-1), expected, atol=1e-6)


def test_argmax_matches_numpy_ties_to_the_lowest_id(builds):
    """The greedy token the library picks on the device (the CPU build's loop; the WebGPU
    workgroup kernel is checked in test_browser_models)."""
    import tvm

    model = CpuModel(builds.compiled("llama-gqa", "q0f32", prefill_chunk=4))
    logits = model.prefill([5, 17, 42, 7]).astype(np.float32)
    tied = logits.copy()
    tied[[9, 3, 200]] = logits.max() + 1
    for values in (logits, tied, np.zeros_like(logits), -np.arange(logits.size, dtype=np.float32)):
        token = model.vm["argmax"](tvm.runtime.tensor(values.reshape(1, 1, -1))).numpy()
        assert token.dtype == np.int32 and token.tolist() == [int(np.argmax(values))]


# --- 2. chunked prefill ---------------------------------------------------------------------------


def test_chunked_prefill_equals_one_prefill(builds):
    prompt = CASES["llama-gqa"].prompt
    chunked = CpuModel(builds.compiled("llama-gqa", "q0f32", prefill_chunk=4))
    whole = CpuModel(builds.compiled("llama-gqa", "q0f32", prefill_chunk=64))
    assert (chunked.config["prefill_chunk"], whole.config["prefill_chunk"]) == (4, 64)
    a, b = chunked.prefill(prompt), whole.prefill(prompt)
    errors = [max_error(a, b)]
    for _ in range(DECODE_STEPS):
        token = int(np.argmax(a))
        a, b = chunked.decode(token), whole.decode(token)
        errors.append(max_error(a, b))
    print(f"\nchunk 4 vs 64: max |logit difference| {max(errors):.2e}")
    assert max(errors) <= 1e-5, errors


# --- 3. 4-bit presets against transformers on the dequantized weights -----------------------------


@pytest.mark.parametrize("quantization", ["q4f32_1", "q4f16_1", "q4f32_asym"])
@pytest.mark.parametrize("name", QUANTIZED_CASES)
def test_quantized_greedy_matches_transformers(builds, name, quantization):
    """transformers runs in float32 on our 4-bit weights (dequantized; f16 scales for q4f16_1),
    so only our activation dtype differs from it."""
    case = CASES[name]
    q = get_quantization(quantization)
    ours = CpuModel(builds.compiled(name, quantization))
    hf_model = transformers_model(builds.checkpoint(name))
    reference = requantize_(hf_model, q.model_dtype, asymmetric=q.asymmetric)
    expected = transformers_greedy(reference, case.prompt, GREEDY_STEPS, ours.config["eos_token_ids"])
    error = max_error(ours.prefill(case.prompt), expected.first_logits)
    ours.reset()
    tokens = ours.greedy(case.prompt, GREEDY_STEPS)
    print(
        f"\n{name} {quantization}: prefill max |logit error| {error:.2e}, "
        f"smallest top-2 margin {min(expected.margins):.3f} over {len(expected.tokens)} steps"
    )
    assert len(expected.tokens) == GREEDY_STEPS  # no eos: every step is compared
    assert tokens == expected.tokens
    if q.model_dtype == "float32":  # the same float32 arithmetic as transformers, bar ordering
        assert error <= LOGIT_TOLERANCE


# --- 4. the real model: SmolLM2-135M-Instruct -----------------------------------------------------

SMOLLM2 = "smollm2-135m"
SMOLLM2_STEPS = 32


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """Both builds, the chat prompts as token ids, and transformers' greedy answers for each build:
    on the GGUF's weights as transformers dequantizes them (q0f32), then on those weights put
    through our 4-bit quantization (q4f32_1)."""
    root = tmp_path_factory.mktemp("smollm2")
    compiled = {
        # A 16-token chunk: the 35-38-token prompts prefill in three chunks.
        q: plan_and_build(
            BuildOptions(model=SMOLLM2, quantization=q, prefill_chunk=16, target="cpu"), root / q
        )
        for q in ("q0f32", "q4f32_1", "q4f32_asym")
    }
    config = compiled["q0f32"].config
    prompts = chat_prompt_ids(compiled["q0f32"].tokenizer, config["chat_template"], CHAT_PROMPTS)
    gguf = resolve_model(SMOLLM2).path
    reference = transformers_model(gguf.parent, gguf_file=gguf.name)
    eos = config["eos_token_ids"]
    expected = {"q0f32": [transformers_greedy(reference, ids, SMOLLM2_STEPS, eos) for ids in prompts]}
    requantize_(reference, "float32")
    expected["q4f32_1"] = [transformers_greedy(reference, ids, SMOLLM2_STEPS, eos) for ids in prompts]
    return {q: c.directory for q, c in compiled.items()}, prompts, expected


@pytest.mark.parametrize("quantization", ["q0f32", "q4f32_1"])
def test_smollm2_greedy_matches_transformers(smollm2, quantization):
    directories, prompts, expected = smollm2
    ours = CpuModel(directories[quantization])
    for text, ids, reference in zip(CHAT_PROMPTS, prompts, expected[quantization], strict=True):
        ours.reset()
        error = max_error(ours.prefill(ids), reference.first_logits)
        ours.reset()
        tokens = ours.greedy(ids, SMOLLM2_STEPS)
        print(
            f"\nSmolLM2 {quantization} {text!r}: prefill max |logit error| {error:.2e}, {len(tokens)} "
            f"tokens, smallest top-2 margin {min(reference.margins):.3f}"
        )
        assert tokens == reference.tokens, text
        assert error <= LOGIT_TOLERANCE, text


CPU_PROMPTS = 6


def test_smollm2_gguf_blocks_taken_over_answer_as_transformers_on_the_file(smollm2):
    """The default model built from its GGUF's own blocks (q4f32_asym: Q4_1 and Q8_0 taken over
    exactly) gives transformers' greedy reply on the original file, 32 tokens or to eos, for the
    first CPU_PROMPTS everyday prompts; all 20 run in Chromium (test_site_chat.py), the issue's
    test. (Measured on all 20 here: 20 of 20; the former default q4f32_1, every weight rounded a
    second time, 1 of 20. The CPU build's unscheduled kernels take ~10 s a reply.)"""
    directories, _, _ = smollm2
    gguf = resolve_model(SMOLLM2).path
    reference = transformers_model(gguf.parent, gguf_file=gguf.name)
    exact = CpuModel(directories["q4f32_asym"])
    tokenizer = directories["q4f32_asym"] / exact.config["tokenizer"]
    texts = EVERYDAY_PROMPTS[:CPU_PROMPTS]
    prompts = chat_prompt_ids(tokenizer, exact.config["chat_template"], texts)
    eos = exact.config["eos_token_ids"]
    differing = []
    for text, ids in zip(texts, prompts, strict=True):
        exact.reset()
        if exact.greedy(ids, SMOLLM2_STEPS) != transformers_greedy(reference, ids, SMOLLM2_STEPS, eos).tokens:
            differing.append(text)
    print(f"\nSmolLM2 q4f32_asym: {len(texts) - len(differing)} of {len(texts)} replies equal transformers'")
    assert not differing


# --- 5. bad input ---------------------------------------------------------------------------------


def _edit_config(**fields: Any) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        path = directory / "config.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | fields))

    return edit


def _drop_tensor(directory: Path) -> None:
    path = directory / "model.safetensors"
    tensors = load_file(path)
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, path, metadata={"format": "pt"})


def _truncate(directory: Path) -> None:
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-1000])


YARN = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0, "original_max_position_embeddings": 64}

# (edit of a good checkpoint, quantization, substrings the message must contain besides the path)
BAD_INPUTS = {
    "unsupported-architecture": (
        _edit_config(architectures=["MambaForCausalLM"]),
        "q0f32",
        ["architectures", "MambaForCausalLM", "LlamaForCausalLM, MistralForCausalLM, Phi3ForCausalLM"],
    ),
    "wrong-shape": (
        _edit_config(intermediate_size=96),
        "q0f32",
        ["model.layers.0.mlp.gate_up_proj.weight", "(256, 64)", "(192, 64)", "config.json"],
    ),
    "wrong-shape-quantized": (
        _edit_config(intermediate_size=96),
        "q4f32_1",
        ["model.layers.0.mlp.gate_up_proj.weight", "(256, 64)", "(192, 64)"],
    ),
    "missing-tensor": (_drop_tensor, "q0f32", ["model.layers.1.mlp.down_proj.weight"]),
    "yarn-rope": (_edit_config(rope_parameters=YARN), "q0f32", ["rope_scaling", "yarn"]),
    "dynamic-rope-legacy-key": (
        _edit_config(rope_scaling={"type": "dynamic", "factor": 2.0}),
        "q0f32",
        ["rope_scaling", "dynamic"],
    ),
    "truncated-safetensors": (_truncate, "q0f32", ["model.safetensors", "truncated"]),
}


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> Path:
    return make_llama(tmp_path_factory.mktemp("good") / "llama")


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    if out.parent.exists():
        assert not [p.name for p in out.parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_checkpoint_raises_a_project_error(good_checkpoint, tmp_path, case):
    edit, quantization, expected = BAD_INPUTS[case]
    checkpoint = shutil.copytree(good_checkpoint, tmp_path / "checkpoint")
    edit(checkpoint)
    out = tmp_path / "out" / "model"
    options = BuildOptions(model=str(checkpoint), quantization=quantization, target="cpu")
    with pytest.raises(WebLLMBuildError) as caught:
        plan_and_build(options, out)
    assert type(caught.value) is not WebLLMBuildError  # one of the per-stage subclasses
    message = str(caught.value)
    for part in [str(checkpoint), *expected]:
        assert part in message
    _assert_nothing_written(out)


def test_unknown_quantization_raises_a_project_error(good_checkpoint, tmp_path):
    out = tmp_path / "out" / "model"
    options = BuildOptions(model=str(good_checkpoint), quantization="q3f99", target="cpu")
    with pytest.raises(WebLLMBuildError) as caught:
        plan_and_build(options, out)
    assert type(caught.value) is not WebLLMBuildError
    for part in ["q3f99", "q4f16_1", "q4f32_1", "q0f16", "q0f32"]:
        assert part in str(caught.value)
    _assert_nothing_written(out)


def test_cli_reports_an_unsupported_architecture_without_a_traceback(good_checkpoint, tmp_path):
    checkpoint = shutil.copytree(good_checkpoint, tmp_path / "checkpoint")
    _edit_config(architectures=["MambaForCausalLM"])(checkpoint)
    out = tmp_path / "out"
    result = run_cli("compile", "--model", str(checkpoint), "--target", "cpu", "--out", str(out))
    assert result.returncode == 1, result.stderr
    assert "MambaForCausalLM" in result.stderr and str(checkpoint) in result.stderr
    assert "Traceback" not in result.stderr
    _assert_nothing_written(out)


@pytest.mark.parametrize(
    "factory, overrides, switch",
    [
        (make_qwen2, {"use_sliding_window": True, "sliding_window": 16}, "use_sliding_window"),
        (make_qwen3, {"use_sliding_window": True, "sliding_window": 16}, "use_sliding_window"),
        (make_mistral, {"sliding_window": 16}, "sliding_window"),
    ],
)
def test_sliding_window_longer_context_is_refused_naming_the_field(tmp_path, factory, overrides, switch):
    checkpoint = factory(tmp_path / "ckpt", **overrides)
    options = BuildOptions(model=str(checkpoint), context_window=64, target="cpu")
    with pytest.raises(WebLLMBuildError, match="sliding-window") as caught:
        plan_and_build(options, tmp_path / "out")
    assert f"`{switch}`" in str(caught.value) and "--context-window 16" in str(caught.value)
    _assert_nothing_written(tmp_path / "out")


def test_sliding_window_as_long_as_the_context_matches_transformers(tmp_path):
    """Mistral v0.1's case: a window the compiled context never exceeds changes nothing."""
    checkpoint = make_mistral(tmp_path / "ckpt", seed=7, initializer_range=INIT_STD, sliding_window=16)
    options = BuildOptions(
        model=str(checkpoint), quantization="q0f32", context_window=16, prefill_chunk=4, target="cpu"
    )
    ours = CpuModel(plan_and_build(options, tmp_path / "out").directory)
    prompt = PROMPTS[0][:10]
    error = max_error(ours.prefill(prompt), hf_last_logits(transformers_model(checkpoint), prompt))
    assert error <= LOGIT_TOLERANCE


def test_qwen2_preset_without_network_says_how_to_get_it(tmp_path):
    """The hub path of a preset whose weights are not at hand: a clear error, no traceback."""
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = run_cli("compile", "--model", "qwen2.5-0.5b", "--out", str(tmp_path / "out"), env=env)
    assert result.returncode == 1
    assert "Qwen/Qwen2.5-0.5B-Instruct" in result.stderr and "hf download" in result.stderr
    assert "Traceback" not in result.stderr


def test_gemma3_published_config_reads_its_layer_pattern_window_and_scales():
    """Gemma-3-1B's published config names a pattern (every sixth layer global), not
    `layer_types`; its window takes effect only in contexts longer than 512."""
    from webllm_build.plan import plan_model

    def config(context_window: int):
        options = BuildOptions(
            model="gemma-3-1b", random_weights=True, context_window=context_window, target="cpu"
        )
        return plan_model(options).config

    long, short = config(4096), config(512)
    assert long.local_layers == short.local_layers == tuple(i for i in range(26) if (i + 1) % 6)
    assert (long.sliding_window, short.sliding_window) == (512, None)
    assert long.prefill_chunk <= 512
    assert (long.local_rope_theta, long.rope_theta, long.rope_scaling) == (1e4, 1e6, {})
    assert long.attention_scale == 256**-0.5 and long.tie_embeddings


def test_gemma2_style_soft_capping_is_refused_naming_the_field(tmp_path):
    checkpoint = make_gemma3(tmp_path / "ckpt", final_logit_softcapping=30.0)
    with pytest.raises(WebLLMBuildError, match="final_logit_softcapping"):
        plan_and_build(BuildOptions(model=str(checkpoint), target="cpu"), tmp_path / "out")
    _assert_nothing_written(tmp_path / "out")


def test_rotary_sin_cos_are_f32_accurate_at_any_position():
    """The rotary kernels' own sin and cos (models/rotary.py), against numpy in float64, for
    angles up to those of a 20k-token context: what GPUs' own lose (SwiftShader's are off by
    ~1.9e-4 everywhere)."""
    import tvm
    from tvm import te, tirx

    from webllm_build.models.rotary import sin_cos

    angles = np.concatenate([np.linspace(0, 7, 1000), np.linspace(7, 20000, 3000)]).astype(np.float32)
    x = te.placeholder(angles.shape, "float32")
    out = te.compute((*angles.shape, 2), lambda i, j: tirx.Select(j == 0, sin_cos(x[i])[0], sin_cos(x[i])[1]))
    kernel = tvm.compile(tvm.IRModule({"main": te.create_prim_func([x, out])}), target="llvm")
    result = tvm.runtime.tensor(np.zeros((*angles.shape, 2), np.float32))
    kernel["main"](tvm.runtime.tensor(angles), result)
    exact = angles.astype(np.float64)
    errors = np.abs(result.numpy() - np.stack([np.sin(exact), np.cos(exact)], axis=-1))
    assert errors.max() < 5e-7, errors.max()
