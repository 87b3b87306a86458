"""--random-weights in headless Chromium: the browser generates the same bytes as Python, downloads
no shard, and the model gives the CPU reference's logits on those values."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from checkpoints import make_qwen2
from conftest import CI_SCHEDULES
from test_weights_browser import RequestLog

from webllm_build.artifacts import BF16_FORMAT, RandomRecord, read_weights_manifest
from webllm_build.build import plan_and_build
from webllm_build.plan import BuildOptions
from webllm_build.random_weights import generate
from webllm_build.serve import serve_in_background
from webllm_build.site import SiteOptions, build_site
from webllm_build.verify.bench import model_facts
from webllm_build.verify.runner import CpuModel
from webllm_build.verify.sitepage import SitePage
from webllm_build.verify.testing import PageModel, stage_models

PROMPT = [5, 17, 42, 7, 99, 3, 25, 11, 9]

SHA256_SCRIPT = """async ([random, records]) => {
    const out = [];
    for (const rec of records) {
        const digest = await crypto.subtle.digest('SHA-256', webllm.randomTensorBytes(random, rec));
        out.push(Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join(''));
    }
    return out;
}"""


@pytest.fixture(scope="module")
def random_models(tmp_path_factory, wasm_runtime):
    """A tiny Qwen2 with random weights (q4f32_1), built for WebGPU and for the CPU."""
    root = tmp_path_factory.mktemp("random_browser")
    checkpoint = make_qwen2(root / "ckpt", seed=2)
    built = {
        target: plan_and_build(
            BuildOptions(
                model=str(checkpoint),
                quantization="q4f32_1",
                prefill_chunk=4,
                target=target,
                random_weights=True,
                schedules=CI_SCHEDULES,
            ),
            root / f"out-{target}",
        ).directory
        for target in ("webgpu", "cpu")
    }
    return built, stage_models(root / "site", {"qwen2": built["webgpu"]})


def test_browser_generates_the_same_bytes_as_python(random_models, browser):
    directory, site = random_models[0]["webgpu"], random_models[1]
    random = read_weights_manifest(directory / "tensor-cache.json").random
    # The model's own tensors (f32, packed uint32) and the dtypes it lacks: f16, bf16-stored f32.
    extra = [
        RandomRecord(
            "extra.f16", (33, 7), "float16", "raw", {"kind": "uniform", "low": 0.002, "high": 0.006}
        ),
        RandomRecord(
            "extra.bf16", (5, 64), "float32", BF16_FORMAT, {"kind": "uniform", "low": 0.9, "high": 1.1}
        ),
        RandomRecord("extra.odd", (3,), "float16", "raw", {"kind": "uniform", "low": -1e-5, "high": 1e-5}),
    ]
    records = [*random.records, *extra]
    document = {"generator": random.generator, "seed": random.seed, "records": []}
    with serve_in_background(site) as url:
        page = PageModel(browser, url, "qwen2")
        digests = page._eval(SHA256_SCRIPT, [document, [rec.to_json() for rec in records]])
    expected = [hashlib.sha256(generate(random, rec).tobytes()).hexdigest() for rec in records]
    mismatched = [rec.name for rec, a, b in zip(records, digests, expected, strict=True) if a != b]
    assert not mismatched
    assert len(records) > 20


def test_random_model_loads_without_downloading_weights_and_matches_the_cpu(random_models, browser):
    built, site = random_models
    requests = RequestLog()
    with serve_in_background(site, on_request=requests) as url:
        model = PageModel.loaded(browser, url, "qwen2")
        events = model.load_result["events"]
        assert requests.shards() == []
        assert not [p for p in requests.paths if p.endswith(".bin")]
        assert events[-1]["phase"] == "done" and events[-1]["percent"] == 100
        loaded = [e["loadedBytes"] for e in events]
        assert loaded == sorted(loaded) and events[-1]["totalBytes"] > 0
        reference = CpuModel(built["cpu"])
        ours, expected = model.prefill(PROMPT), reference.prefill(PROMPT)
        errors = []
        for step in range(4):
            ours, expected = np.asarray(ours, dtype=np.float32), np.asarray(expected)
            assert np.isfinite(ours).all()
            errors.append(float(np.abs(ours - expected).max()))
            if step < 3:
                token = int(np.argmax(expected))
                ours, expected = model.decode(token), reference.decode(token)
    print(
        f"\nrandom qwen2 q4f32_1, browser vs CPU: max |logit error| {max(errors):.2e} "
        f"(logit std {expected.std():.2f})"
    )
    assert max(errors) < 1e-3


def test_site_marks_a_random_weights_model(tmp_path, wasm_runtime):
    checkpoint = make_qwen2(tmp_path / "ckpt", seed=2)
    options = SiteOptions(
        models=[str(checkpoint)],
        quantization="q4f32_1",
        out=tmp_path / "dist",
        prefill_chunk=4,
        random_weights=True,
        schedules=CI_SCHEDULES,
    )
    result = build_site(options)
    (entry,) = json.loads((result.directory / "site.json").read_text())["models"]
    assert entry["random_weights"] is True
    assert entry["id"].endswith("-random") and "random weights" in entry["title"]
    model_dir = result.directory / "models" / entry["id"]
    assert not list(model_dir.glob("params-*"))
    # bench counts the bytes a decode step reads from the random tensors, not the 0 downloaded.
    random_records = json.loads((model_dir / "tensor-cache.json").read_text())["random"]["records"]
    with serve_in_background(result.directory) as url:
        assert model_facts(url, entry)["weight_bytes"] == sum(r["nbytes"] for r in random_records) > 0


# The smallest preset of each family added with Qwen3, SmolLM3, Llama 3.2 and Gemma 3, as a
# visitor's browser gets it (random weights: nothing to download), in f32 since SwiftShader has
# no shader-f16. A short context keeps SwiftShader's KV cache small; Gemma's is longer than its
# 512-token window, so its local layers run the sliding-window kernels. mistral-7b (4.3 GiB of
# 4-bit weights) loads on SwiftShader in ~42 s too, but a reply takes minutes: measured, not tested.
FAMILY_PRESETS = {"qwen3-0.6b": 512, "llama-3.2-1b": 512, "smollm3-3b": 512, "gemma-3-1b": 1024}


@pytest.mark.parametrize("preset", list(FAMILY_PRESETS))
def test_smallest_preset_of_each_family_loads_and_answers(tmp_path, wasm_runtime, browser, preset):
    site = build_site(
        SiteOptions(
            models=[preset],
            quantization="q4f32_1",
            out=tmp_path / "dist",
            context_window=FAMILY_PRESETS[preset],
            random_weights=True,
            schedules=CI_SCHEDULES,
        )
    ).directory
    (entry,) = json.loads((site / "site.json").read_text())["models"]
    with serve_in_background(site) as url:
        page = SitePage(browser, url, timeout_s=600)
        try:
            loaded = page.load(entry["id"])
            assert loaded["error"] is None, loaded["error"]
            reply = page.create(
                {
                    "messages": [{"role": "user", "content": "Hello!"}],
                    "max_tokens": 4,
                    "ignore_eos": True,
                    "logprobs": True,
                }
            )
            gpu_bytes = page.runtime_stats()["gpu_allocated_bytes"]
        finally:
            page.close()
    assert reply["error"] is None, reply["error"]
    assert reply["usage"]["completion_tokens"] == 4 and reply["finish_reason"] == "length"
    # The build's memory estimate (memory.py), which the page checks before loading, bounds what
    # tvmjs holds after a reply, without overstating it by much. (The load itself peaks higher in
    # this cpu-emulated class, which relays the 4-bit weights once: memory.py says by how much.)
    assert gpu_bytes <= entry["memory"]["total_bytes"] <= 1.3 * gpu_bytes
    assert all(np.isfinite(entry["logprob"]) and entry["logprob"] <= 0 for entry in reply["logprobs"])
    seconds = f"loaded in {loaded['seconds']:.1f} s, replied in {reply['seconds']:.1f} s"
    print(f"\n{preset}: {seconds}: {reply['content']!r}")
