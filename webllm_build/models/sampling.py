"""Greedy sampling on the device: the index of the largest logit, as an int32.

A greedy step then reads back 4 bytes instead of the whole vocabulary's logits (196 KB for
SmolLM2), and the page waits for one tiny copy. Ties go to the lowest index, as numpy's and
the page's `argmax` do, so the GPU path picks exactly the tokens the CPU path would.

TVM's own argmax (`relax.op.argmax`) cannot serve: it returns int64, which WGSL has no type
for, so these kernels are written out. WebGPU gets one workgroup that scans strided and then
reduces in workgroup memory; the CPU reference build gets a plain loop.
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T
from tvm.target import Target

THREADS = 256  # WebGPU's guaranteed maxComputeInvocationsPerWorkgroup


def argmax_kernel(vocab: int, target: Target) -> tvm.tirx.PrimFunc:
    """(1, 1, vocab) float32 logits -> (1,) int32 token, for `target`."""
    return _workgroup_argmax(vocab) if target.kind.name == "webgpu" else _serial_argmax(vocab)


def _workgroup_argmax(vocab: int) -> tvm.tirx.PrimFunc:
    per_thread = (vocab + THREADS - 1) // THREADS

    @T.prim_func(s_tir=True)
    def argmax_kernel(logits: T.Buffer((1, 1, vocab), "float32"), token: T.Buffer((1,), "int32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for _ in T.thread_binding(1, thread="blockIdx.x"):
            for tx in T.thread_binding(THREADS, thread="threadIdx.x"):
                with T.sblock("argmax"):
                    T.reads()
                    T.writes()
                    best_value = T.sblock_alloc_buffer((THREADS,), "float32", scope="shared")
                    best_index = T.sblock_alloc_buffer((THREADS,), "int32", scope="shared")
                    value = T.sblock_alloc_buffer((1,), "float32", scope="local")
                    index = T.sblock_alloc_buffer((1,), "int32", scope="local")
                    other_value = T.sblock_alloc_buffer((1,), "float32", scope="local")
                    other_index = T.sblock_alloc_buffer((1,), "int32", scope="local")
                    # Threads past the vocabulary hold the lowest float at an index past it.
                    value[0] = T.min_value("float32")
                    index[0] = vocab
                    # A thread visits its indices in increasing order: strict > keeps the first.
                    for i in T.serial(per_thread):
                        at: T.let[T.int32] = i * THREADS + tx
                        if at < vocab:
                            if logits[0, 0, at] > value[0] or index[0] == vocab:
                                value[0] = logits[0, 0, at]
                                index[0] = at
                    best_value[tx] = value[0]
                    best_index[tx] = index[0]
                    # One barrier, then one thread walks the 256 partial results in thread
                    # order. A tree would need 16 barriers; each costs more on an emulator
                    # than the walk, and on a GPU the walk is a few microseconds.
                    T.tvm_storage_sync("shared")
                    if tx == 0:
                        for other in T.serial(1, THREADS):
                            other_value[0] = best_value[other]
                            other_index[0] = best_index[other]
                            if other_value[0] > value[0] or (
                                other_value[0] == value[0] and other_index[0] < index[0]
                            ):
                                value[0] = other_value[0]
                                index[0] = other_index[0]
                        token[0] = index[0]

    return argmax_kernel


def _serial_argmax(vocab: int) -> tvm.tirx.PrimFunc:
    @T.prim_func(s_tir=True)
    def argmax_kernel(logits: T.Buffer((1, 1, vocab), "float32"), token: T.Buffer((1,), "int32")):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("argmax"):
            T.reads(logits[0, 0, 0:vocab])
            T.writes(token[0])
            best = T.sblock_alloc_buffer((1,), "int32")
            best[0] = 0
            for i in T.serial(1, vocab):
                if logits[0, 0, i] > logits[0, 0, best[0]]:
                    best[0] = i
            token[0] = best[0]

    return argmax_kernel
