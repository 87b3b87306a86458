"""The Relax compilation pipeline for a model: TVM's per-target defaults plus our additions."""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.backend.gpu_generic import pipeline as gpu_generic
from tvm.target import Target

from webllm_build.compiler.attention import (
    AttentionShape,
    replace_attention,
    replace_cpu_sliding_prefill,
    replace_merge_state,
    replace_split_rotary,
)
from webllm_build.compiler.schedules import SCHEDULE_CLASSES, ScheduleClass, schedule_pass
from webllm_build.compiler.weight_layout import add_prepare_params


def model_pipeline(
    target: Target, schedule: ScheduleClass = SCHEDULE_CLASSES["gpu"], attention: AttentionShape | None = None
) -> tvm.transform.Pass:
    """TVM's default pipeline for `target`, preceded by the rewrites our models need.

    `nn.Linear` computes x @ transpose(w); unfused, the transpose becomes its own kernel that
    materialises every weight transposed, and the matmul no longer looks like a GEMV to dlight.
    For WebGPU, TVM's generic GPU pipeline is rebuilt with the TIR scheduling step of
    `schedule` (compiler/schedules.py) in place of its fixed dlight rules; `attention` (the KV
    cache's geometry) lets a class with its own attention kernels replace the cache's. Every
    library exports `prepare_params` (compiler/weight_layout.py), which relays 4-bit weights
    word-major once at load time for the classes that want them so.
    """
    if target.kind.name == "webgpu":
        default = _gpu_pipeline(target, schedule, attention)
    else:
        default = relax.pipeline.get_default_pipeline(target)

    @tvm.transform.module_pass(opt_level=0, name="webllm_build_pipeline")
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = relax.transform.FuseTransposeMatmul()(mod)
        mod = relax.transform.DeadCodeElimination()(mod)
        if target.kind.name != "webgpu":
            if attention is not None:
                mod = replace_cpu_sliding_prefill(mod, attention)
            mod = add_prepare_params(mod, word_major=False)
        return default(mod)

    return pipeline


def fusion_passes(target: Target) -> list[tvm.transform.Pass]:
    """TVM's WebGPU passes up to operator fusion: its gpu_generic library dispatch and legalize
    phases without their last step, the dlight rules, which the schedule classes replace."""
    return gpu_generic.library_dispatch_passes(target) + gpu_generic.legalize_passes(target)[:-1]


def _gpu_pipeline(
    target: Target, schedule: ScheduleClass, attention: AttentionShape | None
) -> tvm.transform.Pass:

    @tvm.transform.module_pass(opt_level=0, name="webllm_build_gpu_pipeline")
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        if attention is not None:
            mod = replace_merge_state(replace_split_rotary(mod, attention), attention)
            if schedule.own_attention:
                mod = replace_attention(mod, attention)
        with target:
            mod = tvm.transform.Sequential(fusion_passes(target))(mod)
            # After fusion, where the 4-bit matmuls and each weight's readers are known.
            mod = add_prepare_params(mod, word_major=schedule.word_major_weights)
            return tvm.transform.Sequential(
                [schedule_pass(schedule)]
                + gpu_generic.dataflow_lower_passes(target)
                + gpu_generic.finalize_passes(target)
            )(mod)

    return pipeline


def compile_module(
    mod: tvm.IRModule,
    target: Target,
    schedule: ScheduleClass = SCHEDULE_CLASSES["gpu"],
    attention: AttentionShape | None = None,
) -> tvm.runtime.Executable:
    return tvm.compile(mod, target, relax_pipeline=model_pipeline(target, schedule, attention))
