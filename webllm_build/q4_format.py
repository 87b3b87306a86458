"""The 4-bit weight format, in one place: quantize.py packs it, the compiler's kernels unpack it.

`q4f*_1` is symmetric group quantization: each group of `group_size` consecutive input weights
of an output row shares one scale (max |w| / MAX_INT); a value q in [-MAX_INT, MAX_INT] is stored
as the nibble q + MAX_INT, eight nibbles to a uint32 word, lowest nibble first. A weight of
shape (rows, cols) becomes `q_weight` (rows, cols / VALUES_PER_WORD) uint32 and `q_scale`
(rows, cols / group_size) in the model's dtype.

Asymmetric schemes may keep a weight at WIDE_BITS instead: four bytes to a word, each the value
q in 0..255, `scale * q + minimum` like the 4-bit groups. They are how a GGUF file's Q8_0
tensors (int8 times an f16 scale per 32 values) are taken over exactly (convert.py).
"""

from __future__ import annotations

BITS = 4
NIBBLE_MASK = (1 << BITS) - 1
VALUES_PER_WORD = 32 // BITS
MAX_INT = 7  # stored nibble = q + MAX_INT, in [0, 14]
WIDE_BITS = 8


def values_per_word(bits: int) -> int:
    return 32 // bits


# The compute stage that unpacks a weight inside a matmul's kernel. Fused TIR functions keep the
# name as the prefix of their first block, which is how the hand-written kernels recognize a
# 4-bit matmul (compiler/q4_fused.py).
DEQUANTIZE_STAGE = "dequantize"
