"""A compiled model directory laid out for HTTP caching, and the checks that it is intact.

    webllm-model.json               the entry point: role -> file name, size and sha256 of every
                                    other file. Never renamed, so it is the one file a host
                                    serves for a short time (`no-cache`).
    tensor-cache.json               tvmjs's weight manifest, plus a sha256 per shard. Unhashed
                                    because tvmjs's loaders hardcode the name.
    params-<hash16>.bin             weight shards (none for a model with random weights: its
                                    manifest says how to generate each tensor instead)
    model-<hash16>.wasm, tokenizer-<hash16>.json, webllm-config-<hash16>.json

Every `<hash16>` is the first 16 hex digits of the file's own sha256, so a CDN and the browser
may keep those files forever (`immutable`): a rebuild that changes a file changes its name.
Shards are packed greedily in parameter order and each is named by its bytes alone, so a rebuild
that changes one tensor but not its size renames only the shard holding it.

The writers here fill an existing directory and leave atomicity to the caller, who builds the
whole model directory inside `atomic.atomic_directory` (a failed build leaves no partial
output under the final name).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from webllm_build.errors import ArtifactError

INDEX_FILE = "webllm-model.json"
INDEX_FORMAT = 1
TENSOR_CACHE_FILE = "tensor-cache.json"
# Versions what we add to tvmjs's format (the per-shard sha256); tvmjs ignores it. Format 2 is
# a manifest of random weights (no shards, a `random` section), which tvmjs cannot load.
WEIGHTS_FORMAT = 1
RANDOM_WEIGHTS_FORMAT = 2
# Roles the index must name; the browser and `inspect` find every file through them.
INDEX_ROLES = ("library", "tokenizer", "config", "tensor_cache")
HASH_CHARS = 16  # 64 bits: collisions between builds of one model are not a concern
# A name that carries its content's hash (model-<hash>.wasm): it never changes under that name.
HASHED_NAME = re.compile(r"[-.][0-9a-f]{16,}\.[A-Za-z0-9]+$")
BF16_FORMAT = "f32-to-bf16"

# Bytes per element of the dtypes tvmjs can load, by the names tvm and numpy both use.
ITEMSIZE = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int16": 2,
    "uint16": 2,
    "float16": 2,
    "bfloat16": 2,
    "int32": 4,
    "uint32": 4,
    "float32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
}
# The float32 with the largest finite bf16 bit pattern (0x7F7F0000); see `f32_to_bf16`.
BF16_MAX = float(np.array([0x7F7F0000], dtype=np.uint32).view(np.float32)[0])

REBUILD = "Rebuild it with `webllm_build compile`, or copy it again from the build output."


@dataclass(frozen=True)
class TensorRecord:
    name: str
    shape: tuple[int, ...]
    dtype: str  # the tensor's dtype once loaded; "float32" also when stored as bf16
    format: str  # "raw", or BF16_FORMAT: float32 stored as the upper 16 bits (bf16)
    nbytes: int  # as stored in the shard
    byte_offset: int

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def stored_nbytes(self) -> int:
        """What `nbytes` must be for this shape, dtype and format."""
        return self.size * (2 if self.format == BF16_FORMAT else ITEMSIZE[self.dtype])


@dataclass(frozen=True)
class Shard:
    data_path: str
    nbytes: int
    sha256: str
    records: tuple[TensorRecord, ...]


@dataclass(frozen=True)
class RandomRecord:
    """A tensor the browser generates instead of downloading (see `random_weights.py`)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    format: str  # "raw", or BF16_FORMAT: the values are those a bf16 shard would give
    init: dict[str, Any]  # {"kind": "uniform", "low": a, "high": b} or {"kind": "bits"}

    @property
    def nbytes(self) -> int:
        """The tensor's bytes in GPU memory."""
        return math.prod(self.shape) * ITEMSIZE[self.dtype]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "format": self.format,
            "nbytes": self.nbytes,
            "init": self.init,
        }


@dataclass(frozen=True)
class RandomWeights:
    generator: str  # names the algorithm, so a change to it cannot go unnoticed
    seed: int
    records: tuple[RandomRecord, ...]


@dataclass(frozen=True)
class WeightsManifest:
    """The contents of tensor-cache.json."""

    shards: tuple[Shard, ...]
    param_count: int  # the model's parameters; stored scalars unless the writer was told otherwise
    random: RandomWeights | None = None  # set (and `shards` empty) for a model with random weights

    @property
    def param_bytes(self) -> int:
        """Bytes to download: the shards."""
        return sum(shard.nbytes for shard in self.shards)

    @property
    def bits_per_param(self) -> float:
        return self.param_bytes * 8 / self.param_count if self.param_count else 0.0

    def to_json(self) -> dict[str, Any]:
        # Key order follows tvmjs's own dumper; the added keys are ignored by its loaders.
        document: dict[str, Any] = {
            "metadata": {
                "ParamSize": self.param_count,
                "ParamBytes": self.param_bytes,
                "BitsPerParam": round(self.bits_per_param, 4),
                "WeightsFormat": WEIGHTS_FORMAT if self.random is None else RANDOM_WEIGHTS_FORMAT,
            },
            "records": [
                {
                    "dataPath": shard.data_path,
                    "format": "raw-shard",
                    "nbytes": shard.nbytes,
                    "sha256": shard.sha256,
                    "records": [
                        {
                            "name": rec.name,
                            "shape": list(rec.shape),
                            "dtype": rec.dtype,
                            "format": rec.format,
                            "nbytes": rec.nbytes,
                            "byteOffset": rec.byte_offset,
                        }
                        for rec in shard.records
                    ],
                }
                for shard in self.shards
            ],
        }
        if self.random is not None:
            document["random"] = {
                "generator": self.random.generator,
                "seed": self.random.seed,
                "records": [record.to_json() for record in self.random.records],
            }
        return document


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the model directory
    nbytes: int
    sha256: str


@dataclass(frozen=True)
class ModelIndex:
    """The contents of webllm-model.json."""

    files: dict[str, FileEntry]  # by role, see INDEX_ROLES
    extra: dict[str, Any]


@dataclass(frozen=True)
class ShardStats:
    count: int
    min_bytes: int
    max_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class InspectReport:
    directory: Path
    model: str | None
    quantization: str | None
    param_count: int
    tensor_count: int
    bytes_by_dtype: dict[str, int]  # as stored: float32 kept as bf16 is "float32 as bf16"
    shards: ShardStats
    bits_per_param: float
    required_features: list[str]
    files: dict[str, FileEntry]
    problems: list[str] | None  # None: not verified
    # Per quantized weight (checkpoint name): "exact Q4_1" (the file's own groups, no rounding) or
    # "quantized" (rounded from floats); empty for random weights and older builds.
    weight_import: dict[str, str] = field(default_factory=dict)


# --- writing ------------------------------------------------------------------------------


def write_weights(
    params: Iterable[tuple[str, np.ndarray]],
    directory: Path,
    *,
    shard_mb: float = 32,
    bf16: bool = False,
    param_count: int | None = None,
) -> WeightsManifest:
    """Write `params` as content-named shards plus tensor-cache.json into `directory`.

    Consumes the iterable once, holding only the tensors of the shard being filled. A shard is
    closed when the next tensor would push it past `shard_mb` MiB; a tensor larger than that
    gets a shard of its own. `bf16` stores float32 tensors as bf16 (half the download; tvmjs
    widens them back to float32 on load). `param_count` is the model's parameter count where it
    differs from the number of stored scalars (4-bit weights pack eight to a uint32), so that
    BitsPerParam means bits per model parameter.
    """
    if shard_mb <= 0:
        raise ArtifactError(f"The shard size must be a positive number of MiB, not {shard_mb}.")
    cap = int(shard_mb * 2**20)
    shards: list[Shard] = []
    pending: list[tuple[TensorRecord, np.ndarray]] = []
    pending_bytes = 0
    seen: set[str] = set()
    scalars = 0
    for name, array in params:
        if name in seen:
            raise ArtifactError(f"Tensor `{name}` appears twice in the weights; names must be unique.")
        seen.add(name)
        dtype, encoding, data = _encode(name, array, bf16)
        if pending and pending_bytes + data.nbytes > cap:
            shards.append(_write_shard(directory, pending))
            pending, pending_bytes = [], 0
        record = TensorRecord(
            name, tuple(int(d) for d in array.shape), dtype, encoding, data.nbytes, pending_bytes
        )
        pending.append((record, data))
        pending_bytes += data.nbytes
        scalars += array.size
        if pending_bytes > cap:
            shards.append(_write_shard(directory, pending))
            pending, pending_bytes = [], 0
    if pending:
        shards.append(_write_shard(directory, pending))
    if not shards:
        raise ArtifactError("There are no weights to write: the model has no parameters.")
    manifest = WeightsManifest(tuple(shards), scalars if param_count is None else param_count)
    write_weights_manifest(directory, manifest)
    return manifest


def write_weights_manifest(directory: Path, manifest: WeightsManifest) -> None:
    _write_json(directory / TENSOR_CACHE_FILE, manifest.to_json(), sort_keys=False)


def _encode(name: str, array: np.ndarray, bf16: bool) -> tuple[str, str, np.ndarray]:
    """(dtype, format, the bytes to store as a flat uint8 array) for one tensor."""
    # The wasm runtime reads little-endian; this is a no-op for arrays that already are.
    array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    dtype = array.dtype.name
    if dtype not in ITEMSIZE:
        raise ArtifactError(
            f"Tensor `{name}` has dtype {dtype}, which tvmjs cannot load. Convert it to one of: "
            f"{', '.join(ITEMSIZE)}."
        )
    if bf16 and dtype == "float32":
        return dtype, BF16_FORMAT, f32_to_bf16(array).reshape(-1).view(np.uint8)
    return dtype, "raw", array.reshape(-1).view(np.uint8)


def f32_to_bf16(values: np.ndarray) -> np.ndarray:
    """bf16 bit patterns (uint16) of float32 `values`, rounded the way tvmjs's dumper rounds."""
    bits = values.view(np.uint32)
    # Round to nearest even within bf16's finite range. Beyond it (and for inf) truncate, which
    # keeps a huge finite value finite (the largest bf16) instead of rounding it up to inf.
    in_range = np.abs(values) < BF16_MAX
    bias = np.where(in_range, ((bits >> 16) & 1) + 0x7FFF, 0).astype(np.uint32)
    rounded = ((bits + bias) >> 16).astype(np.uint16)
    # Truncating a NaN whose payload lies in the low half would turn it into inf.
    return np.where(np.isnan(values), (bits >> 16).astype(np.uint16) | np.uint16(0x0040), rounded)


def _write_shard(directory: Path, pending: list[tuple[TensorRecord, np.ndarray]]) -> Shard:
    digest = hashlib.sha256()
    for _, data in pending:
        digest.update(data)
    sha256 = digest.hexdigest()
    name = f"params-{sha256[:HASH_CHARS]}.bin"
    # Two shards with equal bytes (all-zero tensors, say) share one file.
    with open(directory / name, "wb") as out:
        for _, data in pending:
            out.write(data)
    nbytes = sum(data.nbytes for _, data in pending)
    return Shard(name, nbytes, sha256, tuple(record for record, _ in pending))


def content_hashed_copy(src: Path, directory: Path, stem: str) -> str:
    """Copy `src` into `directory` as `<stem>-<hash16><suffix>`; returns that name."""
    try:
        sha256 = sha256_file(src)
    except OSError as exc:
        raise ArtifactError(f"Cannot read {src}: {exc.strerror}. Rebuild it, then try again.") from None
    name = f"{stem}-{sha256[:HASH_CHARS]}{src.suffix}"
    shutil.copyfile(src, directory / name)
    return name


def write_content_hashed(data: bytes, directory: Path, stem: str, suffix: str) -> str:
    """Write `data` into `directory` as `<stem>-<hash16><suffix>`; returns that name."""
    name = f"{stem}-{hashlib.sha256(data).hexdigest()[:HASH_CHARS]}{suffix}"
    (directory / name).write_bytes(data)
    return name


def write_model_index(directory: Path, files: Mapping[str, str], extra: Mapping[str, Any]) -> Path:
    """Write webllm-model.json: every file of `files` (role -> name) with its size and sha256.

    `extra` holds what a page wants before downloading anything else (the model name, the
    WebGPU features it needs); its keys sit beside "format" and "files".
    """
    missing = set(INDEX_ROLES) - set(files)
    if missing:
        raise ValueError(f"The model index needs files for roles {sorted(missing)}.")
    if {"format", "files"} & set(extra):
        raise ValueError("`extra` must not redefine the index's own keys `format` and `files`.")
    entries = {}
    for role, name in files.items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path} does not exist, so the model index cannot name it as `{role}`.")
        entries[role] = {"path": name, "nbytes": path.stat().st_size, "sha256": sha256_file(path)}
    target = directory / INDEX_FILE
    _write_json(target, {**extra, "format": INDEX_FORMAT, "files": entries}, sort_keys=True)
    return target


def _write_json(path: Path, document: dict[str, Any], *, sort_keys: bool) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=sort_keys) + "\n", encoding="utf-8")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces (shards and libraries can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- reading ------------------------------------------------------------------------------


def read_model_index(directory: Path) -> ModelIndex:
    """The index of a compiled model directory; ArtifactError if `directory` is not one."""
    if not directory.is_dir():
        raise ArtifactError(
            f"{directory} is not a directory. Pass the directory `webllm_build compile --out` wrote."
        )
    path = directory / INDEX_FILE
    if not path.is_file():
        raise ArtifactError(
            f"{directory} is not a compiled model: it has no {INDEX_FILE}. Pass the directory "
            f"`webllm_build compile --out` wrote, or rebuild it with the current webllm_build."
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document["format"] > INDEX_FORMAT:
            raise ArtifactError(
                f"{path} has format {document['format']}, newer than this webllm_build reads "
                f"({INDEX_FORMAT}). Upgrade webllm_build."
            )
        files = {
            role: FileEntry(str(entry["path"]), int(entry["nbytes"]), str(entry["sha256"]))
            for role, entry in document["files"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc!r}). {REBUILD}") from None
    missing = [role for role in INDEX_ROLES if role not in files]
    if missing:
        raise ArtifactError(f"{path} names no file for {', '.join(missing)}. {REBUILD}")
    for entry in files.values():
        _check_plain_name(entry.path, path)
    extra = {key: value for key, value in document.items() if key not in ("format", "files")}
    return ModelIndex(files, extra)


def read_weights_manifest(path: Path) -> WeightsManifest:
    """Parse a tensor-cache.json written by `write_weights`."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        metadata = document["metadata"]
        if metadata.get("WeightsFormat", WEIGHTS_FORMAT) > RANDOM_WEIGHTS_FORMAT:
            raise ArtifactError(
                f"{path} has weights format {metadata['WeightsFormat']}, newer than this "
                f"webllm_build reads ({RANDOM_WEIGHTS_FORMAT}). Upgrade webllm_build."
            )
        shards = tuple(
            Shard(
                str(shard["dataPath"]),
                int(shard["nbytes"]),
                str(shard["sha256"]),
                tuple(
                    TensorRecord(
                        str(rec["name"]),
                        tuple(int(d) for d in rec["shape"]),
                        str(rec["dtype"]),
                        str(rec["format"]),
                        int(rec["nbytes"]),
                        int(rec["byteOffset"]),
                    )
                    for rec in shard["records"]
                ),
            )
            for shard in document["records"]
        )
        random = document.get("random")
        if random is not None:
            random = RandomWeights(
                str(random["generator"]),
                int(random["seed"]),
                tuple(
                    RandomRecord(
                        str(rec["name"]),
                        tuple(int(d) for d in rec["shape"]),
                        str(rec["dtype"]),
                        str(rec["format"]),
                        dict(rec["init"]),
                    )
                    for rec in random["records"]
                ),
            )
        manifest = WeightsManifest(shards, int(metadata["ParamSize"]), random)
    except KeyError as exc:
        # A tvmjs-made cache (params_shard_*.bin, md5sum) has no sha256 to verify against.
        raise ArtifactError(
            f"{path} lacks the field {exc}: it was not written by this webllm_build. {REBUILD}"
        ) from None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc!r}). {REBUILD}") from None
    for shard in shards:
        _check_plain_name(shard.data_path, path)
        for rec in shard.records:
            if rec.dtype not in ITEMSIZE or rec.format not in ("raw", BF16_FORMAT):
                raise ArtifactError(
                    f"{path}: tensor `{rec.name}` has dtype {rec.dtype} and format {rec.format}, "
                    f"which tvmjs cannot load. {REBUILD}"
                )
    return manifest


def _check_plain_name(name: str, listed_in: Path) -> None:
    # Names come from files a host serves; one must never lead out of the model directory.
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ArtifactError(f"{listed_in} names the file {name!r}, which is not a plain file name. {REBUILD}")


# --- verifying and inspecting -------------------------------------------------------------


def verify_directory(directory: Path) -> list[str]:
    """Every problem with a compiled model directory's files (empty when it is intact).

    Checks size and sha256 of each file the index names and of each weight shard, and that
    each tensor lies inside its shard. ArtifactError if `directory` is not a model at all.
    """
    index = read_model_index(directory)
    problems = [
        problem
        for entry in index.files.values()
        if (problem := _check_file(directory, entry.path, entry.nbytes, entry.sha256, INDEX_FILE))
    ]
    try:
        manifest = read_weights_manifest(directory / index.files["tensor_cache"].path)
    except ArtifactError as exc:
        return [*problems, str(exc)]
    manifest_name = index.files["tensor_cache"].path
    for shard in manifest.shards:
        if not shard.data_path.startswith(f"params-{shard.sha256[:HASH_CHARS]}"):
            problems.append(
                f"{shard.data_path}: its name does not carry its sha256 ({shard.sha256[:HASH_CHARS]}…) "
                f"as {manifest_name} records it, so caches could keep a stale copy. {REBUILD}"
            )
        problem = _check_file(directory, shard.data_path, shard.nbytes, shard.sha256, manifest_name)
        if problem:
            problems.append(problem)
        for rec in shard.records:
            if (
                rec.nbytes != rec.stored_nbytes
                or rec.byte_offset < 0
                or rec.byte_offset + rec.nbytes > shard.nbytes
            ):
                problems.append(
                    f"{shard.data_path}: tensor `{rec.name}` ({rec.nbytes} bytes at offset "
                    f"{rec.byte_offset}) does not fit its shape {list(rec.shape)} {rec.dtype} or "
                    f"its {shard.nbytes}-byte shard, as {manifest_name} records it. {REBUILD}"
                )
    return problems


def _check_file(directory: Path, name: str, nbytes: int, sha256: str, listed_in: str) -> str | None:
    path = directory / name
    if not path.is_file():
        return f"{name}: missing ({listed_in} lists it, {nbytes} bytes). {REBUILD}"
    size = path.stat().st_size
    if size != nbytes:
        kind = "truncated" if size < nbytes else "longer than it should be"
        return f"{name}: {kind}, {size} bytes where {listed_in} records {nbytes}. {REBUILD}"
    if sha256_file(path) != sha256:
        return f"{name}: corrupted, its sha256 differs from the one {listed_in} records. {REBUILD}"
    return None


def inspect_model(directory: Path, verify: bool = False) -> InspectReport:
    """What a compiled model directory holds; with `verify`, also every problem with its files."""
    index = read_model_index(directory)
    manifest = read_weights_manifest(directory / index.files["tensor_cache"].path)
    config_path = directory / index.files["config"].path
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{config_path} is unreadable ({exc!r}). {REBUILD}") from None
    bytes_by_dtype: dict[str, int] = {}
    for shard in manifest.shards:
        for rec in shard.records:
            label = f"{rec.dtype} as bf16" if rec.format == BF16_FORMAT else rec.dtype
            bytes_by_dtype[label] = bytes_by_dtype.get(label, 0) + rec.nbytes
    random_records = manifest.random.records if manifest.random else ()
    for random_rec in random_records:
        # Generated in the browser: GPU bytes, none downloaded.
        label = f"{random_rec.dtype} (random, generated)"
        bytes_by_dtype[label] = bytes_by_dtype.get(label, 0) + random_rec.nbytes
    sizes = [shard.nbytes for shard in manifest.shards]
    return InspectReport(
        directory=directory,
        model=config.get("model"),
        quantization=config.get("quantization"),
        param_count=manifest.param_count,
        tensor_count=sum(len(shard.records) for shard in manifest.shards) + len(random_records),
        bytes_by_dtype=dict(sorted(bytes_by_dtype.items(), key=lambda item: -item[1])),
        shards=ShardStats(len(sizes), min(sizes, default=0), max(sizes, default=0), sum(sizes)),
        bits_per_param=manifest.bits_per_param,
        required_features=list(config.get("required_features", [])),
        files=index.files,
        problems=verify_directory(directory) if verify else None,
        weight_import=dict(index.extra.get("weight_import") or {}),
    )


def _import_lines(weight_import: dict[str, str], tensors: bool) -> list[tuple[str, str]]:
    if not weight_import:
        return []
    counts: dict[str, int] = {}
    for how in weight_import.values():
        counts[how] = counts.get(how, 0) + 1
    summary = ", ".join(f"{n} {how}" for how, n in sorted(counts.items()))
    lines = [("Quantized weights", summary + ("" if tensors else " (--tensors lists them)"))]
    return lines + [(f"  {name}", how) for name, how in weight_import.items()] * tensors


def format_report(report: InspectReport, tensors: bool = False) -> str:
    """`report` as the aligned lines `webllm_build inspect` prints; `tensors` lists how each
    quantized weight was imported, one line each."""
    model = report.model or "(unnamed)"
    if report.quantization:
        model += f" ({report.quantization})"
    shards = report.shards
    lines = [
        ("Directory", str(report.directory)),
        ("Model", model),
        ("Parameters", f"{report.param_count:,} in {report.tensor_count} tensors"),
        ("Weights", f"{_size(shards.total_bytes)}, {report.bits_per_param:.2f} bits per parameter"),
        *((f"  {dtype}", _size(nbytes)) for dtype, nbytes in report.bytes_by_dtype.items()),
        (
            "Shards",
            f"{shards.count}: smallest {_size(shards.min_bytes)}, largest {_size(shards.max_bytes)}, "
            f"total {_size(shards.total_bytes)}",
        ),
        ("WebGPU features", ", ".join(report.required_features) or "none beyond core WebGPU"),
        *_import_lines(report.weight_import, tensors),
        ("Files", ""),
        *(
            (f"  {role}", f"{entry.path} ({_size(entry.nbytes)})")
            for role, entry in sorted(report.files.items())
        ),
    ]
    if report.problems is None:
        lines.append(("Verification", "not run (pass --verify to check sizes and sha256)"))
    elif not report.problems:
        lines.append(("Verification", f"OK: {len(report.files)} files and {shards.count} shards intact"))
    else:
        lines.append(("Verification", f"FAILED, {len(report.problems)} problem(s):"))
    width = max(len(label) for label, _ in lines)
    text = [f"{label:<{width}}  {value}".rstrip() for label, value in lines]
    text += [f"  - {problem}" for problem in report.problems or []]
    return "\n".join(text)


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"
