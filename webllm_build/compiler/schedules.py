"""Kernel schedule classes: which TIR schedules a WebGPU library gets, per kind of adapter.

- `gpu`: TVM's dlight rules (shared-memory tiles, cross-thread reductions), made for GPUs; the
  4-bit GEMVs of decoding tiled several rows a workgroup (`MultiRowGEMV`).
- `gpu-dot4`: `gpu`, but one token's 4-bit matmuls (decoding) multiply nibbles by activations
  held as 15-bit integers with WGSL's `dot4I8Packed` (compiler/q4_gpu.py,
  gemv_two_plane_kernel). It needs WGSL's packed_4x8_integer_dot_product; a page offered it
  and `gpu` takes it only where the browser compiles that.
- `cpu-emulated`: for fallback adapters such as SwiftShader, which run a shader on the CPU: a
  workgroup's invocations are executed 4 at a time (SIMD lanes) on one CPU thread and workgroups
  are spread over the CPU threads. There, workgroup memory and barriers are expensive (each
  barrier splits the shader into coroutines) and cross-thread reductions buy nothing, so every
  invocation owns whole outputs: a 4-bit matmul becomes the hand-written kernel of
  compiler/q4_matmul.py; any other matmul thread keeps a scheduled register tile of rows and
  walks the reduction axis alone; a row-wise reduction (RMSNorm, softmax) is one thread per
  row. Workgroups stay small (64-128 rows of a matmul), which measured several times faster on
  SwiftShader than larger ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base import try_inline
from tvm.target import Target

from webllm_build.compiler.q4_gpu import q4_gemv_two_plane, q4_gpu_kernel
from webllm_build.compiler.q4_matmul import q4_matmul_kernel
from webllm_build.errors import OptionsError
from webllm_build.q4_format import VALUES_PER_WORD


@dataclass(frozen=True)
class ScheduleClass:
    """A kind of WebGPU kernels, and what the build and the page need to know about it."""

    name: str
    # The adapters its kernels are made for: "fallback" ones report `isFallbackAdapter` (CPU
    # emulations); the page picks a library by this, read from the model index.
    adapter: Literal["hardware", "fallback"]
    # dlight rules, tried in order on every TIR function; the first that applies schedules it.
    rules: Callable[[], tuple[dl.ScheduleRule, ...]]
    # 4-bit weights relaid word-major once at load (compiler/weight_layout.py).
    word_major_weights: bool
    # The KV cache's attention kernels replaced by compiler/attention.py's.
    own_attention: bool
    # WGSL language features its kernels use beyond WebGPU's core (navigator.gpu.wgslLanguageFeatures).
    wgsl_features: tuple[str, ...] = ()


def _gpu_rules(*hand_written: dl.ScheduleRule) -> tuple[dl.ScheduleRule, ...]:
    """The `gpu` classes' rules: the hand-written prompt matmul, then `hand_written` (before
    dlight's GEMV, which would take the same functions), then dlight's."""
    return (
        HandWritten(q4_gpu_kernel),
        *hand_written,
        dl.gpu.Matmul(),
        MultiRowGEMV(),
        dl.gpu.Reduction(),
        dl.gpu.GeneralReduction(),
        dl.gpu.Fallback(),
    )


SCHEDULE_CLASSES: dict[str, ScheduleClass] = {
    "gpu": ScheduleClass(
        "gpu",
        adapter="hardware",
        rules=lambda: _gpu_rules(),
        word_major_weights=False,
        own_attention=False,
    ),
    "gpu-dot4": ScheduleClass(
        "gpu-dot4",
        adapter="hardware",
        rules=lambda: _gpu_rules(HandWritten(q4_gemv_two_plane)),
        word_major_weights=False,
        own_attention=False,
        wgsl_features=("packed_4x8_integer_dot_product",),
    ),
    "cpu-emulated": ScheduleClass(
        "cpu-emulated",
        adapter="fallback",
        rules=lambda: (HandWritten(q4_matmul_kernel), RegisterMatmul(), RowReduction(), dl.gpu.Fallback()),
        word_major_weights=True,
        own_attention=True,
    ),
}
# Both by default: a site then runs GPU kernels on GPUs and stays usable in headless CI
# (SwiftShader), at the cost of a second link per model.
DEFAULT_SCHEDULES = ("gpu", "cpu-emulated")

# Threads per workgroup of a row-wise reduction: one SIMD group, so that a 39-token prompt's rows
# still spread over 10 workgroups (and a single decoded row wastes no lanes beyond those 4).
ROW_THREADS = 4
# A matmul thread owns TILE_ROWS output rows of one token (each activation load then serves them
# all), MATMUL_THREADS threads a workgroup. Measured on SwiftShader with SmolLM2-135M (q4, K of
# 576 and 1536), 64 rows a workgroup as 64x1, 16x4 and 8x8 spent about 350, 190 and 165 ms in
# GEMVs per decoded token (8x8: 0.8 GMAC/s; 4x16 no better), while 128 or 256 rows a workgroup
# (32x4, 16x8, 64x4) were up to 9x slower, in prefill as in decode. Tiling tokens as well, over the dynamic
# sequence length, would leave a predicated local accumulator whose size TVM cannot bound for
# WebGPU.
MATMUL_THREADS = 8
TILE_ROWS = 8


def schedule_classes(names: tuple[str, ...]) -> tuple[ScheduleClass, ...]:
    """The classes named, in order and without repeats; OptionsError for an unknown name."""
    unknown = [n for n in names if n not in SCHEDULE_CLASSES]
    if unknown or not names:
        raise OptionsError(
            f"Unknown schedule class(es) {', '.join(unknown) or '(none given)'}; "
            f"choose from: {', '.join(SCHEDULE_CLASSES)}."
        )
    return tuple(SCHEDULE_CLASSES[n] for n in dict.fromkeys(names))


def schedule_pass(schedule: ScheduleClass):
    """The pass that schedules every TIR function of a fused module for `schedule`."""
    return dl.ApplyDefaultSchedule(*schedule.rules())


class MultiRowGEMV(dl.gpu.GEMV):
    """dlight's GEMV with the tiling it gives Metal: several rows a workgroup, no vector loads.

    dlight has no WebGPU tiling and falls back to one output row per 64-thread workgroup (a
    3072-wide 4-bit row is only 1.5 KB of work, then a 64-way shared-memory reduction). Its
    Metal tiling (4 rows x 16 threads where rows outnumber the reduction, else 2 x 64) needs
    nothing WGSL lacks; its Vulkan and ROCm tilings vectorize loads, which TVM's WGSL code
    generator rejects. Measured on an H200 under Deno (Phi-3.5-mini q4f16_1, interleaved, GPU
    time by timestamp queries): a decode step's kernels 5.63 -> 4.82 ms, the same 32 greedy
    tokens (benchmarks/results/h200_gemv_tiling.json).
    """

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool) -> s_tir.Schedule | None:
        # The rule reads only the target's kind and thread/shared-memory limits: ask it as Metal
        # with WebGPU's limits.
        as_metal = Target(
            {
                "kind": "metal",
                "max_num_threads": int(target.attrs["max_num_threads"]),
                "max_shared_memory_per_block": int(target.attrs["max_shared_memory_per_block"]),
                "thread_warp_size": 1,
            }
        )
        return super().apply(func, as_metal, tunable)


class _Rule(dl.ScheduleRule):
    """A rule that declines (None) where its pattern does not fit, instead of failing the build."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or "tirx.is_scheduled" in func.attrs:
            return None
        try:
            return self.schedule(s_tir.Schedule(func), target)
        except (s_tir.ScheduleError, ValueError):
            return None

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        raise NotImplementedError


class HandWritten(dl.ScheduleRule):
    """Functions that `write` takes (4-bit matmuls with fused elementwise epilogues) become the
    kernel it writes: compiler/q4_matmul.py's for the cpu-emulated class, q4_gpu.py's for gpu."""

    def __init__(self, write: Callable[[tirx.PrimFunc], tirx.PrimFunc | None]) -> None:
        self.write = write

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or "tirx.is_scheduled" in func.attrs:
            return None
        kernel = self.write(func)
        return s_tir.Schedule(kernel) if kernel is not None else None


def _static(extent) -> int | None:
    return int(extent) if isinstance(extent, tirx.IntImm) else None


class RegisterMatmul(_Rule):
    """y[m, n] = sum_k x[m, k] * w[n, k] (w possibly dequantized inline) + elementwise epilogues.

    One thread computes TILE_ROWS outputs of one token (one when decoding), accumulating in
    registers and walking k in steps of one packed word.
    """

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        infos = normalize_prim_func(sch)
        if infos is None:
            return None
        reductions = [b for b in infos if b.is_reduction()]
        if len(reductions) != 1 or "".join(reductions[0].dom_kind()).rstrip("R") != "S" * (
            len(reductions[0].dom_kind()) - 1
        ):
            return None
        block = reductions[0].block_rv
        if not _is_multiply_accumulate(sch.get(block)):
            return None
        infos = try_inline(sch, infos)
        if sum(1 for b in infos if b.is_reduction()) != 1 or not infos[0].is_reduction():
            return None
        epilogues = [b.block_rv for b in infos[1:]]
        loops = sch.get_loops(block)
        kinds = reductions[0].dom_kind()
        s_loops = [lp for lp, kind in zip(loops, kinds, strict=True) if kind == "S"]
        r_loops = [lp for lp, kind in zip(loops, kinds, strict=True) if kind == "R"]
        if not s_loops or len(r_loops) != 1:
            return None
        # normalize_prim_func drops unit loops: a GEMV (one token) has no token loop left.
        m = sch.fuse(*s_loops[:-1]) if len(s_loops) > 1 else sch.add_unit_loop(s_loops[0])
        n = s_loops[-1]
        (k,) = r_loops
        n_extent = _static(sch.get(n).extent)
        k_extent = _static(sch.get(k).extent)
        if n_extent is None or k_extent is None:
            return None
        tile_n = 1 if n_extent % TILE_ROWS else TILE_ROWS
        no, nt, ni = sch.split(n, [None, MATMUL_THREADS, tile_n])
        step = VALUES_PER_WORD if k_extent % VALUES_PER_WORD == 0 else 1
        ko, ki = sch.split(k, [None, step])
        sch.reorder(no, m, nt, ko, ki, ni)
        sch.bind(no, "blockIdx.x")
        sch.bind(m, "blockIdx.y")
        sch.bind(nt, "threadIdx.x")
        # Each step's packed words (one per row of the tile) are loaded into registers first, so
        # the eight nibbles unpacked from a word share one load. Measured on SwiftShader with
        # SmolLM2-135M: decode GEMVs 196 -> 162 ms a token. Staging the activations and scales
        # too was ~2x slower, and steps of a whole group (4 words) slower than one word.
        staged = []
        for index, region in enumerate(sch.get(block).reads):
            if region.source.dtype != "uint32":
                continue
            staged_block = sch.cache_read(block, index, "local")
            sch.compute_at(staged_block, ko, preserve_unit_loops=True)
            staged.append(staged_block)
        local = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(local, nt, preserve_unit_loops=True)
        for epilogue in epilogues:
            sch.reverse_compute_inline(epilogue)
        init = sch.decompose_reduction(block, ko)
        # Every loop over the register tile is unrolled: a dynamically indexed accumulator array
        # would live in memory on SwiftShader, not in registers.
        loops = [ki, ni, *sch.get_loops(init)[3:], *sch.get_loops(local)[3:]]
        for staged_block in staged:
            loops += sch.get_loops(staged_block)[4:]
        for loop in loops:
            sch.unroll(loop)
        return sch


def _is_multiply_accumulate(block: s_tir.SBlock) -> bool:
    body = block.body
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, tirx.Add):
        return False
    return isinstance(body.value.b, tirx.Mul)


class RowReduction(_Rule):
    """Row-wise reductions with row-wise consumers (RMSNorm, softmax): one thread per row.

    The reductions are computed under the consumer's row loop, so the whole function is one
    dispatch and nothing crosses threads.
    """

    def schedule(self, sch: s_tir.Schedule, target: Target) -> s_tir.Schedule | None:
        infos = normalize_prim_func(sch)
        if infos is None or not any(b.is_reduction() for b in infos):
            return None
        infos = try_inline(sch, infos)
        last = infos[-1]
        if last.is_reduction() or any(k != "S" for k in last.dom_kind()):
            return None
        loops = sch.get_loops(last.block_rv)
        # One row (a decoded token) has lost its unit row loop to normalize_prim_func.
        row = sch.fuse(*loops[:-1]) if len(loops) > 1 else sch.add_unit_loop(loops[0])
        rows = _static(sch.get(row).extent)
        bx, tx = sch.split(row, [None, ROW_THREADS if rows is None else min(rows, ROW_THREADS)])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        for info in reversed(infos[:-1]):
            sch.compute_at(info.block_rv, tx, preserve_unit_loops=True)
            # A row's partial results stay in its thread's registers.
            sch.set_scope(info.block_rv, 0, "local")
        return sch
