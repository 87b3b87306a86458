"""--random-weights on the CPU: the generator, the manifest, presets from config alone, the stand-in
tokenizer. The browser's side (same bytes, same logits) is in test_random_weights_browser.py."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from checkpoints import make_qwen2
from conftest import run_cli
from tokenizers import Tokenizer

from webllm_build.artifacts import (
    BF16_FORMAT,
    RandomRecord,
    RandomWeights,
    inspect_model,
    read_weights_manifest,
    verify_directory,
)
from webllm_build.build import plan_and_build
from webllm_build.errors import WebLLMBuildError
from webllm_build.loaders import load_checkpoint, load_without_weights, resolve_model
from webllm_build.plan import BuildOptions, model_config
from webllm_build.presets import PRESETS
from webllm_build.quantize import get_quantization
from webllm_build.random_weights import GENERATOR, generate, random_bits
from webllm_build.verify.runner import CpuModel


def test_generator_is_frozen():
    """The browser reproduces these words; a change here must change GENERATOR's name too."""
    assert GENERATOR == "lowbias32-v1"
    words = ["0x5ea98286", "0xcbc6ac8e", "0xf692443b", "0xa57ccc2b"]
    assert [hex(w) for w in random_bits(0, "a", 4)] == words
    assert not np.array_equal(random_bits(1, "a", 4), random_bits(0, "a", 4))
    assert not np.array_equal(random_bits(0, "b", 4), random_bits(0, "a", 4))


@pytest.mark.parametrize(
    ("dtype", "fmt", "low", "high"),
    [("float32", "raw", -0.035, 0.035), ("float16", "raw", 0.002, 0.006), ("float32", BF16_FORMAT, 0.9, 1.1)],
)
def test_uniform_values_are_in_range_and_rounded_to_the_dtype(dtype, fmt, low, high):
    random = RandomWeights(GENERATOR, 0, ())
    record = RandomRecord("t.weight", (64, 96), dtype, fmt, {"kind": "uniform", "low": low, "high": high})
    values = generate(random, record)
    assert values.dtype == np.dtype(dtype) and values.shape == (64, 96)
    wide = values.astype(np.float64)
    tolerance = 1e-2 * (high - low)  # rounding to f16 / bf16 can step just past an end
    assert wide.min() >= low - tolerance and wide.max() <= high + tolerance
    assert abs(wide.mean() - (low + high) / 2) < 0.05 * (high - low)
    if fmt == BF16_FORMAT:
        assert not (values.view(np.uint32) & 0xFFFF).any()  # exactly representable in bf16


@pytest.fixture(scope="module")
def qwen2_random(tmp_path_factory):
    """A tiny Qwen2 compiled for the CPU with random weights, from a directory with only config.json."""
    root = tmp_path_factory.mktemp("random_cpu")
    checkpoint = make_qwen2(root / "ckpt", seed=2)
    config_only = root / "config-only"
    config_only.mkdir()
    shutil.copy(checkpoint / "config.json", config_only / "config.json")
    options = BuildOptions(
        model=str(config_only), quantization="q4f32_1", prefill_chunk=4, target="cpu", random_weights=True
    )
    return plan_and_build(options, root / "out")


def test_random_model_has_no_shards_and_a_marked_manifest(qwen2_random):
    directory = qwen2_random.directory
    assert not list(directory.glob("params-*"))
    document = json.loads((directory / "tensor-cache.json").read_text())
    assert document["records"] == [] and document["metadata"]["WeightsFormat"] == 2
    random = document["random"]
    assert random["generator"] == GENERATOR and random["seed"] == 0
    by_name = {rec["name"]: rec for rec in random["records"]}
    assert [name for name in qwen2_random.config["param_names"]] == list(by_name)
    assert by_name["model.norm.weight"]["init"] == {"kind": "uniform", "low": 0.9, "high": 1.1}
    assert by_name["model.layers.0.self_attn.qkv_proj.q_weight"]["init"] == {"kind": "bits"}
    assert by_name["model.layers.0.self_attn.qkv_proj.bias"]["init"]["high"] == 0.02
    assert by_name["model.layers.0.self_attn.qkv_proj.q_scale"]["init"]["low"] > 0
    assert qwen2_random.config["random_weights"] and qwen2_random.config["tokenizer_stand_in"]
    assert verify_directory(directory) == []
    report = inspect_model(directory)
    assert report.shards.count == 0 and report.tensor_count == len(by_name)
    manifest = read_weights_manifest(directory / "tensor-cache.json")
    assert [rec.name for rec in manifest.random.records] == list(by_name)


def test_random_model_runs_with_finite_logits(qwen2_random):
    model = CpuModel(qwen2_random.directory)
    logits = model.prefill([5, 17, 42, 7, 99, 3])
    assert np.isfinite(logits).all() and logits.std() > 1e-3
    for token in (1, 2, 3):
        assert np.isfinite(model.decode(token)).all()


def test_stand_in_tokenizer_covers_the_vocabulary(qwen2_random):
    config = qwen2_random.config
    tokenizer = Tokenizer.from_file(str(qwen2_random.tokenizer))
    vocab = config["vocab_size"]
    assert config["eos_token_ids"] == [vocab]  # past every id the logits reach: never generated
    assert tokenizer.id_to_token(vocab) == "<|endoftext|>"
    text = "Benchmark prompt of exactly forty-one chars"[:41]
    assert len(tokenizer.encode(text, add_special_tokens=False).ids) == 41
    assert tokenizer.decode(tokenizer.encode("héllo 日本", add_special_tokens=False).ids) == "héllo 日本"
    words = tokenizer.decode(list(range(256, vocab)))
    assert len(words.split()) == vocab - 256


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_parses_from_its_packaged_config(name):
    checkpoint = load_without_weights(name)
    q = get_quantization(PRESETS[name].quantization)
    config = model_config(checkpoint, BuildOptions(model=name, random_weights=True), q)
    assert config.architecture == checkpoint.config["architectures"][0]
    assert checkpoint.tokenizer_stand_in


def test_packaged_smollm2_config_matches_the_gguf():
    """The one preset whose checkpoint is at hand: its packaged config gives the same model."""
    q = get_quantization("q4f32_1")
    options = BuildOptions(model="smollm2-135m")
    packaged = model_config(load_without_weights("smollm2-135m"), options, q)
    real = model_config(load_checkpoint(resolve_model("smollm2-135m")), options, q)
    fields = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads")
    fields += ("head_dim", "norm_eps", "rope_theta", "rotary_dim", "tie_embeddings", "context_window")
    assert {f: getattr(packaged, f) for f in fields} == {f: getattr(real, f) for f in fields}


def test_qwen2_preset_config_is_qwen25_05b():
    config = load_without_weights("qwen2.5-0.5b").config
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"]) == (896, 24, 2)
    assert config["tie_word_embeddings"] and config["rope_theta"] == 1e6


def test_cli_random_weights_from_a_config_file(tmp_path):
    checkpoint = make_qwen2(tmp_path / "ckpt")
    out = tmp_path / "out"
    result = run_cli(
        "compile", "--model", str(checkpoint / "config.json"), "--random-weights", "--target", "cpu",
        "--quant", "q0f32", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not list(out.glob("params-*")) and (out / "tensor-cache.json").is_file()


def test_random_weights_refuses_a_tiny_vocabulary(tmp_path):
    config = json.loads((make_qwen2(tmp_path / "ckpt") / "config.json").read_text())
    (tmp_path / "small.json").write_text(json.dumps(config | {"vocab_size": 100}))
    with pytest.raises(WebLLMBuildError, match="vocab_size"):
        load_without_weights(str(tmp_path / "small.json"))
