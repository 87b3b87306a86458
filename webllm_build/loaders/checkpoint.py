"""What every loader produces: a checkpoint whose tensors are read one at a time, on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from webllm_build.errors import LoaderError


@dataclass(frozen=True)
class ModelSource:
    """What a model spec resolved to."""

    kind: Literal["hf-dir", "gguf", "config"]
    path: Path  # a directory (hf-dir), a .gguf file, or a config.json alone (config: no weights)
    preset: str | None  # preset name when the spec was one


@dataclass(frozen=True)
class ExactGroups:
    """A tensor exactly as a quantized file stores it: each group of GROUP consecutive values of
    a row is `scale * q + minimum`, q an unsigned `bits`-wide integer. GGUF's Q4_0, Q4_1 and Q4_K
    (per 32-value sub-block) are all this with bits 4, so a 4-bit scheme with a minimum per group
    takes them over with no rounding (compare `dequantize` with the file's own dequantization)."""

    GROUP = 32

    q: np.ndarray  # uint8 (rows, cols)
    scale: np.ndarray  # float32 (rows, cols / GROUP)
    minimum: np.ndarray  # float32 (rows, cols / GROUP)
    bits: int
    kind: str  # the file's type name, for reports ("Q4_1")

    def map_rows(self, transform: Callable[[np.ndarray], np.ndarray]) -> ExactGroups:
        """The same groups after a reordering or slicing of rows (applied to each part alike)."""
        parts = (transform(self.q), transform(self.scale), transform(self.minimum))
        return ExactGroups(*parts, self.bits, self.kind)

    def dequantize(self) -> np.ndarray:
        rows = self.q.shape[0]
        scale = np.repeat(self.scale, self.GROUP, axis=1)
        minimum = np.repeat(self.minimum, self.GROUP, axis=1)
        return self.q.reshape(rows, -1).astype(np.float32) * scale + minimum


@dataclass(frozen=True)
class LazyTensor:
    """One tensor as the loader will hand it out, readable without touching the others."""

    shape: tuple[int, ...]
    dtype: np.dtype
    read: Callable[[], np.ndarray]
    # Quantized file types that are exactly groups of `scale * q + minimum` (see ExactGroups),
    # and their width in bits, known without reading the data.
    read_groups: Callable[[], ExactGroups] | None = None
    exact_bits: int | None = None
    # The groups' scales and minimums are f16 values (GGUF Q4_0, Q4_1, Q8_0; not Q4_K's products).
    half_scales: bool = False

    def map_rows(self, shape: tuple[int, ...], transform: Callable[[np.ndarray], np.ndarray]) -> LazyTensor:
        """This tensor with its rows reordered or sliced by `transform` (float and exact forms alike)."""
        groups = self.read_groups
        return LazyTensor(
            shape,
            self.dtype,
            lambda: transform(self.read()),
            None if groups is None else lambda: groups().map_rows(transform),
            self.exact_bits,
            self.half_scales,
        )


class TensorSource:
    """Tensors by Hugging Face checkpoint name, read lazily: a 3.8B model never sits in memory whole.

    `load` returns float32 for bf16 and quantized GGUF types, and f16 / f32 as stored.
    """

    def __init__(self, origin: Path, tensors: dict[str, LazyTensor]) -> None:
        self._origin = origin
        self._tensors = tensors
        self.names: list[str] = list(tensors)

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def _get(self, name: str) -> LazyTensor:
        try:
            return self._tensors[name]
        except KeyError:
            raise LoaderError(f"{self._origin}: the checkpoint has no tensor named {name!r}") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self._get(name).shape

    def dtype(self, name: str) -> np.dtype:
        """The dtype `load` returns for this tensor (not necessarily the stored one)."""
        return self._get(name).dtype

    def exact_bits(self, name: str) -> int | None:
        """The width of the tensor's exact groups (4 or 8), or None if it has none."""
        return self._get(name).exact_bits

    def half_scales(self, name: str) -> bool:
        """Whether the tensor's exact groups have f16 scales and minimums."""
        return self._get(name).half_scales

    def load_groups(self, name: str) -> ExactGroups | None:
        """The tensor in the file's own exact groups, when its type is one (else None)."""
        read = self._get(name).read_groups
        return read() if read is not None else None

    def load(self, name: str) -> np.ndarray:
        return self._get(name).read()


@dataclass
class Checkpoint:
    source: ModelSource
    config: dict[str, Any]  # config.json semantics, whatever the file format
    tensors: TensorSource
    tokenizer_json: str  # a full Hugging Face `tokenizers` JSON document
    chat_template: str | None
    bos_token_id: int | None
    eos_token_ids: list[int]  # every id that ends generation, from all the files that name one
    generation_config: dict[str, Any] = field(default_factory=dict)
    # The model came without a tokenizer and `tokenizer_json` is made up (see stand_in.py).
    tokenizer_stand_in: bool = False


def token_ids(*values: Any) -> list[int]:
    """Merge eos-like fields (an int, a list of ints or None each) into ordered, distinct ids."""
    merged: list[int] = []
    for value in values:
        items: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool) and item not in merged:
                merged.append(item)
    return merged
