"""Rotary position embedding done by our own kernels, with frequencies as transformers computes
them and sin / cos to f32 accuracy on any GPU.

Two places rotate: the model itself (`rotate`, in `base.attention`) where TVM's cache cannot
(longrope, llama3, layers without rotary, a rotary base per layer), and the cache's own fused
split-and-rotate kernel, which `split_rotary_kernel` replaces in every WebGPU library
(compiler/attention.py) for the models the cache rotates.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from tvm import te, tirx
from tvm.relax.frontend.nn import Tensor, op
from tvm.script import tirx as T

if TYPE_CHECKING:
    from webllm_build.models.base import ModelConfig


def model_rotates(c: ModelConfig) -> bool:
    """Whether the model rotates q and k itself (`rotate`) rather than the cache."""
    per_layer = bool(c.nope_layers) or c.local_rope_theta is not None
    return c.rope_scaling.get("rope_type") in ("longrope", "llama3", "linear") or per_layer


def rotary_inv_freq(c: ModelConfig, layer_id: int) -> np.ndarray | None:
    """A layer's rotary inverse frequencies, float32 as transformers computes them (so the angles
    agree), or None for a layer without rotary."""
    if layer_id in c.nope_layers:
        return None
    exponents = np.arange(0, c.rotary_dim, 2, dtype=np.int64).astype(np.float32) / np.float32(c.rotary_dim)
    if c.local_rope_theta is not None and layer_id in c.local_layers:
        return (1.0 / np.float32(c.local_rope_theta) ** exponents).astype(np.float32)
    kind = c.rope_scaling.get("rope_type")
    if kind == "longrope":
        factors = np.asarray(c.rope_ext_factors, dtype=np.float32)
        return (1.0 / (factors * np.float32(c.rope_theta) ** exponents)).astype(np.float32)
    inv_freq = (1.0 / np.float32(c.rope_theta) ** exponents).astype(np.float32)
    if kind == "llama3":
        return _llama3_inv_freq(inv_freq, c.rope_scaling)
    if kind == "linear":  # positions slowed by `factor` (Gemma 3 4B and up, on global layers)
        return (inv_freq / np.float32(c.rope_scaling["factor"])).astype(np.float32)
    return inv_freq


def _llama3_inv_freq(inv_freq: np.ndarray, scaling: dict[str, Any]) -> np.ndarray:
    """Llama 3.1's frequency-dependent scaling: long wavelengths slowed by `factor`, short ones
    kept, the band between blended (transformers' `_compute_llama3_parameters`)."""
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    original = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return np.where(medium, blended, scaled).astype(np.float32)


def rotate(c: ModelConfig, qkv: Tensor, positions: Tensor, inv_freq: np.ndarray) -> Tensor:
    """Rotate the first `rotary_dim` features of the q and k heads, as transformers does (the
    halves rotated against each other, longrope's attention factor on cos and sin)."""
    half = c.rotary_dim // 2
    freq_tensor = Tensor.from_const(inv_freq)
    scale = tirx.const(c.rope_scaling.get("attention_factor", 1.0), "float32")
    rotated_heads = c.num_heads + c.num_kv_heads

    def rotated(x: te.Tensor, pos: te.Tensor, freq: te.Tensor) -> te.Tensor:
        def element(b, s, h, d):
            angle = pos[b * x.shape[1] + s].astype("float32") * freq[d % half]
            partner = tirx.if_then_else(d < half, -x[b, s, h, d + half], x[b, s, h, d - half])
            sin, cos = sin_cos(angle)
            cos, sin = cos * scale, sin * scale
            value = x[b, s, h, d].astype("float32") * cos + partner.astype("float32") * sin
            inside = tirx.all(h < rotated_heads, d < c.rotary_dim)
            return tirx.if_then_else(inside, value.astype(x.dtype), x[b, s, h, d])

        return te.compute(x.shape, element, name="rotary")

    return op.tensor_expr_op(rotated, "rotary", [qkv, positions, freq_tensor])


# sin and cos to f32 accuracy, whatever the GPU's own: SwiftShader's are off by ~1.9e-4 at any
# angle (a tiny Llama's logits by ~1.5e-3), and GPUs' fast sin/cos lose accuracy as angles grow
# with the position. The angle is reduced by multiples of pi/2 in two parts (Cody-Waite: k times
# the first, of 8 significant bits, is exact below 1e5), then fdlibm's kernel polynomials for sin
# and cos on [-pi/4, pi/4]: errors ~7e-8, 2.6e-7 at an angle of 20000.
_PI_2_HI, _PI_2_LO = 1.5703125, 4.8382679489661923e-4
_SIN = (-1.6666667163e-01, 8.3333337680e-03, -1.9841270114e-04, 2.7557314297e-06)
_COS = (4.1666667908e-02, -1.3888889225e-03, 2.4801587642e-05, -2.7557314297e-07)


def sin_cos(angle: tirx.PrimExpr) -> tuple[tirx.PrimExpr, tirx.PrimExpr]:
    """(sin, cos) of a float32 angle, computed with f32 arithmetic only."""

    def const(value: float) -> tirx.PrimExpr:
        return tirx.const(value, "float32")

    quadrant = tirx.Cast("int32", tirx.round(angle * const(2 / math.pi)))
    k = tirx.Cast("float32", quadrant)
    r = (angle - k * const(_PI_2_HI)) - k * const(_PI_2_LO)
    r2 = r * r
    sin_poly = r + r * r2 * (
        const(_SIN[0]) + r2 * (const(_SIN[1]) + r2 * (const(_SIN[2]) + r2 * const(_SIN[3])))
    )
    cos_poly = (
        const(1.0)
        - const(0.5) * r2
        + r2 * r2 * (const(_COS[0]) + r2 * (const(_COS[1]) + r2 * (const(_COS[2]) + r2 * const(_COS[3]))))
    )
    q = tirx.floormod(quadrant, 4)
    # sin(r + q pi/2) and cos(r + q pi/2) for q = 0..3.
    sin = _by_quadrant(q, (sin_poly, cos_poly, -sin_poly, -cos_poly))
    cos = _by_quadrant(q, (cos_poly, -sin_poly, -cos_poly, sin_poly))
    return sin, cos


def _by_quadrant(q: tirx.PrimExpr, values: tuple[tirx.PrimExpr, ...]) -> tirx.PrimExpr:
    return tirx.Select(
        q == 0, values[0], tirx.Select(q == 1, values[1], tirx.Select(q == 2, values[2], values[3]))
    )


def _table(index: tirx.PrimExpr, values: np.ndarray, low: int = 0) -> tirx.PrimExpr:
    """values[index] for an index in [low, low + len(values)), as a balanced tree of selects:
    the frequencies are constants of the kernel (its signature, the cache's, has no room for a
    table)."""
    if len(values) == 1:
        return tirx.const(float(values[0]), "float32")
    mid = len(values) // 2
    return tirx.Select(
        index < low + mid, _table(index, values[:mid], low), _table(index, values[mid:], low + mid)
    )


def split_rotary_kernel(
    heads: int, kv_heads: int, head_dim: int, rotary_dim: int, inv_freq: np.ndarray, dtype: str
) -> tirx.PrimFunc:
    """The KV cache's `tir_split_rotary` (fused q, k, v heads -> q, k, v, the first `rotary_dim`
    features of q and k rotated at their positions when `apply_rope`), with our frequencies and
    sin / cos. Same signature as TVM's, which computes the frequencies with the GPU's `pow` and
    rotates with its `sin` / `cos` (SwiftShader's are off by ~1.9e-4)."""
    fused = heads + 2 * kv_heads
    half = rotary_dim // 2

    def rotated(qkv, position_map, s, h, d):
        angle = T.Cast("float32", position_map[s]) * _table(d % half, inv_freq)
        sin, cos = sin_cos(angle)
        partner = T.if_then_else(d < half, -qkv[s, h, d + half], qkv[s, h, d - half])
        value = T.Cast("float32", qkv[s, h, d]) * cos + T.Cast("float32", partner) * sin
        return T.if_then_else(d < rotary_dim, T.Cast(dtype, value), qkv[s, h, d])

    @T.prim_func(s_tir=True)
    def fused_rope(
        var_qkv: T.handle,
        var_position_map: T.handle,
        var_q: T.handle,
        var_k: T.handle,
        var_v: T.handle,
        apply_rope: T.int64,
    ):
        T.func_attr({"op_pattern": 8, "tirx.noalias": True})
        seq_len = T.int32()
        position_map_elem_offset = T.int32()
        qkv = T.match_buffer(var_qkv, (seq_len, fused, head_dim), dtype)
        q = T.match_buffer(var_q, (seq_len, heads, head_dim), dtype)
        k = T.match_buffer(var_k, (seq_len, kv_heads, head_dim), dtype)
        v = T.match_buffer(var_v, (seq_len, kv_heads, head_dim), dtype)
        position_map = T.match_buffer(
            var_position_map, (seq_len,), "int32", elem_offset=position_map_elem_offset
        )
        for iters in T.grid(seq_len, fused, head_dim):
            with T.sblock("split_rotary"):
                s, h, d = T.axis.remap("SSS", iters)
                if h < heads:
                    q[s, h, d] = T.if_then_else(
                        apply_rope > 0, rotated(qkv, position_map, s, h, d), qkv[s, h, d]
                    )
                elif h < heads + kv_heads:
                    k[s, h - heads, d] = T.if_then_else(
                        apply_rope > 0, rotated(qkv, position_map, s, h, d), qkv[s, h, d]
                    )
                else:
                    v[s, h - (heads + kv_heads), d] = qkv[s, h, d]

    return fused_rope
