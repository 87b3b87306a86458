"""Paged-KV-cache attention kernels for CPU-emulated adapters (the `cpu-emulated` schedule class).

TVM's KV cache generates its attention kernels for a GPU: K/V tiles staged through workgroup
memory, cross-thread online softmax, barriers everywhere; on SwiftShader a decode step's 30
attention calls then cost more than all its matmuls. These replacements keep the signatures
the cache runtime calls (same handles, scalars and outputs, lse in the same base-2 form so
`merge_state` still combines paged and ragged parts). Prefill gives each (query token, query
head) one thread that walks the keys alone with an online softmax: a prompt has threads enough,
and what costs on an emulator is synchronisation. Decode, one query token, splits each KV head's
keys over a SIMD group's threads instead and merges their softmax states once at the end.

Sliding-window layers (Gemma 3's local ones) get the same kernels reading the cache's sliding
page table. Inline rotary (`rotary_mode == 1`, RopeMode.INLINE) is not implemented: our models
run the cache with RopeMode.NORMAL (q and k rotated before they reach these kernels) or NONE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tvm
from tvm.script import tirx as T

from webllm_build.models.rotary import split_rotary_kernel

LOG2E = math.log2(math.e)
# The cache's own initial running max (a large negative number, not -inf, so exp2 stays finite).
NEG_LARGE = -5e4


@dataclass(frozen=True)
class AttentionShape:
    """What the cache's kernels are generated for (TIRPagedKVCache's own arguments)."""

    kv_heads: int
    heads: int
    head_dim: int
    dtype: str
    # The window of the model's sliding-window layers (Gemma 3's local ones), if any.
    sliding_window: int | None = None
    # Where the cache rotates q and k: the rotated width and its frequencies (else empty).
    rotary_dim: int = 0
    inv_freq: tuple[float, ...] = ()


def replace_attention(mod: tvm.IRModule, shape: AttentionShape) -> tvm.IRModule:
    """`mod` with the cache's GPU attention kernels swapped for one-thread-per-head ones."""
    factories = {
        "batch_decode_paged_kv": _decode,
        "batch_prefill_paged_kv": _prefill_paged,
        "batch_prefill_ragged_kv": _prefill_ragged,
    }
    if shape.sliding_window:  # the cache always has these two; only sliding layers call them
        window = shape.sliding_window
        factories["batch_decode_paged_kv_sliding_window"] = lambda *a: _decode(*a, window=window)
        factories["batch_prefill_paged_kv_sliding_window"] = lambda *a: _prefill_paged(*a, window=window)
    for gvar, func in list(mod.functions_items()):
        if gvar.name_hint in factories and isinstance(func, tvm.tirx.PrimFunc):
            new = factories[gvar.name_hint](shape.kv_heads, shape.heads, shape.head_dim, shape.dtype)
            mod[gvar] = new.with_attr("global_symbol", gvar.name_hint)
    return mod


def _info_shape(batch, window: int):
    """The cache's `length_info`: the last page's length per sequence, and for sliding-window
    layers (`window` > 0) two more rows, the window's offset into the table's first page and
    the attention-sink length ([3, batch], as TVM's _kernel_common.py reads it)."""
    return (3, batch) if window else (batch,)


def _table_length(length_info, b, num_pages, page_size: int, window: int):
    """How many keys sequence `b`'s page table holds."""
    if not window:
        return T.Select(num_pages > 0, (num_pages - 1) * page_size + length_info[b], 0)
    full = (num_pages - 1) * page_size + length_info[0, b] - length_info[1, b] + length_info[2, b]
    return T.Select(num_pages > 0, full, 0)


def _causal_end(kv_len, qo_len, r, window: int):
    """One past the last cached key that chunk row r may see (all of them in a window)."""
    return kv_len if window else T.min(kv_len, kv_len - qo_len + r + 1)


def _window_start(kv_len, r, window: int):
    """The first cached key inside chunk row r's window."""
    return T.max(kv_len - T.max(window - r - 1, 0), 0) if window else 0


def _table_position(length_info, b, pos, window: int):
    """Where key `pos` of the table sits in its pages: past the sink, shifted by the offset."""
    if not window:
        return pos
    return T.Select(pos < length_info[2, b], pos, pos - length_info[2, b] + length_info[1, b])


# Decode attention: a KV head's keys are split between DECODE_SPLIT threads (key j goes to thread
# j % DECODE_SPLIT), each running an online softmax for every query head that shares the KV head;
# the partial results are merged through workgroup memory once, at the end. On SwiftShader a
# workgroup runs on one CPU thread, 4 invocations to an instruction, and a load whose address
# differs between invocations is a gather: one workgroup per KV head, its 4 threads a whole SIMD
# group, keeps every lane busy, reads each cached value once for all the query heads of its
# group, and spreads the KV heads over the CPU's cores (measurements: docs/kernels.md).
DECODE_SPLIT = 4


def _decode(h_kv: int, h_q: int, d: int, dtype: str, page_size: int = 16, window: int = 0):
    """Decode attention; with `window`, for sliding-window layers (the cache's sliding page table
    then holds exactly the window's keys)."""
    group = h_q // h_kv
    log2e = LOG2E
    split = DECODE_SPLIT
    # The merge: thread t writes out the head's values t, t + split, ...
    out_per_thread = (d + split - 1) // split

    @T.prim_func(s_tir=True)
    def batch_decode_paged_kv(
        q_handle: T.handle,
        pages_handle: T.handle,
        page_indptr_handle: T.handle,
        page_values_handle: T.handle,
        length_info_handle: T.handle,
        k_rope_pos_offset_handle: T.handle,
        q_rope_position_handle: T.handle,
        output_handle: T.handle,
        lse_handle: T.handle,
        rotary_mode: T.int32,
        rope_scale: T.float32,
        rope_theta: T.float32,
        sm_scale: T.float32,
    ):
        T.func_attr({"tirx.is_scheduled": True})
        batch = T.int32()
        nnz_pages = T.int32()
        max_pages = T.int32()
        pages_offset = T.int64()
        indptr_offset = T.int32()
        values_offset = T.int32()
        k_pos_offset = T.int32()
        q_pos_offset = T.int32()
        length_offset = T.int32()
        q = T.match_buffer(q_handle, (batch, h_q, d), dtype)
        pages = T.match_buffer(
            pages_handle, (max_pages, 2, h_kv, page_size, d), dtype, elem_offset=pages_offset
        )
        page_indptr = T.match_buffer(page_indptr_handle, (batch + 1,), "int32", elem_offset=indptr_offset)
        page_values = T.match_buffer(page_values_handle, (nnz_pages,), "int32", elem_offset=values_offset)
        length_info = T.match_buffer(
            length_info_handle, _info_shape(batch, window), "int32", elem_offset=length_offset
        )
        T.match_buffer(k_rope_pos_offset_handle, (batch,), "int32", elem_offset=k_pos_offset)
        T.match_buffer(q_rope_position_handle, (batch,), "int32", elem_offset=q_pos_offset)
        output = T.match_buffer(output_handle, (batch, h_q, d), dtype)
        lse = T.match_buffer(lse_handle, (batch, h_q), "float32")

        for b in T.thread_binding(batch, thread="blockIdx.x"):
            for kv in T.thread_binding(h_kv, thread="blockIdx.y"):
                for t in T.thread_binding(split, thread="threadIdx.x"):
                    with T.sblock("attn"):
                        # Regions would be inferred from let-bound lengths, which live inside the block.
                        T.reads()
                        T.writes()
                        acc = T.sblock_alloc_buffer((group * d,), "float32", scope="local")
                        q_local = T.sblock_alloc_buffer((group * d,), "float32", scope="local")
                        # Per query head of the group: running max, sum; then the score.
                        state = T.sblock_alloc_buffer((2 * group + 1,), "float32", scope="local")
                        merged = T.sblock_alloc_buffer((3,), "float32", scope="local")  # max, sum, value
                        stats = T.sblock_alloc_buffer((2 * split,), "float32", scope="shared")
                        parts = T.sblock_alloc_buffer((split * d,), "float32", scope="shared")
                        first: T.let[T.int32] = page_indptr[b]
                        num_pages: T.let[T.int32] = page_indptr[b + 1] - first
                        length: T.let[T.int32] = _table_length(length_info, b, num_pages, page_size, window)
                        for g in T.unroll(group):
                            for i in T.unroll(d):
                                acc[g * d + i] = T.float32(0)
                                q_local[g * d + i] = (
                                    T.Cast("float32", q[b, kv * group + g, i]) * sm_scale * T.float32(log2e)
                                )
                            state[2 * g] = T.float32(NEG_LARGE)
                            state[2 * g + 1] = T.float32(0)
                        for step in T.serial((length - t + split - 1) // split):
                            at: T.let[T.int32] = _table_position(length_info, b, step * split + t, window)
                            page: T.let[T.int32] = page_values[first + at // page_size]
                            slot: T.let[T.int32] = at % page_size
                            for g in T.unroll(group):
                                state[2 * group] = T.float32(0)
                                for i in T.unroll(d):
                                    state[2 * group] = state[2 * group] + q_local[g * d + i] * T.Cast(
                                        "float32", pages[page, 0, kv, slot, i]
                                    )
                                new_max: T.let[T.float32] = T.max(state[2 * g], state[2 * group])
                                rescale: T.let[T.float32] = T.exp2(state[2 * g] - new_max)
                                weight: T.let[T.float32] = T.exp2(state[2 * group] - new_max)
                                state[2 * g + 1] = state[2 * g + 1] * rescale + weight
                                state[2 * g] = new_max
                                for i in T.unroll(d):
                                    acc[g * d + i] = acc[g * d + i] * rescale + weight * T.Cast(
                                        "float32", pages[page, 1, kv, slot, i]
                                    )
                        # Merge, a query head at a time: every thread rescales its part to the
                        # head's maximum over all threads.
                        for g in T.unroll(group):
                            T.tvm_storage_sync("shared")
                            stats[t] = state[2 * g]
                            T.tvm_storage_sync("shared")
                            merged[0] = stats[0]
                            for j in T.unroll(1, split):
                                merged[0] = T.max(merged[0], stats[j])
                            rescale_own: T.let[T.float32] = T.exp2(state[2 * g] - merged[0])
                            stats[split + t] = state[2 * g + 1] * rescale_own
                            for i in T.unroll(d):
                                parts[t * d + i] = acc[g * d + i] * rescale_own
                            T.tvm_storage_sync("shared")
                            merged[1] = T.float32(0)
                            for j in T.unroll(split):
                                merged[1] = merged[1] + stats[split + j]
                            for k in T.unroll(out_per_thread):
                                if k * split + t < d:
                                    merged[2] = T.float32(0)
                                    for j in T.unroll(split):
                                        merged[2] = merged[2] + parts[j * d + k * split + t]
                                    output[b, kv * group + g, k * split + t] = T.Cast(
                                        dtype, merged[2] / T.max(merged[1], T.float32(1e-30))
                                    )
                            if t == 0:
                                lse[b, kv * group + g] = merged[0] + T.log2(
                                    T.max(merged[1], T.float32(1e-30))
                                )

    return batch_decode_paged_kv


def replace_cpu_sliding_prefill(mod: tvm.IRModule, shape: AttentionShape) -> tvm.IRModule:
    """`mod` (a CPU build) with the cache's sliding-window prefill kernel swapped for ours, run
    serially. TVM 0.27's CPU kernel reads its running maximum before setting it when a chunk
    row's first cached key lies outside the window (always so once a sequence outgrows the
    window): uninitialised memory, which gave NaN logits once an earlier model had left
    garbage there (tests/test_models.py, Gemma 3 after other models in one process)."""
    if not shape.sliding_window:
        return mod
    for gvar, func in list(mod.functions_items()):
        if gvar.name_hint == "batch_prefill_paged_kv_cpu_sliding_window" and isinstance(
            func, tvm.tirx.PrimFunc
        ):
            heads = (shape.kv_heads, shape.heads, shape.head_dim, shape.dtype)
            new = _prefill_paged(*heads, window=shape.sliding_window, cpu=True)
            mod[gvar] = new.with_attr("global_symbol", gvar.name_hint)
    return mod


def _parallel(extent, thread: str, cpu: bool):
    """A loop over `extent` bound to a GPU thread axis, or a plain loop on the CPU."""
    return T.serial(extent) if cpu else T.thread_binding(extent, thread=thread)


def _prefill_paged(
    h_kv: int, h_q: int, d: int, dtype: str, page_size: int = 16, window: int = 0, cpu: bool = False
):
    """A prompt chunk's attention to the cached pages; with `window`, for sliding-window layers:
    chunk row r sees the last `window - r - 1` cached keys (the rest of its window is in the
    chunk itself, which the ragged kernel covers, as the chunk is never longer than the window)."""
    group = h_q // h_kv
    log2e = LOG2E

    @T.prim_func(s_tir=True)
    def batch_prefill_paged_kv(
        q_handle: T.handle,
        q_indptr_handle: T.handle,
        pages_handle: T.handle,
        page_indptr_handle: T.handle,
        page_values_handle: T.handle,
        length_info_handle: T.handle,
        k_rope_pos_offset_handle: T.handle,
        q_rope_position_handle: T.handle,
        output_handle: T.handle,
        lse_handle: T.handle,
        causal: T.int32,
        rotary_mode: T.int32,
        rope_scale: T.float32,
        rope_theta: T.float32,
        sm_scale: T.float32,
    ):
        T.func_attr({"tirx.is_scheduled": True})
        batch = T.int32()
        total = T.int32()
        nnz_pages = T.int32()
        max_pages = T.int32()
        pages_offset = T.int64()
        q_indptr_offset = T.int32()
        indptr_offset = T.int32()
        values_offset = T.int32()
        k_pos_offset = T.int32()
        q_pos_offset = T.int32()
        length_offset = T.int32()
        q = T.match_buffer(q_handle, (total, h_q, d), dtype)
        q_indptr = T.match_buffer(q_indptr_handle, (batch + 1,), "int32", elem_offset=q_indptr_offset)
        pages = T.match_buffer(
            pages_handle, (max_pages, 2, h_kv, page_size, d), dtype, elem_offset=pages_offset
        )
        page_indptr = T.match_buffer(page_indptr_handle, (batch + 1,), "int32", elem_offset=indptr_offset)
        page_values = T.match_buffer(page_values_handle, (nnz_pages,), "int32", elem_offset=values_offset)
        length_info = T.match_buffer(
            length_info_handle, _info_shape(batch, window), "int32", elem_offset=length_offset
        )
        T.match_buffer(k_rope_pos_offset_handle, (batch,), "int32", elem_offset=k_pos_offset)
        T.match_buffer(q_rope_position_handle, (total,), "int32", elem_offset=q_pos_offset)
        output = T.match_buffer(output_handle, (total, h_q, d), dtype)
        lse = T.match_buffer(lse_handle, (total, h_q), "float32")

        for row in _parallel(total, "blockIdx.x", cpu):
            for b in _parallel(batch, "blockIdx.y", cpu):
                for h in _parallel(h_q, "threadIdx.x", cpu):
                    with T.sblock("attn"):
                        # Regions would be inferred from let-bound lengths, which live inside the block.
                        T.reads()
                        T.writes()
                        acc = T.sblock_alloc_buffer((d,), "float32", scope="local")
                        q_local = T.sblock_alloc_buffer((d,), "float32", scope="local")
                        state = T.sblock_alloc_buffer((3,), "float32", scope="local")  # max, sum, score
                        # Rows of other sequences are another (row, b) pair's work.
                        if q_indptr[b] <= row and row < q_indptr[b + 1]:
                            first: T.let[T.int32] = page_indptr[b]
                            num_pages: T.let[T.int32] = page_indptr[b + 1] - first
                            kv_len: T.let[T.int32] = _table_length(
                                length_info, b, num_pages, page_size, window
                            )
                            qo_len: T.let[T.int32] = q_indptr[b + 1] - q_indptr[b]
                            r: T.let[T.int32] = row - q_indptr[b]
                            # Causal: query r of qo_len sees the keys up to kv_len - qo_len + r
                            # (in a window, the cached part of its window: the last W - r - 1).
                            visible: T.let[T.int32] = T.Select(
                                causal > 0, _causal_end(kv_len, qo_len, r, window), kv_len
                            )
                            skipped: T.let[T.int32] = T.Select(
                                causal > 0, _window_start(kv_len, r, window), 0
                            )
                            for i in T.unroll(d):
                                acc[i] = T.float32(0)
                                q_local[i] = T.Cast("float32", q[row, h, i])
                            state[0] = T.float32(NEG_LARGE)
                            state[1] = T.float32(0)
                            for pos in T.serial(skipped, visible):
                                at: T.let[T.int32] = _table_position(length_info, b, pos, window)
                                page: T.let[T.int32] = page_values[first + at // page_size]
                                slot: T.let[T.int32] = at % page_size
                                state[2] = T.float32(0)
                                for i in T.unroll(d):
                                    state[2] = state[2] + q_local[i] * T.Cast(
                                        "float32", pages[page, 0, h // group, slot, i]
                                    )
                                state[2] = state[2] * sm_scale * T.float32(log2e)
                                new_max: T.let[T.float32] = T.max(state[0], state[2])
                                rescale: T.let[T.float32] = T.exp2(state[0] - new_max)
                                weight: T.let[T.float32] = T.exp2(state[2] - new_max)
                                state[1] = state[1] * rescale + weight
                                state[0] = new_max
                                for i in T.unroll(d):
                                    acc[i] = acc[i] * rescale + weight * T.Cast(
                                        "float32", pages[page, 1, h // group, slot, i]
                                    )
                            for i in T.unroll(d):
                                output[row, h, i] = T.Cast(dtype, acc[i] / T.max(state[1], T.float32(1e-30)))
                            lse[row, h] = state[0] + T.log2(T.max(state[1], T.float32(1e-30)))

    return batch_prefill_paged_kv


def _prefill_ragged(h_kv: int, h_q: int, d: int, dtype: str):
    group = h_q // h_kv
    log2e = LOG2E

    @T.prim_func(s_tir=True)
    def batch_prefill_ragged_kv(
        q_handle: T.handle,
        q_indptr_handle: T.handle,
        k_handle: T.handle,
        v_handle: T.handle,
        kv_indptr_handle: T.handle,
        q_rope_position_handle: T.handle,
        k_rope_pos_offset_handle: T.handle,
        output_handle: T.handle,
        lse_handle: T.handle,
        causal: T.int32,
        rotary_mode: T.int32,
        rope_scale: T.float32,
        rope_theta: T.float32,
        sm_scale: T.float32,
    ):
        T.func_attr({"tirx.is_scheduled": True})
        batch = T.int32()
        qo_total = T.int32()
        kv_total = T.int32()
        q_indptr_offset = T.int32()
        kv_indptr_offset = T.int32()
        q_pos_offset = T.int32()
        k_pos_offset = T.int32()
        q = T.match_buffer(q_handle, (qo_total, h_q, d), dtype)
        q_indptr = T.match_buffer(q_indptr_handle, (batch + 1,), "int32", elem_offset=q_indptr_offset)
        k = T.match_buffer(k_handle, (kv_total, h_kv, d), dtype)
        v = T.match_buffer(v_handle, (kv_total, h_kv, d), dtype)
        kv_indptr = T.match_buffer(kv_indptr_handle, (batch + 1,), "int32", elem_offset=kv_indptr_offset)
        T.match_buffer(q_rope_position_handle, (qo_total,), "int32", elem_offset=q_pos_offset)
        T.match_buffer(k_rope_pos_offset_handle, (batch,), "int32", elem_offset=k_pos_offset)
        output = T.match_buffer(output_handle, (qo_total, h_q, d), dtype)
        lse = T.match_buffer(lse_handle, (qo_total, h_q), "float32")

        for row in T.thread_binding(qo_total, thread="blockIdx.x"):
            for b in T.thread_binding(batch, thread="blockIdx.y"):
                for h in T.thread_binding(h_q, thread="threadIdx.x"):
                    with T.sblock("attn"):
                        # Regions would be inferred from let-bound lengths, which live inside the block.
                        T.reads()
                        T.writes()
                        acc = T.sblock_alloc_buffer((d,), "float32", scope="local")
                        q_local = T.sblock_alloc_buffer((d,), "float32", scope="local")
                        state = T.sblock_alloc_buffer((3,), "float32", scope="local")  # max, sum, score
                        # Rows of other sequences are another (row, b) pair's work.
                        if q_indptr[b] <= row and row < q_indptr[b + 1]:
                            kv_first: T.let[T.int32] = kv_indptr[b]
                            kv_len: T.let[T.int32] = kv_indptr[b + 1] - kv_first
                            qo_len: T.let[T.int32] = q_indptr[b + 1] - q_indptr[b]
                            visible: T.let[T.int32] = T.Select(
                                causal > 0, T.min(kv_len, kv_len - qo_len + (row - q_indptr[b]) + 1), kv_len
                            )
                            for i in T.unroll(d):
                                acc[i] = T.float32(0)
                                q_local[i] = T.Cast("float32", q[row, h, i])
                            state[0] = T.float32(NEG_LARGE)
                            state[1] = T.float32(0)
                            for pos in T.serial(visible):
                                state[2] = T.float32(0)
                                for i in T.unroll(d):
                                    state[2] = state[2] + q_local[i] * T.Cast(
                                        "float32", k[kv_first + pos, h // group, i]
                                    )
                                state[2] = state[2] * sm_scale * T.float32(log2e)
                                new_max: T.let[T.float32] = T.max(state[0], state[2])
                                rescale: T.let[T.float32] = T.exp2(state[0] - new_max)
                                weight: T.let[T.float32] = T.exp2(state[2] - new_max)
                                state[1] = state[1] * rescale + weight
                                state[0] = new_max
                                for i in T.unroll(d):
                                    acc[i] = acc[i] * rescale + weight * T.Cast(
                                        "float32", v[kv_first + pos, h // group, i]
                                    )
                            for i in T.unroll(d):
                                output[row, h, i] = T.Cast(dtype, acc[i] / T.max(state[1], T.float32(1e-30)))
                            lse[row, h] = state[0] + T.log2(T.max(state[1], T.float32(1e-30)))

    return batch_prefill_ragged_kv


def replace_split_rotary(mod: tvm.IRModule, shape: AttentionShape) -> tvm.IRModule:
    """`mod` with the cache's split-and-rotate kernel swapped for ours (models/rotary.py): the
    frequencies as transformers computes them and sin / cos to f32 accuracy. TVM's uses the
    GPU's own, which on SwiftShader are off by ~1.9e-4 (a tiny Llama's logits by ~1.5e-3)."""
    if not shape.inv_freq:
        return mod
    for gvar, func in list(mod.functions_items()):
        # TVM adds it as `tir_split_rotary`; the module names it after its TVMScript function.
        if gvar.name_hint == "fused_rope" and isinstance(func, tvm.tirx.PrimFunc) and len(func.params) == 6:
            kernel = split_rotary_kernel(
                shape.heads,
                shape.kv_heads,
                shape.head_dim,
                shape.rotary_dim,
                np.asarray(shape.inv_freq, dtype=np.float32),
                shape.dtype,
            )
            mod[gvar] = kernel.with_attr("global_symbol", gvar.name_hint)
    return mod


def replace_merge_state(mod: tvm.IRModule, shape: AttentionShape) -> tvm.IRModule:
    """`mod` with the cache's `merge_state` kernel swapped for one without a data race.

    Every WebGPU class needs this. A prefill of more than one token onto a non-empty cache
    attends to the cached pages and to the new tokens separately, then merges the two partial
    results by their log-sum-exps. TVM 0.27's merge kernel gives each head head_dim / 4
    threads; every one of them reads the head's lse, and every one writes the merged lse back
    in place, with no barrier between. Threads that run after another has written read the new
    lse and mis-weight their slice of the output. SwiftShader runs 4 lanes in lockstep, so
    head_dim 16 (4 threads per head) happened to be safe and head_dim 32 or 64 gave logits off
    by 5-8 (follow-up turns, chunked prompts); a GPU that does not run a head's threads in one
    lockstep group can do the same. Here the lse is written by one thread, after a barrier.
    """
    for gvar, func in list(mod.functions_items()):
        if gvar.name_hint == "tir_attention_merge_state" and isinstance(func, tvm.tirx.PrimFunc):
            mod[gvar] = _merge_state(shape.heads, shape.head_dim, shape.dtype).with_attr(
                "global_symbol", gvar.name_hint
            )
    return mod


def _merge_state(h_q: int, d: int, dtype: str, max_threads: int = 256):
    # Lanes over head_dim (4 values each where they divide it), heads over threadIdx.y.
    per_lane = 4 if d % 4 == 0 else 1
    lanes = d // per_lane
    heads_per_group = h_q
    while heads_per_group > 1 and (lanes * heads_per_group > max_threads or h_q % heads_per_group):
        heads_per_group -= 1
    groups = h_q // heads_per_group

    @T.prim_func(s_tir=True)
    def merge_state_inplace(
        v_handle: T.handle, s_handle: T.handle, v_other_handle: T.handle, s_other_handle: T.handle
    ):
        T.func_attr({"tirx.is_scheduled": True})
        n = T.int32()
        v = T.match_buffer(v_handle, (n, h_q, d), dtype)
        s = T.match_buffer(s_handle, (n, h_q), "float32")
        v_other = T.match_buffer(v_other_handle, (n, h_q, d), dtype)
        s_other = T.match_buffer(s_other_handle, (n, h_q), "float32")

        for token in T.thread_binding(n, thread="blockIdx.x"):
            for group in T.thread_binding(groups, thread="blockIdx.y"):
                for head_in_group in T.thread_binding(heads_per_group, thread="threadIdx.y"):
                    for lane in T.thread_binding(lanes, thread="threadIdx.x"):
                        with T.sblock("merge"):
                            T.reads()
                            T.writes()
                            h: T.let[T.int32] = group * heads_per_group + head_in_group
                            lse: T.let[T.float32] = s[token, h]
                            lse_other: T.let[T.float32] = s_other[token, h]
                            top: T.let[T.float32] = T.max(lse, lse_other)
                            weight: T.let[T.float32] = T.exp2(lse - top)
                            weight_other: T.let[T.float32] = T.exp2(lse_other - top)
                            total: T.let[T.float32] = weight + weight_other
                            for i in T.unroll(per_lane):
                                col: T.let[T.int32] = lane * per_lane + i
                                v[token, h, col] = T.Cast(
                                    dtype,
                                    (
                                        T.Cast("float32", v[token, h, col]) * weight
                                        + T.Cast("float32", v_other[token, h, col]) * weight_other
                                    )
                                    / total,
                                )
                            # Every lane of the head has read s before any lane writes it.
                            T.tvm_storage_sync("shared")
                            if lane == 0:
                                s[token, h] = T.log2(total) + top

    return merge_state_inplace
