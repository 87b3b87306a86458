"""The Relax compilation pipeline for a model: TVM's per-target defaults plus our additions."""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.target import Target


def model_pipeline(target: Target) -> tvm.transform.Pass:
    """TVM's default pipeline for `target`, preceded by the rewrites our models need.

    `nn.Linear` computes x @ transpose(w); unfused, the transpose becomes its own kernel that
    materialises every weight transposed, and the matmul no longer looks like a GEMV to dlight.
    """
    default = relax.pipeline.get_default_pipeline(target)

    @tvm.transform.module_pass(opt_level=0, name="webllm_build_pipeline")
    def pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        mod = relax.transform.FuseTransposeMatmul()(mod)
        mod = relax.transform.DeadCodeElimination()(mod)
        return default(mod)

    return pipeline


def compile_module(mod: tvm.IRModule, target: Target) -> tvm.runtime.Executable:
    return tvm.compile(mod, target, relax_pipeline=model_pipeline(target))
