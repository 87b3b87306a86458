"""Weight quantization: the presets, the numpy packing, and the quantized Relax modules.

`q4f*_1` is symmetric 4-bit group quantization in groups of 32 (the format: q4_format.py).
Dequantization happens inside the matmul's own kernel (one TE op computes both), so a full-size
dequantized weight never exists in GPU memory.

Quantization is generic over models: `quantize_modules` swaps every `nn.Linear` and the token
`Embedding` for their quantized twins; no model file knows about it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op

from webllm_build.errors import OptionsError
from webllm_build.models.base import Embedding
from webllm_build.q4_format import BITS, DEQUANTIZE_STAGE, MAX_INT, NIBBLE_MASK, VALUES_PER_WORD


@dataclass(frozen=True)
class Quantization:
    name: str
    model_dtype: str  # activations, norms, biases and scales
    group_size: int | None  # None: weights stay unquantized
    description: str

    @property
    def quantized(self) -> bool:
        return self.group_size is not None

    @property
    def required_features(self) -> list[str]:
        return ["shader-f16"] if self.model_dtype == "float16" else []


QUANTIZATIONS: dict[str, Quantization] = {
    "q4f16_1": Quantization("q4f16_1", "float16", 32, "4-bit weights, f16 scales and activations"),
    "q4f32_1": Quantization("q4f32_1", "float32", 32, "4-bit weights, f32 scales and activations"),
    "q0f16": Quantization("q0f16", "float16", None, "unquantized f16"),
    "q0f32": Quantization("q0f32", "float32", None, "unquantized f32"),
}


def get_quantization(name: str) -> Quantization:
    if name not in QUANTIZATIONS:
        raise OptionsError(f"Unknown quantization `{name}`. Choose one of: {', '.join(QUANTIZATIONS)}.")
    return QUANTIZATIONS[name]


def quantize_weight(weight: np.ndarray, group_size: int, scale_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) float -> packed uint32 (rows, cols/8) and scales (rows, cols/group_size)."""
    rows, cols = weight.shape
    groups = weight.astype(np.float32).reshape(rows, cols // group_size, group_size)
    scale = (np.abs(groups).max(axis=-1) / MAX_INT).astype(scale_dtype)
    # Round the scale to its stored dtype first, so packing and dequantizing agree exactly.
    safe = np.where(scale == 0, 1, scale).astype(np.float32)[..., None]
    q = np.clip(np.rint(groups / safe) + MAX_INT, 0, 2 * MAX_INT).astype(np.uint32)
    nibbles = q.reshape(rows, cols // VALUES_PER_WORD, VALUES_PER_WORD)
    shifts = np.arange(VALUES_PER_WORD, dtype=np.uint32) * BITS
    packed = np.bitwise_or.reduce(nibbles << shifts, axis=-1).astype(np.uint32)
    return packed, scale


def dequantize_weight(packed: np.ndarray, scale: np.ndarray, group_size: int) -> np.ndarray:
    """The exact float32 weights the compiled kernels compute from `packed` and `scale`."""
    rows = packed.shape[0]
    shifts = np.arange(VALUES_PER_WORD, dtype=np.uint32) * BITS
    q = ((packed[..., None] >> shifts) & NIBBLE_MASK).reshape(rows, -1).astype(np.float32) - MAX_INT
    return q * np.repeat(scale.astype(np.float32), group_size, axis=1)


def _te_dequantize(q_weight: te.Tensor, q_scale: te.Tensor, group_size: int, dtype: str):
    """A TE expression for element (row, col) of the dequantized weight."""

    def element(row, col):
        word = q_weight[row, col // VALUES_PER_WORD]
        shift = (col % VALUES_PER_WORD * BITS).astype("uint32")
        nibble = tirx.bitwise_and(tirx.shift_right(word, shift), tirx.const(NIBBLE_MASK, "uint32"))
        # Through int32: a signed int-to-float conversion is one instruction on x86 SIMD (what
        # CPU-emulated adapters run on), an unsigned one several.
        value = nibble.astype("int32").astype(dtype)
        return (value - tirx.const(MAX_INT, dtype)) * q_scale[row, col // group_size]

    return element


class GroupQuantLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool, q: Quantization) -> None:
        self.in_features, self.out_features, self.q = in_features, out_features, q
        self.q_weight = nn.Parameter((out_features, in_features // VALUES_PER_WORD), "uint32")
        self.q_scale = nn.Parameter((out_features, in_features // q.group_size), q.model_dtype)
        self.bias = nn.Parameter((out_features,), q.model_dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        out = dequantize_matmul(x, self.q_weight, self.q_scale, self.q)
        return out + self.bias if self.bias is not None else out


class GroupQuantEmbedding(nn.Module):
    def __init__(self, num: int, dim: int, q: Quantization) -> None:
        self.num, self.dim, self.q = num, dim, q
        self.q_weight = nn.Parameter((num, dim // VALUES_PER_WORD), "uint32")
        self.q_scale = nn.Parameter((num, dim // q.group_size), q.model_dtype)

    def forward(self, ids: Tensor) -> Tensor:
        q, dim = self.q, self.dim

        def lookup(ids_t: te.Tensor, weight: te.Tensor, scale: te.Tensor) -> te.Tensor:
            element = _te_dequantize(weight, scale, q.group_size, q.model_dtype)
            return te.compute((*ids_t.shape, dim), lambda *i: element(ids_t[i[:-1]], i[-1]), "embed")

        return op.tensor_expr_op(lookup, "dequantize_embed", [ids, self.q_weight, self.q_scale])

    def lm_head_forward(self, hidden: Tensor) -> Tensor:
        return dequantize_matmul(hidden, self.q_weight, self.q_scale, self.q)


def dequantize_matmul(x: Tensor, q_weight: Tensor, q_scale: Tensor, q: Quantization) -> Tensor:
    """x @ dequantize(w).T as one TE op, so the dequantization fuses into the matmul kernel."""

    def compute(x_t: te.Tensor, weight: te.Tensor, scale: te.Tensor) -> te.Tensor:
        in_features = x_t.shape[-1]
        element = _te_dequantize(weight, scale, q.group_size, q.model_dtype)
        dequantized = te.compute((weight.shape[0], in_features), element, name=DEQUANTIZE_STAGE)
        k = te.reduce_axis((0, in_features), name="k")
        return te.compute(
            (*x_t.shape[:-1], weight.shape[0]),
            lambda *i: te.sum(x_t[(*i[:-1], k)] * dequantized[i[-1], k], axis=k),
            name="matmul",
        )

    return op.tensor_expr_op(compute, "dequantize_matmul", [x, q_weight, q_scale])


def quantize_modules(model: nn.Module, q: Quantization) -> nn.Module:
    """Swap linear layers and the embedding for quantized ones, in place; returns `model`."""
    if not q.quantized:
        return model

    class Swap(nn.Mutator):
        def visit_module(self, name: str, node: nn.Module) -> nn.Module:
            if isinstance(node, nn.Linear) and node.in_features % q.group_size == 0:
                return GroupQuantLinear(node.in_features, node.out_features, node.bias is not None, q)
            if isinstance(node, Embedding) and node.dim % q.group_size == 0:
                return GroupQuantEmbedding(node.num, node.dim, q)
            return self.visit(name, node)

    return Swap().visit("", model)
