"""The compile stage: a model spec in, a directory the browser engine can run out.

    <out>/webllm-model.json          the index: names every file below with size and sha256
    <out>/model-<hash>.wasm          WebGPU kernels + wasm32 host code + the TVM runtime
                                     (model-<hash>.so for the CPU target, the fast reference)
    <out>/tensor-cache.json          the weight manifest, in tvmjs's format
    <out>/params-<hash>.bin          weight shards, converted and quantized
    <out>/tokenizer-<hash>.json
    <out>/webllm-config-<hash>.json  everything else the browser needs (see `browser_config`)

Only the index and tensor-cache.json keep fixed names (short cache lifetime); every other file
is named by its content, so a CDN can cache it forever and a rebuild renames only what changed.

Compiled libraries are cached under `<cache>/libs/<key>/`, keyed by everything that shapes
them, so rebuilding a site or rerunning tests does not recompile an unchanged model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tvm

from webllm_build.artifacts import (
    TENSOR_CACHE_FILE,
    content_hashed_copy,
    write_content_hashed,
    write_model_index,
    write_weights,
)
from webllm_build.atomic import atomic_directory, sweep_stale_temps
from webllm_build.compiler.link import link_wasm
from webllm_build.compiler.pipeline import compile_module
from webllm_build.compiler.runtime import build_runtime
from webllm_build.compiler.target import cpu_target, webgpu_target
from webllm_build.convert import checkpoint_fetcher, model_parameters
from webllm_build.errors import CompileError, WebLLMBuildError
from webllm_build.loaders import Checkpoint, load_checkpoint, resolve_model
from webllm_build.models import ModelConfig, architecture_of
from webllm_build.paths import PACKAGE_DIR, cache_dir
from webllm_build.presets import DEFAULT_PRESET, PRESETS
from webllm_build.quantize import VALUES_PER_WORD, Quantization, get_quantization, quantize_modules

CONFIG_FORMAT = 1
DEFAULT_CONTEXT_WINDOW = 4096
DEFAULT_PREFILL_CHUNK = 512
PAGE_SIZE = 16
# Source files whose change must invalidate cached libraries.
LIBRARY_SOURCES = ("models", "quantize.py", "compiler/pipeline.py", "compiler/link.py")


@dataclass(frozen=True)
class CompileOptions:
    model: str = DEFAULT_PRESET
    quantization: str | None = None  # None: the preset's choice, else q4f32_1
    context_window: int | None = None  # None: the model's own, capped at DEFAULT_CONTEXT_WINDOW
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK
    target: Literal["webgpu", "cpu"] = "webgpu"
    shard_mb: float = 32
    bf16: bool = False  # store f32 tensors as bf16: half the download, ~2e-3 relative logit change


@dataclass(frozen=True)
class CompiledModel:
    directory: Path
    library: Path
    config: dict[str, Any]

    @property
    def tokenizer(self) -> Path:
        return self.directory / self.config["tokenizer"]


def library_name(target: str) -> str:
    return "model.wasm" if target == "webgpu" else "model.so"


def model_config_for(checkpoint: Checkpoint, options: CompileOptions, q: Quantization) -> ModelConfig:
    path = checkpoint.source.path
    source = str(path / "config.json" if checkpoint.source.kind == "hf-dir" else path)
    arch = architecture_of(checkpoint.config, source)
    native = int(checkpoint.config.get("max_position_embeddings") or DEFAULT_CONTEXT_WINDOW)
    context_window = options.context_window or min(native, DEFAULT_CONTEXT_WINDOW)
    if context_window <= 0 or options.prefill_chunk <= 0:
        raise WebLLMBuildError("--context-window and --prefill-chunk must be positive.")
    config = arch.parse_config(
        checkpoint.config,
        context_window=context_window,
        prefill_chunk=min(options.prefill_chunk, context_window),
        source=source,
    )
    return dataclasses.replace(config, dtype=q.model_dtype)


def build_module(config: ModelConfig, q: Quantization, target: tvm.target.Target):
    """The exported IRModule and its parameter list (name, shape, dtype), in call order."""
    arch = architecture_of({"architectures": [config.architecture]}, config.architecture)
    model = arch.model_class(config, target)
    model.to(q.model_dtype)  # before quantizing: it would retype the packed uint32 weights too
    quantize_modules(model, q)
    mod, named = model.export_tvm(spec=model.export_spec())
    bounds = {"seq_len": config.prefill_chunk, "total_seq_len": config.context_window}
    for gvar, func in mod.functions_items():
        if isinstance(func, tvm.relax.Function):
            # Upper bounds let the memory planner reuse fixed-size buffers across calls.
            mod[gvar] = func.with_attr("tir_var_upper_bound", bounds)
    params = [(name, tuple(int(d) for d in p.shape), p.dtype) for name, p in named]
    return mod, params


def _library_key(config: ModelConfig, q: Quantization, target: tvm.target.Target) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            [dataclasses.asdict(config), q.name, str(target), tvm.__version__], sort_keys=True, default=str
        ).encode()
    )
    for entry in LIBRARY_SOURCES:
        for path in (
            sorted((PACKAGE_DIR / entry).rglob("*.py"))
            if (PACKAGE_DIR / entry).is_dir()
            else [PACKAGE_DIR / entry]
        ):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def compiled_library(
    config: ModelConfig, q: Quantization, target_name: str, log: Callable[[str], None]
) -> tuple[Path, list[tuple[str, tuple[int, ...], str]]]:
    """The cached library for this model (compiling it if needed) and its parameter list."""
    target = webgpu_target() if target_name == "webgpu" else cpu_target()
    try:
        mod, params = build_module(config, q, target)
    except WebLLMBuildError:
        raise
    except Exception as exc:  # TVM raises its own error types while tracing the model
        raise CompileError(f"Exporting {config.architecture} ({q.name}) to Relax failed: {exc}") from None
    root = cache_dir() / "libs"
    final = root / _library_key(config, q, target)
    library = final / library_name(target_name)
    if library.is_file():
        return library, params
    sweep_stale_temps(root)
    runtime = build_runtime(log) if target_name == "webgpu" else None
    log(f"Compiling {config.architecture} ({q.name}) for {target_name}...")
    try:
        executable = compile_module(mod, target)
    except Exception as exc:  # TVM raises its own error types from deep inside passes
        raise CompileError(f"TVM failed to compile the model for {target_name}: {exc}") from None
    with atomic_directory(final, replace=False) as tmp:
        if runtime is not None:
            log("Linking the model library with emcc...")
            link_wasm(executable, tmp / library.name, runtime)
        else:
            executable.export_library(str(tmp / library.name))
    return library, params


def browser_config(
    checkpoint: Checkpoint,
    config: ModelConfig,
    q: Quantization,
    spec: str,
    params: list[tuple[str, tuple[int, ...], str]],
    files: dict[str, str],
) -> dict[str, Any]:
    return {
        "format": CONFIG_FORMAT,
        "model": spec,
        "architecture": config.architecture,
        "quantization": q.name,
        "dtype": q.model_dtype,
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_layers,
        "num_heads": config.num_heads,
        "num_kv_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "context_window": config.context_window,
        "prefill_chunk": config.prefill_chunk,
        "page_size": PAGE_SIZE,
        "bos_token_id": checkpoint.bos_token_id,
        "eos_token_ids": checkpoint.eos_token_ids,
        "chat_template": checkpoint.chat_template,
        "generation_config": checkpoint.generation_config,
        "required_features": q.required_features,
        **files,
        "param_names": [name for name, _, _ in params],
    }


def compile_model(
    options: CompileOptions, out: Path, log: Callable[[str], None] = lambda _m: None
) -> CompiledModel:
    """Resolve, load, compile, convert; writes `out` atomically (nothing partial on failure)."""
    if options.quantization is not None:
        get_quantization(options.quantization)  # fail before the slow checkpoint load
    source = resolve_model(options.model)
    checkpoint = load_checkpoint(source)
    preset = PRESETS.get(source.preset or "")
    q = get_quantization(options.quantization or (preset.quantization if preset else "q4f32_1"))
    config = model_config_for(checkpoint, options, q)
    library, params = compiled_library(config, q, options.target, log)

    log(f"Converting {len(params)} weight tensors ({q.name})...")
    fetch = checkpoint_fetcher(checkpoint.tensors, architecture_of(checkpoint.config, str(source.path)))
    with atomic_directory(out) as tmp:
        write_weights(
            model_parameters(params, fetch, q, str(source.path)),
            tmp,
            shard_mb=options.shard_mb,
            bf16=options.bf16,
            param_count=parameter_count(params),
        )
        files = {
            "library": content_hashed_copy(library, tmp, "model"),
            "tokenizer": write_content_hashed(checkpoint.tokenizer_json.encode(), tmp, "tokenizer", ".json"),
            "tensor_cache": TENSOR_CACHE_FILE,
        }
        settings = browser_config(checkpoint, config, q, options.model, params, files)
        config_text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        files["config"] = write_content_hashed(config_text.encode(), tmp, "webllm-config", ".json")
        index_extra = {
            "model": options.model,
            "quantization": q.name,
            "required_features": q.required_features,
        }
        write_model_index(tmp, files, index_extra)
    return CompiledModel(out, out / files["library"], settings)


def parameter_count(params: list[tuple[str, tuple[int, ...], str]]) -> int:
    """The model's parameter count: packed 4-bit words hold eight, scales are overhead."""
    count = 0
    for name, shape, _ in params:
        if name.endswith(".q_scale"):
            continue
        count += math.prod(shape) * (VALUES_PER_WORD if name.endswith(".q_weight") else 1)
    return count
