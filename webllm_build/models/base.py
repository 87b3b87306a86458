"""What every decoder shares: the config, the paged KV cache, the exported functions.

A model file defines its layers and `hidden_states(...)`; this base adds the functions the
browser calls (embed, prefill, decode, create_paged_kv_cache, softmax_with_temperature, argmax,
argmax_masked) and the export spec, so no model repeats them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tvm import relax, te, tirx
from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache, RopeMode, TIRPagedKVCache
from tvm.target import Target

from webllm_build.errors import LoaderError
from webllm_build.models.rotary import model_rotates, rotary_inv_freq, rotate
from webllm_build.models.sampling import argmax_kernel


@dataclass
class ModelConfig:
    """The sizes and choices a compiled model depends on, whatever the checkpoint format."""

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    norm_eps: float
    rope_theta: float
    # Phi rotates only the first part of each head (partial_rotary_factor).
    rotary_dim: int
    # {}, {"rope_type": "llama3", ...} or {"rope_type": "longrope", "attention_factor": ...};
    # all but the default are applied by the model, not the cache (`attention`).
    rope_scaling: dict[str, Any]
    # Longrope's per-frequency divisors, chosen for the context window (short or long factors).
    rope_ext_factors: list[float] | None
    max_position_embeddings: int
    tie_embeddings: bool
    context_window: int
    prefill_chunk: int
    dtype: str = "float32"
    # Layers that skip rotary altogether (SmolLM3: every fourth).
    nope_layers: tuple[int, ...] = ()
    # Gemma 3's local layers: rotary base `local_rope_theta` (rotated by the model; `rope_scaling`
    # is the global layers' alone), and attention over only the last `sliding_window` positions
    # where that window is shorter than the context (None where it would never take effect).
    local_layers: tuple[int, ...] = ()
    local_rope_theta: float | None = None
    sliding_window: int | None = None
    # The attention logits' scale where it is not head_dim ** -0.5 (Gemma: query_pre_attn_scalar).
    attention_scale: float | None = None
    # Checkpoint config fields we do not model, kept for the record.
    extra: dict[str, Any] = field(default_factory=dict)


class Embedding(nn.Embedding):
    """The token embedding, which tied-embedding models also use as their output projection."""

    def lm_head_forward(self, hidden: Tensor) -> Tensor:
        return op.matmul(hidden, op.permute_dims(self.weight))


class DecoderModel(nn.Module):
    """Base of the causal LMs: subclasses provide `embed`, `hidden_states` and `lm_logits`."""

    config: ModelConfig

    def __init__(self, config: ModelConfig, target: Target) -> None:
        self.config = config
        # The KV cache's attention kernels are generated for one target at export time.
        self.target = target

    def hidden_states(self, embeddings: Tensor, cache: PagedKVCache) -> Tensor:
        raise NotImplementedError

    def lm_logits(self, hidden: Tensor) -> Tensor:
        raise NotImplementedError

    def embed(self, input_ids: Tensor) -> Tensor:
        raise NotImplementedError

    def _last_token_logits(self, embeddings: Tensor, cache: PagedKVCache) -> Tensor:
        hidden = self.hidden_states(embeddings, cache)
        # Only the last position's logits are ever sampled; skip the rest of the lm_head work.
        logits = self.lm_logits(_last_position(hidden))
        return logits.astype("float32") if logits.dtype != "float32" else logits

    def prefill(self, input_embed: Tensor, paged_kv_cache: PagedKVCache):
        return self._last_token_logits(input_embed, paged_kv_cache), paged_kv_cache

    def decode(self, input_embed: Tensor, paged_kv_cache: PagedKVCache):
        return self._last_token_logits(input_embed, paged_kv_cache), paged_kv_cache

    def softmax_with_temperature(self, logits: Tensor, temperature: Tensor) -> Tensor:
        return op.softmax(logits / op.reshape(temperature, (1, 1, 1)), axis=-1)

    def argmax(self, logits: Tensor) -> Tensor:
        """The greedy token, picked on the device so only its id is read back (models/sampling.py)."""
        kernel = argmax_kernel(self.config.vocab_size, self.target)
        return op.tensor_ir_op(kernel, "argmax_kernel", [logits], Tensor.placeholder([1], "int32"))

    def argmax_masked(self, logits: Tensor, bitmask: Tensor) -> Tensor:
        """The greedy token among those a grammar allows: bit i % 32 of word i // 32 of `bitmask`,
        as xgrammar writes its token masks. Structured output keeps the 4-byte readback."""

        def allowed(x: te.Tensor, mask: te.Tensor) -> te.Tensor:
            lowest = tirx.min_value("float32")
            return te.compute(
                x.shape,
                lambda a, b, i: tirx.Select(((mask[i // 32] >> (i % 32)) & 1) == 1, x[a, b, i], lowest),
                name="masked_logits",
            )

        return self.argmax(op.tensor_expr_op(allowed, "mask_logits", [logits, bitmask]))

    def create_paged_kv_cache(
        self,
        max_batch_size: tirx.Var,
        max_total_seq_len: tirx.Var,
        prefill_chunk_size: tirx.Var,
        page_size: tirx.Var,
        support_sliding_window: tirx.Var,
    ) -> PagedKVCache:
        c = self.config
        # Some models rotate q and k themselves (see `attention`): the cache must not again.
        cache_rope = not model_rotates(c)
        # Sliding layers read a second page table holding only their window (docs/sliding_window.md).
        sliding = set(c.local_layers) if c.sliding_window is not None else set()
        kinds = [("mha_sliding" if i in sliding else "mha") for i in range(c.num_layers)]
        attn_kind = kinds if sliding else "mha"
        return TIRPagedKVCache(
            attn_kind=attn_kind,
            max_batch_size=max_batch_size,
            max_total_seq_len=max_total_seq_len,
            prefill_chunk_size=prefill_chunk_size,
            page_size=page_size,
            support_sliding_window=support_sliding_window,
            layer_partition=relax.ShapeExpr([0, c.num_layers]),
            num_hidden_layers=c.num_layers,
            num_attention_heads=c.num_heads,
            num_key_value_heads=c.num_kv_heads,
            qk_head_dim=c.head_dim,
            v_head_dim=c.head_dim,
            mla_original_qk_head_dim=0,
            mla_original_v_head_dim=0,
            rope_mode=RopeMode.NORMAL if cache_rope else RopeMode.NONE,
            rope_scale=1,
            rope_theta=c.rope_theta,
            rope_scaling=c.rope_scaling if cache_rope else {},
            rope_ext_factors=relax.prim_value(0),
            rotary_dim=c.rotary_dim,
            enable_disaggregation=False,
            dtype=c.dtype,
            target=self.target,
            # Without sliding layers the value is unused: TVM's default keeps such builds as they were.
            layer_sliding_window_size=c.sliding_window if sliding else 1024,
        )

    def export_spec(self) -> dict[str, Any]:
        c = self.config
        packed = {"param_mode": "packed", "effect_mode": "none"}
        no_params = {"param_mode": "none", "effect_mode": "none"}
        cache = nn.spec.Object(object_type=PagedKVCache)
        return {
            "embed": {"input_ids": nn.spec.Tensor(["seq_len"], "int32"), "$": packed},
            "prefill": {
                "input_embed": nn.spec.Tensor([1, "seq_len", c.hidden_size], c.dtype),
                "paged_kv_cache": cache,
                "$": packed,
            },
            "decode": {
                "input_embed": nn.spec.Tensor([1, 1, c.hidden_size], c.dtype),
                "paged_kv_cache": cache,
                "$": packed,
            },
            "create_paged_kv_cache": {
                "max_batch_size": int,
                "max_total_seq_len": int,
                "prefill_chunk_size": int,
                "page_size": int,
                "support_sliding_window": int,
                "$": no_params,
            },
            "softmax_with_temperature": {
                "logits": nn.spec.Tensor([1, 1, c.vocab_size], "float32"),
                "temperature": nn.spec.Tensor([1], "float32"),
                "$": no_params,
            },
            "argmax": {"logits": nn.spec.Tensor([1, 1, c.vocab_size], "float32"), "$": no_params},
            "argmax_masked": {
                "logits": nn.spec.Tensor([1, 1, c.vocab_size], "float32"),
                "bitmask": nn.spec.Tensor([(c.vocab_size + 31) // 32], "int32"),
                "$": no_params,
            },
        }


def attention(c: ModelConfig, qkv: Tensor, cache: PagedKVCache, layer_id: int) -> Tensor:
    """Causal attention of fused (batch, seq, q + k + v heads, head_dim) projections on the cache.

    The cache rotates q and k itself, unless the model must (`model_rotates`): TVM 0.27's
    longrope kernel fails to build (it tests a TIR Buffer for truth) and would pick its factors
    by the length of each forward call rather than by position; its llama3 kernel fails to
    build for WebGPU at Llama 3.2-1B's shapes (head size 64, theta 5e5: "cse_v20 has been used
    before definition"); and the cache rotates every layer alike, where SmolLM3 leaves every
    fourth unrotated. Those models rotate here, with frequencies computed as transformers
    computes them, and run the cache without rotary.
    """
    if model_rotates(c):
        inv_freq = rotary_inv_freq(c, layer_id)
        if inv_freq is not None:
            batch, seq_len, _, _ = qkv.shape
            qkv = rotate(c, qkv, cache.get_query_positions(batch * seq_len), inv_freq)
    scale = c.attention_scale if c.attention_scale is not None else c.head_dim**-0.5
    return cache.attention_with_fused_qkv(layer_id, qkv, c.num_heads, sm_scale=scale)


def _last_position(hidden: Tensor) -> Tensor:
    # Index with the TE input's own shape var: the Relax-level seq_len is not in scope there.
    return op.tensor_expr_op(
        lambda x: te.compute((x.shape[0], 1, x.shape[2]), lambda b, _, h: x[b, x.shape[1] - 1, h]),
        "take_last_position",
        [hidden],
    )


def decoder_config(
    hf: dict[str, Any],
    *,
    context_window: int,
    prefill_chunk: int,
    source: str,
    norm_eps: float,
    partial_rotary_default: float,
    tie_embeddings: bool,
    extra: dict[str, Any],
) -> ModelConfig:
    """The fields every decoder reads the same way from an HF config; the differences are passed in."""
    hidden = hf_field(hf, "hidden_size", source)
    heads = hf_field(hf, "num_attention_heads", source)
    head_dim = hf.get("head_dim") or hidden // heads
    rotary_dim = int(head_dim * hf.get("partial_rotary_factor", partial_rotary_default))
    theta, scaling, ext_factors = read_rope(hf, rotary_dim, context_window, source)
    return ModelConfig(
        architecture=hf["architectures"][0],
        vocab_size=hf_field(hf, "vocab_size", source),
        hidden_size=hidden,
        intermediate_size=hf_field(hf, "intermediate_size", source),
        num_layers=hf_field(hf, "num_hidden_layers", source),
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=head_dim,
        norm_eps=norm_eps,
        rope_theta=theta,
        rotary_dim=rotary_dim,
        rope_scaling=scaling,
        rope_ext_factors=ext_factors,
        max_position_embeddings=hf.get("max_position_embeddings", context_window),
        tie_embeddings=tie_embeddings,
        context_window=context_window,
        prefill_chunk=prefill_chunk,
        extra=extra,
    )


def hf_field(hf: dict[str, Any], name: str, source: str) -> Any:
    """A required checkpoint config field, or an error naming the file and the field."""
    if hf.get(name) is None:
        raise LoaderError(f"{source}: the required field `{name}` is missing.")
    return hf[name]


def read_rope(
    hf: dict[str, Any], rotary_dim: int, context_window: int, source: str
) -> tuple[float, dict[str, Any], list[float] | None]:
    """(theta, scaling as `ModelConfig.rope_scaling` holds it, longrope factors) from an HF config.

    transformers 5 writes `rope_parameters`; older checkpoints have `rope_theta` and
    `rope_scaling` (whose key was `type` before it became `rope_type`).
    """
    params = dict(hf.get("rope_parameters") or {})
    theta = float(params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = dict(hf.get("rope_scaling") or params)
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return theta, {}, None
    if kind == "llama3":
        keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        return theta, {"rope_type": "llama3", **{k: scaling[k] for k in keys}}, None
    if kind == "linear":
        return theta, {"rope_type": "linear", "factor": float(scaling["factor"])}, None
    if kind in ("longrope", "su"):
        original = scaling.get("original_max_position_embeddings") or hf.get(
            "original_max_position_embeddings"
        )
        if not original:
            raise LoaderError(
                f"{source}: longrope needs `original_max_position_embeddings` (in rope_scaling or "
                f"at the top level of the config), and it is missing."
            )
        # transformers' defaults: the context extension factor, and the attention scaling it implies.
        factor = scaling.get("factor") or hf_field(hf, "max_position_embeddings", source) / original
        attention_factor = scaling.get("attention_factor")
        if attention_factor is None:
            attention_factor = math.sqrt(1 + math.log(factor) / math.log(original)) if factor > 1 else 1.0
        # Like transformers for sequences within the original window: short factors, unless
        # the context window we compile for reaches beyond it.
        factors = scaling["long_factor" if context_window > original else "short_factor"]
        if len(factors) != rotary_dim // 2:
            raise LoaderError(
                f"{source}: rope_scaling factors have {len(factors)} entries; the rotary "
                f"dimension {rotary_dim} needs {rotary_dim // 2}."
            )
        longrope = {"rope_type": "longrope", "attention_factor": float(attention_factor)}
        return theta, longrope, [float(f) for f in factors]
    raise LoaderError(
        f"{source}: the field `rope_scaling` has type `{kind}`, which is not supported "
        f"(supported: default, linear, llama3, longrope)."
    )
