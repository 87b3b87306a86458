"""Turn checkpoint tensors into the compiled model's parameters, in the order it takes them.

Our parameter names are the checkpoint's, except where we fuse: the architecture's
`fused_params` says which checkpoint tensors concatenate into one of ours. Quantized
parameters (`*.q_weight`, `*.q_scale`, `*.q_min` or `*.q_scale_min`) come from quantizing the
float weight of that name, or, for an asymmetric scheme and a checkpoint that stores the weight
in exact groups (GGUF Q4_0 / Q4_1 / Q4_K / Q8_0), from those groups as they are: no rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from webllm_build.errors import LoaderError
from webllm_build.loaders import ExactGroups, TensorSource
from webllm_build.models import Architecture
from webllm_build.q4_format import BITS, PAIRED_SUFFIX, WIDE_BITS, values_per_word
from webllm_build.quantize import GroupQuantized, Quantization, pack_half_pairs, pack_nibbles, quantize_weight


def checkpoint_fetcher(tensors: TensorSource, arch: Architecture) -> Callable[[str], np.ndarray]:
    """A function giving the float array for one of our unquantized parameter names."""

    def fetch(name: str) -> np.ndarray:
        for ours, parts in arch.fused_params.items():
            marker = f".{ours}."
            if marker in name:
                prefix, suffix = name.split(marker)
                return np.concatenate([tensors.load(f"{prefix}.{part}.{suffix}") for part in parts], axis=0)
        if arch.unit_offset_norms and name.endswith("norm.weight"):
            # In f32, as transformers computes 1 + w before multiplying.
            return np.float32(1.0) + tensors.load(name).astype(np.float32)
        return tensors.load(name)

    return fetch


def checkpoint_groups(tensors: TensorSource, arch: Architecture) -> Callable[[str], ExactGroups | None]:
    """A function giving the exact groups of one of our weight names, where every checkpoint
    tensor it is made of has them (None otherwise)."""

    def fetch(name: str) -> ExactGroups | None:
        parts = [name]
        for ours, fused in arch.fused_params.items():
            marker = f".{ours}."
            if marker in name:
                prefix, suffix = name.split(marker)
                parts = [f"{prefix}.{part}.{suffix}" for part in fused]
        groups = [tensors.load_groups(part) for part in parts]
        if any(g is None for g in groups) or len({g.bits for g in groups}) != 1:
            return None
        if len(groups) == 1:
            return groups[0]
        return ExactGroups(
            np.concatenate([g.q for g in groups]),
            np.concatenate([g.scale for g in groups]),
            np.concatenate([g.minimum for g in groups]),
            groups[0].bits,
            "+".join(sorted({g.kind for g in groups})),
        )

    return fetch


def exact_import(
    groups: ExactGroups | None, q: Quantization, bits: int, paired: bool = False
) -> GroupQuantized | None:
    """`groups` as a `bits`-wide weight of the scheme `q` (with f16 scale / minimum pairs when
    `paired`) with no rounding, or None where the scheme cannot hold them exactly."""
    if groups is None or not q.asymmetric or groups.bits != bits or q.group_size != ExactGroups.GROUP:
        return None
    stored = "float16" if paired else q.model_dtype
    scale, minimum = groups.scale.astype(stored), groups.minimum.astype(stored)
    # f16 (a scheme's or pairs') keeps them only where it holds every scale and minimum exactly.
    if not (
        np.array_equal(scale.astype(np.float32), groups.scale)
        and np.array_equal(minimum.astype(np.float32), groups.minimum)
    ):
        return None
    return GroupQuantized(pack_nibbles(groups.q, bits), scale, minimum)


def model_parameters(
    expected: list[tuple[str, tuple[int, ...], str]],
    fetch: Callable[[str], np.ndarray],
    q: Quantization,
    source: str,
    fetch_groups: Callable[[str], ExactGroups | None] = lambda _name: None,
    imported: dict[str, str] | None = None,
    wide_modules: frozenset[str] = frozenset(),
    paired_modules: frozenset[str] = frozenset(),
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, array) for each expected (name, shape, dtype), converted and checked.

    `wide_modules` and `paired_modules` are the plan's (8-bit values, f16 scale / minimum pairs).
    `imported` receives, per quantized weight (checkpoint name), how it was made: "exact Q4_1"
    (taken over from the file's groups) or "quantized" (rounded from its float values)."""
    # A packed weight comes first in call order; its scales (and minimums) follow it.
    pending: dict[str, np.ndarray] = {}
    for name, shape, dtype in expected:
        if name.endswith(".q_weight"):
            base = name.removesuffix(".q_weight")
            # The model holds the weight 4-bit, or 8-bit where the plan kept a module wide.
            bits, paired = (WIDE_BITS if base in wide_modules else BITS), base in paired_modules
            groups = fetch_groups(f"{base}.weight")
            quantized = exact_import(groups, q, bits, paired)
            if imported is not None:
                imported[f"{base}.weight"] = f"exact {groups.kind}" if quantized is not None else "quantized"
            if quantized is None:
                weight = fetch(f"{base}.weight")
                cols = shape[1] * values_per_word(bits)
                if weight.shape != (shape[0], cols):
                    raise LoaderError(
                        f"{source}: tensor `{base}.weight` has shape {weight.shape}, the model config "
                        f"implies {(shape[0], cols)}."
                    )
                scale_dtype = "float16" if paired else q.model_dtype
                quantized = quantize_weight(weight, q.group_size, scale_dtype, q.asymmetric, bits)
            if paired:
                pending[base + PAIRED_SUFFIX] = pack_half_pairs(quantized.scale, quantized.minimum)
            else:
                pending[f"{base}.q_scale"] = quantized.scale
                if quantized.minimum is not None:
                    pending[f"{base}.q_min"] = quantized.minimum
            array = quantized.packed
        elif name in pending:
            array = pending.pop(name)
        else:
            array = fetch(name).astype(dtype)
        if tuple(array.shape) != tuple(shape):
            raise LoaderError(
                f"{source}: tensor for `{name}` has shape {tuple(array.shape)}, the model config "
                f"implies {tuple(shape)}. The checkpoint and its config.json do not match."
            )
        yield name, np.ascontiguousarray(array, dtype=dtype)
