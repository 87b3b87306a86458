"""The build stage: a model plan in (plan.py), a directory the browser engine can run out.

    <out>/webllm-model.json          the index: names every file below with size and sha256
    <out>/model-<hash>.wasm          WebGPU kernels + wasm32 host code + the TVM runtime
                                     (model-<hash>.so for the CPU target, the fast reference)
    <out>/tensor-cache.json          the weight manifest, in tvmjs's format
    <out>/params-<hash>.bin          weight shards, converted and quantized (none with
                                     `random_weights`: the browser generates the weights)
    <out>/tokenizer-<hash>.json
    <out>/webllm-config-<hash>.json  everything else the browser needs (see `browser_config`)

Only the index and tensor-cache.json keep fixed names (short cache lifetime); every other file
is named by its content, so a CDN can cache it forever and a rebuild renames only what changed.

Compiled libraries are cached under `<cache>/libs/<key>/`, keyed by everything that shapes
them (plan.library_key), so rebuilding a site or rerunning tests does not recompile an
unchanged model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm

from webllm_build.artifacts import (
    TENSOR_CACHE_FILE,
    content_hashed_copy,
    write_content_hashed,
    write_model_index,
    write_weights,
)
from webllm_build.atomic import atomic_directory, sweep_stale_temps
from webllm_build.compiler.attention import AttentionShape
from webllm_build.compiler.link import link_wasm
from webllm_build.compiler.pipeline import compile_module
from webllm_build.compiler.runtime import build_runtime
from webllm_build.compiler.schedules import SCHEDULE_CLASSES, ScheduleClass
from webllm_build.compiler.target import cpu_target, webgpu_target
from webllm_build.convert import checkpoint_fetcher, checkpoint_groups, model_parameters
from webllm_build.errors import CompileError, WebLLMBuildError
from webllm_build.loaders.tokenizer_kind import tokenizer_kind
from webllm_build.memory import estimate_memory
from webllm_build.models import ModelConfig, architecture_of
from webllm_build.models.rotary import model_rotates, rotary_inv_freq
from webllm_build.paths import cache_dir
from webllm_build.plan import CONFIG_FORMAT, BuildOptions, ModelPlan, plan_model
from webllm_build.q4_format import BITS, PAIRED_SUFFIX, WIDE_BITS, values_per_word
from webllm_build.quantize import Quantization, quantize_modules
from webllm_build.random_weights import write_random_weights

PAGE_SIZE = 16


@dataclass(frozen=True)
class BuiltModel:
    directory: Path
    library: Path
    config: dict[str, Any]

    @property
    def tokenizer(self) -> Path:
        return self.directory / self.config["tokenizer"]


def library_name(target: str) -> str:
    return "model.wasm" if target == "webgpu" else "model.so"


def build_module(
    config: ModelConfig,
    q: Quantization,
    target: tvm.target.Target,
    wide: frozenset[str] = frozenset(),
    paired: frozenset[str] = frozenset(),
):
    """The exported IRModule and its parameter list (name, shape, dtype), in call order."""
    arch = architecture_of({"architectures": [config.architecture]}, config.architecture)
    model = arch.model_class(config, target)
    model.to(q.model_dtype)  # before quantizing: it would retype the packed uint32 weights too
    quantize_modules(model, q, wide, paired)
    mod, named = model.export_tvm(spec=model.export_spec())
    bounds = {"seq_len": config.prefill_chunk, "total_seq_len": config.context_window}
    for gvar, func in mod.functions_items():
        if isinstance(func, tvm.relax.Function):
            # Upper bounds let the memory planner reuse fixed-size buffers across calls.
            mod[gvar] = func.with_attr("tir_var_upper_bound", bounds)
    params = [(name, tuple(int(d) for d in p.shape), p.dtype) for name, p in named]
    return mod, params


Params = list[tuple[str, tuple[int, ...], str]]
# Written beside each cached library: the parameter list it takes, so a cache hit skips
# exporting the model to Relax (~5 s of TVMScript parsing for the KV cache's kernels alone).
PARAMS_FILE = "params.json"


def compiled_libraries(plan: ModelPlan, log: Callable[[str], None]) -> tuple[dict[str, Path], Params]:
    """The cached library of each of the plan's schedule classes, compiling the missing ones from
    one export of the model, and its parameter list (name, shape, dtype) in the order the
    libraries take them."""
    config, q, target_name = plan.config, plan.quantization, plan.options.target
    root = cache_dir() / "libs"
    libraries = {c: root / plan.library_keys[c] / library_name(target_name) for c in plan.schedules}
    missing = [c for c, library in libraries.items() if not library.is_file()]
    if not missing:
        saved = json.loads((libraries[plan.schedules[0]].parent / PARAMS_FILE).read_text())
        return libraries, [(name, tuple(shape), dtype) for name, shape, dtype in saved]
    target = webgpu_target() if target_name == "webgpu" else cpu_target()
    try:
        mod, params = build_module(config, q, target, plan.wide_modules, plan.paired_modules)
    except WebLLMBuildError:
        raise
    except Exception as exc:  # TVM raises its own error types while tracing the model
        raise CompileError(f"Exporting {config.architecture} ({q.name}) to Relax failed: {exc}") from None
    sweep_stale_temps(root)
    runtime = build_runtime(log) if target_name == "webgpu" else None
    # Where the cache rotates (the model does not), our kernel rotates for it.
    inv_freq = () if model_rotates(config) else tuple(float(f) for f in rotary_inv_freq(config, 0))
    attention = AttentionShape(
        config.num_kv_heads,
        config.num_heads,
        config.head_dim,
        q.model_dtype,
        config.sliding_window,
        config.rotary_dim,
        inv_freq,
    )
    for schedule_class in missing:
        log(f"Compiling {config.architecture} ({q.name}) for {target_name} ({schedule_class} schedules)...")
        try:
            if target_name == "webgpu":
                executable = compile_module(mod, target, SCHEDULE_CLASSES[schedule_class], attention)
            else:
                executable = compile_module(mod, target, attention=attention)
        except Exception as exc:  # TVM raises its own error types from deep inside passes
            raise CompileError(f"TVM failed to compile the model for {target_name}: {exc}") from None
        library = libraries[schedule_class]
        with atomic_directory(library.parent, replace=False) as tmp:
            if runtime is not None:
                log("Linking the model library with emcc...")
                link_wasm(executable, tmp / library.name, runtime)
            else:
                executable.export_library(str(tmp / library.name))
            (tmp / PARAMS_FILE).write_text(json.dumps(params))
    return libraries, params


def browser_config(plan: ModelPlan, params: Params, files: dict[str, str]) -> dict[str, Any]:
    checkpoint, config, q = plan.checkpoint, plan.config, plan.quantization
    return {
        "format": CONFIG_FORMAT,
        "model": plan.options.model,
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
        "random_weights": plan.options.random_weights,
        "tokenizer_stand_in": checkpoint.tokenizer_stand_in,
        "tokenizer_kind": tokenizer_kind(checkpoint.tokenizer_json),
        **files,
        "param_names": [name for name, _, _ in params],
    }


def build_model(plan: ModelPlan, out: Path, log: Callable[[str], None] = lambda _m: None) -> BuiltModel:
    """Compile (or take from the cache), convert and write `out` atomically (nothing partial on
    failure). The index records the plan's key, so a later build can tell it is up to date."""
    options, checkpoint, q = plan.options, plan.checkpoint, plan.quantization
    # One library per schedule class: a page loads only the one that suits its adapter, and
    # SwiftShader compiles every shader of a library up front (seconds), so a library holding
    # both variants would make every page pay for kernels it never runs.
    classes = plan.schedules
    libraries, params = compiled_libraries(plan, log)
    library = libraries[classes[0]]

    # How each quantized weight was made: taken over exactly from the file's groups, or rounded.
    weight_import: dict[str, str] = {}
    with atomic_directory(out) as tmp:
        if options.random_weights:
            log(f"Writing the recipe of {len(params)} random weight tensors ({q.name})...")
            count = parameter_count(params, plan.wide_modules)
            write_random_weights(params, tmp, param_count=count, bf16=options.bf16)
        else:
            log(f"Converting {len(params)} weight tensors ({q.name})...")
            source = str(checkpoint.source.path)
            arch = architecture_of(checkpoint.config, source)
            fetch, fetch_groups = (
                checkpoint_fetcher(checkpoint.tensors, arch),
                checkpoint_groups(checkpoint.tensors, arch),
            )
            write_weights(
                model_parameters(
                    params,
                    fetch,
                    q,
                    source,
                    fetch_groups,
                    weight_import,
                    plan.wide_modules,
                    plan.paired_modules,
                ),
                tmp,
                shard_mb=options.shard_mb,
                bf16=options.bf16,
                param_count=parameter_count(params, plan.wide_modules),
            )
        files = {
            "library": content_hashed_copy(library, tmp, "model"),
            "tokenizer": write_content_hashed(checkpoint.tokenizer_json.encode(), tmp, "tokenizer", ".json"),
            "tensor_cache": TENSOR_CACHE_FILE,
        }
        settings = browser_config(plan, params, files)
        config_text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
        files["config"] = write_content_hashed(config_text.encode(), tmp, "webllm-config", ".json")
        index_extra = {
            "model": options.model,
            "quantization": q.name,
            "required_features": q.required_features,
            "random_weights": options.random_weights,
            "plan_key": plan.key,
            "weight_import": weight_import,
            # What the page checks against the visitor's GPU before downloading (memory.py).
            "memory": estimate_memory(plan.config, params, PAGE_SIZE, q.model_dtype).to_json(),
        }
        if options.target == "webgpu":
            index_extra["schedules"] = list(classes)
            # What the page needs to pick a library for its adapter (web/src/model.ts).
            index_extra["schedule_classes"] = {c: _class_entry(SCHEDULE_CLASSES[c]) for c in classes}
            for c in classes[1:]:
                files[f"library:{c}"] = content_hashed_copy(libraries[c], tmp, "model")
            files[f"library:{classes[0]}"] = files["library"]
        write_model_index(tmp, files, index_extra)
    return BuiltModel(out, out / files["library"], settings)


def _class_entry(schedule: ScheduleClass) -> dict:
    """What the page reads of a schedule class to pick a library (web/src/model.ts)."""
    entry: dict = {"adapter": schedule.adapter}
    if schedule.wgsl_features:
        entry["wgsl_features"] = list(schedule.wgsl_features)
    return entry


def plan_and_build(
    options: BuildOptions, out: Path, log: Callable[[str], None] = lambda _m: None
) -> BuiltModel:
    """One model from options to directory: `webllm_build compile`, and tests."""
    return build_model(plan_model(options), out, log)


def parameter_count(params: Params, wide: frozenset[str] = frozenset()) -> int:
    """The model's parameter count: a packed word holds eight 4-bit values (four in a module kept
    at 8 bits); scales and minimums are overhead."""
    count = 0
    for name, shape, _ in params:
        if name.endswith((".q_scale", ".q_min", PAIRED_SUFFIX)):
            continue
        base = name.removesuffix(".q_weight")
        per_word = values_per_word(WIDE_BITS if base in wide else BITS) if base != name else 1
        count += math.prod(shape) * per_word
    return count
