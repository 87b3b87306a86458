"""What a fused 4-bit matmul function is, for the hand-written kernels of both schedule classes.

After operator fusion, quantize.dequantize_matmul becomes a TIR function of a `dequantize` block,
one multiply-accumulate reduction and elementwise epilogues (residual add, bias, Phi's bias +
gelu). `match_q4_matmul` finds its buffers; `apply_epilogue` rebuilds the epilogues as one
expression of the matmul's value, so a kernel folds them into its store and fusion still saves
their dispatches. Anything else (another dtype, an epilogue reading another element) is left to
the scheduled kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir, tirx
from tvm.ir import expr as ir_expr

from webllm_build.q4_format import BITS, DEQUANTIZE_STAGE, WIDE_BITS, half_pair_floats, values_per_word


@dataclass
class Q4Matmul:
    x: tirx.Buffer
    weight: tirx.Buffer
    scale: tirx.Buffer  # per group; with `paired`, the f16 scale / minimum pairs (q4_format.py)
    minimum: tirx.Buffer | None  # asymmetric schemes' per-group minimum (w = scale * q + minimum)
    matmul: tirx.Buffer  # the reduction's own output, read by the first epilogue
    out: tirx.Buffer  # what the function finally writes
    epilogues: list[tirx.SBlock]
    paired: bool = False  # `scale` holds both, and `minimum` is None

    @property
    def asymmetric(self) -> bool:
        return self.minimum is not None or self.paired

    def group_scale(self, loaded):
        """A group's scale as float32, from its element of `scale` as loaded."""
        return half_pair_floats(loaded)[0] if self.paired else tirx.Cast("float32", loaded)

    def group_minimum(self, loaded_scale, row, group):
        """A group's minimum as float32 (asymmetric schemes): from the pair its scale came in,
        or loaded from `minimum`."""
        if self.paired:
            return half_pair_floats(loaded_scale)[1]
        return tirx.Cast("float32", self.minimum[row, group])


def _blocks(func: tirx.PrimFunc) -> list[tirx.SBlock]:
    sch = s_tir.Schedule(func)
    return [sch.get(block) for block in sch.get_child_blocks(sch.get_sblock("root"))]


class Unsupported(Exception):
    """An expression node the rewriter does not know: the rule declines the function."""


def _rewrite(expr, replace):
    """`expr` rebuilt bottom-up, with `replace(node)` (when not None) standing for a node.

    TVM 0.27 has no Python expression mutator; epilogues are small arithmetic, so the node
    kinds they use are rebuilt here and anything else declines the rule.
    """
    replaced = replace(expr)
    if replaced is not None:
        return replaced
    if isinstance(expr, (tirx.IntImm, tirx.FloatImm, tirx.Var)):
        return expr
    if isinstance(expr, ir_expr.TensorLoad):
        return tirx.BufferLoad(expr.source, [_rewrite(i, replace) for i in expr.indices])
    if isinstance(expr, tirx.Cast):
        return tirx.Cast(str(expr.ty), _rewrite(expr.value, replace))
    if isinstance(expr, ir_expr.Call):
        args = [_rewrite(a, replace) for a in expr.args]
        return ir_expr.Call(expr.op, args, expr.attrs, expr.ty_args, ret_ty=expr.ty)
    if isinstance(expr, tirx.Select):
        parts = (expr.condition, expr.true_value, expr.false_value)
        return tirx.Select(*(_rewrite(e, replace) for e in parts))
    if hasattr(expr, "a") and hasattr(expr, "b"):  # Add, Mul, Max, LT, And, ...
        return type(expr)(_rewrite(expr.a, replace), _rewrite(expr.b, replace))
    raise Unsupported(type(expr).__name__)


def _loaded_buffers(expr) -> list[tirx.Buffer]:
    found: list[tirx.Buffer] = []

    def visit(node):
        if isinstance(node, ir_expr.TensorLoad) and not any(b.same_as(node.source) for b in found):
            found.append(node.source)
        return None

    _rewrite(expr, visit)
    return found


def match_q4_matmul(func: tirx.PrimFunc) -> Q4Matmul | None:
    blocks = _blocks(func)
    if len(blocks) < 2 or not blocks[0].name_hint.startswith(DEQUANTIZE_STAGE):
        return None
    dequantize, matmul, *epilogues = blocks
    if len(matmul.iter_vars) < 2 or matmul.iter_vars[-1].iter_type != tirx.IterVar.CommReduce:
        return None
    if any(iv.iter_type != tirx.IterVar.DataPar for iv in matmul.iter_vars[:-1]):
        return None
    quantized = _loaded_buffers(dequantize.body.value)
    words = [b for b in quantized if b.dtype == "uint32"]
    # The packed weight, then the scale and (asymmetric) the minimum, or their f16 pairs: the
    # order quantize._te_dequantize loads them in.
    scales = [b for b in quantized if b.dtype != "uint32"]
    paired = not scales and len(words) == 2
    scales = words[1:] if paired else scales
    activations = [b for b in _loaded_buffers(matmul.body.value) if not b.same_as(dequantize.body.buffer)]
    if len(words) != 1 + paired or len(scales) not in (1, 2) or len(activations) != 2:
        return None
    x = next(b for b in activations if not b.same_as(matmul.body.buffer))
    out = matmul.body.buffer
    for block in epilogues:
        store = block.body
        if not isinstance(store, tirx.BufferStore) or block.init is not None:
            return None
        if [str(i) for i in store.indices] != [str(iv.var) for iv in block.iter_vars]:
            return None
        if len(store.indices) != len(out.shape):
            return None
        out = store.buffer
    minimum = scales[1] if len(scales) == 2 else None
    if minimum is not None and [str(d) for d in minimum.shape] != [str(d) for d in scales[0].shape]:
        return None
    return Q4Matmul(x, words[0], scales[0], minimum, matmul.body.buffer, out, epilogues, paired)


def apply_epilogue(match: Q4Matmul, value, indices: list):
    """The fused elementwise blocks applied to the matmul's `value` at output `indices`.

    A block may read any earlier intermediate (gelu reads its input twice), always at its own
    element; each is replaced by the expression that produced it.
    """
    produced = [(match.matmul, value)]
    for block in match.epilogues:
        iter_vars = [iv.var for iv in block.iter_vars]
        at = dict(zip(iter_vars, indices, strict=True))

        def replace(node, at=at, iter_vars=iter_vars):
            if isinstance(node, ir_expr.TensorLoad):
                source = next((v for buf, v in produced if buf.same_as(node.source)), None)
                if source is None:
                    return None
                if len(node.indices) != len(iter_vars) or not all(
                    i.same_as(v) for i, v in zip(node.indices, iter_vars, strict=True)
                ):
                    raise Unsupported("an intermediate read at another element")
                return source
            if isinstance(node, tirx.Var):
                return next((index for var, index in at.items() if var.same_as(node)), None)
            return None

        produced.append((block.body.buffer, _rewrite(block.body.value, replace)))
    return produced[-1][1]


def whole_word_shapes(match: Q4Matmul, bits: int = BITS) -> tuple[int, int, int, int] | None:
    """(rows, words per row, reduction length, groups) of a matmul of `bits`-wide values whose
    rows and groups are whole packed words, the layout the hand-written kernels read; else None."""
    rows_total, words = (int(e) for e in match.weight.shape)
    reduce_len = int(match.x.shape[-1])
    groups = int(match.scale.shape[-1])
    group_len = reduce_len // groups
    per_word = values_per_word(bits)
    if words * per_word != reduce_len or reduce_len % groups or group_len % per_word:
        return None
    return rows_total, words, reduce_len, groups


def value_bits(match: Q4Matmul) -> int:
    """How wide the packed values are: 4, or WIDE_BITS for a module kept at 8 bits (asymmetric
    schemes only)."""
    words, reduce_len = int(match.weight.shape[-1]), int(match.x.shape[-1])
    wide = match.asymmetric and words * values_per_word(WIDE_BITS) == reduce_len
    return WIDE_BITS if wide else BITS


def flat_token_count(lead: list):
    """How many tokens the leading (batch, sequence) dimensions `lead` hold: an expression
    where the sequence length is dynamic."""
    count = lead[0]
    for extent in lead[1:]:
        count = count * extent
    return count


def unravel(flat, shape) -> list:
    """Indices into `shape` of row-major position `flat` (known to be in range).

    Unit dimensions get 0 and the outermost other one the quotient as is: no modulo by a
    dynamic sequence length, which would cost a branchy select per use on WebGPU.
    """
    kept = [d for d, extent in enumerate(shape) if not (isinstance(extent, tirx.IntImm) and int(extent) == 1)]
    indices = [tirx.IntImm("int64", 0)] * len(shape)
    for d in reversed(kept):
        if d == kept[0]:
            indices[d] = flat
        else:
            indices[d] = tirx.floormod(flat, shape[d])
            flat = tirx.floordiv(flat, shape[d])
    return indices
