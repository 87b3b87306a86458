"""Load-time weight layout: `prepare_params`, which every library exports, and word-major 4-bit
weights for the `cpu-emulated` class.

The weight files are one set for every library (convert.py packs each row's 4-bit values into
consecutive uint32 words). The cpu-emulated kernel reads faster when the 4 lanes of a SIMD
group read 4 adjacent words, i.e. word w of row n at w * N + n: on SwiftShader (2-core x86,
HeadlessChrome 156.0.8078.79) SmolLM2-135M's prefill went from 18.9 to 22.9 tokens/s, its
decode stayed within noise (9.22 -> 9.28). So instead of a
second download, the library relays those weights on the GPU once, when the page loads: the
browser calls `prepare_params(params)` and uses what it returns. The shapes and dtypes stay
[N, K/8] uint32; only the order of the words changes.

A weight is relaid only when every function that reads it is the hand-written 4-bit kernel
(compiler/q4_matmul.py), which is then told so; a weight also read by another kernel (a tied
embedding's lookup) keeps its row-major layout, and so do the matmuls that read it. Other
libraries export `prepare_params` as the identity, so the loading protocol is the same for all.
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx
from tvm.script import tirx as T

from webllm_build.compiler.q4_matmul import WORD_MAJOR_ATTR, weight_argument

THREADS = 256


def add_prepare_params(mod: tvm.IRModule, word_major: bool) -> tvm.IRModule:
    """`mod` plus `prepare_params`; with `word_major`, it relays the eligible 4-bit weights and
    the matmuls that read them are marked to expect that layout."""
    params = _packed_params(mod)
    if params is None:
        return mod
    relaid, kernels = _word_major_weights(mod) if word_major else (set(), set())
    for gvar in kernels:
        mod[gvar] = mod[gvar].with_attr(WORD_MAJOR_ATTR, True)
    return _with_prepare_params(mod, params, relaid)


def _params_of(func) -> relax.Var | None:
    """A model function's parameter tuple (param_mode "packed": after its `num_input` inputs)."""
    if isinstance(func, relax.Function) and func.attrs and "num_input" in func.attrs:
        extra = func.params[int(func.attrs["num_input"]) :]
        if len(extra) == 1 and isinstance(extra[0].ty, tvm.ir.TupleType):
            return extra[0]
    return None


def _packed_params(mod: tvm.IRModule) -> tvm.ir.TupleType | None:
    """The type of the parameter tuple the model functions take."""
    found = [_params_of(func) for func in mod.functions.values()]
    return next((var.ty for var in found if var is not None), None)


def _word_major_weights(mod: tvm.IRModule) -> tuple[set[int], set[tvm.ir.GlobalVar]]:
    """(parameter indices to relay, kernels that then read word-major)."""
    weight_position = {}
    for gvar, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            position = weight_argument(func)
            if position is not None:
                weight_position[gvar] = position
    as_weight: dict[int, set[tvm.ir.GlobalVar]] = {}  # param -> kernels reading it as their weight
    other_use: set[int] = set()
    kernel_params: dict[tvm.ir.GlobalVar, set[int | None]] = {}  # what each kernel's weight is
    for func in mod.functions.values():
        tuple_var = _params_of(func)
        if tuple_var is None:
            continue
        index_of: dict[relax.Var, int] = {}
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.TupleGetItem) and value.tuple_value.same_as(tuple_var):
                    index_of[binding.var] = value.index
                    continue
                kernel = value.args[0] if _is_call_tir(value) else None
                arguments = list(value.args[1].fields) if kernel is not None else _vars_in(value)
                if any(a.same_as(tuple_var) for a in arguments):
                    return set(), set()  # the whole tuple goes somewhere we cannot follow
                for position, argument in enumerate(arguments):
                    index = index_of.get(argument) if isinstance(argument, relax.Var) else None
                    if kernel is not None and weight_position.get(kernel) == position:
                        kernel_params.setdefault(kernel, set()).add(index)
                        if index is not None:
                            as_weight.setdefault(index, set()).add(kernel)
                    elif index is not None:
                        other_use.add(index)
    # A kernel reads word-major only if all its weights are relaid, and a weight is relaid only
    # if all its kernels read word-major: drop both until they agree.
    relaid = set(as_weight) - other_use
    while True:
        kernels = {k for k, indices in kernel_params.items() if indices <= relaid}
        still = {i for i in relaid if as_weight[i] <= kernels}
        if still == relaid:
            return relaid, kernels
        relaid = still


def _is_call_tir(value) -> bool:
    return isinstance(value, relax.Call) and value.op.same_as(tvm.ir.Op.get("relax.call_tir"))


def _vars_in(value) -> list[relax.Var]:
    found: list[relax.Var] = []

    def visit(node) -> None:
        if isinstance(node, relax.Var):
            found.append(node)

    relax.analysis.post_order_visit(value, visit)
    return found


def _with_prepare_params(mod: tvm.IRModule, params: tvm.ir.TupleType, relaid: set[int]) -> tvm.IRModule:
    builder = relax.BlockBuilder(mod)
    packed = relax.Var("packed_params", params)
    with builder.function("prepare_params", [packed]):
        with builder.dataflow():
            fields = []
            for index, info in enumerate(params.fields):
                field = builder.emit(relax.TupleGetItem(packed, index))
                if index in relaid:
                    rows, words = (int(e) for e in info.shape.values)
                    name = f"to_word_major_{rows}x{words}"
                    relayout = _to_word_major(rows, words).with_attr("global_symbol", name)
                    kernel = builder.add_func(relayout, name)
                    field = builder.emit(relax.call_tir(kernel, [field], info))
                fields.append(field)
            output = builder.emit_output(relax.Tuple(fields))
        builder.emit_func_output(output)
    return builder.finalize()


def _to_word_major(rows: int, words: int) -> tirx.PrimFunc:
    total = rows * words
    blocks = (total + THREADS - 1) // THREADS

    @T.prim_func(s_tir=True)
    def to_word_major(src: T.Buffer((rows, words), "uint32"), dst: T.Buffer((rows, words), "uint32")):
        T.func_attr({"tirx.is_scheduled": True, "tirx.noalias": True})
        for bx in T.thread_binding(blocks, thread="blockIdx.x"):
            for tx in T.thread_binding(THREADS, thread="threadIdx.x"):
                with T.sblock("to_word_major"):
                    T.reads()
                    T.writes()
                    dst_flat = T.decl_buffer((total,), "uint32", data=dst.data)
                    at: T.let[T.int32] = bx * THREADS + tx
                    if at < total:
                        dst_flat[at % words * rows + at // words] = src[at // words, at % words]

    return to_word_major
