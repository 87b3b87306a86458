"""Weight quantization: the presets, the numpy packing, and the quantized Relax modules.

`q4f*_1` is symmetric 4-bit group quantization in groups of 32, `q4f*_asym` asymmetric (a scale
and a minimum per group); the format is q4_format.py.
Dequantization happens inside the matmul's own kernel (one TE op computes both), so a full-size
dequantized weight never exists in GPU memory.

Quantization is generic over models: `quantize_modules` swaps every `nn.Linear` and the token
`Embedding` for their quantized twins; no model file knows about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op

from webllm_build.errors import OptionsError
from webllm_build.models.base import Embedding
from webllm_build.q4_format import (
    BITS,
    DEQUANTIZE_STAGE,
    MAX_INT,
    WIDE_BITS,
    half_pair_floats,
    values_per_word,
)


@dataclass(frozen=True)
class Quantization:
    name: str
    model_dtype: str  # activations, norms, biases and scales
    group_size: int | None  # None: weights stay unquantized
    description: str
    # Each group stores a minimum beside its scale (w = scale * q + min, q in 0..15) instead of
    # the symmetric scheme's fixed offset (w = scale * (q - 7)): a group's 16 levels then span its
    # own range, and GGUF's Q4_0 / Q4_1 / Q4_K blocks are exactly such groups.
    asymmetric: bool = False

    @property
    def quantized(self) -> bool:
        return self.group_size is not None

    @property
    def required_features(self) -> list[str]:
        return ["shader-f16"] if self.model_dtype == "float16" else []


QUANTIZATIONS: dict[str, Quantization] = {
    "q4f16_1": Quantization("q4f16_1", "float16", 32, "4-bit weights, f16 scales and activations"),
    "q4f32_1": Quantization("q4f32_1", "float32", 32, "4-bit weights, f32 scales and activations"),
    "q4f16_asym": Quantization(
        "q4f16_asym", "float16", 32, "4-bit weights, f16 scales and minimums, f16 activations", True
    ),
    "q4f32_asym": Quantization(
        "q4f32_asym", "float32", 32, "4-bit weights, f32 scales and minimums, f32 activations", True
    ),
    "q0f16": Quantization("q0f16", "float16", None, "unquantized f16"),
    "q0f32": Quantization("q0f32", "float32", None, "unquantized f32"),
}


def get_quantization(name: str) -> Quantization:
    if name not in QUANTIZATIONS:
        raise OptionsError(f"Unknown quantization `{name}`. Choose one of: {', '.join(QUANTIZATIONS)}.")
    return QUANTIZATIONS[name]


class GroupQuantized(NamedTuple):
    """A weight in the 4-bit group format: what the compiled model's parameters hold."""

    packed: np.ndarray  # uint32 (rows, cols / 8)
    scale: np.ndarray  # (rows, cols / group_size), the model's dtype
    minimum: np.ndarray | None  # as `scale`, asymmetric schemes only


def quantize_weight(
    weight: np.ndarray, group_size: int, scale_dtype: str, asymmetric: bool = False, bits: int = BITS
) -> GroupQuantized:
    """(rows, cols) float -> the packed words, and a scale (and minimum) per group; `bits` other
    than 4 (WIDE_BITS) only for asymmetric schemes."""
    rows, cols = weight.shape
    groups = weight.astype(np.float32).reshape(rows, cols // group_size, group_size)
    top = (1 << bits) - 1
    if asymmetric:
        low, high = groups.min(axis=-1), groups.max(axis=-1)
        scale = ((high - low) / top).astype(scale_dtype)
        minimum = low.astype(scale_dtype)
        offset = minimum.astype(np.float32)[..., None]
    else:
        scale = (np.abs(groups).max(axis=-1) / MAX_INT).astype(scale_dtype)
        minimum, offset = None, 0
    # Round the scale to its stored dtype first, so packing and dequantizing agree exactly.
    safe = np.where(scale == 0, 1, scale).astype(np.float32)[..., None]
    levels = (top, 0) if asymmetric else (2 * MAX_INT, MAX_INT)
    q = np.clip(np.rint((groups - offset) / safe) + levels[1], 0, levels[0]).astype(np.uint32)
    return GroupQuantized(pack_nibbles(q.reshape(rows, cols), bits), scale, minimum)


def pack_nibbles(q: np.ndarray, bits: int = BITS) -> np.ndarray:
    """(rows, cols) values of `bits` bits -> uint32 (rows, cols * bits / 32), lowest first."""
    rows, cols = q.shape
    per_word = values_per_word(bits)
    values = q.astype(np.uint32).reshape(rows, cols // per_word, per_word)
    shifts = np.arange(per_word, dtype=np.uint32) * bits
    return np.bitwise_or.reduce(values << shifts, axis=-1).astype(np.uint32)


def pack_half_pairs(scale: np.ndarray, minimum: np.ndarray) -> np.ndarray:
    """Scales and minimums (f16 values) as `q_scale_min` words: the scale's f16 bits low, the
    minimum's high (q4_format.py)."""
    low = scale.astype(np.float16).view(np.uint16).astype(np.uint32)
    high = minimum.astype(np.float16).view(np.uint16).astype(np.uint32)
    return low | (high << np.uint32(16))


def dequantize_weight(weight: GroupQuantized, group_size: int, bits: int = BITS) -> np.ndarray:
    """The exact float32 weights the compiled kernels compute from a packed weight."""
    rows = weight.packed.shape[0]
    shifts = np.arange(values_per_word(bits), dtype=np.uint32) * bits
    mask = np.uint32((1 << bits) - 1)
    q = ((weight.packed[..., None] >> shifts) & mask).reshape(rows, -1).astype(np.float32)
    scale = np.repeat(weight.scale.astype(np.float32), group_size, axis=1)
    if weight.minimum is None:
        return (q - MAX_INT) * scale
    return q * scale + np.repeat(weight.minimum.astype(np.float32), group_size, axis=1)


def _te_dequantize(
    q_weight: te.Tensor, q_scale: te.Tensor, q_min: te.Tensor | None, group_size: int, dtype: str, bits: int
):
    """A TE expression for element (row, col) of the dequantized weight.

    The asymmetric form is `q * scale + min`, in that order: compiler/q4_fused.py tells the
    scale from the minimum (and the packed weight from a uint32 `q_scale_min`, passed as
    `q_scale` with no `q_min`) by the order the expression loads them.
    """
    per_word = values_per_word(bits)

    def element(row, col):
        word = q_weight[row, col // per_word]
        shift = (col % per_word * bits).astype("uint32")
        nibble = tirx.bitwise_and(tirx.shift_right(word, shift), tirx.const((1 << bits) - 1, "uint32"))
        # Through int32: a signed int-to-float conversion is one instruction on x86 SIMD (what
        # CPU-emulated adapters run on), an unsigned one several.
        value = nibble.astype("int32").astype(dtype)
        group = col // group_size
        if q_scale.dtype == "uint32":  # f16 scale / minimum pairs
            scale, minimum = (v.astype(dtype) for v in half_pair_floats(q_scale[row, group]))
            return value * scale + minimum
        if q_min is not None:
            return value * q_scale[row, group] + q_min[row, group]
        return (value - tirx.const(MAX_INT, dtype)) * q_scale[row, group]

    return element


class _GroupQuantParams(nn.Module):
    """The packed weight, its scales and (asymmetric schemes) minimums, as parameters."""

    bits = BITS

    def _quantized_params(self, rows: int, cols: int, q: Quantization, bits: int, paired: bool) -> None:
        """`paired`: the scales and minimums as f16 pairs in one uint32 `q_scale_min` (q4_format.py)."""
        self.bits = bits
        self.q_weight = nn.Parameter((rows, cols // values_per_word(bits)), "uint32")
        groups = (rows, cols // q.group_size)
        self.q_scale = None if paired else nn.Parameter(groups, q.model_dtype)
        self.q_min = nn.Parameter(groups, q.model_dtype) if q.asymmetric and not paired else None
        self.q_scale_min = nn.Parameter(groups, "uint32") if paired else None

    def _tensors(self) -> list[Tensor]:
        return [t for t in (self.q_weight, self.q_scale, self.q_min, self.q_scale_min) if t is not None]


class GroupQuantLinear(_GroupQuantParams):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        q: Quantization,
        bits: int = BITS,
        paired: bool = False,
    ):
        self.in_features, self.out_features, self.q = in_features, out_features, q
        self._quantized_params(out_features, in_features, q, bits, paired)
        self.bias = nn.Parameter((out_features,), q.model_dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        out = dequantize_matmul(x, self._tensors(), self.q, self.bits)
        return out + self.bias if self.bias is not None else out


class GroupQuantEmbedding(_GroupQuantParams):
    def __init__(self, num: int, dim: int, q: Quantization, bits: int = BITS, paired: bool = False) -> None:
        self.num, self.dim, self.q = num, dim, q
        self._quantized_params(num, dim, q, bits, paired)

    def forward(self, ids: Tensor) -> Tensor:
        q, dim, bits = self.q, self.dim, self.bits

        def lookup(ids_t: te.Tensor, weight: te.Tensor, scale: te.Tensor, minimum: te.Tensor | None = None):
            element = _te_dequantize(weight, scale, minimum, q.group_size, q.model_dtype, bits)
            return te.compute((*ids_t.shape, dim), lambda *i: element(ids_t[i[:-1]], i[-1]), "embed")

        return op.tensor_expr_op(lookup, "dequantize_embed", [ids, *self._tensors()])

    def lm_head_forward(self, hidden: Tensor) -> Tensor:
        return dequantize_matmul(hidden, self._tensors(), self.q, self.bits)


def dequantize_matmul(x: Tensor, quantized: list[Tensor], q: Quantization, bits: int = BITS) -> Tensor:
    """x @ dequantize(w).T as one TE op, so the dequantization fuses into the matmul kernel;
    `quantized` is the weight's packed words, scales and (asymmetric) minimums."""

    def compute(x_t: te.Tensor, weight: te.Tensor, scale: te.Tensor, minimum: te.Tensor | None = None):
        in_features = x_t.shape[-1]
        element = _te_dequantize(weight, scale, minimum, q.group_size, q.model_dtype, bits)
        dequantized = te.compute((weight.shape[0], in_features), element, name=DEQUANTIZE_STAGE)
        k = te.reduce_axis((0, in_features), name="k")
        return te.compute(
            (*x_t.shape[:-1], weight.shape[0]),
            lambda *i: te.sum(x_t[(*i[:-1], k)] * dequantized[i[-1], k], axis=k),
            name="matmul",
        )

    return op.tensor_expr_op(compute, "dequantize_matmul", [x, *quantized])


def quantize_modules(
    model: nn.Module,
    q: Quantization,
    wide: frozenset[str] = frozenset(),
    paired: frozenset[str] = frozenset(),
) -> nn.Module:
    """Swap linear layers and the embedding for quantized ones, in place; returns `model`.

    `wide` names the modules (by attribute path, "model.embed_tokens") kept at WIDE_BITS: those
    whose checkpoint weight is stored exactly in 8-bit groups (plan.wide_modules); `paired`
    those whose scales and minimums are kept as f16 pairs (plan.paired_modules)."""
    if not q.quantized:
        return model

    class Swap(nn.Mutator):
        def visit_module(self, name: str, node: nn.Module) -> nn.Module:
            bits, pairs = (WIDE_BITS if name in wide else BITS), name in paired
            if isinstance(node, nn.Linear) and node.in_features % q.group_size == 0:
                biased = node.bias is not None
                return GroupQuantLinear(node.in_features, node.out_features, biased, q, bits, pairs)
            if isinstance(node, Embedding) and node.dim % q.group_size == 0:
                return GroupQuantEmbedding(node.num, node.dim, q, bits, pairs)
            return self.visit(name, node)

    return Swap().visit("", model)
