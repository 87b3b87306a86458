"""Phi-1, Phi-1.5 and Phi-2: attention and MLP run in parallel off one LayerNorm.

Biases everywhere (q/k/v, dense, fc1, fc2, lm_head), gelu with the tanh approximation
(`gelu_new`), and rotary embedding on only part of each head (partial_rotary_factor).
"""

from __future__ import annotations

from typing import Any

from tvm.relax.frontend import nn
from tvm.relax.frontend.nn import Tensor, op
from tvm.relax.frontend.nn.llm.kv_cache import PagedKVCache

from webllm_build.errors import LoaderError
from webllm_build.models.base import DecoderModel, Embedding, ModelConfig, attention, decoder_config

# The gelu variants transformers names for Phi, as Relax's gelu `approximate` argument.
GELU_APPROXIMATIONS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": None}


class PhiAttention(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        self.c = c
        qkv_width = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim
        self.qkv_proj = nn.Linear(c.hidden_size, qkv_width, bias=True)
        self.dense = nn.Linear(c.num_heads * c.head_dim, c.hidden_size, bias=True)

    def forward(self, x: Tensor, cache: PagedKVCache, layer_id: int) -> Tensor:
        c = self.c
        batch, seq_len, _ = x.shape
        qkv = op.reshape(self.qkv_proj(x), (batch, seq_len, c.num_heads + 2 * c.num_kv_heads, c.head_dim))
        out = attention(c, qkv, cache, layer_id)
        return self.dense(op.reshape(out, (batch, seq_len, c.num_heads * c.head_dim)))


class PhiMLP(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        self.approximate = GELU_APPROXIMATIONS[c.extra["hidden_act"]]
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size, bias=True)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(op.gelu(self.fc1(x), approximate=self.approximate))


class PhiDecoderLayer(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        self.input_layernorm = nn.LayerNorm(c.hidden_size, eps=c.norm_eps)
        self.self_attn = PhiAttention(c)
        self.mlp = PhiMLP(c)

    def forward(self, x: Tensor, cache: PagedKVCache, layer_id: int) -> Tensor:
        normed = self.input_layernorm(x)
        return x + self.self_attn(normed, cache, layer_id) + self.mlp(normed)


class PhiBody(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        self.embed_tokens = Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([PhiDecoderLayer(c) for _ in range(c.num_layers)])
        self.final_layernorm = nn.LayerNorm(c.hidden_size, eps=c.norm_eps)


class PhiForCausalLM(DecoderModel):
    def __init__(self, config: ModelConfig, target) -> None:
        super().__init__(config, target)
        self.model = PhiBody(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=True)

    def embed(self, input_ids: Tensor) -> Tensor:
        return self.model.embed_tokens(input_ids)

    def hidden_states(self, embeddings: Tensor, cache: PagedKVCache) -> Tensor:
        x = embeddings
        for layer_id, layer in enumerate(self.model.layers):
            x = layer(x, cache, layer_id)
        return self.model.final_layernorm(x)

    def lm_logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden)


def phi_config(hf: dict[str, Any], *, context_window: int, prefill_chunk: int, source: str) -> ModelConfig:
    act = hf.get("hidden_act", "gelu_new")
    if act not in GELU_APPROXIMATIONS:
        raise LoaderError(
            f"{source}: hidden_act `{act}` is not supported for Phi ({', '.join(GELU_APPROXIMATIONS)})."
        )
    if hf.get("qk_layernorm"):
        raise LoaderError(f"{source}: qk_layernorm is not supported for Phi.")
    return decoder_config(
        {**hf, "architectures": ["PhiForCausalLM"]},
        context_window=context_window,
        prefill_chunk=prefill_chunk,
        source=source,
        norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
        partial_rotary_default=0.5,
        tie_embeddings=False,
        extra={"hidden_act": act},
    )
