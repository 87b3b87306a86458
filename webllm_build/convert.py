"""Turn checkpoint tensors into the compiled model's parameters, in the order it takes them.

Our parameter names are the checkpoint's, except where we fuse: the architecture's
`fused_params` says which checkpoint tensors concatenate into one of ours. Quantized
parameters (`*.q_weight`, `*.q_scale`, `*.q_min`) come from quantizing the float weight of that name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from webllm_build.errors import LoaderError
from webllm_build.loaders import TensorSource
from webllm_build.models import Architecture
from webllm_build.q4_format import VALUES_PER_WORD
from webllm_build.quantize import Quantization, quantize_weight


def checkpoint_fetcher(tensors: TensorSource, arch: Architecture) -> Callable[[str], np.ndarray]:
    """A function giving the float array for one of our unquantized parameter names."""

    def fetch(name: str) -> np.ndarray:
        for ours, parts in arch.fused_params.items():
            marker = f".{ours}."
            if marker in name:
                prefix, suffix = name.split(marker)
                return np.concatenate([tensors.load(f"{prefix}.{part}.{suffix}") for part in parts], axis=0)
        return tensors.load(name)

    return fetch


def model_parameters(
    expected: list[tuple[str, tuple[int, ...], str]],
    fetch: Callable[[str], np.ndarray],
    q: Quantization,
    source: str,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, array) for each expected (name, shape, dtype), converted and checked."""
    # A packed weight comes first in call order; its scales (and minimums) follow it.
    pending: dict[str, np.ndarray] = {}
    for name, shape, dtype in expected:
        if name.endswith(".q_weight"):
            base = name.removesuffix(".q_weight")
            weight = fetch(f"{base}.weight")
            if weight.shape != (shape[0], shape[1] * VALUES_PER_WORD):
                raise LoaderError(
                    f"{source}: tensor `{base}.weight` has shape {weight.shape}, the model config "
                    f"implies {(shape[0], shape[1] * VALUES_PER_WORD)}."
                )
            quantized = quantize_weight(weight, q.group_size, q.model_dtype, q.asymmetric)
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
