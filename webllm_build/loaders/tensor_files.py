"""Tensor files of a Hugging Face checkpoint: safetensors (read here, memory-mapped) and PyTorch .bin.

safetensors is parsed directly rather than through the `safetensors` package because its numpy
backend cannot return bfloat16, the dtype most published checkpoints use.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from webllm_build.errors import LoaderError
from webllm_build.loaders.checkpoint import LazyTensor

# safetensors dtype -> numpy dtype as stored. BF16 has no numpy dtype: it is stored as uint16 and
# widened to float32 on load.
_SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

# Refuse absurd header lengths before allocating them: real headers are a few hundred KiB.
_MAX_HEADER_BYTES = 100 * 1024 * 1024

TORCH_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32, so widening is a shift."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: Path) -> dict[str, LazyTensor]:
    """Every tensor of one .safetensors file, checked against the file's size, none read yet."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise LoaderError(f"{path}: truncated safetensors file ({size} bytes, no header)")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(size - 8, _MAX_HEADER_BYTES):
                raise LoaderError(
                    f"{path}: truncated or not a safetensors file (header length {header_len}, "
                    f"file size {size}); download it again"
                )
            header = json.loads(f.read(header_len))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LoaderError(f"{path}: unreadable safetensors header: {e}") from None
    if not isinstance(header, dict):
        raise LoaderError(f"{path}: the safetensors header is not a JSON object")
    data = _MappedData(path, 8 + header_len, size - 8 - header_len)
    return {
        name: _safetensors_entry(data, name, info) for name, info in header.items() if name != "__metadata__"
    }


class _MappedData:
    """The data section of one file, memory-mapped on first read.

    The OS pages tensors in and out as they are read, so a 7 GB checkpoint never needs 7 GB of RAM;
    the mapping lives as long as the checkpoint that references it.
    """

    def __init__(self, path: Path, start: int, size: int) -> None:
        self.path, self.start, self.size = path, start, size
        self._map: np.memmap | None = None

    def span(self, begin: int, end: int) -> np.ndarray:
        if self._map is None:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._map[self.start + begin : self.start + end]


def _safetensors_entry(data: _MappedData, name: str, info: Any) -> LazyTensor:
    path = data.path
    try:
        dtype_name, shape = info["dtype"], tuple(int(d) for d in info["shape"])
        begin, end = (int(offset) for offset in info["data_offsets"])
    except (TypeError, KeyError, ValueError) as e:
        raise LoaderError(f"{path}: malformed safetensors entry for tensor {name!r}: {e}") from None
    stored = _SAFETENSORS_DTYPES.get(dtype_name)
    if stored is None:
        raise LoaderError(
            f"{path}: tensor {name!r} has dtype {dtype_name}, which is not supported "
            f"(supported: {', '.join(_SAFETENSORS_DTYPES)})"
        )
    if end - begin != math.prod(shape) * stored.itemsize or not 0 <= begin <= end:
        raise LoaderError(
            f"{path}: tensor {name!r} has data_offsets {[begin, end]} inconsistent with {shape}"
        )
    if end > data.size:
        raise LoaderError(
            f"{path}: truncated safetensors file: tensor {name!r} ends at byte {data.start + end} "
            f"but the file has {data.start + data.size}; download it again"
        )

    def read() -> np.ndarray:
        raw = data.span(begin, end).view(stored).reshape(shape)
        return bf16_to_f32(raw) if dtype_name == "BF16" else np.array(raw)

    return LazyTensor(shape, np.dtype(np.float32) if dtype_name == "BF16" else stored, read)


def read_torch_bin(path: Path) -> dict[str, LazyTensor]:
    """Every tensor of one pytorch_model*.bin. Needs torch; unpickles only tensors (weights_only)."""
    try:
        import torch
    except ImportError:
        raise LoaderError(
            f"{path} is a PyTorch pickle and reading it needs torch, which is not installed: {TORCH_INSTALL}"
        ) from None
    try:
        # Zip-format files (torch >= 1.6) can be memory-mapped; the legacy format must be read whole.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # torch raises many types for a bad pickle; all mean the same to a user
        raise LoaderError(f"{path}: unreadable PyTorch checkpoint: {e}") from None
    if not isinstance(state, dict):
        raise LoaderError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return {
        name: _torch_entry(path, name, tensor, torch)
        for name, tensor in state.items()
        if isinstance(tensor, torch.Tensor)
    }


def _torch_entry(path: Path, name: str, tensor: Any, torch: Any) -> LazyTensor:
    shape = tuple(tensor.shape)
    if tensor.dtype == torch.bfloat16:
        return LazyTensor(shape, np.dtype(np.float32), lambda: tensor.float().numpy())
    try:
        dtype = torch.empty(0, dtype=tensor.dtype).numpy().dtype
    except TypeError:
        raise LoaderError(
            f"{path}: tensor {name!r} has dtype {tensor.dtype}, which numpy cannot hold"
        ) from None
    # A copy: the tensor may be a view into the memory-mapped file.
    return LazyTensor(shape, dtype, lambda: tensor.numpy().copy())
