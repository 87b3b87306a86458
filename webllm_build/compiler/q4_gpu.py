"""The `gpu` class's 4-bit matmul for prompts (several tokens), written by hand; and the
`gpu-dot4` class's GEMV for one token, with integer dot products (`gemv_two_plane_kernel`).

dlight's `Matmul` rule tiles the fused dequantize-matmul but turns every nibble into a float
through an int-to-float conversion (a quarter-rate instruction on NVIDIA GPUs), subtracts the
offset and multiplies by the group's scale per weight, and accumulates in the model's dtype
(f16 for `q4f16_1`). This kernel computes a tile of tokens x rows per workgroup (MatmulTiling), one
32-value step of the reduction at a time: the activations and that step's weights, dequantized
once per tile (not once per token), are staged in workgroup memory (padded rows: no bank
conflicts), and each thread accumulates a register tile in f32. A nibble q becomes the float
q - 7 in two ALU steps: OR-ed into the mantissa of 2^23 it is the float 2^23 + q exactly, and
subtracting 2^23 + 7 leaves q - 7, also exact (2^23 alone leaves q, for asymmetric schemes'
q * scale + minimum). The fused elementwise epilogues (residual add,
bias, gelu) are folded into the store (compiler/q4_fused.py).

What it gained, the tilings measured, and the variants tried and dropped: docs/kernels.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tvm import tirx
from tvm.script import tirx as T

from webllm_build.compiler.q4_fused import (
    Q4Matmul,
    Unsupported,
    apply_epilogue,
    flat_token_count,
    match_q4_matmul,
    unravel,
    value_bits,
    whole_word_shapes,
)
from webllm_build.q4_format import BITS, MAX_INT, NIBBLE_MASK, VALUES_PER_WORD

MAGIC_BITS = 0x4B000000  # the float 2^23, whose mantissa's low bits then hold an integer
MAGIC = 8388608.0  # 2^23


@dataclass(frozen=True)
class MatmulTiling:
    tokens: int = 64  # a workgroup's tile
    rows: int = 64
    thread_tokens: int = 4  # a thread's register tile
    thread_rows: int = 4


MATMUL = MatmulTiling()


@dataclass(frozen=True)
class GemvTiling:
    lanes: int = 32  # threads splitting one row's words: consecutive threads, consecutive words
    row_threads: int = 4  # such groups of lanes in a workgroup
    thread_rows: int = 2  # rows a thread computes; each staged activation is read once for all
    stage_words: int = 384  # at most this many words' activations staged in workgroup memory
    batch_words: int = 4  # words a thread loads at once (per row) before unpacking them


GEMV = GemvTiling()
# The two-plane GEMV requantizes the activations in every workgroup: more rows a workgroup (16)
# make that work a smaller share. Not yet tuned on a GPU (docs/kernels.md).
TWO_PLANE_GEMV = GemvTiling(thread_rows=4)


def _nibble_minus(word, b, offset: int):
    """The float q - offset of the nibble at bit 4b of `word` (b a constant once unrolled)."""
    shifted = tirx.shift_right(word, tirx.Cast("uint32", b * BITS))
    nibble = tirx.bitwise_and(shifted, tirx.const(NIBBLE_MASK, "uint32"))
    bits = tirx.bitwise_or(nibble, tirx.const(MAGIC_BITS, "uint32"))
    return tirx.reinterpret("float32", bits) - tirx.const(MAGIC + offset, "float32")


def _dequantized(match: Q4Matmul, word, b, scale_value, minimum_value):
    """One weight: (q - 7) * scale symmetric, q * scale + minimum asymmetric."""
    if not match.asymmetric:
        return _nibble_minus(word, b, MAX_INT) * scale_value
    return _nibble_minus(word, b, 0) * scale_value + minimum_value


def tiled_matmul_kernel(
    match: Q4Matmul, func: tirx.PrimFunc, tiling: MatmulTiling = MATMUL
) -> tirx.PrimFunc | None:
    shapes = whole_word_shapes(match)
    if shapes is None:
        return None
    rows_total, words, reduce_len, groups = shapes
    x, weight, scale, out = match.x, match.weight, match.scale, match.out
    group_size = reduce_len // groups
    step = 32 if group_size % 32 == 0 else group_size  # reduction values staged at a time
    if step > 32:
        return None
    step_words = step // VALUES_PER_WORD
    tile_m, tile_n = tiling.tokens, tiling.rows
    threads_m, threads_n = tile_m // tiling.thread_tokens, tile_n // tiling.thread_rows
    threads = threads_m * threads_n
    if (tile_m * step) % threads or (tile_n * step_words) % threads:
        return None
    lead = list(out.shape[:-1])
    token_count = flat_token_count(lead)
    row_tiles = (rows_total + tile_n - 1) // tile_n
    token_tiles = tirx.floordiv(token_count + (tile_m - 1), tile_m)
    x_stride, w_stride = tile_m + 1, tile_n + 1  # padded: no bank conflicts when staging
    thread_m, thread_n = tiling.thread_tokens, tiling.thread_rows
    matmul_dtype = match.matmul.dtype
    apply_epilogue(match, tirx.const(0.0, matmul_dtype), [tirx.IntImm("int64", 0)] * len(out.shape))

    def result(token, row, acc):
        return apply_epilogue(match, tirx.Cast(matmul_dtype, acc), [*unravel(token, lead), row])

    # Staging: load number `i` of a thread; consecutive threads take consecutive values of one
    # token (or words of one row), so global loads coalesce.
    def staged(ty, tx, i):
        return ty * threads_n + tx + i * threads

    def x_token(by, ty, tx, i):  # clamped: a partial last tile loads in bounds
        return T.min(by * tile_m + T.floordiv(staged(ty, tx, i), step), token_count - 1)

    def w_row(bx, ty, tx, i):
        return T.min(bx * tile_n + T.floordiv(staged(ty, tx, i), step_words), rows_total - 1)

    # A thread's register tile: tokens ty + u * threads_m and rows tx + i * threads_n of the
    # workgroup's tile, so that neighbouring threads read neighbouring staged values.
    def token_at(by, ty, u):
        return by * tile_m + ty + u * threads_m

    def row_at(bx, tx, i):
        return bx * tile_n + tx + i * threads_n

    @T.prim_func(s_tir=True, check_well_formed=False)
    def kernel():
        for bx in T.thread_binding(row_tiles, thread="blockIdx.x"):
            for by in T.thread_binding(token_tiles, thread="blockIdx.y"):
                for ty in T.thread_binding(threads_m, thread="threadIdx.y"):
                    for tx in T.thread_binding(threads_n, thread="threadIdx.x"):
                        with T.sblock("q4_tiled_matmul"):
                            T.reads()
                            T.writes()
                            out_flat = T.decl_buffer((token_count * rows_total,), out.dtype, data=out.data)
                            x_flat = T.decl_buffer((token_count * reduce_len,), x.dtype, data=x.data)
                            w_flat = T.decl_buffer((rows_total * words,), weight.dtype, data=weight.data)
                            s_flat = T.decl_buffer((rows_total * groups,), scale.dtype, data=scale.data)
                            xs = T.sblock_alloc_buffer((step * x_stride,), "float32", scope="shared")
                            ws = T.sblock_alloc_buffer((step * w_stride,), "float32", scope="shared")
                            acc = T.sblock_alloc_buffer((thread_m, thread_n), "float32", scope="local")
                            a = T.sblock_alloc_buffer((thread_m,), "float32", scope="local")
                            w = T.sblock_alloc_buffer((thread_n,), "float32", scope="local")
                            word = T.sblock_alloc_buffer((1,), "uint32", scope="local")
                            s = T.sblock_alloc_buffer((1,), "float32", scope="local")
                            m = T.sblock_alloc_buffer((1,), "float32", scope="local")
                            raw = T.sblock_alloc_buffer((1,), scale.dtype, scope="local")  # or an f16 pair
                            for u in T.unroll(thread_m):
                                for i in T.unroll(thread_n):
                                    acc[u, i] = T.float32(0)
                            for kt in T.serial(reduce_len // step):
                                for lx in T.unroll(tile_m * step // threads):
                                    xs[
                                        T.floormod(staged(ty, tx, lx), step) * x_stride
                                        + T.floordiv(staged(ty, tx, lx), step)
                                    ] = T.Cast(
                                        "float32",
                                        x_flat[
                                            x_token(by, ty, tx, lx) * reduce_len
                                            + kt * step
                                            + T.floormod(staged(ty, tx, lx), step)
                                        ],
                                    )
                                for lw in T.unroll(tile_n * step_words // threads):
                                    word[0] = w_flat[
                                        w_row(bx, ty, tx, lw) * words
                                        + kt * step_words
                                        + T.floormod(staged(ty, tx, lw), step_words)
                                    ]
                                    raw[0] = s_flat[w_row(bx, ty, tx, lw) * groups + kt * step // group_size]
                                    s[0] = match.group_scale(raw[0])
                                    if match.asymmetric:
                                        m[0] = match.group_minimum(
                                            raw[0], w_row(bx, ty, tx, lw), kt * step // group_size
                                        )
                                    for b in T.unroll(VALUES_PER_WORD):
                                        ws[
                                            (T.floormod(staged(ty, tx, lw), step_words) * VALUES_PER_WORD + b)
                                            * w_stride
                                            + T.floordiv(staged(ty, tx, lw), step_words)
                                        ] = _dequantized(match, word[0], b, s[0], m[0])
                                T.tvm_storage_sync("shared")
                                for k in T.unroll(step):
                                    for u in T.unroll(thread_m):
                                        a[u] = xs[k * x_stride + ty + u * threads_m]
                                    for i in T.unroll(thread_n):
                                        w[i] = ws[k * w_stride + tx + i * threads_n]
                                    for u in T.unroll(thread_m):
                                        for i in T.unroll(thread_n):
                                            acc[u, i] = acc[u, i] + a[u] * w[i]
                                T.tvm_storage_sync("shared")
                            for u in T.unroll(thread_m):
                                for i in T.unroll(thread_n):
                                    if token_at(by, ty, u) < token_count and row_at(bx, tx, i) < rows_total:
                                        out_flat[token_at(by, ty, u) * rows_total + row_at(bx, tx, i)] = (
                                            result(token_at(by, ty, u), row_at(bx, tx, i), acc[u, i])
                                        )

    return func.with_body(kernel.body)


@dataclass(frozen=True)
class _RowTile:
    """How a GEMV workgroup holds its rows: `lanes` threads along a row, `thread_rows` rows a
    thread, `rows` rows a workgroup, of the matmul's `rows_total`."""

    lanes: int
    thread_rows: int
    rows: int
    rows_total: int


@T.macro
def _store_rows(acc, red, total, out_flat, bx, ty, tx, tile: _RowTile, result):
    """A GEMV's end: each thread's partial sums of its rows (`acc`) meet in workgroup memory
    (`red`), where one thread a row adds its lanes' (a tree would need barriers inside a
    condition, which TVM's sync planner refuses) and stores the row through `result` (the fused
    epilogue)."""
    for r in T.unroll(tile.thread_rows):
        red[(ty * tile.thread_rows + r) * tile.lanes + tx] = acc[r]
    T.tvm_storage_sync("shared")
    if tx < tile.thread_rows:
        total[0] = T.float32(0)
        for lane in T.unroll(tile.lanes):
            total[0] = total[0] + red[(ty * tile.thread_rows + tx) * tile.lanes + lane]
        if bx * tile.rows + ty * tile.thread_rows + tx < tile.rows_total:
            out_flat[bx * tile.rows + ty * tile.thread_rows + tx] = result(
                bx * tile.rows + ty * tile.thread_rows + tx, total[0]
            )


def _largest_divisor(total: int, limit: int, multiple_of: int) -> int | None:
    """The largest multiple of `multiple_of` that divides `total` and is at most `limit`."""
    fits = [d for d in range(multiple_of, min(total, limit) + 1, multiple_of) if total % d == 0]
    return fits[-1] if fits else None


def _word_dot(word, xv, offset: int):
    """The sum over a word's 8 nibbles q of (q - offset) * xv[b], in f32."""
    total = _nibble_minus(word, 0, offset) * xv[0]
    for b in range(1, VALUES_PER_WORD):
        total = total + _nibble_minus(word, b, offset) * xv[b]
    return total


def gemv_kernel(match: Q4Matmul, func: tirx.PrimFunc, tiling: GemvTiling = GEMV) -> tirx.PrimFunc | None:
    """One token's 4-bit matmul (a GEMV), made to stream the weights at the memory's speed.

    A workgroup computes `row_threads * thread_rows` rows. The activations are staged in
    workgroup memory as f32, transposed (value b of word w at b * (stage + 1) + w), so the 32
    lanes of a row read 32 consecutive words of weights from memory and 32 consecutive staged
    values per nibble position: coalesced loads and no bank conflicts. A thread loads
    `batch_words` words (and their scales) of each of its rows at once, so that many loads are
    in flight, then unpacks each word as the prompt kernel does and reuses each staged activation for its
    `thread_rows` rows. The lanes' partial sums meet in workgroup memory, where one thread a row
    adds them (a tree would need barriers inside a condition, which TVM's sync planner refuses).
    """
    shapes = whole_word_shapes(match)
    if shapes is None or value_bits(match) != BITS or match.paired:
        return None
    rows_total, words, reduce_len, groups = shapes
    x, weight, scale, minimum, out = match.x, match.weight, match.scale, match.minimum, match.out
    group_size = reduce_len // groups
    # Rows of fewer words than lanes (small models) get fewer lanes and more rows a workgroup.
    lanes = math.gcd(words, tiling.lanes)
    row_threads, thread_rows = tiling.row_threads * (tiling.lanes // lanes), tiling.thread_rows
    stage = _largest_divisor(words, tiling.stage_words, lanes)
    if stage is None or thread_rows > lanes:
        return None
    threads = lanes * row_threads
    rows_tile = row_threads * thread_rows
    row_tiles = (rows_total + rows_tile - 1) // rows_tile
    tile = _RowTile(lanes, thread_rows, rows_tile, rows_total)
    stage_values = stage * VALUES_PER_WORD
    stride = stage + 1  # padded: staging stores spread over banks
    loads = (stage_values + threads - 1) // threads
    per_lane = stage // lanes
    batch = math.gcd(per_lane, tiling.batch_words)
    matmul_dtype = match.matmul.dtype
    zero_index = [tirx.IntImm("int64", 0)] * (len(out.shape) - 1)
    apply_epilogue(match, tirx.const(0.0, matmul_dtype), [*zero_index, tirx.IntImm("int64", 0)])
    m_data = (minimum if minimum is not None else scale).data

    def result(row, acc):
        return apply_epilogue(match, tirx.Cast(matmul_dtype, acc), [*zero_index, row])

    def row_of(bx, ty, r):  # clamped: a partial last tile loads in bounds
        return T.min(bx * rows_tile + ty * thread_rows + r, rows_total - 1)

    def word_at(c, u0, uu, tx):  # within the row
        return c * stage + (u0 * batch + uu) * lanes + tx

    def group_at(c, u0, uu, tx):
        return T.floordiv(word_at(c, u0, uu, tx) * VALUES_PER_WORD, group_size)

    def staged_at(ty, tx, i):
        return i * threads + ty * lanes + tx

    def term(sr, mr, wr, xsum, xv, i):
        if minimum is None:
            return sr[i] * _word_dot(wr[i], xv, MAX_INT)
        return sr[i] * _word_dot(wr[i], xv, 0) + mr[i] * xsum[0]

    @T.prim_func(s_tir=True, check_well_formed=False)
    def kernel():
        for bx in T.thread_binding(row_tiles, thread="blockIdx.x"):
            for ty in T.thread_binding(row_threads, thread="threadIdx.y"):
                for tx in T.thread_binding(lanes, thread="threadIdx.x"):
                    with T.sblock("q4_gemv"):
                        T.reads()
                        T.writes()
                        out_flat = T.decl_buffer((rows_total,), out.dtype, data=out.data)
                        x_flat = T.decl_buffer((reduce_len,), x.dtype, data=x.data)
                        w_flat = T.decl_buffer((rows_total * words,), weight.dtype, data=weight.data)
                        s_flat = T.decl_buffer((rows_total * groups,), scale.dtype, data=scale.data)
                        m_flat = T.decl_buffer((rows_total * groups,), scale.dtype, data=m_data)
                        xs = T.sblock_alloc_buffer((VALUES_PER_WORD * stride,), "float32", scope="shared")
                        red = T.sblock_alloc_buffer((rows_tile * lanes,), "float32", scope="shared")
                        acc = T.sblock_alloc_buffer((thread_rows,), "float32", scope="local")
                        xv = T.sblock_alloc_buffer((VALUES_PER_WORD,), "float32", scope="local")
                        xsum = T.sblock_alloc_buffer((1,), "float32", scope="local")
                        total = T.sblock_alloc_buffer((1,), "float32", scope="local")
                        wr = T.sblock_alloc_buffer((batch * thread_rows,), "uint32", scope="local")
                        sr = T.sblock_alloc_buffer((batch * thread_rows,), "float32", scope="local")
                        mr = T.sblock_alloc_buffer((batch * thread_rows,), "float32", scope="local")
                        for r in T.unroll(thread_rows):
                            acc[r] = T.float32(0)
                        for c in T.serial(words // stage):
                            T.tvm_storage_sync("shared")
                            for i in T.unroll(loads):
                                if staged_at(ty, tx, i) < stage_values:
                                    xs[
                                        T.floormod(staged_at(ty, tx, i), VALUES_PER_WORD) * stride
                                        + T.floordiv(staged_at(ty, tx, i), VALUES_PER_WORD)
                                    ] = T.Cast("float32", x_flat[c * stage_values + staged_at(ty, tx, i)])
                            T.tvm_storage_sync("shared")
                            for u0 in T.serial(per_lane // batch):
                                for uu in T.unroll(batch):
                                    for r in T.unroll(thread_rows):
                                        wr[uu * thread_rows + r] = w_flat[
                                            row_of(bx, ty, r) * words + word_at(c, u0, uu, tx)
                                        ]
                                        sr[uu * thread_rows + r] = T.Cast(
                                            "float32",
                                            s_flat[row_of(bx, ty, r) * groups + group_at(c, u0, uu, tx)],
                                        )
                                        if minimum is not None:
                                            mr[uu * thread_rows + r] = T.Cast(
                                                "float32",
                                                m_flat[row_of(bx, ty, r) * groups + group_at(c, u0, uu, tx)],
                                            )
                                for uu in T.unroll(batch):
                                    for b in T.unroll(VALUES_PER_WORD):
                                        xv[b] = xs[b * stride + (u0 * batch + uu) * lanes + tx]
                                    if minimum is not None:
                                        xsum[0] = (
                                            xv[0] + xv[1] + xv[2] + xv[3] + xv[4] + xv[5] + xv[6] + xv[7]
                                        )
                                    for r in T.unroll(thread_rows):
                                        acc[r] = acc[r] + term(sr, mr, wr, xsum, xv, uu * thread_rows + r)
                        _store_rows(acc, red, total, out_flat, bx, ty, tx, tile, result)

    return func.with_body(kernel.body)


# Activations as 15-bit integers a group of ACTIVATION_GROUP values: q = round(x / scale) with
# |q| <= PLANE_PEAK, split into two int8 planes q = 256 * high + low (high within -127..127, low
# within -128..127), so that `dot4I8Packed` multiplies four nibbles by four activations exactly.
ACTIVATION_GROUP = 32
PLANE_PEAK = 127 * 256
NIBBLES = 0x0F0F0F0F  # a word's even nibbles, one a byte: the unsigned int8s 0..15


def _dot4(a, b):
    """WGSL's dot4I8Packed: the sum of the products of a's and b's four signed bytes."""
    return tirx.call_pure_extern("int32", "dot4I8Packed", a, b)


def _sum(values):
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def _bytes_packed(values):
    """Four int32s within -128..127 as the four bytes of a uint32, the first lowest."""
    word = tirx.bitwise_and(tirx.Cast("uint32", values[0]), tirx.const(0xFF, "uint32"))
    for i in range(1, 4):
        byte = tirx.bitwise_and(tirx.Cast("uint32", values[i]), tirx.const(0xFF, "uint32"))
        word = tirx.bitwise_or(word, tirx.shift_left(byte, tirx.const(8 * i, "uint32")))
    return word


def gemv_two_plane_kernel(
    match: Q4Matmul, func: tirx.PrimFunc, tiling: GemvTiling = TWO_PLANE_GEMV
) -> tirx.PrimFunc | None:
    """One token's 4-bit matmul with integer dot products: `gemv_kernel`'s tiling, but each
    workgroup stages the activations as 15-bit integers in two int8 planes (with a scale and the
    integers' sum per word), and a word of 8 nibbles meets them in four `dot4I8Packed`s instead
    of 8 conversions and 8 multiply-adds.

    Why: a 4-bit GEMV under wgpu is bound by the work per weight, not by the weights' bytes
    (docs/kernels.md, "what a 4-bit GEMV can reach under wgpu"): int8 activations reached the
    loads' speed in the lab but changed SmolLM2's answers; 15 bits a group did not
    (benchmarks/int8_activations.py). The nibbles' offset of 7 comes out of the integer sum:
    sum((q - 7) * a) = sum(q * a) - 7 * sum(a). Symmetric 4-bit schemes only (None otherwise);
    the adapter must offer WGSL's packed_4x8_integer_dot_product.
    """
    shapes = whole_word_shapes(match)
    if shapes is None or value_bits(match) != BITS or match.asymmetric:
        return None
    rows_total, words, reduce_len, groups = shapes
    x, weight, scale, out = match.x, match.weight, match.scale, match.out
    group_size = reduce_len // groups
    group_words = ACTIVATION_GROUP // VALUES_PER_WORD
    lanes = math.gcd(words, tiling.lanes)
    row_threads, thread_rows = tiling.row_threads * (tiling.lanes // lanes), tiling.thread_rows
    stage = _largest_divisor(words, tiling.stage_words, lanes * group_words // math.gcd(lanes, group_words))
    if stage is None or thread_rows > lanes:
        return None
    threads = lanes * row_threads
    rows_tile = row_threads * thread_rows
    row_tiles = (rows_total + rows_tile - 1) // rows_tile
    tile = _RowTile(lanes, thread_rows, rows_tile, rows_total)
    loads = (stage + threads - 1) // threads  # staged words a thread
    per_lane = stage // lanes
    batch = math.gcd(per_lane, tiling.batch_words)
    matmul_dtype = match.matmul.dtype
    zero_index = [tirx.IntImm("int64", 0)] * (len(out.shape) - 1)
    apply_epilogue(match, tirx.const(0.0, matmul_dtype), [*zero_index, tirx.IntImm("int64", 0)])

    def result(row, acc):
        return apply_epilogue(match, tirx.Cast(matmul_dtype, acc), [*zero_index, row])

    def row_of(bx, ty, r):  # clamped: a partial last tile loads in bounds
        return T.min(bx * rows_tile + ty * thread_rows + r, rows_total - 1)

    def word_in_stage(u0, uu, tx):
        return (u0 * batch + uu) * lanes + tx

    def staged_at(ty, tx, i):
        return i * threads + ty * lanes + tx

    def activation(x_flat, c, j, b):  # value b of word j of stage c, as f32
        return T.Cast("float32", x_flat[(c * stage + j) * VALUES_PER_WORD + b])

    def group_peak(peak, j):
        first = T.floordiv(j, group_words) * group_words
        largest = peak[first]
        for w in range(1, group_words):
            largest = T.max(largest, peak[first + w])
        return largest

    def high(q):  # floor((q + 128) / 256): an arithmetic shift of an int32
        return tirx.shift_right(q + tirx.const(128, "int32"), tirx.const(8, "int32"))

    def word_dot(w, planes, j):
        """sum over the word's nibbles q of q * a, a the word's 8 staged integers."""
        even = tirx.bitwise_and(w, tirx.const(NIBBLES, "uint32"))
        odd = tirx.bitwise_and(tirx.shift_right(w, tirx.const(4, "uint32")), tirx.const(NIBBLES, "uint32"))
        highs = _dot4(even, planes[j]) + _dot4(odd, planes[stage + j])
        lows = _dot4(even, planes[2 * stage + j]) + _dot4(odd, planes[3 * stage + j])
        return highs * tirx.const(256, "int32") + lows

    @T.prim_func(s_tir=True, check_well_formed=False)
    def kernel():
        for bx in T.thread_binding(row_tiles, thread="blockIdx.x"):
            for ty in T.thread_binding(row_threads, thread="threadIdx.y"):
                for tx in T.thread_binding(lanes, thread="threadIdx.x"):
                    with T.sblock("q4_gemv_two_plane"):
                        T.reads()
                        T.writes()
                        out_flat = T.decl_buffer((rows_total,), out.dtype, data=out.data)
                        x_flat = T.decl_buffer((reduce_len,), x.dtype, data=x.data)
                        w_flat = T.decl_buffer((rows_total * words,), weight.dtype, data=weight.data)
                        s_flat = T.decl_buffer((rows_total * groups,), scale.dtype, data=scale.data)
                        # Per staged word: its largest magnitude, its 8 integers as four words
                        # (high plane's even and odd values, then the low plane's), their sum,
                        # and its group's scale.
                        peak = T.sblock_alloc_buffer((stage,), "float32", scope="shared")
                        planes = T.sblock_alloc_buffer((4 * stage,), "uint32", scope="shared")
                        sums = T.sblock_alloc_buffer((stage,), "int32", scope="shared")
                        scales = T.sblock_alloc_buffer((stage,), "float32", scope="shared")
                        red = T.sblock_alloc_buffer((rows_tile * lanes,), "float32", scope="shared")
                        acc = T.sblock_alloc_buffer((thread_rows,), "float32", scope="local")
                        largest = T.sblock_alloc_buffer((1,), "float32", scope="local")
                        inverse = T.sblock_alloc_buffer((1,), "float32", scope="local")
                        q = T.sblock_alloc_buffer((VALUES_PER_WORD,), "int32", scope="local")
                        hi = T.sblock_alloc_buffer((VALUES_PER_WORD,), "int32", scope="local")
                        lo = T.sblock_alloc_buffer((VALUES_PER_WORD,), "int32", scope="local")
                        total = T.sblock_alloc_buffer((1,), "float32", scope="local")
                        wr = T.sblock_alloc_buffer((batch * thread_rows,), "uint32", scope="local")
                        sr = T.sblock_alloc_buffer((batch * thread_rows,), "float32", scope="local")
                        for r in T.unroll(thread_rows):
                            acc[r] = T.float32(0)
                        for c in T.serial(words // stage):
                            T.tvm_storage_sync("shared")
                            for i in T.unroll(loads):
                                if staged_at(ty, tx, i) < stage:
                                    largest[0] = T.float32(0)
                                    for b in T.unroll(VALUES_PER_WORD):
                                        largest[0] = T.max(
                                            largest[0], T.fabs(activation(x_flat, c, staged_at(ty, tx, i), b))
                                        )
                                    peak[staged_at(ty, tx, i)] = largest[0]
                            T.tvm_storage_sync("shared")
                            for i in T.unroll(loads):
                                if staged_at(ty, tx, i) < stage:
                                    largest[0] = group_peak(peak, staged_at(ty, tx, i))
                                    # An all-zero group: scale 1, integers 0.
                                    largest[0] = T.Select(
                                        largest[0] > T.float32(0), largest[0], T.float32(PLANE_PEAK)
                                    )
                                    inverse[0] = T.float32(PLANE_PEAK) / largest[0]
                                    for b in T.unroll(VALUES_PER_WORD):
                                        q[b] = T.Cast(
                                            "int32",
                                            T.round(
                                                activation(x_flat, c, staged_at(ty, tx, i), b) * inverse[0]
                                            ),
                                        )
                                        hi[b] = high(q[b])
                                        lo[b] = q[b] - hi[b] * 256
                                    planes[staged_at(ty, tx, i)] = _bytes_packed([hi[0], hi[2], hi[4], hi[6]])
                                    planes[stage + staged_at(ty, tx, i)] = _bytes_packed(
                                        [hi[1], hi[3], hi[5], hi[7]]
                                    )
                                    planes[2 * stage + staged_at(ty, tx, i)] = _bytes_packed(
                                        [lo[0], lo[2], lo[4], lo[6]]
                                    )
                                    planes[3 * stage + staged_at(ty, tx, i)] = _bytes_packed(
                                        [lo[1], lo[3], lo[5], lo[7]]
                                    )
                                    sums[staged_at(ty, tx, i)] = _sum([q[b] for b in range(VALUES_PER_WORD)])
                                    scales[staged_at(ty, tx, i)] = largest[0] / T.float32(PLANE_PEAK)
                            T.tvm_storage_sync("shared")
                            for u0 in T.serial(per_lane // batch):
                                for uu in T.unroll(batch):
                                    for r in T.unroll(thread_rows):
                                        wr[uu * thread_rows + r] = w_flat[
                                            row_of(bx, ty, r) * words + c * stage + word_in_stage(u0, uu, tx)
                                        ]
                                        sr[uu * thread_rows + r] = T.Cast(
                                            "float32",
                                            s_flat[
                                                row_of(bx, ty, r) * groups
                                                + T.floordiv(
                                                    (c * stage + word_in_stage(u0, uu, tx)) * VALUES_PER_WORD,
                                                    group_size,
                                                )
                                            ],
                                        )
                                for uu in T.unroll(batch):
                                    for r in T.unroll(thread_rows):
                                        acc[r] = acc[r] + T.Cast(
                                            "float32",
                                            word_dot(
                                                wr[uu * thread_rows + r], planes, word_in_stage(u0, uu, tx)
                                            )
                                            - sums[word_in_stage(u0, uu, tx)] * MAX_INT,
                                        ) * (sr[uu * thread_rows + r] * scales[word_in_stage(u0, uu, tx)])
                        _store_rows(acc, red, total, out_flat, bx, ty, tx, tile, result)

    return func.with_body(kernel.body)


def q4_gpu_kernel(func: tirx.PrimFunc) -> tirx.PrimFunc | None:
    """The tiled matmul for a fused 4-bit matmul function of several tokens, else None.

    In the `gpu` class one token's GEMV stays dlight's (`MultiRowGEMV`): `gemv_kernel` above,
    measured on an H200 in the model, made a decode step's GPU time 4.80 -> 4.98-5.40 ms in every
    tiling tried, and
    `gemv_vector_kernel` (16-byte loads) 4.92 -> 5.24 ms on an H100 (docs/kernels.md);
    benchmarks/q4_kernels.py keeps both as variants to measure against."""
    try:
        match = match_q4_matmul(func)
        if match is None:
            return None
        if _is_gemv(match):
            return None
        return tiled_matmul_kernel(match, func)
    except Unsupported:
        return None


def q4_gemv_two_plane(func: tirx.PrimFunc) -> tirx.PrimFunc | None:
    """`gemv_two_plane_kernel` for a fused 4-bit matmul function of one token, else None."""
    try:
        match = match_q4_matmul(func)
        if match is None or not _is_gemv(match):
            return None
        return gemv_two_plane_kernel(match, func)
    except Unsupported:
        return None


WORDS_PER_VECTOR = 4


def gemv_vector_kernel(
    match: Q4Matmul, func: tirx.PrimFunc, vector_weight: tirx.Buffer, tiling: GemvTiling = GEMV
) -> tirx.PrimFunc | None:
    """`gemv_kernel` reading the weight as vec4<u32> (`vector_weight`, a uint32x4 view of it):
    a lane loads one whole group of 32 weights and its one scale per row at a time, 16-byte
    loads where `gemv_kernel` makes four 4-byte ones and a scale load per word."""
    shapes = whole_word_shapes(match)
    if shapes is None or value_bits(match) != BITS or match.paired:
        return None
    rows_total, words, reduce_len, groups = shapes
    x, scale, minimum, out = match.x, match.scale, match.minimum, match.out
    values_per_vector = WORDS_PER_VECTOR * VALUES_PER_WORD
    if reduce_len // groups != values_per_vector or words % WORDS_PER_VECTOR:
        return None
    vectors = words // WORDS_PER_VECTOR  # = groups
    lanes = math.gcd(vectors, tiling.lanes)
    # A row's lanes sum its partial sums, one thread a row: at most `lanes` rows a thread.
    row_threads, thread_rows = tiling.row_threads * (tiling.lanes // lanes), min(tiling.thread_rows, lanes)
    stage = _largest_divisor(vectors, tiling.stage_words // WORDS_PER_VECTOR, lanes)
    if stage is None:
        return None
    threads = lanes * row_threads
    rows_tile = row_threads * thread_rows
    row_tiles = (rows_total + rows_tile - 1) // rows_tile
    tile = _RowTile(lanes, thread_rows, rows_tile, rows_total)
    stage_values = stage * values_per_vector
    stride = stage + 1  # padded: staging stores spread over banks
    loads = (stage_values + threads - 1) // threads
    per_lane = stage // lanes
    matmul_dtype = match.matmul.dtype
    zero_index = [tirx.IntImm("int64", 0)] * (len(out.shape) - 1)
    apply_epilogue(match, tirx.const(0.0, matmul_dtype), [*zero_index, tirx.IntImm("int64", 0)])
    m_data = (minimum if minimum is not None else scale).data
    offset = 0 if minimum is not None else MAX_INT

    def result(row, acc):
        return apply_epilogue(match, tirx.Cast(matmul_dtype, acc), [*zero_index, row])

    def row_of(bx, ty, r):  # clamped: a partial last tile loads in bounds
        return T.min(bx * rows_tile + ty * thread_rows + r, rows_total - 1)

    def staged_at(ty, tx, i):
        return i * threads + ty * lanes + tx

    @T.prim_func(s_tir=True, check_well_formed=False)
    def kernel():
        for bx in T.thread_binding(row_tiles, thread="blockIdx.x"):
            for ty in T.thread_binding(row_threads, thread="threadIdx.y"):
                for tx in T.thread_binding(lanes, thread="threadIdx.x"):
                    with T.sblock("q4_gemv_vector"):
                        T.reads()
                        T.writes()
                        out_flat = T.decl_buffer((rows_total,), out.dtype, data=out.data)
                        x_flat = T.decl_buffer((reduce_len,), x.dtype, data=x.data)
                        v_flat = T.decl_buffer((rows_total * vectors,), "uint32x4", data=vector_weight.data)
                        s_flat = T.decl_buffer((rows_total * groups,), scale.dtype, data=scale.data)
                        m_flat = T.decl_buffer((rows_total * groups,), scale.dtype, data=m_data)
                        xs = T.sblock_alloc_buffer((values_per_vector * stride,), "float32", scope="shared")
                        red = T.sblock_alloc_buffer((rows_tile * lanes,), "float32", scope="shared")
                        acc = T.sblock_alloc_buffer((thread_rows,), "float32", scope="local")
                        dot = T.sblock_alloc_buffer((thread_rows,), "float32", scope="local")
                        xv = T.sblock_alloc_buffer((VALUES_PER_WORD,), "float32", scope="local")
                        xsum = T.sblock_alloc_buffer((1,), "float32", scope="local")
                        total = T.sblock_alloc_buffer((1,), "float32", scope="local")
                        wr = T.sblock_alloc_buffer((WORDS_PER_VECTOR * thread_rows,), "uint32", scope="local")
                        sr = T.sblock_alloc_buffer((thread_rows,), "float32", scope="local")
                        mr = T.sblock_alloc_buffer((thread_rows,), "float32", scope="local")
                        for r in T.unroll(thread_rows):
                            acc[r] = T.float32(0)
                        for c in T.serial(vectors // stage):
                            T.tvm_storage_sync("shared")
                            for i in T.unroll(loads):
                                if staged_at(ty, tx, i) < stage_values:
                                    xs[
                                        T.floormod(staged_at(ty, tx, i), values_per_vector) * stride
                                        + T.floordiv(staged_at(ty, tx, i), values_per_vector)
                                    ] = T.Cast("float32", x_flat[c * stage_values + staged_at(ty, tx, i)])
                            T.tvm_storage_sync("shared")
                            for u in T.serial(per_lane):
                                for r in T.unroll(thread_rows):
                                    wr[T.Ramp(r * WORDS_PER_VECTOR, 1, WORDS_PER_VECTOR)] = v_flat[
                                        row_of(bx, ty, r) * vectors + c * stage + u * lanes + tx
                                    ]
                                    sr[r] = T.Cast(
                                        "float32",
                                        s_flat[row_of(bx, ty, r) * groups + c * stage + u * lanes + tx],
                                    )
                                    if minimum is not None:
                                        mr[r] = T.Cast(
                                            "float32",
                                            m_flat[row_of(bx, ty, r) * groups + c * stage + u * lanes + tx],
                                        )
                                    dot[r] = T.float32(0)
                                xsum[0] = T.float32(0)
                                for wi in T.unroll(WORDS_PER_VECTOR):
                                    for b in T.unroll(VALUES_PER_WORD):
                                        xv[b] = xs[(wi * VALUES_PER_WORD + b) * stride + u * lanes + tx]
                                        if minimum is not None:
                                            xsum[0] = xsum[0] + xv[b]
                                    for r in T.unroll(thread_rows):
                                        dot[r] = dot[r] + _word_dot(wr[r * WORDS_PER_VECTOR + wi], xv, offset)
                                for r in T.unroll(thread_rows):
                                    if minimum is not None:
                                        acc[r] = acc[r] + sr[r] * dot[r] + mr[r] * xsum[0]
                                    else:
                                        acc[r] = acc[r] + sr[r] * dot[r]
                        _store_rows(acc, red, total, out_flat, bx, ty, tx, tile, result)

    return func.with_body(kernel.body)


def with_vector_weight(func: tirx.PrimFunc, weight: tirx.Buffer) -> tuple[tirx.PrimFunc, tirx.Buffer]:
    """`func` taking one more input, a uint32x4 view of its packed `weight` (callers pass the
    same tensor viewed so: relax.op.memory.view), and that input's buffer."""
    rows, words = (int(e) for e in weight.shape)
    vector = tirx.decl_buffer((rows, words // WORDS_PER_VECTOR), "uint32x4", name=f"{weight.name}_vec4")
    *inputs, output = func.params  # call_tir's convention: the inputs, then the output
    return tirx.PrimFunc([*inputs, vector, output], func.body, attrs=func.attrs), vector


def _is_gemv(match: Q4Matmul) -> bool:
    return all(isinstance(e, tirx.IntImm) and int(e) == 1 for e in match.out.shape[:-1])
