"""Gemma 3 (text): Llama-like blocks with four RMSNorms each, GeGLU, and local sliding-window
layers interleaved with global ones.

Against a Llama: the embeddings are scaled by sqrt(hidden); every RMSNorm multiplies by
`1 + w` (folded into the weights when they are converted: `Architecture.unit_offset_norms`);
each block normalizes the attention and MLP outputs too before adding them; queries and keys
are RMS-normalized per head (as Qwen3's); the attention scale is `query_pre_attn_scalar ** -0.5`;
the MLP gate is gelu (tanh). Local layers attend over the last `sliding_window` positions with
rotary base 10000, global layers over everything with `rope_theta` (and its linear scaling):
the model rotates q and k per layer, the cache keeps a window per sliding layer
(docs/sliding_window.md).
"""

from __future__ import annotations

import math
from typing import Any

from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from webllm_build.errors import LoaderError
from webllm_build.models.base import ModelConfig
from webllm_build.models.llama import Attention, GatedMLP, LlamaForCausalLM, llama_config

# Published configs name the pattern instead of listing `layer_types`: every sixth layer global.
DEFAULT_SLIDING_PATTERN = 6


class Gemma3DecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        def norm() -> nn.RMSNorm:
            return nn.RMSNorm(c.hidden_size, -1, c.norm_eps, bias=False)

        self.input_layernorm, self.post_attention_layernorm = norm(), norm()
        self.pre_feedforward_layernorm, self.post_feedforward_layernorm = norm(), norm()
        self.self_attn = Attention(c)
        self.mlp = GatedMLP(c)

    def forward(self, x: Tensor, cache: PagedKVCache, layer_id: int) -> Tensor:
        x = x + self.post_attention_layernorm(self.self_attn(self.input_layernorm(x), cache, layer_id))
        return x + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(x)))


class Gemma3ForCausalLM(LlamaForCausalLM):
    layer_class = Gemma3DecoderLayer

    def embed(self, input_ids: Tensor) -> Tensor:
        embeddings = self.model.embed_tokens(input_ids)
        # A scalar of the embeddings' dtype, as transformers rounds it.
        return embeddings * self.config.extra["embed_scale"]


def gemma3_config(hf: dict[str, Any], *, context_window: int, prefill_chunk: int, source: str) -> ModelConfig:
    """Gemma 3's text config: `layer_types` (or `sliding_window_pattern`), the two rotary bases,
    `query_pre_attn_scalar`; logit soft-capping (Gemma 2) is refused."""
    for field in ("final_logit_softcapping", "attn_logit_softcapping"):
        if hf.get(field) is not None:
            raise LoaderError(f"{source}: `{field}` is set; logit soft-capping (Gemma 2) is not supported.")
    if hf.get("hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
        raise LoaderError(
            f"{source}: `hidden_activation` is `{hf['hidden_activation']}`; Gemma 3 is supported with "
            f"gelu_pytorch_tanh only."
        )
    config = llama_config(
        {**hf, "tie_word_embeddings": hf.get("tie_word_embeddings", True)},
        context_window=context_window,
        prefill_chunk=prefill_chunk,
        source=source,
        qk_norm=True,
    )
    config.extra.update(activation="gelu_tanh", embed_scale=math.sqrt(config.hidden_size))
    config.attention_scale = float(hf.get("query_pre_attn_scalar", config.head_dim)) ** -0.5
    config.local_rope_theta = float(hf.get("rope_local_base_freq", 10000.0))
    pattern = int(hf.get("sliding_window_pattern", DEFAULT_SLIDING_PATTERN))
    layer_types = hf.get("layer_types") or [
        "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(config.num_layers)
    ]
    if len(layer_types) != config.num_layers or set(layer_types) - {"full_attention", "sliding_attention"}:
        raise LoaderError(
            f"{source}: `layer_types` must name full_attention or sliding_attention for each of the "
            f"{config.num_layers} layers."
        )
    config.local_layers = tuple(i for i, kind in enumerate(layer_types) if kind == "sliding_attention")
    window = hf.get("sliding_window")
    if config.local_layers and not window:
        raise LoaderError(f"{source}: sliding_attention layers need `sliding_window`, which is missing.")
    # A window as long as the context never takes effect: the local layers then stay plain
    # attention (with their own rotary base).
    if config.local_layers and window < context_window:
        config.sliding_window = int(window)
        # The cache applies the window across chunks, not inside one (docs/sliding_window.md).
        config.prefill_chunk = min(config.prefill_chunk, config.sliding_window)
    return config
