"""The independent reference: transformers on the CPU, on the same checkpoint a build came from.

4-bit builds are compared with transformers on the dequantized 4-bit weights (`requantize_`),
so the reference computes the same function as the build, only in float32 on the CPU. Optional
dependency: torch and transformers (`pip install 'webllm_build[reference]'`).
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from webllm_build.convert import exact_import
from webllm_build.errors import ToolchainError, VerifyError
from webllm_build.loaders import ModelSource, load_checkpoint, resolve_model
from webllm_build.models import architecture_of
from webllm_build.quantize import Quantization, dequantize_weight, get_quantization, quantize_weight

INSTALL_REFERENCE = "pip install 'webllm_build[reference]'   (torch and transformers, CPU)"


def require_transformers() -> None:
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        raise ToolchainError(
            f"The transformers reference needs torch and transformers ({', '.join(missing)} missing). "
            f"Install them with: {INSTALL_REFERENCE}"
        )


def requantize_(
    hf_model: Any,
    scale_dtype: str = "float32",
    group_size: int = 32,
    asymmetric: bool = False,
    keep: frozenset[str] = frozenset(),
) -> Any:
    """Replace, in place, every weight we quantize by its dequantized 4-bit version.

    Mirrors quantize_modules: linear layers and the token embedding whose input width is a
    multiple of the group size. A tied lm_head shares the embedding's tensor, so it follows.
    `keep` names modules left as they are: weights a build takes over exactly from the file; a
    module sharing a kept module's tensor (a tied lm_head) is left as it is too.
    """
    import torch

    modules = dict(hf_model.named_modules())
    kept_tensors = {id(modules[name].weight) for name in keep if name in modules}
    for name, module in modules.items():
        if name in keep or id(getattr(module, "weight", None)) in kept_tensors:
            continue
        is_linear = isinstance(module, torch.nn.Linear) and module.in_features % group_size == 0
        is_embedding = isinstance(module, torch.nn.Embedding) and module.embedding_dim % group_size == 0
        if is_linear or is_embedding:
            weight = module.weight.detach().float().numpy()
            quantized = quantize_weight(weight, group_size, scale_dtype, asymmetric)
            module.weight.data = torch.from_numpy(dequantize_weight(quantized, group_size))
    return hf_model


def hf_greedy(hf_model: Any, ids: list[int], steps: int, eos_ids: list[int]) -> list[int]:
    """Greedy tokens from transformers, stopping after an eos token as our engines do."""
    return hf_greedy_logprobs(hf_model, ids, steps, eos_ids, top_k=0)[0]


def hf_greedy_logprobs(
    hf_model: Any, ids: list[int], steps: int, eos_ids: list[int], top_k: int
) -> tuple[list[int], list[list[tuple[int, float]]]]:
    """Greedy tokens and, per step, the `top_k` (token id, log-probability) pairs, most likely first."""
    import torch

    out: list[int] = []
    top: list[list[tuple[int, float]]] = []
    # transformers' own KV cache, as our engines decode: one new token per step, not the whole
    # sequence again (20 replies of 32 tokens from SmolLM2-135M: 88 s the other way).
    # (transformers 5.x names the cache `cache`, earlier releases `past_key_values`.)
    cache_name = "cache" if "cache" in inspect.signature(hf_model.forward).parameters else "past_key_values"
    step_input, past = list(ids), None
    with torch.no_grad():
        for _ in range(steps):
            result = hf_model(torch.tensor([step_input]), use_cache=True, **{cache_name: past})
            past = getattr(result, cache_name)
            logits = result.logits[0, -1].double().numpy()
            logprobs = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
            if top_k:
                best = np.argsort(-logprobs, kind="stable")[:top_k]
                top.append([(int(i), float(logprobs[i])) for i in best])
            out.append(int(np.argmax(logits)))
            step_input = [out[-1]]
            if out[-1] in eos_ids:
                break
    return out, top


def hf_last_logits(hf_model: Any, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return hf_model(torch.tensor([ids])).logits[0, -1].numpy()


@dataclass
class Reference:
    """transformers' model and tokenizer for a build's checkpoint, weights as the build has them."""

    model: Any
    tokenizer: Any
    spec: str
    quantization: str

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        # Rendered to text first, then encoded without special tokens: what the browser engine does.
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def load_reference(spec: str, quantization: str) -> Reference:
    """transformers on the CPU for `spec` (a preset, HF directory or repo id, or a .gguf file)."""
    require_transformers()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    q = get_quantization(quantization)
    source = resolve_model(spec)
    if source.kind == "gguf":
        where, extra = str(source.path.parent), {"gguf_file": source.path.name}
    else:
        where, extra = str(source.path), {}
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **extra).eval()
        tokenizer = AutoTokenizer.from_pretrained(where, **extra)
    except (OSError, ValueError, ImportError) as exc:
        raise VerifyError(f"transformers cannot load {spec}: {exc}") from None
    if q.quantized:
        requantize_(model, q.model_dtype, q.group_size, q.asymmetric, keep=exactly_imported(source, q))
    return Reference(model, tokenizer, spec, q.name)


def exactly_imported(source: ModelSource, q: Quantization) -> frozenset[str]:
    """The modules whose weights a build of `source` in `q` takes over from the file's own
    groups, with no rounding (convert.exact_import): the reference keeps them as transformers
    dequantized them, which is exactly those values."""
    if not q.asymmetric or source.kind != "gguf":
        return frozenset()
    checkpoint = load_checkpoint(source)
    tensors = checkpoint.tensors
    bits = {n.removesuffix(".weight"): tensors.exact_bits(n) for n in tensors.names if n.endswith(".weight")}
    # Parts of one fused module of ours (q, k, v) in different widths are quantized together.
    for parts in architecture_of(checkpoint.config, str(source.path)).fused_params.values():
        for module in list(bits):
            prefix = next((module.removesuffix(f".{p}") for p in parts if module.endswith(f".{p}")), None)
            if prefix is not None and len({bits.get(f"{prefix}.{p}") for p in parts}) > 1:
                bits[module] = None
    return frozenset(
        module
        for module, width in bits.items()
        if width is not None and exact_import(tensors.load_groups(f"{module}.weight"), q, width) is not None
    )
