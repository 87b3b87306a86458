"""The independent reference: transformers on the CPU, optionally on our quantized weights."""

from __future__ import annotations

from typing import Any

import numpy as np

from webllm_build.quantize import dequantize_weight, quantize_weight

GROUP_SIZE = 32


def requantize_(hf_model: Any, scale_dtype: str = "float32") -> Any:
    """Replace, in place, every weight we quantize by its dequantized 4-bit version.

    Mirrors quantize_modules: linear layers and the token embedding whose input width is a
    multiple of the group size. A tied lm_head shares the embedding's tensor, so it follows.
    """
    import torch

    for module in hf_model.modules():
        is_linear = isinstance(module, torch.nn.Linear) and module.in_features % GROUP_SIZE == 0
        is_embedding = isinstance(module, torch.nn.Embedding) and module.embedding_dim % GROUP_SIZE == 0
        if is_linear or is_embedding:
            weight = module.weight.detach().float().numpy()
            packed, scale = quantize_weight(weight, GROUP_SIZE, scale_dtype)
            module.weight.data = torch.from_numpy(dequantize_weight(packed, scale, GROUP_SIZE))
    return hf_model


def hf_greedy(hf_model: Any, ids: list[int], steps: int, eos_ids: list[int]) -> list[int]:
    """Greedy tokens from transformers, stopping after an eos token as our engines do."""
    import torch

    out: list[int] = []
    sequence = list(ids)
    with torch.no_grad():
        for _ in range(steps):
            logits = hf_model(torch.tensor([sequence])).logits[0, -1].numpy()
            out.append(int(np.argmax(logits)))
            sequence.append(out[-1])
            if out[-1] in eos_ids:
                break
    return out


def hf_last_logits(hf_model: Any, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return hf_model(torch.tensor([ids])).logits[0, -1].numpy()
