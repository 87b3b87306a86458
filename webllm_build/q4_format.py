"""The 4-bit weight format, in one place: quantize.py packs it, the compiler's kernels unpack it.

`q4f*_1` is symmetric group quantization: each group of `group_size` consecutive input weights
of an output row shares one scale (max |w| / MAX_INT); a value q in [-MAX_INT, MAX_INT] is stored
as the nibble q + MAX_INT, eight nibbles to a uint32 word, lowest nibble first. A weight of
shape (rows, cols) becomes `q_weight` (rows, cols / VALUES_PER_WORD) uint32 and `q_scale`
(rows, cols / group_size) in the model's dtype.

Asymmetric schemes may keep a weight at WIDE_BITS instead: four bytes to a word, each the value
q in 0..255, `scale * q + minimum` like the 4-bit groups. They are how a GGUF file's Q8_0
tensors (int8 times an f16 scale per 32 values) are taken over exactly (convert.py).

An f32 asymmetric scheme keeps a module's scales and minimums as f16 pairs where its checkpoint
stores them in f16 (GGUF Q4_0, Q4_1, Q8_0): one uint32 per group, `q_scale_min`, the scale's
f16 bits in the low half and the minimum's in the high half. That is 4 bytes a group instead
of 8 for the same values, and a model without `shader-f16` still reads them: the kernels widen
the halves with integer operations (`half_pair_floats`).
"""

from __future__ import annotations

from tvm import tirx

BITS = 4
NIBBLE_MASK = (1 << BITS) - 1
VALUES_PER_WORD = 32 // BITS
MAX_INT = 7  # stored nibble = q + MAX_INT, in [0, 14]
WIDE_BITS = 8


def values_per_word(bits: int) -> int:
    return 32 // bits


PAIRED_SUFFIX = ".q_scale_min"  # the parameter holding a module's f16 scale / minimum pairs


def half_pair_floats(pair) -> tuple:
    """The scale and the minimum of a `q_scale_min` word (a uint32 TIR expression), as float32.

    The f16 bits, exponent and mantissa moved to float32's positions, are the value times
    2^-112, exactly (a float32 exponent field is 112 more than an f16's); times 2^112, written
    as its bits so that no printed decimal rounds it, is the value. Zero stays zero. An f16
    subnormal becomes a float32 subnormal before the multiply, which an adapter that flushes
    subnormals reads as 0, as it does the products it computes anyway.
    """

    def widen(magnitude, sign):
        return tirx.reinterpret("float32", tirx.bitwise_or(magnitude, sign)) * tirx.reinterpret(
            "float32", tirx.const(0x77800000, "uint32")  # 2^112
        )

    low = widen(
        tirx.shift_left(tirx.bitwise_and(pair, tirx.const(0x7FFF, "uint32")), tirx.const(13, "uint32")),
        tirx.shift_left(tirx.bitwise_and(pair, tirx.const(0x8000, "uint32")), tirx.const(16, "uint32")),
    )
    high = widen(
        tirx.bitwise_and(tirx.shift_right(pair, tirx.const(3, "uint32")), tirx.const(0x0FFFE000, "uint32")),
        tirx.bitwise_and(pair, tirx.const(0x80000000, "uint32")),
    )
    return low, high


# The compute stage that unpacks a weight inside a matmul's kernel. Fused TIR functions keep the
# name as the prefix of their first block, which is how the hand-written kernels recognize a
# 4-bit matmul (compiler/q4_fused.py).
DEQUANTIZE_STAGE = "dequantize"
