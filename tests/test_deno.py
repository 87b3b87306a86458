"""The engine under Deno (`--runtime deno`): WebGPU through wgpu on Mesa's lavapipe, shader-f16 included.

Headless Chromium here has only SwiftShader, which lacks shader-f16, so these are the tests in
which f16 builds run on WebGPU at all. The site is the same one the page tests serve (the tiny
Llama as q4f16_1 and q4f32_1); the engine bundle is the one a browser gets, unmodified.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from chat_page import TINY
from checkpoints import make_gemma3, make_llama, make_phi, make_phi3, make_qwen2
from conftest import run_cli

from webllm_build.build import plan_and_build
from webllm_build.plan import BuildOptions
from webllm_build.serve import serve_in_background
from webllm_build.verify.browser import launch_runtime, write_harness
from webllm_build.verify.reference import hf_greedy_logprobs, hf_last_logits, load_reference, requantize_
from webllm_build.verify.sitepage import SitePage
from webllm_build.verify.testing import PageModel, stage_models

F16 = "tiny-llama-q4f16_1"
F32 = "tiny-llama-q4f32_1"
STEPS = 16
# f16 activations against transformers in f32 on the same dequantized weights. f16 keeps 11
# significant bits, and the tiny model's logits spread over ~+-10 (initializer_range 0.2), so
# one rounding is ~5e-3; measured on lavapipe: 8.2e-3 over 16 greedy steps.
F16_LOGPROB_BOUND = 3e-2
# The f32 build on lavapipe is as close as on any other backend (measured: 9.4e-6).
F32_LOGPROB_BOUND = 1e-4


@pytest.fixture(scope="module")
def deno():
    with launch_runtime("deno") as session:
        yield session


@pytest.mark.parametrize(("model_id", "bound"), [(F16, F16_LOGPROB_BOUND), (F32, F32_LOGPROB_BOUND)])
def test_builds_match_transformers_under_deno(variants_site, chat_checkpoints, deno, model_id, bound):
    quantization = model_id.removeprefix("tiny-llama-")
    reference = load_reference(str(chat_checkpoints[TINY]), quantization)
    messages = [{"role": "user", "content": "Hello there"}]
    expected, top = hf_greedy_logprobs(reference.model, reference.prompt_ids(messages), STEPS, [], top_k=1)

    page = SitePage(deno, variants_site)
    try:
        assert page.adapter()["shaderF16"] is True  # lavapipe offers what SwiftShader lacks
        loaded = page.load(model_id)
        assert loaded["error"] is None, loaded["error"]
        reply = page.create(
            {
                "messages": messages,
                "temperature": 0,
                "max_tokens": STEPS,
                "ignore_eos": True,
                "logprobs": True,
                "top_logprobs": 1,
            }
        )
        stats = page.runtime_stats()
    finally:
        page.close()
    # The device has the adapter's own limits (lavapipe: 2 GiB buffers, where tvmjs asked for 1).
    assert stats["device_limits"] == stats["adapter"]["limits"]
    assert stats["device_limits"]["maxBufferSize"] > 1 << 30
    assert reply["error"] is None, reply["error"]
    assert reply["token_ids"] == expected
    gaps = [abs(entry["logprob"] - step[0][1]) for entry, step in zip(reply["logprobs"], top, strict=True)]
    print(f"{model_id}: largest log-probability gap to transformers {max(gaps):.2e}")
    assert max(gaps) < bound


def test_check_cli_records_and_passes_under_deno(variants_site, tmp_path):
    golden = tmp_path / "golden.json"
    recorded = run_cli("check", variants_site, "--runtime", "deno", "--record", "--golden", str(golden))
    assert recorded.returncode == 0, recorded.stderr + recorded.stdout
    models = json.loads(golden.read_text())["models"]
    assert set(models) == {F16, F32}
    assert all(case["expected"]["token_ids"] for case in models[F16]["cases"])  # the f16 build ran
    checked = run_cli("check", variants_site, "--runtime", "deno", "--golden", str(golden))
    assert checked.returncode == 0, checked.stderr + checked.stdout


def test_pytest_plugin_runs_on_deno(variants_site, tmp_path):
    (tmp_path / "test_reply.py").write_text(
        "def test_reply(webllm_page):\n"
        "    assert webllm_page.adapter()['shaderF16']\n"
        "    reply = webllm_page.create({'messages': [{'role': 'user', 'content': 'Hi'}],\n"
        "                                'temperature': 0, 'max_tokens': 4, 'ignore_eos': True})\n"
        "    assert reply['error'] is None and reply['usage']['completion_tokens'] == 4\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "webllm_build.verify.testing",
            "--rootdir",
            str(tmp_path),
            "--webllm-site",
            variants_site,
            "--webllm-model",
            F16,
            "--webllm-runtime",
            "deno",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


def test_runtime_deno_with_a_chromium_executable_is_refused(variants_site, tmp_path):
    golden = str(tmp_path / "golden.json")
    result = run_cli(
        "check",
        variants_site,
        "--record",
        "--golden",
        golden,
        "--runtime",
        "deno",
        "--browser",
        "/usr/bin/chromium",
    )
    assert result.returncode == 1
    assert "does not apply to --runtime deno" in result.stderr and "Traceback" not in result.stderr


# --- every architecture's f16 builds, logits against transformers ---------------------------------

ARCHITECTURES = {
    "llama": make_llama,
    "phi": make_phi,
    "phi3": make_phi3,
    "qwen2": make_qwen2,
    # Its (1 + w) norms held as f16 sums, the embedding scale in f16. Heads of 16: TVM 0.27's
    # tree-attention kernel (speculative decoding, never called by the engine, but compiled into
    # every cache) fails to build in f16 for one kv head of 32 values ("cse_v12 has been used
    # before definition"); 16, 64, 128 and 256 (Gemma-3-1B) build.
    "gemma3": functools.partial(make_gemma3, head_dim=16),
}
F16_QUANTS = ("q4f16_1", "q0f16")
PROMPT = [5, 17, 42, 7, 99, 3, 25, 11, 9, 301, 44]
DECODE_STEPS = 4
# The largest |logit| error of an f16 build against transformers in f32 on the same weights
# (rounded to f16, and for q4f16_1 dequantized with f16 scales). The wide init (0.2) spreads the
# logits over ~+-10, where one f16 rounding is ~5e-3, and each layer's f16 activations add to it.
# Measured on lavapipe, prefill and 4 decode steps: 1.7e-2 (Phi q4f16_1) to 3.8e-2 (Qwen2
# q4f16_1, whose q/k/v biases make q and k larger); a wrong kernel is off by ~1.
F16_LOGIT_BOUND = 8e-2


# The 4-bit builds also get the gpu-dot4 kernels (integer dot products for decoding), listed
# first: lavapipe is no fallback adapter, so the page takes gpu-dot4 where Deno compiles it.
SCHEDULES = {"q4f16_1": ("gpu-dot4", "gpu"), "q0f16": ("gpu",)}


@pytest.fixture(scope="module")
def f16_site(tmp_path_factory, wasm_runtime):
    """Tiny Llama, Phi, Phi-3, Qwen2 and Gemma 3 as q4f16_1 and q0f16 (gpu kernels: lavapipe is no
    fallback)."""
    root = tmp_path_factory.mktemp("f16_models")
    checkpoints = {
        name: make(root / f"ckpt-{name}", seed=5, initializer_range=0.2)
        for name, make in ARCHITECTURES.items()
    }
    models = {
        f"{name}-{quant}": plan_and_build(
            BuildOptions(
                model=str(path),
                quantization=quant,
                prefill_chunk=4,
                target="webgpu",
                schedules=SCHEDULES[quant],
            ),
            root / f"out-{name}-{quant}",
        ).directory
        for name, path in checkpoints.items()
        for quant in F16_QUANTS
    }
    site = stage_models(root / "site", models)
    with serve_in_background(site) as url:
        yield url, checkpoints, site


def _f16_reference(checkpoint, quant: str):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    if quant == "q4f16_1":
        requantize_(model, "float16")
    with torch.no_grad():
        for parameter in model.parameters():  # what the build holds: f16 weights
            parameter.copy_(parameter.half().float())
    return model


@pytest.mark.parametrize(("quant", "schedule"), [(q, c) for q in F16_QUANTS for c in SCHEDULES[q]])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_f16_builds_match_transformers_under_deno(f16_site, deno, architecture, quant, schedule):
    url, checkpoints, _ = f16_site
    reference = _f16_reference(checkpoints[architecture], quant)
    model = PageModel.loaded(deno, url, f"{architecture}-{quant}", schedule=schedule)
    try:
        assert model._eval("() => model.schedule") == schedule
        sequence = list(PROMPT)
        logits = model.prefill(sequence)
        errors = []
        for step in range(DECODE_STEPS + 1):
            expected = hf_last_logits(reference, sequence)
            errors.append(float(np.abs(np.asarray(logits) - expected).max()))
            sequence.append(int(np.argmax(expected)))  # teacher-forced: a near tie cannot derail it
            if step < DECODE_STEPS:
                logits = model.decode(sequence[-1])
    finally:
        model.page.close()
    print(f"{architecture} {quant} ({schedule}) under Deno: largest |logit| error {max(errors):.2e}")
    assert max(errors) < F16_LOGIT_BOUND


def test_page_takes_the_first_class_whose_wgsl_the_runtime_compiles(f16_site, deno, tmp_path):
    """Deno's wgpu lists no packed_4x8_integer_dot_product among its WGSL language features but
    compiles dot4I8Packed: the page tries the feature, and the gpu-dot4 library loads. A class
    whose feature the runtime lacks (the index edited to ask for one no browser has) is passed
    over for the next class built for the adapter; asked for by name, it is a missing-feature
    error that says what to do."""
    url, _, site = f16_site
    model = PageModel.loaded(deno, url, "llama-q4f16_1")
    try:
        assert model._eval("() => model.schedule") == "gpu-dot4"
    finally:
        model.page.close()
    edited = tmp_path / "site" / "llama"
    shutil.copytree(site / "llama-q4f16_1", edited)
    index = json.loads((edited / "webllm-model.json").read_text())
    for entry in index["schedule_classes"].values():
        entry["adapter"] = "fallback"  # lavapipe is one: both classes now compete for it
    index["schedule_classes"]["gpu-dot4"]["wgsl_features"] = ["a_feature_no_browser_has"]
    (edited / "webllm-model.json").write_text(json.dumps(index))
    write_harness(tmp_path / "site")
    with serve_in_background(tmp_path / "site") as edited_url:
        model = PageModel.loaded(deno, edited_url, "llama")
        try:
            assert model._eval("() => model.schedule") == "gpu"
            error = model.load(schedule="gpu-dot4")["error"]
        finally:
            model.page.close()
    assert error["code"] == "missing-feature"
    assert "a_feature_no_browser_has" in error["message"] and "--schedules" in error["message"]
