"""The `cpu-emulated` class's 4-bit matmul kernel, written by hand rather than scheduled.

On SwiftShader every shader instruction runs 4 invocations at a time on a CPU core, so a 4-bit
GEMV costs what its per-weight instructions cost. The TE formulation in quantize.py computes
`x * ((((w >> 4b) & 15) - 7) * scale)` per weight: six instructions. This kernel computes the
same sum in three per weight, in the order of a group of 32 weights:

    sum_g scale_g * (sum_k q_k x_k - 7 * sum_k x_k)

(asymmetric schemes: `scale_g * sum_k q_k x_k + min_g * sum_k x_k`, from the same two sums;
an f16 scale / minimum pair is one load a group, widened with integer operations)

with the nibble at bit 4b taken as `f32(i32(w & (15 << 4b)))` (q * 16^b, exact) against an
activation pre-multiplied by 16^-b (a power of two, exact), so there is no shift; the top
nibble, whose mask would make the int32 negative, is `w >> 28`. An activation is loaded and
scaled once per word for all the rows of a thread, a scale once per group.

The rule takes the fused functions compiler/q4_fused.py matches, their elementwise epilogues
folded into the kernel's store; anything else (a group that is not whole words) is left to the
scheduled kernel. What it gained, and the variants tried and dropped: docs/kernels.md.
"""

from __future__ import annotations

import math

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
from webllm_build.q4_format import MAX_INT, values_per_word

# Per thread: `rows` output rows of `tokens` tokens, THREADS threads a workgroup. Measured on
# SwiftShader (ms per call, SmolLM2 shapes): decoding one token, 32 rows x 4 threads beat 8x8,
# 16x4, 16x8, 24x4, 48x4 and 64x4 on a cached 3072 x 576 GEMV (0.86 against 0.88-1.09); 2
# threads leave half of a 4-lane SIMD group idle (2x slower). In the model, where weights stream
# from memory, 16 rows did as well or better wherever 32 would leave a partial workgroup (N of
# 576 or 960: 7.1 against 9.2 ms a token for o_proj), so rows are the largest of DECODE_ROWS
# that tiles N exactly. For a 39-token prefill, 16 rows x 4 tokens (weights unpacked once for
# 4 tokens) took 22.7 ms for gate/up against 31.6 for 32 x 1 and 26-28 for 16x2, 8x4 and 8x8.
DECODE_ROWS = (32, 16, 8)
# The words of a group are a loop, not unrolled: SwiftShader then compiles a SmolLM2 matmul
# pipeline in 0.1-0.5 s instead of 0.9-1.9 s (nine of them load with every model), for 2% of
# decode speed (9.25 -> 9.06 tokens/s) and 10% of prefill (23.7 -> 21).
PREFILL_TILE = (16, 4)
THREADS = 4
# PrimFunc attribute: its packed weight arrives word-major (compiler/weight_layout.py).
WORD_MAJOR_ATTR = "webllm.word_major_weight"


def _value_times_power(word, b, bits: int):
    """float(q * 2^(bits * b)) for the value at bit bits * b of `word`, in two instructions
    (a nibble, or a byte in a module kept at 8 bits).

    `b` is an unrolled loop variable, so the selects fold away once it is a constant.
    """
    top = tirx.shift_right(word, tirx.const(32 - bits, "uint32"))  # the top value's mask sets the sign bit
    mask = tirx.shift_left(tirx.const((1 << bits) - 1, "uint32"), tirx.Cast("uint32", b * bits))
    masked = tirx.Select(b == values_per_word(bits) - 1, top, tirx.bitwise_and(word, mask))
    return tirx.Cast("float32", tirx.Cast("int32", masked))


def _prescale(b, bits: int):
    """2^-(bits * b), what the activation of value b is multiplied by (1 for the shifted top one)."""
    value = tirx.const(1.0, "float32")
    for n in range(values_per_word(bits) - 1):
        value = tirx.Select(b == n, tirx.const(2.0 ** (-bits * n), "float32"), value)
    return value


def build_kernel(match: Q4Matmul, func: tirx.PrimFunc, word_major: bool) -> tirx.PrimFunc | None:
    """The kernel, reading the packed weight row-major ([N, K/8] words) or, when `word_major`,
    as compiler/weight_layout.py lays it out at load time: word w of row n at w * N + n."""
    bits = value_bits(match)
    per_word = values_per_word(bits)
    shapes = whole_word_shapes(match, bits)
    if shapes is None:
        return None
    rows_total, words, reduce_len, groups = shapes
    x, weight, scale, out = match.x, match.weight, match.scale, match.out
    words_per_group = reduce_len // groups // per_word
    lead = list(out.shape[:-1])
    tokens_total = math.prod(lead) if all(isinstance(e, tirx.IntImm) for e in lead) else None
    if tokens_total == 1:
        exact = [r for r in DECODE_ROWS if rows_total % (r * THREADS) == 0]
        rows, tokens = (exact[0] if exact else DECODE_ROWS[0]), 1
    else:
        rows, tokens = PREFILL_TILE
    token_count = flat_token_count(lead)
    row_tiles = (rows_total + rows * THREADS - 1) // (rows * THREADS)
    token_tiles = tirx.floordiv(token_count + (tokens - 1), tokens)
    matmul_dtype = match.matmul.dtype

    # Raises Unsupported here, not from inside the TVMScript parser (which would wrap it).
    apply_epilogue(match, tirx.const(0.0, matmul_dtype), [tirx.IntImm("int64", 0)] * len(out.shape))

    def token_at(block_y, u):
        return block_y * tokens + u

    def row_at(block_x, thread, i):
        # Neighbouring threads own neighbouring rows: with word-major weights, the 4 lanes of a
        # SIMD group read 4 adjacent words (row-major weights measured the same either way).
        return block_x * (rows * THREADS) + i * THREADS + thread

    def row_of(block_x, thread, i):  # clamped: the partial last workgroup loads in bounds
        return tirx.min(row_at(block_x, thread, i), rows_total - 1)

    def word_at(w, row):
        return w * rows_total + row if word_major else row * words + w

    def k_at(g, j, b):
        return (g * words_per_group + j) * per_word + b

    def result(token, row, acc):
        return apply_epilogue(match, tirx.Cast(matmul_dtype, acc), [*unravel(token, lead), row])

    offset = tirx.const(MAX_INT, "float32")

    def group_sum(loaded_scale, qx_sum, x_total, row, g):
        """A group's contribution: scale * sum(q x) plus the offset's share, -7 * scale * sum(x)
        symmetric or minimum * sum(x) asymmetric, both from the same per-group activation sum."""
        scale_value = match.group_scale(loaded_scale)
        if not match.asymmetric:
            return scale_value * (qx_sum - offset * x_total)
        return scale_value * qx_sum + match.group_minimum(loaded_scale, row, g) * x_total

    # The body uses the fused function's own buffers, which only its signature defines.
    @T.prim_func(s_tir=True, check_well_formed=False)
    def kernel():
        for bx in T.thread_binding(row_tiles, thread="blockIdx.x"):
            for by in T.thread_binding(token_tiles, thread="blockIdx.y"):
                for tx in T.thread_binding(THREADS, thread="threadIdx.x"):
                    with T.sblock("q4_matmul"):
                        T.reads()
                        T.writes()
                        out_flat = T.decl_buffer((token_count * rows_total,), out.dtype, data=out.data)
                        x_flat = T.decl_buffer((token_count * reduce_len,), x.dtype, data=x.data)
                        w_flat = T.decl_buffer((rows_total * words,), weight.dtype, data=weight.data)
                        # Where each token's activations start; past the last token, the last
                        # token's (loads stay in bounds, stores are skipped).
                        x_start = T.sblock_alloc_buffer((tokens,), "int32", scope="local")
                        acc = T.sblock_alloc_buffer((tokens, rows), "float32", scope="local")
                        part = T.sblock_alloc_buffer((tokens, rows), "float32", scope="local")
                        x_sum = T.sblock_alloc_buffer((tokens,), "float32", scope="local")
                        x_word = T.sblock_alloc_buffer((tokens, per_word), "float32", scope="local")
                        word = T.sblock_alloc_buffer((1,), "uint32", scope="local")
                        q = T.sblock_alloc_buffer((1,), "float32", scope="local")
                        s = T.sblock_alloc_buffer((1,), scale.dtype, scope="local")  # or an f16 pair
                        for u in T.unroll(tokens):
                            for i in T.unroll(rows):
                                acc[u, i] = T.float32(0)
                        for u in T.unroll(tokens):
                            x_start[u] = T.min(token_at(by, u), token_count - 1) * reduce_len
                        for g in T.serial(groups):
                            for u in T.unroll(tokens):
                                x_sum[u] = T.float32(0)
                                for i in T.unroll(rows):
                                    part[u, i] = T.float32(0)
                            for j in T.serial(words_per_group):
                                for u in T.unroll(tokens):
                                    for b in T.unroll(per_word):
                                        x_word[u, b] = T.Cast("float32", x_flat[x_start[u] + k_at(g, j, b)])
                                        x_sum[u] = x_sum[u] + x_word[u, b]
                                        x_word[u, b] = x_word[u, b] * _prescale(b, bits)
                                for i in T.unroll(rows):
                                    word[0] = w_flat[word_at(g * words_per_group + j, row_of(bx, tx, i))]
                                    for b in T.unroll(per_word):
                                        q[0] = _value_times_power(word[0], b, bits)
                                        for u in T.unroll(tokens):
                                            part[u, i] = part[u, i] + q[0] * x_word[u, b]
                            for i in T.unroll(rows):
                                s[0] = scale[row_of(bx, tx, i), g]
                                for u in T.unroll(tokens):
                                    acc[u, i] += group_sum(s[0], part[u, i], x_sum[u], row_of(bx, tx, i), g)
                        for u in T.unroll(tokens):
                            for i in T.unroll(rows):
                                if token_at(by, u) < token_count and row_at(bx, tx, i) < rows_total:
                                    out_flat[token_at(by, u) * rows_total + row_at(bx, tx, i)] = result(
                                        token_at(by, u), row_at(bx, tx, i), acc[u, i]
                                    )

    return func.with_body(kernel.body)


def q4_matmul_kernel(func: tirx.PrimFunc) -> tirx.PrimFunc | None:
    """The hand-written kernel for a fused 4-bit matmul function, or None if it is not one.

    The weight is read word-major where compiler/weight_layout.py marked the function so.
    """
    try:
        match = match_q4_matmul(func)
        word_major = bool(func.attrs and func.attrs.get(WORD_MAJOR_ATTR, False))
        return build_kernel(match, func, word_major) if match is not None else None
    except Unsupported:
        return None


def weight_argument(func: tirx.PrimFunc) -> int | None:
    """The position of the packed weight among `func`'s parameters, if the hand-written kernel
    takes the function (so its weight may be laid out word-major)."""
    if q4_matmul_kernel(func) is None:
        return None
    weight = match_q4_matmul(func).weight
    return next(i for i, param in enumerate(func.params) if param.same_as(weight))
