"""Llama-style decoders: Llama 2/3.x, SmolLM2/3, TinyLlama, Phi-3 / Phi-3.5 / Phi-4-mini, Qwen2 /
Qwen2.5, Qwen3, Mistral.

Pre-norm blocks with RMSNorm, grouped-query attention on the paged KV cache (rotary applied
by the cache or the model, base.attention; Qwen3 first RMS-normalizes each query and key head),
and a SiLU-gated MLP. Q/K/V and gate/up are single fused matmuls: one kernel launch instead of
three (two) per layer, which matters most when decoding one token.
"""

from __future__ import annotations

from typing import Any

from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from webllm_build.errors import LoaderError
from webllm_build.models.base import DecoderModel, Embedding, ModelConfig, attention, decoder_config


class Attention(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        self.c = c
        qkv_width = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim
        self.qkv_proj = nn.Linear(c.hidden_size, qkv_width, bias=c.extra.get("attention_bias", False))
        self.o_proj = nn.Linear(c.num_heads * c.head_dim, c.hidden_size, bias=False)
        if c.extra.get("qk_norm"):
            self.q_norm = nn.RMSNorm(c.head_dim, -1, c.norm_eps, bias=False)
            self.k_norm = nn.RMSNorm(c.head_dim, -1, c.norm_eps, bias=False)

    def forward(self, x: Tensor, cache: PagedKVCache, layer_id: int) -> Tensor:
        c = self.c
        batch, seq_len, _ = x.shape
        qkv = op.reshape(self.qkv_proj(x), (batch, seq_len, c.num_heads + 2 * c.num_kv_heads, c.head_dim))
        if c.extra.get("qk_norm"):
            q, k, v = op.split(qkv, [c.num_heads, c.num_heads + c.num_kv_heads], axis=2)
            qkv = op.concat([self.q_norm(q), self.k_norm(k), v], dim=2)
        out = attention(c, qkv, cache, layer_id)
        return self.o_proj(op.reshape(out, (batch, seq_len, c.num_heads * c.head_dim)))


class GatedMLP(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        self.gate_up_proj = nn.Linear(c.hidden_size, 2 * c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)
        # SiLU (SwiGLU), or gelu with the tanh approximation (Gemma's GeGLU).
        self.gelu_gate = c.extra.get("activation") == "gelu_tanh"

    def forward(self, x: Tensor) -> Tensor:
        gate, up = op.split(self.gate_up_proj(x), 2, axis=-1)
        gate = op.gelu(gate, approximate="tanh") if self.gelu_gate else op.silu(gate)
        return self.down_proj(gate * up)


class DecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        self.input_layernorm = nn.RMSNorm(c.hidden_size, -1, c.norm_eps, bias=False)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = nn.RMSNorm(c.hidden_size, -1, c.norm_eps, bias=False)
        self.mlp = GatedMLP(c)

    def forward(self, x: Tensor, cache: PagedKVCache, layer_id: int) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cache, layer_id)
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, c: ModelConfig, layer_class: type[nn.Module]) -> None:
        self.embed_tokens = Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([layer_class(c) for _ in range(c.num_layers)])
        self.norm = nn.RMSNorm(c.hidden_size, -1, c.norm_eps, bias=False)


class LlamaForCausalLM(DecoderModel):
    layer_class: type[nn.Module] = DecoderLayer

    def __init__(self, config: ModelConfig, target) -> None:
        super().__init__(config, target)
        self.model = Body(config, self.layer_class)
        if not config.tie_embeddings:
            self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.model.embed_tokens(input_ids)

    def hidden_states(self, embeddings: Tensor, cache: PagedKVCache) -> Tensor:
        x = embeddings
        for layer_id, layer in enumerate(self.model.layers):
            x = layer(x, cache, layer_id)
        return self.model.norm(x)

    def lm_logits(self, hidden: Tensor) -> Tensor:
        if self.config.tie_embeddings:
            return self.model.embed_tokens.lm_head_forward(hidden)
        return self.lm_head(hidden)


def llama_config(
    hf: dict[str, Any],
    *,
    context_window: int,
    prefill_chunk: int,
    source: str,
    attention_bias: bool = False,
    qk_norm: bool = False,
) -> ModelConfig:
    """Llama, SmolLM2, TinyLlama and Phi-3 configs (Phi-3 adds partial rotary and longrope)."""
    config = decoder_config(
        hf,
        context_window=context_window,
        prefill_chunk=prefill_chunk,
        source=source,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        partial_rotary_default=1.0,
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        extra={"attention_bias": bool(hf.get("attention_bias", attention_bias)), "qk_norm": qk_norm},
    )
    return config


def smollm3_config(
    hf: dict[str, Any], *, context_window: int, prefill_chunk: int, source: str
) -> ModelConfig:
    """SmolLM3: a Llama whose `no_rope_layers[i]` is 0 where layer i skips rotary (NoPE); by
    default every `no_rope_layer_interval`-th layer (transformers' rule)."""
    _refuse_sliding_window(hf, source, context_window)
    config = llama_config(hf, context_window=context_window, prefill_chunk=prefill_chunk, source=source)
    uses_rope = hf.get("no_rope_layers")
    if uses_rope is None:
        interval = int(hf.get("no_rope_layer_interval", 4))
        uses_rope = [int((i + 1) % interval != 0) for i in range(config.num_layers)]
    if len(uses_rope) != config.num_layers:
        raise LoaderError(
            f"{source}: `no_rope_layers` has {len(uses_rope)} entries for {config.num_layers} layers."
        )
    config.nope_layers = tuple(i for i, rope in enumerate(uses_rope) if not rope)
    return config


def qwen2_config(hf: dict[str, Any], *, context_window: int, prefill_chunk: int, source: str) -> ModelConfig:
    """Qwen2 / Qwen2.5: a Llama whose q/k/v projections always carry a bias (o_proj has none).

    Its configs name no `attention_bias`; the bias is part of the architecture.
    """
    _refuse_sliding_window(hf, source, context_window)
    return llama_config(
        hf, context_window=context_window, prefill_chunk=prefill_chunk, source=source, attention_bias=True
    )


def qwen3_config(hf: dict[str, Any], *, context_window: int, prefill_chunk: int, source: str) -> ModelConfig:
    """Qwen3: a Llama with an RMSNorm over each query and key head (before rotary), no q/k/v bias
    unless the config asks, and a head size of its own (128, not hidden / heads)."""
    _refuse_sliding_window(hf, source, context_window)
    return llama_config(
        hf, context_window=context_window, prefill_chunk=prefill_chunk, source=source, qk_norm=True
    )


def mistral_config(
    hf: dict[str, Any], *, context_window: int, prefill_chunk: int, source: str
) -> ModelConfig:
    """Mistral: a Llama; v0.1 attends over a sliding window of 4096 tokens, v0.2 and later over
    the whole context (`sliding_window` null)."""
    if hf.get("sliding_window") is not None:
        _check_sliding_window(hf, source, context_window, "sliding_window")
    return llama_config(hf, context_window=context_window, prefill_chunk=prefill_chunk, source=source)


def _refuse_sliding_window(hf: dict[str, Any], source: str, context_window: int) -> None:
    """Qwen2/3 and SmolLM3 configs switch sliding windows on with `use_sliding_window` (or name
    `sliding_attention` layers); the published checkpoints leave them off."""
    if hf.get("use_sliding_window") or "sliding_attention" in (hf.get("layer_types") or []):
        _check_sliding_window(hf, source, context_window, "use_sliding_window")


def _check_sliding_window(hf: dict[str, Any], source: str, context_window: int, switch: str) -> None:
    """A window at least as long as the compiled context never takes effect: such a model is
    built as it is (exactly transformers' attention). Longer contexts are refused (TVM's cache
    supports per-layer windows; docs/sliding_window.md says what is left to do)."""
    window = hf.get("sliding_window")
    if window is None or context_window > window:
        raise LoaderError(
            f"{source}: sliding-window attention (`{switch}`, a window of {window} tokens) is "
            f"supported only with a context window no longer than the window, where it never "
            f"takes effect; this build's context window is {context_window} tokens. Build with "
            f"--context-window {window} (or less)."
            if window is not None
            else f"{source}: `{switch}` is set but `sliding_window` is missing."
        )
