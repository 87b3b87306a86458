"""Turn checkpoint tensors into the compiled model's parameters, in the order it takes them.

Our parameter names are the checkpoint's, except where we fuse: the architecture's
`fused_params` says which checkpoint tensors concatenate into one of ours. Quantized
parameters (`*.q_weight`, `*.q_scale`, `*.q_min`) come from quantizing the float weight of that
name, or, for an asymmetric 4-bit scheme and a checkpoint that stores the weight in exact 4-bit
groups (GGUF Q4_0 / Q4_1 / Q4_K), from those groups as they are: no rounding at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from webllm_build.errors import LoaderError
from webllm_build.loaders import ExactGroups, TensorSource
from webllm_build.models import Architecture
from webllm_build.q4_format import BITS, WIDE_BITS, values_per_word
from webllm_build.quantize import GroupQuantized, Quantization, pack_nibbles, quantize_weight


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


def exact_import(groups: ExactGroups | None, q: Quantization, bits: int) -> GroupQuantized | None:
    """`groups` as a `bits`-wide weight of the scheme `q` with no rounding, or None where the
    scheme cannot hold them exactly."""
    if groups is None or not q.asymmetric or groups.bits != bits or q.group_size != ExactGroups.GROUP:
        return None
    scale, minimum = groups.scale.astype(q.model_dtype), groups.minimum.astype(q.model_dtype)
    # An f16 scheme keeps them only where f16 holds every scale and minimum exactly.
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
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, array) for each expected (name, shape, dtype), converted and checked.

    `imported` receives, per quantized weight (checkpoint name), how it was made: "exact Q4_1"
    (taken over from the file's groups) or "quantized" (rounded from its float values)."""
    # A packed weight comes first in call order; its scales (and minimums) follow it.
    pending: dict[str, np.ndarray] = {}
    for name, shape, dtype in expected:
        if name.endswith(".q_weight"):
            base = name.removesuffix(".q_weight")
            # The model holds the weight 4-bit, or 8-bit where the plan kept a module wide.
            bits = WIDE_BITS if base in wide_modules else BITS
            groups = fetch_groups(f"{base}.weight")
            quantized = exact_import(groups, q, bits)
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
                quantized = quantize_weight(weight, q.group_size, q.model_dtype, q.asymmetric, bits)
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
