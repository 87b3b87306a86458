"""`webllm_build bench` on a tiny model: a report with every field (numbers not asserted: they
depend on the machine), --compare ratios, --plot, prompts of a target length."""

from __future__ import annotations

import argparse
import json
import math
import statistics

import pytest

from webllm_build.cli import _int_list
from webllm_build.verify.bench import (
    BenchOptions,
    PromptBuilder,
    compare_reports,
    format_report,
    merge_reports,
    plot_report,
    run_bench,
    spread,
    write_report,
)
from webllm_build.verify.sitepage import site_url

MODEL = "tiny-llama-q4f32_1"
SPREAD = {"min", "median", "max", "values"}


@pytest.fixture(scope="module")
def report(tiny_site):
    # Small everything: SwiftShader is slow and the numbers are not what is tested.
    options = BenchOptions(
        target=str(tiny_site),
        prompt_tokens=(16, 40),
        gen_tokens=4,
        runs=2,
        bandwidth_bytes=4 << 20,
        microbench_min_ms=20,
    )
    return run_bench(options)


def _positive(spread: dict, runs: int = 2) -> None:
    assert set(spread) == SPREAD and len(spread["values"]) == runs
    assert all(isinstance(v, int | float) and v > 0 and math.isfinite(v) for v in spread["values"])
    assert spread["min"] <= spread["median"] <= spread["max"]


def test_report_has_every_field(report, tmp_path):
    assert report["format"] == "webllm_build-bench-report" and report["version"] == 1
    assert report["adapter"]["available"] and report["adapter"]["limits"]["maxBufferSize"] > 0
    assert "Chrome" in report["browser"]
    assert report["settings"] == {"prompt_tokens": [16, 40], "gen_tokens": 4, "runs": 2}
    micro = report["microbenchmark"]
    assert micro["bandwidth"]["gb_per_s"] > 0 and micro["bandwidth"]["bytes"] == 4 << 20
    assert micro["matmul"]["gflop_per_s"] > 0 and micro["matmul"]["n"] >= 256
    (model,) = report["models"]
    assert model["id"] == MODEL and model["quantization"] == "q4f32_1" and model["errors"] == []
    assert model["schedule"] == "cpu-emulated"  # SwiftShader is a fallback adapter
    assert model["weight_bytes"] > 0 and model["download_bytes"] > model["weight_bytes"]
    for key in ("cold_load_s", "warm_load_s", "gpu_memory_bytes", "gpu_peak_bytes", "decode_tokens_per_s"):
        _positive(model[key], runs=4 if key == "decode_tokens_per_s" else 2)
    assert model["gpu_memory_bytes"]["min"] >= model["weight_bytes"]
    _positive(model["decode_bandwidth_fraction"], runs=4)
    assert [p["target_tokens"] for p in model["prompts"]] == [16, 40]
    for prompt in model["prompts"]:
        for key in ("prompt_tokens", "ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s"):
            _positive(prompt[key])
        assert prompt["completion_tokens"]["values"] == [4, 4]  # ignore_eos: always the full length
        assert prompt["prompt_tokens"]["max"] <= prompt["target_tokens"]
    constrained = model["constrained_decode"]
    for key in ("free_tokens_per_s", "constrained_tokens_per_s", "ratio"):
        _positive(constrained[key])
    # The longer prompt is built up to its target (the short one is the template's minimum).
    assert model["prompts"][1]["prompt_tokens"]["median"] >= 36
    write_report(report, tmp_path / "bench.json")
    assert json.loads((tmp_path / "bench.json").read_text()) == report
    text = format_report(report)
    assert "GB/s" in text and MODEL in text and "% of the bandwidth roofline" in text
    assert "constrained decode (JSON Schema)" in text


def test_compare_prints_ratios(report):
    slower = json.loads(json.dumps(report))
    slower["models"][0]["decode_tokens_per_s"]["median"] *= 2  # the earlier run was twice as fast
    lines = compare_reports(report, slower).splitlines()
    decode = next(line for line in lines if "decode tok/s" in line)
    assert decode.split()[-2:] == ["0.500", "-"]
    assert all(line.split()[-1] == "1.000" for line in lines[1:] if "decode tok/s" not in line)


def test_merged_rounds_keep_every_value(report):
    """benchmarks/side_by_side.py merges interleaved rounds of one site into one report."""
    earlier = json.loads(json.dumps(report))
    earlier["models"][0]["decode_tokens_per_s"] = spread([1.0, 3.0])
    merged = merge_reports([report, earlier])
    decode = merged["models"][0]["decode_tokens_per_s"]
    assert decode["values"] == report["models"][0]["decode_tokens_per_s"]["values"] + [1.0, 3.0]
    assert decode["min"] == 1.0 and decode["median"] == statistics.median(decode["values"])
    assert merged["settings"]["runs"] == 4
    prompt = merged["models"][0]["prompts"][1]
    assert prompt["target_tokens"] == 40 and len(prompt["ttft_s"]["values"]) == 4
    assert merged["models"][0]["gpu_time"] is None  # not asked for


def test_plot(report, tmp_path):
    plot_report(report, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_prompt_builder_hits_the_target_length(tiny_site):
    with site_url(tiny_site) as url:
        builder = PromptBuilder(f"{url}models/{MODEL}/")
        for target in (30, 64, 100):
            assert target - 3 <= builder.count(builder.build(target)) <= target


def test_prompt_tokens_argument():
    assert _int_list("16,128,512") == (16, 128, 512)
    for bad in ("16,x", "0", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            _int_list(bad)


def test_gpu_time_replays_the_decode_gemvs_in_one_pass(tiny_site):
    """--gpu-time times each quantized decode GEMV twice: each dispatch in its own pass, and all
    of a kernel's dispatches (one per layer) replayed back to back in one pass. The bytes the
    replay counts are the bound buffers' sizes, checked here against the weights the build wrote."""
    options = BenchOptions(
        target=str(tiny_site),
        prompt_tokens=(16,),
        gen_tokens=2,
        runs=1,
        gpu_time=True,
        bandwidth_bytes=4 << 20,
        microbench_min_ms=20,
    )
    report = run_bench(options)
    (model,) = report["models"]
    gemvs = model["gpu_time"]["decode_gemvs"]
    cache = json.loads((tiny_site / "models" / MODEL / "tensor-cache.json").read_text())
    records = [r for shard in cache["records"] for r in shard["records"]]
    quantized = [r for r in records if r["name"].split(".")[-1].startswith("q_")]
    layers = len({r["name"].split(".")[2] for r in records if r["name"].startswith("model.layers.")})
    in_layers = sum(r["nbytes"] for r in quantized if r["name"].startswith("model.layers."))
    every = sum(r["nbytes"] for r in quantized)
    assert gemvs["kernels"] and all(k["each_waits_for_the_last"] for k in gemvs["kernels"].values())
    for kernel in gemvs["kernels"].values():
        assert (
            kernel["calls_per_step"] in (1, layers) and kernel["distinct_weights"] == kernel["calls_per_step"]
        )
        assert kernel["us_per_call_in_one_pass"] > 0 and kernel["us_per_call_each_in_its_pass"] > 0
    # Every layer's matrices are read once a step; the head too; activations are small.
    calls = sum(k["calls_per_step"] for k in gemvs["kernels"].values())
    assert in_layers < gemvs["read_bytes_per_step"] <= every + calls * (64 << 10)
    assert 0 < gemvs["bandwidth_fraction_in_one_pass"] and 0 < gemvs["bandwidth_fraction_each_in_its_pass"]
    assert "decode GEMVs:" in format_report(report)
