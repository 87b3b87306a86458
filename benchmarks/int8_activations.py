"""What would int8 activations cost in answers? A decode GEMV that takes its activations as int8
(one scale a group of 32, as `benchmarks/gemv_wgsl_lab.js`'s `dot4I8Packed` kernel does) changes
every linear layer's input; this measures how much that moves SmolLM2-135M-Instruct, in
transformers on the CPU (float32, the GGUF the default preset uses), against the same model
unchanged:

- greedy agreement over the tests' 20 everyday chat prompts (32 tokens each), with only the
  decode steps' linear inputs quantized (prefill keeps its float matmuls, as the kernel would);
- perplexity and the mean KL divergence from the unchanged model over the first `--tokens`
  tokens of the same public-domain text as benchmarks/quality.py, with every position's linear
  inputs quantized (all of them decode-like: a bound on what decoding sees).

The same is measured with 15-bit integers a group (two int8 planes, high and low bytes, which two
`dot4I8Packed` each would take), and with the linear inputs only rounded to f16, as `q4f16_*`
builds hold them: how fragile the greedy replies are to any rounding at all, for scale.

    .venv/bin/python benchmarks/int8_activations.py [--tokens 512] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import REPLY_TOKENS, log_softmax, tokenized, transformers_model  # noqa: E402

from webllm_build.build import plan_and_build  # noqa: E402
from webllm_build.plan import BuildOptions  # noqa: E402
from webllm_build.verify.reference import hf_greedy  # noqa: E402

GROUP = 32


def quantize_int8(x: Any, largest: int = 127) -> Any:
    """x with its last axis rounded to int8 a group of GROUP values (scale: the group's largest
    magnitude over 127), returned as floats again."""
    import torch

    groups = x.reshape(*x.shape[:-1], x.shape[-1] // GROUP, GROUP)
    scale = groups.abs().amax(dim=-1, keepdim=True) / largest
    q = torch.where(scale > 0, torch.round(groups / torch.where(scale > 0, scale, 1)), 0)
    return (q * scale).reshape(x.shape)


def round_f16(x: Any) -> Any:
    import torch

    return x.to(torch.float16).to(x.dtype)


def quantized_inputs(model: Any, rounding: Any, decode_only: bool) -> list[Any]:
    """Hooks that round every linear layer's input (only single-token calls if decode_only)."""
    import torch

    def hook(_module: Any, args: tuple) -> tuple:
        (x, *rest) = args
        if decode_only and x.shape[-2] != 1:
            return args
        return (rounding(x), *rest)

    return [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def text_logprobs(model: Any, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return log_softmax(model(torch.tensor([ids])).logits[0].double().numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        smollm2 = plan_and_build(
            BuildOptions(model="smollm2-135m", quantization="q0f32", target="cpu"), Path(tmp) / "smollm2"
        )
        prompts, ids = tokenized(smollm2, args.tokens)
        eos_ids = smollm2.config["eos_token_ids"]
    model = transformers_model("smollm2-135m")

    reference = text_logprobs(model, ids)
    replies = [hf_greedy(model, p, REPLY_TOKENS, eos_ids) for p in prompts]
    targets = np.array(ids[1:])
    positions = np.arange(len(targets))

    def perplexity(logprobs: np.ndarray) -> float:
        return float(np.exp(-logprobs[positions, targets].mean()))

    def measure(rounding: Any) -> dict[str, Any]:
        hooks = quantized_inputs(model, rounding, decode_only=False)
        changed = text_logprobs(model, ids)
        for h in hooks:
            h.remove()
        hooks = quantized_inputs(model, rounding, decode_only=True)
        got = [hf_greedy(model, p, REPLY_TOKENS, eos_ids) for p in prompts]
        for h in hooks:
            h.remove()
        kl = (np.exp(changed[:-1]) * (changed[:-1] - reference[:-1])).sum(axis=-1)
        prefixes = [
            next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
            for a, b in zip(got, replies, strict=True)
        ]
        return {
            "perplexity": perplexity(changed),
            "mean_kl_from_unchanged": float(kl.mean()),
            "max_kl_from_unchanged": float(kl.max()),
            "greedy_replies_equal": sum(a == b for a, b in zip(got, replies, strict=True)),
            "mean_tokens_before_first_difference": float(np.mean(prefixes)),
        }

    report = {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1/Q8_0, dequantized by transformers, float32)",
        "text_tokens": len(ids),
        "greedy_replies": len(replies),
        "perplexity_unchanged": perplexity(reference),
        f"int8_activations_a_group_of_{GROUP}": measure(quantize_int8),
        # As two int8 planes (high and low bytes), each taken by dot4I8Packed: 15 bits a group.
        f"int16_activations_a_group_of_{GROUP}": measure(lambda x: quantize_int8(x, largest=127 * 256)),
        "f16_activations": measure(round_f16),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
