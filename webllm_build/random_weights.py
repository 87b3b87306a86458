"""Seeded random weights, generated where they are used instead of downloaded.

`compile --random-weights` writes a weight manifest without shards: each tensor's record says
how to generate it, and the browser (web/src/random_weights.ts) and the CPU reference
(`generate`, here) compute the same bits from it. That benchmarks a model's shapes without its
checkpoint.

The generator is counter-based, so any element can be computed on its own and both languages
need only 32-bit integer arithmetic: element i of a tensor is `lowbias32(i * GOLDEN + key)`,
with `key = lowbias32(seed ^ fnv1a32(name))` and lowbias32 the 32-bit integer hash by Chris
Wellons. A packed 4-bit weight word takes those bits as they are (eight uniform nibbles); a
float is `low + (high - low) * u` in float32 arithmetic, `u` being the top 24 bits / 2**24,
then rounded (to nearest even) to the tensor's dtype, or through bf16 for a bf16-stored tensor.

The ranges keep a model numerically sane at any depth (finite logits): norm gains near 1,
biases and float weights small (std ~0.02, transformers' init), 4-bit scales small and positive
so that dequantized weights have that std too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from webllm_build.artifacts import (
    BF16_FORMAT,
    RandomRecord,
    RandomWeights,
    WeightsManifest,
    f32_to_bf16,
    write_weights_manifest,
)

GENERATOR = "lowbias32-v1"
DEFAULT_SEED = 0
GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: consecutive counters land far apart before hashing

# (low, high) of the uniform distribution, by the role of the tensor.
NORM_GAIN = (0.9, 1.1)
BIAS = (-0.02, 0.02)
WEIGHT = (-0.035, 0.035)  # std 0.02
# Nibbles are uniform in 0..15 (values -7..8 after the offset, std ~4.6): std ~0.02 again.
QUANT_SCALE = (0.002, 0.006)
# An asymmetric group's minimum: about -7.5 scales, so its weights centre near zero.
QUANT_MIN = (-0.035, -0.025)


def init_for(name: str, shape: tuple[int, ...], dtype: str) -> dict[str, Any]:
    """How to generate one parameter of ours, from its name, shape and dtype."""
    if dtype == "uint32":
        return {"kind": "bits"}  # packed 4-bit words
    if name.endswith(".q_scale"):
        low, high = QUANT_SCALE
    elif name.endswith(".q_min"):
        low, high = QUANT_MIN
    elif len(shape) == 1:
        # 1-D weights are norm gains (RMSNorm, LayerNorm); 1-D biases shift.
        low, high = NORM_GAIN if name.endswith(".weight") else BIAS
    else:
        low, high = WEIGHT
    return {"kind": "uniform", "low": low, "high": high}


def random_records(params: Iterable[tuple[str, tuple[int, ...], str]], bf16: bool) -> list[RandomRecord]:
    """The manifest records of a model's parameters (name, shape, dtype), in call order."""
    return [
        RandomRecord(
            name,
            tuple(shape),
            dtype,
            BF16_FORMAT if bf16 and dtype == "float32" else "raw",
            init_for(name, tuple(shape), dtype),
        )
        for name, shape, dtype in params
    ]


def write_random_weights(
    params: Iterable[tuple[str, tuple[int, ...], str]],
    directory: Path,
    *,
    param_count: int,
    bf16: bool = False,
    seed: int = DEFAULT_SEED,
) -> WeightsManifest:
    """tensor-cache.json for random weights (no shards) into `directory`."""
    random = RandomWeights(GENERATOR, seed, tuple(random_records(params, bf16)))
    manifest = WeightsManifest((), param_count, random)
    write_weights_manifest(directory, manifest)
    return manifest


def _lowbias32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def _fnv1a32(text: str) -> int:
    value = 0x811C9DC5
    for byte in text.encode("utf-8"):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def random_bits(seed: int, name: str, count: int) -> np.ndarray:
    """The generator's `count` uint32 words for the tensor called `name`."""
    key = _lowbias32(np.array([(seed ^ _fnv1a32(name)) & 0xFFFFFFFF], dtype=np.uint32))[0]
    counters = np.arange(count, dtype=np.uint32) * np.uint32(GOLDEN) + key
    return _lowbias32(counters)


def generate(random: RandomWeights, record: RandomRecord) -> np.ndarray:
    """The tensor the browser generates for `record`, as it lands in GPU memory."""
    bits = random_bits(random.seed, record.name, int(np.prod(record.shape, dtype=np.int64)))
    if record.init["kind"] == "bits":
        return bits.view(record.dtype).reshape(record.shape)
    low = np.float32(record.init["low"])
    width = np.float32(record.init["high"]) - low
    unit = (bits >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)
    values = low + width * unit
    if record.format == BF16_FORMAT:
        values = (f32_to_bf16(values).astype(np.uint32) << np.uint32(16)).view(np.float32)
    return values.astype(record.dtype).reshape(record.shape)
