"""Benchmark (not a test): the gpu class's 4-bit matmul and GEMV kernels, tilings side by side on one GPU.

Compiles Phi-3.5-mini's linear layers (q4f16_1: qkv, o_proj + residual, gate_up, down +
residual, lm_head) for a 512-token prompt, as dlight's `Matmul` schedules them and as
compiler/q4_gpu.py's kernel in the tilings given, and for one token (decoding) as dlight's
`MultiRowGEMV` and q4_gpu.py's GEMVs (f32 and vec4 loads, and gpu-dot4's two-plane integer
one) in the tilings given, into a JSON file of WGSL, buffers
and launch grids; q4_kernels.js then runs them all in one Deno process on the same random
inputs, checks sampled outputs of every kernel (dlight's included) against a float64 sum on the
CPU, and times each (GPU timestamps around many launches in one compute pass, cycling through
enough copies of the weights that none is still in the GPU's cache). It measures the streaming
read bandwidth in the same process, as `bench`'s microbenchmark does.

    .venv/bin/python benchmarks/q4_kernels.py out/kernels.json --matmul 64,64,4,4 --gemv 32,4,2,384
    deno run -A benchmarks/q4_kernels.js out/kernels.json out/q4_kernels.jsonl

A matmul tiling is TOKENS,ROWS,THREAD_TOKENS,THREAD_ROWS and a GEMV tiling
LANES,ROW_THREADS,THREAD_ROWS,STAGE_WORDS (both repeatable); none given, q4_gpu.py's defaults.
--kinds matmul,gemv picks which to compile.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import tvm
from tvm import relax, s_tir, tirx
from tvm.relax.frontend import nn
from tvm.s_tir import dlight as dl

from webllm_build.compiler import q4_gpu
from webllm_build.compiler.pipeline import fusion_passes
from webllm_build.compiler.q4_fused import match_q4_matmul
from webllm_build.compiler.schedules import MultiRowGEMV
from webllm_build.compiler.target import webgpu_target
from webllm_build.quantize import GroupQuantLinear, get_quantization

HIDDEN, INTERMEDIATE = 3072, 8192
# name, in features, out features, residual add fused
LAYERS = [
    ("qkv", HIDDEN, 3 * HIDDEN, False),
    ("o_proj", HIDDEN, HIDDEN, True),
    ("gate_up", HIDDEN, 2 * INTERMEDIATE, False),
    ("down", INTERMEDIATE, HIDDEN, True),
    ("lm_head", HIDDEN, 32064, False),
]
PROMPT = 512


class _Linear(nn.Module):
    def __init__(self, k: int, n: int, residual: bool, quantization: str) -> None:
        self.proj = GroupQuantLinear(k, n, False, get_quantization(quantization))
        self.residual = residual

    def forward(self, x: nn.Tensor, r: nn.Tensor) -> nn.Tensor:
        y = self.proj(x)
        return r + y if self.residual else y


def fused_matmul(k: int, n: int, residual: bool, tokens: int | str, quantization: str) -> tirx.PrimFunc:
    """The fused 4-bit matmul function TVM's pipeline makes of one linear layer."""
    dtype = get_quantization(quantization).model_dtype
    spec = {
        "forward": {
            "x": nn.spec.Tensor([1, tokens, k], dtype),
            "r": nn.spec.Tensor([1, tokens, n], dtype),
            "$": {"param_mode": "packed"},
        }
    }
    mod, _ = _Linear(k, n, residual, quantization).export_tvm(spec=spec)
    target = webgpu_target()
    with target:
        mod = relax.transform.FuseTransposeMatmul()(mod)
        mod = tvm.transform.Sequential(fusion_passes(target))(mod)
    (func,) = [f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc) and match_q4_matmul(f)]
    return func


def _dlight(func: tirx.PrimFunc) -> tirx.PrimFunc:
    target = webgpu_target()
    mod = tvm.IRModule({"main": func})
    with target:
        mod = dl.ApplyDefaultSchedule(dl.gpu.Matmul(), dl.gpu.Fallback())(mod)
    return mod["main"]


def _multirow_gemv(func: tirx.PrimFunc) -> tirx.PrimFunc:
    mod = tvm.IRModule({"main": func})
    with webgpu_target():
        mod = dl.ApplyDefaultSchedule(MultiRowGEMV(), dl.gpu.Fallback())(mod)
    return mod["main"]


def _param_buffers(func: tirx.PrimFunc) -> list[tirx.Buffer]:
    """The buffers of `func`'s parameters, as its (unscheduled) blocks read and write them."""
    names = {p.name for p in func.params}
    found: dict[str, tirx.Buffer] = {}
    sch = s_tir.Schedule(func)
    for block_rv in sch.get_child_blocks(sch.get_sblock("root")):
        block = sch.get(block_rv)
        for region in [*block.reads, *block.writes]:
            if region.source.name in names:
                found[region.source.name] = region.source
    return list(found.values())


def _grid(func: tirx.PrimFunc, tokens: int) -> list[int]:
    """Workgroups along x and y of the scheduled `func` for `tokens` tokens, read from its
    TVMScript (TVM 0.27's Python has no TIR visitor)."""
    names = {"int64": int, "int32": int, "max": max, "min": min}
    extents = {"x": 1, "y": 1}
    for extent, axis in re.findall(r'T\.thread_binding\((.+?), thread="blockIdx\.([xy])"\)', func.script()):
        expression = re.sub(r"T\.(\w+)", r"\1", extent)
        extents[axis] *= int(eval(expression, {"__builtins__": {}}, {**names, "seq_len": tokens}))
    return [extents["x"], extents["y"]]


def _buffers(buffers: list[tirx.Buffer], tokens: int) -> dict[str, dict]:
    out = {}
    for buffer in buffers:
        count = 1
        for extent in buffer.shape:
            count *= tokens if isinstance(extent, tirx.Var) else int(extent)
        if buffer.dtype == "uint32x4":  # a view of the weight: filled and checked as its words
            out[buffer.name] = {"dtype": "uint32", "count": count * 4, "role": "weight"}
            continue
        role = "weight" if buffer.dtype == "uint32" else "scale" if "scale" in buffer.name else "activation"
        out[buffer.name] = {"dtype": buffer.dtype, "count": count, "role": role}
    return out


def kernel_entry(
    name: str, variant: str, func: tirx.PrimFunc, buffers: list[tirx.Buffer], tokens: int, residual: bool
) -> dict:
    built = tvm.tirx.build(func.with_attr("global_symbol", "main"), target=webgpu_target())
    return {
        "layer": name,
        "variant": variant,
        "tokens": tokens,
        "wgsl": built.imports[0].inspect_source(),
        "grid": _grid(func, tokens),
        "buffers": _buffers(buffers, tokens),
        "seq_len": tokens,
        "residual": residual,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--matmul", action="append", default=[])
    parser.add_argument("--gemv", action="append", default=[])
    parser.add_argument("--kinds", default="matmul,gemv")
    parser.add_argument("--quantization", default="q4f16_1")
    parser.add_argument("--prompt", type=int, default=PROMPT, help="prompt tokens of the prefill matmuls")
    parser.add_argument("--layers", default=",".join(name for name, *_ in LAYERS))
    args = parser.parse_args()
    tilings = [q4_gpu.MatmulTiling(*map(int, v.split(","))) for v in args.matmul] or [q4_gpu.MATMUL]
    gemv_tilings = [q4_gpu.GemvTiling(*map(int, v.split(","))) for v in args.gemv] or [q4_gpu.GEMV]
    entries = []
    for name, k, n, residual in LAYERS:
        if name not in args.layers.split(","):
            continue
        if "gemv" in args.kinds.split(","):
            decode = fused_matmul(k, n, residual, 1, args.quantization)
            buffers = _param_buffers(decode)
            entries.append(kernel_entry(name, "multirow", _multirow_gemv(decode), buffers, 1, residual))
            for tiling in gemv_tilings if args.gemv else [q4_gpu.TWO_PLANE_GEMV]:
                kernel = q4_gpu.gemv_two_plane_kernel(match_q4_matmul(decode), decode, tiling)
                if kernel is not None:
                    variant = f"two_plane{tuple(vars(tiling).values())}"
                    entries.append(kernel_entry(name, variant, kernel, buffers, 1, residual))
            for tiling in gemv_tilings:
                kernel = q4_gpu.gemv_kernel(match_q4_matmul(decode), decode, tiling)
                if kernel is None:
                    print(f"{name}: GEMV tiling {tiling} does not apply")
                    continue
                variant = f"gemv{tuple(vars(tiling).values())}"
                entries.append(kernel_entry(name, variant, kernel, buffers, 1, residual))
                match = match_q4_matmul(decode)
                with_view, vector = q4_gpu.with_vector_weight(decode, match.weight)
                kernel = q4_gpu.gemv_vector_kernel(match_q4_matmul(with_view), with_view, vector, tiling)
                if kernel is not None:
                    # The view holds the weight's own words: the lab fills it as the weight.
                    entries.append(
                        kernel_entry(
                            name,
                            f"vec4{tuple(vars(tiling).values())}",
                            kernel,
                            [*(b for b in buffers if not b.same_as(match.weight)), vector],
                            1,
                            residual,
                        )
                    )
        if "matmul" not in args.kinds.split(","):
            continue
        prefill = fused_matmul(k, n, residual, "seq_len", args.quantization)
        buffers = _param_buffers(prefill)
        entries.append(kernel_entry(name, "dlight", _dlight(prefill), buffers, args.prompt, residual))
        for tiling in tilings:
            kernel = q4_gpu.tiled_matmul_kernel(match_q4_matmul(prefill), prefill, tiling)
            variant = f"tiled{tuple(vars(tiling).values())}"
            entries.append(kernel_entry(name, variant, kernel, buffers, args.prompt, residual))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"quantization": args.quantization, "kernels": entries}))
    print(f"{len(entries)} kernels -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
