"""The supported architectures: one literal registry, keyed by the checkpoint's `architectures[0]`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webllm_build.errors import LoaderError
from webllm_build.models.base import DecoderModel, ModelConfig
from webllm_build.models.gemma3 import Gemma3ForCausalLM, gemma3_config
from webllm_build.models.llama import (
    LlamaForCausalLM,
    llama_config,
    mistral_config,
    qwen2_config,
    qwen3_config,
    smollm3_config,
)
from webllm_build.models.phi import PhiForCausalLM, phi_config

__all__ = ["ARCHITECTURES", "Architecture", "DecoderModel", "ModelConfig", "architecture_of"]


@dataclass(frozen=True)
class Architecture:
    name: str
    parse_config: Callable[..., ModelConfig]
    model_class: type[DecoderModel]
    # Our fused parameters and the checkpoint tensors they concatenate (along the output axis).
    fused_params: dict[str, tuple[str, ...]]
    description: str
    # The checkpoint stores each RMSNorm weight as w where the model multiplies by 1 + w (Gemma);
    # conversion adds the 1, so the compiled norm is a plain one.
    unit_offset_norms: bool = False


LLAMA_FUSIONS = {
    "self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj"),
}

ARCHITECTURES: dict[str, Architecture] = {
    "LlamaForCausalLM": Architecture(
        "LlamaForCausalLM",
        llama_config,
        LlamaForCausalLM,
        LLAMA_FUSIONS,
        "Llama 2/3.x, SmolLM2, TinyLlama",
    ),
    "PhiForCausalLM": Architecture(
        "PhiForCausalLM",
        phi_config,
        PhiForCausalLM,
        {"self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")},
        "Phi-1, Phi-1.5, Phi-2",
    ),
    # Phi-3's checkpoints already store q/k/v and gate/up fused, as our modules do.
    "Phi3ForCausalLM": Architecture(
        "Phi3ForCausalLM",
        llama_config,
        LlamaForCausalLM,
        {},
        "Phi-3-mini, Phi-3.5-mini, Phi-4-mini",
    ),
    # A Llama with q/k/v biases; the fusion concatenates the biases as it does the weights.
    "Qwen2ForCausalLM": Architecture(
        "Qwen2ForCausalLM",
        qwen2_config,
        LlamaForCausalLM,
        LLAMA_FUSIONS,
        "Qwen2, Qwen2.5 (0.5B-7B)",
    ),
    # A Llama with an RMSNorm per query and key head (self_attn.q_norm / k_norm).
    "Qwen3ForCausalLM": Architecture(
        "Qwen3ForCausalLM",
        qwen3_config,
        LlamaForCausalLM,
        LLAMA_FUSIONS,
        "Qwen3 (0.6B-32B dense)",
    ),
    # A Llama that leaves rotary out of every fourth layer (`no_rope_layers`).
    "SmolLM3ForCausalLM": Architecture(
        "SmolLM3ForCausalLM",
        smollm3_config,
        LlamaForCausalLM,
        LLAMA_FUSIONS,
        "SmolLM3",
    ),
    "MistralForCausalLM": Architecture(
        "MistralForCausalLM",
        mistral_config,
        LlamaForCausalLM,
        LLAMA_FUSIONS,
        "Mistral-7B v0.2 / v0.3 (no sliding window)",
    ),
    # Four norms a block, GeGLU, scaled embeddings, local sliding-window layers (models/gemma3.py).
    "Gemma3ForCausalLM": Architecture(
        "Gemma3ForCausalLM",
        gemma3_config,
        Gemma3ForCausalLM,
        LLAMA_FUSIONS,
        "Gemma 3 (text: 270M, 1B; the text stack of 4B-27B)",
        unit_offset_norms=True,
    ),
}


def architecture_of(hf_config: dict[str, Any], source: str) -> Architecture:
    names = hf_config.get("architectures") or []
    if not names:
        raise LoaderError(f"{source}: the field `architectures` is missing, so the model type is unknown.")
    if names[0] not in ARCHITECTURES:
        raise LoaderError(
            f"{source}: the field `architectures` names `{names[0]}`, which is not supported. "
            f"Supported: {', '.join(sorted(ARCHITECTURES))}."
        )
    return ARCHITECTURES[names[0]]
