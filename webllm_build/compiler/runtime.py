"""Build TVM's web runtime (the C++ half every model library links) from the installed wheels.

No registry ships the runtime's compiled objects, but the apache-tvm and apache-tvm-ffi wheels
ship its sources. We lay them out as TVM's source tree, add the few headers the wheel lacks
(`runtime_headers/`, written for this project), fix what `SOURCE_FIXES` says, and compile with
Debian's emcc.

We compile to wasm objects rather than LLVM bitcode: TVM's LLVM 22 writes bitcode that
emcc's LLVM 14 cannot read, while wasm object files link across that gap (and link faster).

The objects are cached under `<cache>/runtime/<key>/`, where the key covers everything that
changes them: TVM and tvm-ffi versions, the emcc version, the flags, our headers and fixes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import tvm
import tvm_ffi

from webllm_build.artifacts import sha256_file
from webllm_build.atomic import atomic_directory, sweep_stale_temps
from webllm_build.compiler.toolchain import emcc_env, find_emcc
from webllm_build.errors import ToolchainError
from webllm_build.paths import cache_dir

HEADERS_DIR = Path(__file__).resolve().parent / "runtime_headers"
UNITS = ("wasm_runtime", "tvmjs_support", "webgpu_runtime")
CFLAGS = ("-O3", "-std=c++17", "-Wno-ignored-attributes")
INCLUDE_DIRS = (
    ".",
    "include",
    "3rdparty/tvm-ffi/include",
    "3rdparty/tvm-ffi/3rdparty/dlpack/include",
    "3rdparty/compiler-rt",
)
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SourceFix:
    """One edit to TVM's runtime sources before they are compiled: `old` must occur exactly once."""

    path: str
    old: str
    new: str
    why: str


SOURCE_FIXES = (
    # On devices other than CUDA and CPU (WebGPU), TVM 0.27's paged KV cache copies each page
    # table into one device array per depth; the table of sliding-window layers went into the
    # same arrays as the full one, after it, so the full-attention layers of a model that has
    # both (Gemma 3) read the sliding table once a whole page had left the window. The sliding
    # tables get arrays of their own, at depth + kPagedKVCacheMaxBlockDepth.
    SourceFix(
        "src/runtime/vm/attn_utils.h",
        "    cur_append_length_indptr_device_ = "
        "Tensor::Empty({reserved_num_seqs + 1}, dtype_aux_, device);\n",
        "    for (int d = 0; d < kPagedKVCacheMaxBlockDepth; ++d) {\n"
        "      page_indptr_on_depths_device_.push_back(\n"
        "          Tensor::Empty({reserved_num_seqs + 1}, dtype_aux_, device));\n"
        "      page_indices_on_depths_device_.push_back(\n"
        "          Tensor::Empty({num_total_pages}, dtype_aux_, device));\n"
        "    }\n"
        "    cur_append_length_indptr_device_ = "
        "Tensor::Empty({reserved_num_seqs + 1}, dtype_aux_, device);\n",
        "sliding-window page tables aliased the full ones (WebGPU)",
    ),
    SourceFix(
        "src/runtime/vm/paged_kv_cache.cc",
        "&page_indptr_sliding_window_on_depths_host_[d], d);",
        "&page_indptr_sliding_window_on_depths_host_[d], d + kPagedKVCacheMaxBlockDepth);",
        "sliding-window page tables aliased the full ones (WebGPU)",
    ),
    SourceFix(
        "src/runtime/vm/paged_kv_cache.cc",
        "&page_indices_sliding_window_on_depths_host_[d], d);",
        "&page_indices_sliding_window_on_depths_host_[d], d + kPagedKVCacheMaxBlockDepth);",
        "sliding-window page tables aliased the full ones (WebGPU)",
    ),
)


@dataclass(frozen=True)
class WasmRuntime:
    """The compiled runtime: one wasm object per translation unit."""

    directory: Path
    objects: tuple[Path, ...]
    key: str


def _headers_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(HEADERS_DIR.rglob("*.h")):
        digest.update(str(path.relative_to(HEADERS_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def runtime_key(emcc_version: str) -> str:
    """A cache key naming every input of the runtime build."""
    inputs = {
        "tvm": metadata.version("apache-tvm"),
        "tvm_ffi": metadata.version("apache-tvm-ffi"),
        "emcc": emcc_version,
        "cflags": CFLAGS,
        "headers": _headers_digest(),
        "fixes": [(f.path, f.old, f.new) for f in SOURCE_FIXES],
    }
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return f"tvm{inputs['tvm']}-emcc{emcc_version}-{digest}"


def runtime_root() -> Path:
    return cache_dir() / "runtime"


def load_cached_runtime(key: str) -> WasmRuntime | None:
    """The cached runtime for `key` if present and intact, else None."""
    directory = runtime_root() / key
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        objects = tuple(directory / name for name in manifest["objects"])
        if all(sha256_file(obj) == manifest["objects"][obj.name] for obj in objects):
            return WasmRuntime(directory, objects, key)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _stage_sources(stage: Path) -> None:
    """Arrange the wheels' sources and our headers as TVM's repository tree expects."""
    tvm_dir = Path(tvm.__file__).resolve().parent
    ffi_dir = Path(tvm_ffi.__file__).resolve().parent
    copies = {
        tvm_dir / "src": stage / "src",
        tvm_dir / "include": stage / "include",
        tvm_dir / "web" / "emcc": stage / "web" / "emcc",
        ffi_dir / "src": stage / "3rdparty/tvm-ffi/src",
        ffi_dir / "include": stage / "3rdparty/tvm-ffi/include",
        ffi_dir / "3rdparty/dlpack/include": stage / "3rdparty/tvm-ffi/3rdparty/dlpack/include",
    }
    for source, dest in copies.items():
        if not source.is_dir():
            raise ToolchainError(
                f"The installed TVM wheel lacks {source}, which the web runtime is built from. "
                "Reinstall it with: pip install --force-reinstall apache-tvm==0.27.0.post1"
            )
        shutil.copytree(source, dest, dirs_exist_ok=True)
    shutil.copytree(HEADERS_DIR, stage, dirs_exist_ok=True)
    for fix in SOURCE_FIXES:
        path = stage / fix.path
        text = path.read_text()
        if text.count(fix.old) != 1:
            raise ToolchainError(
                f"{fix.path} in the installed TVM wheel is not the source this project fixes "
                f"({fix.why}). Reinstall it with: pip install --force-reinstall apache-tvm==0.27.0.post1"
            )
        path.write_text(text.replace(fix.old, fix.new))


def _compile_unit(emcc: str, stage: Path, unit: str, out: Path) -> Path:
    obj = out / f"{unit}.o"
    cmd = [
        emcc,
        *CFLAGS,
        *(f"-I{d}" for d in INCLUDE_DIRS),
        "-c",
        f"web/emcc/{unit}.cc",
        "-o",
        str(obj),
    ]
    proc = subprocess.run(cmd, cwd=stage, capture_output=True, text=True, env=emcc_env(), check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ToolchainError(
            f"emcc failed to compile the TVM web runtime ({unit}.cc):\n{tail}\n"
            "Check that Debian's emscripten is installed (make setup) and that apache-tvm is "
            "0.27.0.post1."
        )
    return obj


def build_runtime(log: Callable[[str], None] = lambda _msg: None) -> WasmRuntime:
    """Return the cached runtime, building it first if it is missing or damaged."""
    emcc = find_emcc()
    key = runtime_key(emcc.version)
    cached = load_cached_runtime(key)
    if cached is not None:
        return cached
    root = runtime_root()
    sweep_stale_temps(root)
    final = root / key
    log(f"Building the TVM wasm runtime with emcc {emcc.version} (one time, 1-3 minutes)...")
    with atomic_directory(final) as out:
        stage = out / "stage"
        _stage_sources(stage)
        # Two at a time: each unit is one big translation unit, and CI machines have 2 cores.
        with ThreadPoolExecutor(max_workers=2) as pool:
            objects = list(pool.map(lambda u: _compile_unit(emcc.path, stage, u, out), UNITS))
        shutil.rmtree(stage)
        manifest = {"key": key, "objects": {obj.name: sha256_file(obj) for obj in objects}}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    log(f"TVM wasm runtime ready in {final}")
    runtime = load_cached_runtime(key)
    if runtime is None:
        raise ToolchainError(f"The runtime built into {final} does not verify; delete it and retry.")
    return runtime
