"""The loading stage against independent references: transformers (CPU) for tensors and configs,
llama.cpp's own C code for GGUF dequantization and tokenization, Python `tokenizers`."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from checkpoints import (
    CHATML_TEMPLATE,
    ENDOFTEXT_ID,
    IM_END_ID,
    LLAMA3_ROPE_SCALING,
    PHI3_LONGROPE,
    make_llama,
    make_phi,
    make_phi3,
    write_gguf,
)
from tokenizers import Tokenizer, pre_tokenizers

from webllm_build.errors import LoaderError
from webllm_build.loaders import Checkpoint, ModelSource, TensorSource, load_checkpoint, resolve_model
from webllm_build.loaders.gguf_tokenizer import PRE_TOKENIZERS
from webllm_build.presets import DEFAULT_PRESET, list_presets

HARD_STRINGS = [
    "Hello, world! The quick brown fox.",
    "def f(x):\n\treturn x ** 2  # square\n\nclass A(B): pass\n",
    "   leading, trailing and    internal   runs   ",
    "a\n\n\nb\r\n c\t\td \u00a0nbsp",
    "日本語のテキストと中文，한국어",
    "👨\u200d👩\u200d👧\u200d👦 family, 🏳️\u200d🌈 flag, 👍🏽 skin tone",
    "e\u0301 vs \u00e9, a\u0308\u0304, Z\u0351\u0354\u0317a\u0300lgo",
    "1234567890 3.14159 1,000,000 ²³¹ ٣٤٥ ½",
    "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after<|im_end|>",
    "don't you'll I'M we've they'd 'tis",
    "",
    " ",
    "x" * 300,
]


def tensors_of(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    return {name: checkpoint.tensors.load(name) for name in checkpoint.tensors.names}


def torch_state(directory: Path, model_class: str) -> dict[str, np.ndarray]:
    import transformers

    model = getattr(transformers, model_class).from_pretrained(directory)
    return {name: t.detach().float().numpy() for name, t in model.state_dict().items()}


def load_dir(directory: Path) -> Checkpoint:
    return load_checkpoint(resolve_model(str(directory)))


# --- Hugging Face directories --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "model_class", "overrides"),
    [
        (make_llama, "LlamaForCausalLM", {}),
        (make_llama, "LlamaForCausalLM", {"rope_scaling": LLAMA3_ROPE_SCALING}),
        (make_phi, "PhiForCausalLM", {}),
        (make_phi3, "Phi3ForCausalLM", PHI3_LONGROPE),
    ],
    ids=["llama", "llama3-rope", "phi", "phi3-longrope"],
)
def test_hf_dir_tensors_config_and_tokenizer(tmp_path, factory, model_class, overrides):
    directory = factory(tmp_path / "model", **overrides)
    checkpoint = load_dir(directory)
    assert checkpoint.source == ModelSource("hf-dir", directory.resolve(), None)

    reference = torch_state(directory, model_class)
    loaded = tensors_of(checkpoint)
    assert set(loaded) == set(reference)
    for name, value in reference.items():
        assert loaded[name].dtype == np.float32 and checkpoint.tensors.dtype(name) == np.float32
        assert checkpoint.tensors.shape(name) == value.shape
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)

    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(directory)
    assert checkpoint.config["architectures"] == [model_class]
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        assert checkpoint.config[key] == getattr(config, key)
    assert checkpoint.config["num_key_value_heads"] == config.num_key_value_heads
    assert checkpoint.config["rope_theta"] == config.rope_parameters["rope_theta"]
    if "rope_scaling" in overrides:
        expected = overrides["rope_scaling"]
        assert {k: checkpoint.config["rope_scaling"][k] for k in expected} == expected
    else:
        assert checkpoint.config["rope_scaling"] is None
    if model_class != "LlamaForCausalLM":
        assert checkpoint.config["partial_rotary_factor"] == 0.5

    assert checkpoint.tokenizer_json == (directory / "tokenizer.json").read_text()
    assert checkpoint.chat_template == CHATML_TEMPLATE  # tokenizer_config.json, or chat_template.jinja (phi3)
    assert checkpoint.bos_token_id == ENDOFTEXT_ID
    # config says <|im_end|>, generation_config [<|im_end|>, <|endoftext|>], tokenizer_config <|im_end|>
    assert checkpoint.eos_token_ids == [IM_END_ID, ENDOFTEXT_ID]
    assert checkpoint.generation_config["eos_token_id"] == [IM_END_ID, ENDOFTEXT_ID]


@pytest.mark.parametrize(
    ("options", "weight_files"),
    [
        ({"max_shard_size": "30KB"}, "model-*.safetensors"),
        ({"safe_serialization": False}, "pytorch_model.bin"),
        ({"safe_serialization": False, "max_shard_size": "30KB"}, "pytorch_model-*.bin"),
        ({"dtype": "bfloat16"}, "model.safetensors"),
        ({"dtype": "float16"}, "model.safetensors"),
    ],
    ids=["sharded-safetensors", "bin", "sharded-bin", "bf16", "f16"],
)
def test_hf_dir_layouts_and_dtypes(tmp_path, options, weight_files):
    directory = make_llama(tmp_path / "model", **options)
    assert len(list(directory.glob(weight_files))) > (1 if "max_shard_size" in options else 0)
    checkpoint = load_dir(directory)
    import torch
    from transformers import LlamaForCausalLM

    state = LlamaForCausalLM.from_pretrained(directory, dtype=getattr(torch, options.get("dtype", "float32")))
    reference = state.state_dict()
    assert set(checkpoint.tensors.names) == set(reference)
    for name, tensor in reference.items():
        loaded = checkpoint.tensors.load(name)
        # bf16 has no numpy dtype: widened to f32 (exactly). f16 and f32 stay as stored.
        expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert loaded.dtype == expected.dtype == checkpoint.tensors.dtype(name), name
        np.testing.assert_array_equal(loaded, expected, err_msg=name)


def test_tensor_source_is_lazy_and_names_missing_tensors(tmp_path):
    directory = make_llama(tmp_path / "model")
    tensors = load_dir(directory).tensors
    assert isinstance(tensors, TensorSource)
    assert "model.embed_tokens.weight" in tensors
    assert tensors.shape("model.embed_tokens.weight") == (512, 64)
    with pytest.raises(LoaderError, match=r"no tensor named 'model.nope'"):
        tensors.load("model.nope")


# --- GGUF written the way llama.cpp writes it, from the factories ------------------------------


@pytest.mark.parametrize(
    ("factory", "overrides", "gguf_options"),
    [
        (make_llama, {}, {}),
        (make_phi, {}, {}),
        (make_phi, {}, {"fuse_qkv": True}),
        (make_phi3, PHI3_LONGROPE, {}),
    ],
    ids=["llama", "phi2", "phi2-fused-qkv", "phi3-longrope"],
)
def test_gguf_roundtrip_restores_hf_checkpoint(tmp_path, factory, overrides, gguf_options):
    """HF -> GGUF (llama.cpp names, metadata, q/k permutation) -> loader gives back the HF checkpoint."""
    directory = factory(tmp_path / "model", **overrides)
    path = write_gguf(directory, tmp_path / "model.gguf", **gguf_options)
    checkpoint = load_checkpoint(resolve_model(str(path)))
    assert checkpoint.source.kind == "gguf"

    reference = load_dir(directory)
    assert set(checkpoint.tensors.names) == set(reference.tensors.names)
    for name in reference.tensors.names:
        np.testing.assert_array_equal(
            checkpoint.tensors.load(name), reference.tensors.load(name), err_msg=name
        )

    for key, value in reference.config.items():
        if key in checkpoint.config and key not in ("rope_scaling", "rope_parameters", "eos_token_id"):
            assert checkpoint.config[key] == value, key
    assert checkpoint.config["architectures"] == reference.config["architectures"]
    if "rope_scaling" in overrides:
        for key in ("long_factor", "short_factor"):
            np.testing.assert_allclose(
                checkpoint.config["rope_scaling"][key], overrides["rope_scaling"][key], rtol=1e-7
            )
    assert checkpoint.config["tie_word_embeddings"] is False
    assert checkpoint.chat_template == CHATML_TEMPLATE
    assert checkpoint.eos_token_ids == [IM_END_ID]

    # The rebuilt tokenizer splits exactly as the tokenizer.json the GGUF was made from.
    original = Tokenizer.from_str(reference.tokenizer_json)
    rebuilt = Tokenizer.from_str(checkpoint.tokenizer_json)
    for text in HARD_STRINGS:
        assert rebuilt.encode(text).ids == original.encode(text).ids, text


@pytest.mark.parametrize("pre", list(PRE_TOKENIZERS))
def test_gguf_pre_tokenizers_match_llama_cpp(tmp_path, pre):
    """Every tokenizer.ggml.pre we accept splits as llama.cpp does (the factory vocabulary has
    multi-digit tokens, so the digit rules of the families differ visibly)."""
    from llama_cpp import Llama

    path = write_gguf(make_llama(tmp_path / "model"), tmp_path / "model.gguf", pre=pre)
    rebuilt = Tokenizer.from_str(load_checkpoint(resolve_model(str(path))).tokenizer_json)
    llama = Llama(model_path=str(path), vocab_only=True, verbose=False)
    for text in [*HARD_STRINGS, "Hello 12345 world 2024!!\n\n  x", "I'M DON'T  \n\n\t 123456;\r\n// 7890"]:
        assert rebuilt.encode(text).ids == llama.tokenize(text.encode(), add_bos=False, special=True), text


def test_gguf_llama_quantized_matches_transformers(tmp_path):
    """transformers' own GGUF loader (its dequantization and its reverse permutation) as the reference."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    directory = make_llama(tmp_path / "model")
    path = write_gguf(directory, tmp_path / "model.gguf", qtype="Q8_0")
    config = AutoConfig.from_pretrained(tmp_path, gguf_file=path.name)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    reference = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
    loaded = tensors_of(load_checkpoint(resolve_model(str(path))))
    assert set(loaded) == set(reference)
    for name, tensor in reference.items():
        np.testing.assert_allclose(loaded[name], np.asarray(tensor, dtype=np.float32), rtol=0, atol=1e-7)


# --- GGUF dequantization against llama.cpp's C implementation -----------------------------------


def _ggml() -> ctypes.CDLL:
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_row_size.restype = ctypes.c_size_t
    lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    return lib


_C_TYPES = ["BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def test_gguf_dequantization_matches_llama_cpp(tmp_path):
    """Each supported type: quantized by llama.cpp's reference quantizer, then our dequantization
    compared with llama.cpp's dequantize_row_* (bf16: ggml_bf16_to_fp32_row)."""
    lib = _ggml()
    rows, cols = 3, 512
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(tmp_path / "types.gguf", "llama")
    expected: dict[str, np.ndarray] = {}
    for name in _C_TYPES:
        qtype = gguf.GGMLQuantizationType[name]
        values = np.ascontiguousarray(rng.standard_normal((rows, cols)).astype(np.float32))
        packed = np.zeros(rows * lib.ggml_row_size(qtype.value, cols), dtype=np.uint8)
        back = np.zeros(rows * cols, dtype=np.float32)
        f32p, u8p = ctypes.POINTER(ctypes.c_float), ctypes.c_void_p
        x, y, z = values.ctypes.data_as(f32p), packed.ctypes.data_as(u8p), back.ctypes.data_as(f32p)
        n = ctypes.c_int64(rows * cols)
        if name == "BF16":
            lib.ggml_fp32_to_bf16_row_ref(x, y, n)
            lib.ggml_bf16_to_fp32_row(y, z, n)
        else:
            symbol = "q" + name[1:]  # ggml spells them quantize_row_q4_K_ref, dequantize_row_q4_K
            getattr(lib, f"quantize_row_{symbol}_ref")(x, y, n)
            getattr(lib, f"dequantize_row_{symbol}")(y, z, n)
        writer.add_tensor(f"t_{name}", packed.reshape(rows, -1), raw_dtype=qtype)
        expected[name] = back.reshape(rows, cols)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    from webllm_build.loaders.gguf_file import QUANTIZED_TYPES, _read

    assert {q.name for q in QUANTIZED_TYPES} == set(_C_TYPES)
    for tensor in gguf.GGUFReader(tmp_path / "types.gguf").tensors:
        name = tensor.name.removeprefix("t_")
        got = _read(tensor)
        assert got.dtype == np.float32 and got.shape == (rows, cols), name
        np.testing.assert_allclose(got, expected[name], rtol=1e-6, atol=1e-6, err_msg=name)
        assert np.abs(got).max() > 0.5, name  # not trivially zero


def test_gguf_4bit_and_8bit_blocks_import_exactly(tmp_path):
    """Q4_0, Q4_1 and Q8_0 (written with PyPI gguf's quantizer) and Q4_K (llama.cpp's reference
    quantizer) read as exact groups, packed into the asymmetric scheme, dequantize to exactly
    gguf's own dequantization: no rounding anywhere. (Only the sign of a zero may differ:
    Q4_0's d * (8 - 8) is -0.0 for a negative d, our 8d - 8d is +0.0; equal as numbers.)"""
    from gguf.quants import dequantize, quantize

    from webllm_build.convert import exact_import
    from webllm_build.loaders.gguf_file import _exact_groups, _lazy
    from webllm_build.quantize import dequantize_weight, get_quantization, pack_half_pairs

    rows, cols = 6, 512
    rng = np.random.default_rng(3)
    values = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    writer = gguf.GGUFWriter(tmp_path / "exact.gguf", "llama")
    for name in ("Q4_0", "Q4_1", "Q8_0"):
        qtype = gguf.GGMLQuantizationType[name]
        writer.add_tensor(name, quantize(values, qtype), raw_dtype=qtype)
    lib = _ggml()
    q4k = gguf.GGMLQuantizationType.Q4_K
    packed = np.zeros(rows * lib.ggml_row_size(q4k.value, cols), dtype=np.uint8)
    f32p, u8p = ctypes.POINTER(ctypes.c_float), ctypes.c_void_p
    lib.quantize_row_q4_K_ref(
        values.ctypes.data_as(f32p), packed.ctypes.data_as(u8p), ctypes.c_int64(values.size)
    )
    writer.add_tensor("Q4_K", packed.reshape(rows, -1), raw_dtype=q4k)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    f32, f16 = get_quantization("q4f32_asym"), get_quantization("q4f16_asym")
    for tensor in gguf.GGUFReader(tmp_path / "exact.gguf").tensors:
        theirs = dequantize(tensor.data, tensor.tensor_type).reshape(rows, cols)
        groups = _exact_groups(tensor)
        assert groups.kind == tensor.name and groups.q.shape == (rows, cols)
        assert groups.bits == (8 if tensor.name == "Q8_0" else 4)
        assert np.array_equal(groups.dequantize(), theirs), tensor.name
        ours = exact_import(groups, f32, groups.bits)
        assert ours is not None and ours.packed.shape == (rows, cols * groups.bits // 32)
        assert np.array_equal(dequantize_weight(ours, 32, groups.bits), theirs), tensor.name
        assert np.abs(theirs - values).max() > 1e-4  # the file's values, not the floats written
        # f16 scales hold Q4_0 / Q4_1 / Q8_0 exactly; Q4_K's d * sc products need f32.
        in_f16 = exact_import(groups, f16, groups.bits)
        assert (in_f16 is None) == (tensor.name == "Q4_K"), tensor.name
        if in_f16 is not None:
            assert np.array_equal(dequantize_weight(in_f16, 32, groups.bits), theirs), tensor.name
        # The f32 scheme's f16 scale / minimum pairs: planned for exactly the f16-scaled types,
        # and the stored words' halves are the groups' own values.
        assert _lazy(tensor).half_scales == (tensor.name != "Q4_K"), tensor.name
        paired = exact_import(groups, f32, groups.bits, paired=True)
        assert (paired is None) == (tensor.name == "Q4_K"), tensor.name
        if paired is not None:
            words = pack_half_pairs(paired.scale, paired.minimum)
            halves = words.view(np.uint16).reshape(*words.shape, 2).view(np.float16).astype(np.float32)
            assert np.array_equal(halves[..., 0], groups.scale), tensor.name
            assert np.array_equal(halves[..., 1], groups.minimum), tensor.name


def test_half_pairs_widen_exactly_in_the_compiled_kernels_arithmetic():
    """q4_format.half_pair_floats, the integer widening every kernel applies to an f16 scale /
    minimum pair, compiled (LLVM) over every finite f16 bit pattern in both halves, equals
    numpy's f16 -> f32 conversion bit for bit (subnormals and signed zeros included)."""
    import tvm
    from tvm import te

    from webllm_build.q4_format import half_pair_floats

    bits = np.arange(1 << 16, dtype=np.uint32)
    finite = bits[np.isfinite(bits.astype(np.uint16).view(np.float16))]
    words = finite | (finite[::-1] << np.uint32(16))  # every pattern low, and high
    pairs = te.placeholder((words.size,), "uint32", "pairs")
    low = te.compute(pairs.shape, lambda i: half_pair_floats(pairs[i])[0], "low")
    high = te.compute(pairs.shape, lambda i: half_pair_floats(pairs[i])[1], "high")
    kernel = tvm.compile(te.create_prim_func([pairs, low, high]), target="llvm")
    out_low, out_high = (tvm.runtime.tensor(np.zeros(words.size, np.float32)) for _ in range(2))
    kernel(tvm.runtime.tensor(words), out_low, out_high)
    for got, half in ((out_low, finite), (out_high, finite[::-1])):
        expected = half.astype(np.uint16).view(np.float16).astype(np.float32)
        assert np.array_equal(got.numpy().view(np.uint32), expected.view(np.uint32))


# --- SmolLM2 (the real GGUF the default preset ships) --------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> Checkpoint:
    return load_checkpoint(resolve_model("smollm2-135m"))


def test_smollm2_preset_resolves_to_shipped_gguf(smollm2):
    source = resolve_model(DEFAULT_PRESET)
    assert source.kind == "gguf" and source.preset == "smollm2-135m"
    assert source.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and source.path.is_file()
    assert smollm2.source == source


def test_smollm2_config(smollm2):
    from transformers import AutoConfig

    path = smollm2.source.path
    reference = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    config = smollm2.config
    assert config["architectures"] == ["LlamaForCausalLM"]
    for key in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
        "vocab_size",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
    ):
        assert config[key] == getattr(reference, key), key
    assert config["rope_theta"] == reference.rope_parameters["rope_theta"] == 100000.0
    assert config["rms_norm_eps"] == pytest.approx(reference.rms_norm_eps, rel=1e-6)
    assert config["rms_norm_eps"] == 1e-5  # the float32 value spelled as the HF config spells it
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (576, 30, 49152)
    assert config["rope_scaling"] is None and config["tie_word_embeddings"] is True


def test_smollm2_tensors_match_transformers(smollm2):
    """transformers dequantizes and un-permutes the same file itself: the values must agree."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path = smollm2.source.path
    with torch.device("meta"):
        model = LlamaForCausalLM(AutoConfig.from_pretrained(path.parent, gguf_file=path.name))
    reference = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
    assert set(smollm2.tensors.names) == set(reference)  # tied: no lm_head.weight in either
    assert "lm_head.weight" not in smollm2.tensors
    for name, tensor in reference.items():
        loaded = smollm2.tensors.load(name)
        assert loaded.dtype == np.float32 and loaded.shape == tuple(tensor.shape), name
        np.testing.assert_allclose(
            loaded, np.asarray(tensor, dtype=np.float32), rtol=1e-6, atol=1e-6, err_msg=name
        )


@pytest.fixture(scope="module")
def smollm2_tokenizer(smollm2) -> Tokenizer:
    return Tokenizer.from_str(smollm2.tokenizer_json)


def test_smollm2_tokenizer_matches_llama_cpp(smollm2, smollm2_tokenizer):
    """llama.cpp defines what a GGUF's tokenizer means: its ids are the reference."""
    from llama_cpp import Llama

    llama = Llama(model_path=str(smollm2.source.path), vocab_only=True, verbose=False)
    for text in HARD_STRINGS:
        expected = llama.tokenize(text.encode(), add_bos=False, special=True)
        assert smollm2_tokenizer.encode(text).ids == expected, text


def test_smollm2_tokenizer_matches_transformers(smollm2, smollm2_tokenizer):
    """transformers' tokenizer from the same GGUF: vocabulary, merges, special tokens, decoder.

    transformers' GGUF converter ignores tokenizer.ggml.pre = "smollm" (it keeps GPT-2's split,
    so "²³¹" after a space tokenizes differently from llama.cpp and from SmolLM2's published
    tokenizer.json). The reference gets that published pre-tokenizer: individual digits, then
    ByteLevel with GPT-2's regex; everything else is transformers' own.
    """
    from transformers import AutoTokenizer

    path = smollm2.source.path
    reference = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    reference.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    mine = smollm2_tokenizer
    assert mine.get_vocab(with_added_tokens=True) == reference.get_vocab()
    for text in HARD_STRINGS:
        ids = mine.encode(text).ids
        assert ids == reference(text, add_special_tokens=True)["input_ids"], text
        assert mine.decode(ids, skip_special_tokens=False) == text
        assert mine.decode(ids, skip_special_tokens=True) == reference.decode(ids, skip_special_tokens=True)
    assert mine.token_to_id("<|im_start|>") == 1 and mine.token_to_id("<|im_end|>") == 2


def test_smollm2_chat_template_and_special_ids(smollm2):
    assert smollm2.bos_token_id == 1
    assert smollm2.eos_token_ids == [2]  # <|im_end|>: the end of an assistant turn
    template = smollm2.chat_template
    assert template is not None and "<|im_start|>" in template and "add_generation_prompt" in template
    tokenizer = json.loads(smollm2.tokenizer_json)
    specials = {t["content"] for t in tokenizer["added_tokens"] if t["special"]}
    assert {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>"} <= specials and len(specials) == 17


# --- Presets and the Hub cache -------------------------------------------------------------------


def test_presets_registry():
    presets = {p.name: p for p in list_presets()}
    assert list(presets)[0] == DEFAULT_PRESET == "smollm2-135m"
    assert set(presets) == {
        "phi",
        "phi-1_5",
        "phi-2",
        "phi-3-mini",
        "phi-3.5-mini",
        "phi-4-mini",
        "smollm2-135m",
        "qwen2.5-0.5b",
        "qwen2.5-1.5b",
        "qwen3-0.6b",
        "qwen3-1.7b",
        "qwen3-4b",
        "llama-3.2-1b",
        "llama-3.2-3b",
        "smollm3-3b",
        "gemma-3-1b",
        "mistral-7b",
    }
    assert presets["gemma-3-1b"].source == "google/gemma-3-1b-it"
    assert presets["qwen2.5-0.5b"].source == "Qwen/Qwen2.5-0.5B-Instruct"
    assert presets["qwen2.5-1.5b"].source == "Qwen/Qwen2.5-1.5B-Instruct"
    assert presets["phi"].source == presets["phi-3.5-mini"].source == "microsoft/Phi-3.5-mini-instruct"
    assert presets["phi-4-mini"].source == "microsoft/Phi-4-mini-instruct"
    # The default model's GGUF keeps its own blocks (asymmetric, exact); the small ones run
    # everywhere in f32, SwiftShader (no shader-f16) included.
    assert presets["smollm2-135m"].quantization == "q4f32_asym"
    expected = {"smollm2-135m": "q4f32_asym", "qwen2.5-0.5b": "q4f32_1", "qwen3-0.6b": "q4f32_1"}
    assert all(p.quantization == expected.get(name, "q4f16_1") for name, p in presets.items())


_RESOLVE_SCRIPT = """
import json, sys
from webllm_build.errors import LoaderError
from webllm_build.loaders import resolve_model
results = {}
for spec in sys.argv[1:]:
    try:
        source = resolve_model(spec)
        results[spec] = {"kind": source.kind, "path": str(source.path), "preset": source.preset}
    except LoaderError as e:
        results[spec] = {"error": str(e)}
print(json.dumps(results))
"""


def _resolve_in(hf_home: Path, *specs: str, offline: bool) -> dict:
    """resolve_model in a fresh process: huggingface_hub reads HF_HOME and HF_HUB_OFFLINE on import."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_HOME": str(hf_home)}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    run = subprocess.run(
        [sys.executable, "-c", _RESOLVE_SCRIPT, *specs], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE=1", "no-network"])
def test_hub_repo_not_cached_offline_says_how_to_download(tmp_path, offline):
    results = _resolve_in(tmp_path / "hf_home", "microsoft/phi-2", "phi", offline=offline)
    for repo, result in zip(
        ["microsoft/phi-2", "microsoft/Phi-3.5-mini-instruct"], results.values(), strict=True
    ):
        message = result["error"]
        assert f"`hf download {repo}`" in message and f"`huggingface-cli download {repo}`" in message
        assert "not in the local Hugging Face cache" in message


def test_hub_repo_in_local_cache_resolves_offline(tmp_path):
    """A snapshot laid out as huggingface_hub caches it resolves with no network."""
    from huggingface_hub.file_download import repo_folder_name

    hf_home = tmp_path / "hf_home"
    repo = hf_home / "hub" / repo_folder_name(repo_id="acme/tiny-llama", repo_type="model")
    revision = "0123456789abcdef0123456789abcdef01234567"
    make_llama(repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)

    for offline in (True, False):
        result = _resolve_in(hf_home, "acme/tiny-llama", offline=offline)["acme/tiny-llama"]
        assert result == {"kind": "hf-dir", "path": str(repo / "snapshots" / revision), "preset": None}
    checkpoint = load_checkpoint(ModelSource("hf-dir", Path(result["path"]), None))
    assert checkpoint.config["architectures"] == ["LlamaForCausalLM"]


# --- Errors: LoaderError naming the file and the field ------------------------------------------


def test_error_missing_config(tmp_path):
    directory = make_llama(tmp_path / "model")
    (directory / "config.json").unlink()
    with pytest.raises(LoaderError, match=r"model/config\.json is missing"):
        resolve_model(str(directory))
    with pytest.raises(LoaderError, match=r"model/config\.json is missing"):
        load_checkpoint(ModelSource("hf-dir", directory, None))


def test_error_config_missing_required_field(tmp_path):
    directory = make_llama(tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    del config["architectures"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoaderError, match=r"config\.json: required field 'architectures' is missing"):
        load_dir(directory)


def test_error_unknown_file_type_and_spec(tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\0" * 16)
    with pytest.raises(LoaderError, match=r"model\.onnx: unknown file type '\.onnx'"):
        resolve_model(str(onnx))
    with pytest.raises(LoaderError, match=r"'no such model' is not a preset"):
        resolve_model("no such model")


def test_error_truncated_safetensors(tmp_path):
    directory = make_llama(tmp_path / "model")
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(LoaderError, match=r"model\.safetensors: truncated safetensors file"):
        load_dir(directory)
    weights.write_bytes(b"\xff" * 12)
    with pytest.raises(LoaderError, match=r"model\.safetensors: truncated or not a safetensors file"):
        load_dir(directory)


def test_error_index_lists_missing_shard(tmp_path):
    directory = make_llama(tmp_path / "model", max_shard_size="30KB")
    shard = sorted(directory.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(LoaderError, match=rf"model\.safetensors\.index\.json: shard '{shard.name}'"):
        load_dir(directory)


def test_error_bin_without_torch(tmp_path):
    """A .bin checkpoint where torch cannot be imported: the message gives the pip command."""
    directory = make_llama(tmp_path / "model", safe_serialization=False)
    script = (
        "import sys; sys.modules['torch'] = None\n"  # what `import torch` sees when torch is absent
        "from webllm_build.loaders import load_checkpoint, resolve_model\n"
        "from webllm_build.errors import LoaderError\n"
        f"try: load_checkpoint(resolve_model({str(directory)!r}))\n"
        "except LoaderError as e: print(e)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "pytorch_model.bin is a PyTorch pickle" in run.stdout and "pip install torch" in run.stdout


def test_error_truncated_gguf(tmp_path):
    path = write_gguf(make_llama(tmp_path / "model"), tmp_path / "model.gguf")
    data = path.read_bytes()
    for size in (0, 3, 1000, len(data) - 100):
        path.write_bytes(data[:size])
        with pytest.raises(LoaderError, match=r"model\.gguf: truncated or not a GGUF file"):
            load_checkpoint(resolve_model(str(path)))


def _tiny_gguf(path: Path, arch: str, tensors: dict[str, np.ndarray]) -> Path:
    writer = gguf.GGUFWriter(path, arch)
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_error_unsupported_gguf_architecture(tmp_path):
    path = _tiny_gguf(tmp_path / "m.gguf", "mamba", {"token_embd.weight": np.zeros((4, 32), np.float32)})
    with pytest.raises(LoaderError, match=r"m\.gguf: field 'general.architecture' is 'mamba'"):
        load_checkpoint(resolve_model(str(path)))


def test_error_unsupported_gguf_tensor_type(tmp_path):
    path = _tiny_gguf(tmp_path / "m.gguf", "llama", {"token_embd.weight": np.zeros((4, 32), np.int32)})
    with pytest.raises(LoaderError, match=r"m\.gguf: tensor 'token_embd.weight' has type I32"):
        load_checkpoint(resolve_model(str(path)))


def test_error_unsupported_gguf_tokenizer_pre(tmp_path):
    path = write_gguf(make_llama(tmp_path / "model"), tmp_path / "model.gguf", pre="some-new-bpe")
    with pytest.raises(LoaderError, match=r"model\.gguf: field 'tokenizer.ggml.pre' is 'some-new-bpe'"):
        load_checkpoint(resolve_model(str(path)))


def test_error_directory_of_ggufs_points_at_the_file(tmp_path):
    path = write_gguf(make_llama(tmp_path / "model"), tmp_path / "ggufs" / "model.gguf")
    shutil.rmtree(tmp_path / "model")
    with pytest.raises(LoaderError, match=r"pass the file itself"):
        resolve_model(str(path.parent))


def test_chat_template_locations(tmp_path):
    """transformers' order: chat_template.jinja, chat_template.json, then tokenizer_config.json
    (whose template may be a list of named ones: the chat site takes "default")."""
    directory = make_llama(tmp_path / "model")
    tokenizer_config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(tokenizer_config_path.read_text())
    tokenizer_config["chat_template"] = [
        {"name": "tool_use", "template": "TOOLS"},
        {"name": "default", "template": "DEFAULT"},
    ]
    tokenizer_config_path.write_text(json.dumps(tokenizer_config))
    assert load_dir(directory).chat_template == "DEFAULT"
    (directory / "chat_template.json").write_text(json.dumps({"chat_template": "FROM JSON"}))
    assert load_dir(directory).chat_template == "FROM JSON"
    (directory / "chat_template.jinja").write_text("FROM JINJA")
    assert load_dir(directory).chat_template == "FROM JINJA"


def test_error_missing_tokenizer_json(tmp_path):
    directory = make_llama(tmp_path / "model")
    (directory / "tokenizer.json").unlink()
    with pytest.raises(LoaderError, match=r"model/tokenizer\.json is missing"):
        load_dir(directory)
