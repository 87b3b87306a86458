"""A llama.cpp GGUF file as a Checkpoint with Hugging Face tensor names and config keys.

GGUF renames tensors, stores the config as metadata, quantizes weights and, for Llama, permutes the
q/k projection rows. Everything here undoes that, so the model side sees the same checkpoint it
would get from the Hugging Face repo the GGUF was converted from (up to quantization error).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, ReaderTensor
from gguf.quants import Q4_K, dequantize

from webllm_build.errors import LoaderError
from webllm_build.loaders.checkpoint import (
    Checkpoint,
    ExactGroups,
    LazyTensor,
    ModelSource,
    TensorSource,
    token_ids,
)
from webllm_build.loaders.gguf_tokenizer import tokenizer_json_from_gguf

# Every type here was checked against llama.cpp's own dequantize_row_* (tests/test_loaders.py).
QUANTIZED_TYPES = frozenset(
    GGMLQuantizationType[name]
    for name in ("BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
)
# Kept as stored; everything quantized (and BF16, which numpy lacks) comes out as float32.
PLAIN_TYPES = {GGMLQuantizationType.F32: np.dtype(np.float32), GGMLQuantizationType.F16: np.dtype(np.float16)}

_LAYER = re.compile(r"blk\.(\d+)\.(.+)")

Tensors = dict[str, LazyTensor]

_REQUIRED = object()


@dataclass(frozen=True)
class _Architecture:
    """How one llama.cpp architecture maps back to its transformers class."""

    config: Callable[[_Metadata, dict[str, ReaderTensor]], dict[str, Any]]
    global_names: dict[str, str]  # GGUF name -> HF name
    layer_names: dict[str, str]  # GGUF name after "blk.N." -> HF name after "model.layers.N."
    # Tensors that become config (Phi-3's rope factors), not weights.
    config_tensors: frozenset[str] = frozenset()
    # Reshapes the directly renamed tensors into the HF layout (un-permute, fuse, split).
    adjust: Callable[[Tensors, dict[str, Any]], Tensors] = lambda tensors, config: tensors


class _Metadata:
    """GGUF metadata with errors that name the file and the missing key."""

    def __init__(self, path: Path, values: dict[str, Any]) -> None:
        self.path, self.values = path, values
        self.arch = values.get("general.architecture")

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(f"{self.arch}.{key}", default)

    def require(self, key: str) -> Any:
        full = f"{self.arch}.{key}"
        if full not in self.values:
            raise LoaderError(f"{self.path}: required field {full!r} is missing")
        return self.values[full]

    def uniform(self, key: str, default: Any = _REQUIRED) -> Any:
        """A per-model value that newer files may store per layer (e.g. head_count_kv)."""
        value = self.require(key) if default is _REQUIRED else self.get(key, default)
        if isinstance(value, list):
            if len(set(value)) != 1:
                raise LoaderError(
                    f"{self.path}: field '{self.arch}.{key}' differs between layers ({value}); "
                    f"such models are not supported"
                )
            return value[0]
        return value


def load_gguf(source: ModelSource) -> Checkpoint:
    path = source.path
    reader, values = _open(path)
    metadata = _Metadata(path, values)
    arch = ARCHITECTURES.get(metadata.arch)
    if arch is None:
        raise LoaderError(
            f"{path}: field 'general.architecture' is {metadata.arch!r}, which webllm_build cannot load "
            f"from GGUF (supported: {', '.join(ARCHITECTURES)})"
        )
    raw = {t.name: t for t in reader.tensors}
    for t in raw.values():
        if t.tensor_type not in PLAIN_TYPES and t.tensor_type not in QUANTIZED_TYPES:
            supported = sorted(q.name for q in (*PLAIN_TYPES, *QUANTIZED_TYPES))
            raise LoaderError(
                f"{path}: tensor {t.name!r} has type {t.tensor_type.name}, which is not supported "
                f"(supported: {', '.join(supported)})"
            )
    bos = values.get("tokenizer.ggml.bos_token_id")
    # llama.cpp stops at any end-of-generation token: eos, and end-of-turn / end-of-message when set.
    eos = token_ids(*(values.get(f"tokenizer.ggml.{key}_token_id") for key in ("eos", "eot", "eom")))
    config = arch.config(metadata, raw) | {
        "bos_token_id": bos,
        "eos_token_id": eos[0] if len(eos) == 1 else eos,
    }
    tensors = arch.adjust(_rename(path, metadata.arch, arch, raw), config)
    return Checkpoint(
        source=source,
        config=config,
        tensors=TensorSource(path, tensors),
        tokenizer_json=tokenizer_json_from_gguf(path, values),
        chat_template=values.get("tokenizer.chat_template"),
        bos_token_id=bos,
        eos_token_ids=eos,
        generation_config={"bos_token_id": bos, "eos_token_id": eos},
    )


def _open(path: Path) -> tuple[GGUFReader, dict[str, Any]]:
    """The reader (tensors stay memory-mapped, unread) and the metadata as Python values."""
    try:
        reader = GGUFReader(path)
        metadata = _read_metadata(reader)
    except (ValueError, IndexError, KeyError, OverflowError, OSError, UnicodeDecodeError) as e:
        # gguf reports a short file as a failed reshape or index: say what it means.
        raise LoaderError(f"{path}: truncated or not a GGUF file ({type(e).__name__}: {e})") from None
    if reader.byte_order != "I":
        raise LoaderError(
            f"{path}: the GGUF has the other byte order (big-endian); convert it on this machine"
        )
    return reader, metadata


def _read_metadata(reader: GGUFReader) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        if field.types[-1] == GGUFValueType.FLOAT32:
            # Shortest float32 spelling: 1e-05, not 9.999999747378752e-06 as widened to float64.
            value = [_f32(v) for v in value] if isinstance(value, list) else _f32(value)
        values[key] = value
    return values


def _f32(value: float) -> float:
    return float(str(np.float32(value)))


def _read(t: ReaderTensor) -> np.ndarray:
    if t.tensor_type in PLAIN_TYPES:
        return np.array(t.data)
    return dequantize(t.data, t.tensor_type)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """A 32-value block's 16 bytes as its values: element j is byte j's low nibble, element
    j + 16 its high nibble (ggml's layout for Q4_0, Q4_1 and each Q4_K sub-block)."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _f16(raw: np.ndarray) -> np.ndarray:
    return raw.copy().view(np.float16).astype(np.float32)


def _exact_groups(t: ReaderTensor) -> ExactGroups:
    """The tensor's blocks as groups of 32 `scale * q + minimum`, with no rounding: the products
    of an f16 scale and a small integer fit float32 exactly (tests compare with gguf's own
    dequantization bit for bit)."""
    kind = GGMLQuantizationType(t.tensor_type)
    rows, cols = int(np.prod(t.shape[1:])), int(t.shape[0])
    size = {GGMLQuantizationType.Q4_0: 18, GGMLQuantizationType.Q4_1: 20, GGMLQuantizationType.Q4_K: 144}
    size[GGMLQuantizationType.Q8_0] = 34
    blocks = np.asarray(t.data).reshape(-1, size[kind])
    if kind == GGMLQuantizationType.Q4_K:  # 256 values: 8 sub-blocks under a super-block scale
        d, dmin = _f16(blocks[:, 0:2]), _f16(blocks[:, 2:4])
        sc, m = Q4_K.get_scale_min(blocks[:, 4:16].copy())
        qs = blocks[:, 16:].reshape(-1, 4, 32)
        q = np.stack([qs & 0x0F, qs >> 4], axis=2).reshape(-1, 8, 32)
        scale, minimum = d * sc.astype(np.float32), -(dmin * m.astype(np.float32))
        bits = 4
    elif kind == GGMLQuantizationType.Q8_0:  # int8 values stored as q + 128
        scale = _f16(blocks[:, 0:2])
        q = blocks[:, 2:].copy().view(np.int8).astype(np.int16) + 128
        minimum, bits = -128 * scale, 8
    else:
        scale = _f16(blocks[:, 0:2])
        if kind == GGMLQuantizationType.Q4_0:  # d * (q - 8)
            q, minimum = _nibbles(blocks[:, 2:]), -8 * scale
        else:  # Q4_1: d * q + m
            q, minimum = _nibbles(blocks[:, 4:]), _f16(blocks[:, 2:4])
        bits = 4
    groups = cols // ExactGroups.GROUP
    return ExactGroups(
        q.astype(np.uint8).reshape(rows, cols),
        scale.reshape(rows, groups),
        minimum.reshape(rows, groups),
        bits,
        kind.name,
    )


# The quantized types that are exact groups (ExactGroups); the rest are only read as floats.
EXACT_TYPES = frozenset(GGMLQuantizationType[name] for name in ("Q4_0", "Q4_1", "Q4_K", "Q8_0"))
# Those whose group scales and minimums are f16 values (Q4_K's are f16 times 6-bit integers).
HALF_SCALE_TYPES = frozenset(GGMLQuantizationType[name] for name in ("Q4_0", "Q4_1", "Q8_0"))


def _lazy(t: ReaderTensor) -> LazyTensor:
    exact = t.tensor_type in EXACT_TYPES and len(t.shape) == 2
    return LazyTensor(
        tuple(int(d) for d in reversed(t.shape.tolist())),  # GGUF lists dimensions innermost first
        PLAIN_TYPES.get(t.tensor_type, np.dtype(np.float32)),
        lambda: _read(t),
        (lambda: _exact_groups(t)) if exact else None,
        (8 if t.tensor_type == GGMLQuantizationType.Q8_0 else 4) if exact else None,
        exact and t.tensor_type in HALF_SCALE_TYPES,
    )


def _rename(path: Path, arch_name: str, arch: _Architecture, raw: dict[str, ReaderTensor]) -> Tensors:
    tensors: Tensors = {}
    for name, t in raw.items():
        if name in arch.config_tensors:
            continue
        layer = _LAYER.fullmatch(name)
        if layer:
            suffix = arch.layer_names.get(layer[2])
            hf_name = f"model.layers.{layer[1]}.{suffix}" if suffix else None
        else:
            hf_name = arch.global_names.get(name)
        if hf_name is None:
            hint = " (Llama 3.1-style rope frequency factors)" if name == "rope_freqs.weight" else ""
            raise LoaderError(
                f"{path}: tensor {name!r}{hint} has no Hugging Face equivalent in a {arch_name} model "
                f"webllm_build can load"
            )
        tensors[hf_name] = _lazy(t)
    return tensors


# --- Llama ---------------------------------------------------------------------------------------


def unpermute_rotary(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo convert_hf_to_gguf's row permutation of a Llama q/k projection (weight or bias).

    llama.cpp's rotary kernel rotates adjacent pairs (x0, x1), (x2, x3), ...; transformers' rotates
    each head's first half against its second half (x_i, x_{i + d/2}). The converter interleaves
    the two halves of every head so the same weights work pairwise; a rotate-half model needs them
    back in halves: row (h, 2j + s) of the GGUF is row (h, s * d/2 + j) of the original.
    """
    head_dim = w.shape[0] // n_head
    return w.reshape(n_head, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama_config(m: _Metadata, raw: dict[str, ReaderTensor]) -> dict[str, Any]:
    config = _decoder_config(m, raw)
    rotary = m.get("rope.dimension_count", config["head_dim"])
    if rotary != config["head_dim"]:
        raise LoaderError(
            f"{m.path}: field 'llama.rope.dimension_count' is {rotary}, not the head size "
            f"{config['head_dim']}; partial rotary Llama models are not supported"
        )
    return config | {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "rms_norm_eps": m.require("attention.layer_norm_rms_epsilon"),
        "rope_scaling": _llama_rope_scaling(m),
        "attention_bias": "blk.0.attn_q.bias" in raw,
        "mlp_bias": "blk.0.ffn_up.bias" in raw,
    }


def _llama_rope_scaling(m: _Metadata) -> dict[str, Any] | None:
    kind = m.get("rope.scaling.type", "none")
    factor = m.get("rope.scaling.factor")
    if kind == "none" or factor in (None, 0.0, 1.0):
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": factor}
    if kind == "yarn":
        return {
            "rope_type": "yarn",
            "factor": factor,
            "original_max_position_embeddings": m.require("rope.scaling.original_context_length"),
        }
    raise LoaderError(f"{m.path}: field '{m.arch}.rope.scaling.type' is {kind!r}, which is not supported")


def _llama_adjust(tensors: Tensors, config: dict[str, Any]) -> Tensors:
    heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
    adjusted: Tensors = {}
    for name, lazy in tensors.items():
        proj = name.split(".")[-2]
        if proj in heads:
            lazy = lazy.map_rows(lazy.shape, lambda rows, n=heads[proj]: unpermute_rotary(rows, n))
        adjusted[name] = lazy
    return adjusted


_LLAMA_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
    **{f"attn_{p}.{kind}": f"self_attn.{p}_proj.{kind}" for p in "qkv" for kind in ("weight", "bias")},
}

# --- Phi-3 (Phi-3, Phi-3.5, Phi-4-mini) --------------------------------------------------------


def _phi3_config(m: _Metadata, raw: dict[str, ReaderTensor]) -> dict[str, Any]:
    config = _decoder_config(m, raw)
    original = m.get("rope.scaling.original_context_length", config["max_position_embeddings"])
    # Phi-3.5 / Phi-4-mini longrope: one factor per rotary frequency, stored as two tensors.
    factors = {kind: raw.get(f"rope_factors_{kind}.weight") for kind in ("long", "short")}
    rope_scaling = None
    if any(t is not None for t in factors.values()):
        if any(t is None for t in factors.values()):
            raise LoaderError(
                f"{m.path}: tensors 'rope_factors_long.weight' and '...short.weight' come in pairs"
            )
        rope_scaling = {"type": "longrope"} | {
            f"{kind}_factor": [_f32(v) for v in _read(t)] for kind, t in factors.items()
        }
    return config | {
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "hidden_act": "silu",
        "rms_norm_eps": m.require("attention.layer_norm_rms_epsilon"),
        "partial_rotary_factor": m.get("rope.dimension_count", config["head_dim"]) / config["head_dim"],
        "original_max_position_embeddings": original,
        "rope_scaling": rope_scaling,
        "sliding_window": m.get("attention.sliding_window"),
    }


_PHI3_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_qkv.weight": "self_attn.qkv_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_up.weight": "mlp.gate_up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}

# --- Phi-2 (phi-1, phi-1.5, phi-2) ---------------------------------------------------------------


def _phi2_config(m: _Metadata, raw: dict[str, ReaderTensor]) -> dict[str, Any]:
    config = _decoder_config(m, raw)
    return config | {
        "architectures": ["PhiForCausalLM"],
        "model_type": "phi",
        "hidden_act": "gelu_new",
        "layer_norm_eps": m.require("attention.layer_norm_epsilon"),
        "partial_rotary_factor": m.require("rope.dimension_count") / config["head_dim"],
        "rope_scaling": None,
        "qk_layernorm": False,
    }


def _phi2_adjust(tensors: Tensors, config: dict[str, Any]) -> Tensors:
    """transformers' Phi keeps q, k and v apart; older phi-2 conversions fused them."""
    head_dim = config["head_dim"]
    sizes = [config["num_attention_heads"] * head_dim, *[config["num_key_value_heads"] * head_dim] * 2]
    bounds = np.cumsum([0, *sizes])
    for name in [n for n in tensors if ".self_attn.qkv." in n]:
        fused = tensors.pop(name)
        for p, begin, end in zip("qkv", bounds[:-1], bounds[1:], strict=True):
            tensors[name.replace(".qkv.", f".{p}_proj.")] = fused.map_rows(
                (int(end - begin), *fused.shape[1:]),
                lambda rows, begin=begin, end=end: rows[begin:end].copy(),
            )
    return tensors


_PHI2_LAYER = {
    f"{gguf}.{kind}": f"{hf}.{kind}"
    for gguf, hf in {
        "attn_norm": "input_layernorm",
        "attn_qkv": "self_attn.qkv",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.dense",
        "ffn_up": "mlp.fc1",
        "ffn_down": "mlp.fc2",
    }.items()
    for kind in ("weight", "bias")
}

# --- shared --------------------------------------------------------------------------------------


def _decoder_config(m: _Metadata, raw: dict[str, ReaderTensor]) -> dict[str, Any]:
    """The keys every decoder-only transformers config has, in transformers' names."""
    hidden = m.require("embedding_length")
    heads = m.uniform("attention.head_count")
    if "token_embd.weight" not in raw:
        raise LoaderError(f"{m.path}: tensor 'token_embd.weight' is missing")
    return {
        "hidden_size": hidden,
        "intermediate_size": m.uniform("feed_forward_length"),
        "num_hidden_layers": m.require("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": m.uniform("attention.head_count_kv", heads),
        "head_dim": m.get("attention.key_length", hidden // heads),
        "max_position_embeddings": m.require("context_length"),
        "rope_theta": m.get("rope.freq_base", 10000.0),
        # The embedding's rows, not the tokenizer's length: checkpoints pad the vocabulary.
        "vocab_size": int(raw["token_embd.weight"].shape[-1]),
        # llama.cpp writes no output projection when it is the embedding matrix.
        "tie_word_embeddings": "output.weight" not in raw,
    }


_COMMON_GLOBALS = {"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight"}

ARCHITECTURES: dict[str, _Architecture] = {
    "llama": _Architecture(
        config=_llama_config,
        global_names=_COMMON_GLOBALS | {"output_norm.weight": "model.norm.weight"},
        layer_names=_LLAMA_LAYER,
        adjust=_llama_adjust,
    ),
    "phi3": _Architecture(
        config=_phi3_config,
        global_names=_COMMON_GLOBALS | {"output_norm.weight": "model.norm.weight"},
        layer_names=_PHI3_LAYER,
        config_tensors=frozenset({"rope_factors_long.weight", "rope_factors_short.weight"}),
    ),
    "phi2": _Architecture(
        config=_phi2_config,
        global_names=_COMMON_GLOBALS
        | {
            "output.bias": "lm_head.bias",
            "output_norm.weight": "model.final_layernorm.weight",
            "output_norm.bias": "model.final_layernorm.bias",
        },
        layer_names=_PHI2_LAYER,
        adjust=_phi2_adjust,
    ),
}
