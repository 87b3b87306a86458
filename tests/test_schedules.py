"""Kernel schedule classes: what each generates (WGSL), without linking or a browser.

Numerical parity of every class is tested in the browser (test_browser_models.py); here, that
the cpu-emulated kernels really avoid what is slow on an emulator (workgroup memory, barriers).
"""

from __future__ import annotations

import re

import pytest
import tvm
from tvm import relax
from tvm.relax.frontend import nn

from webllm_build.compiler.attention import AttentionShape, _decode, _prefill_paged, _prefill_ragged
from webllm_build.compiler.pipeline import compile_module
from webllm_build.compiler.schedules import SCHEDULE_CLASSES, schedule_classes
from webllm_build.compiler.target import webgpu_target
from webllm_build.errors import OptionsError
from webllm_build.quantize import GroupQuantLinear, get_quantization


class _Block(nn.Module):
    """RMSNorm, a 4-bit linear layer and a residual add: the shapes of a decoder's hot path.
    `wide` keeps the first projection at 8 bits (asymmetric), as a GGUF's Q8_0 weight is."""

    def __init__(self, wide: bool = False) -> None:
        q = get_quantization("q4f32_asym" if wide else "q4f32_1")
        self.norm = nn.RMSNorm(64, -1, 1e-5, bias=False)
        self.proj = GroupQuantLinear(64, 96, False, q, 8 if wide else 4)
        self.out = GroupQuantLinear(96, 64, False, q)

    def forward(self, x: nn.Tensor) -> nn.Tensor:
        return x + self.out(self.proj(self.norm(x)))


def _wgsl(schedule_class: str, seq_len: int | str, wide: bool = False) -> str:
    mod, _ = _Block(wide).export_tvm(
        spec={"forward": {"x": nn.spec.Tensor([1, seq_len, 64], "float32"), "$": {"param_mode": "packed"}}}
    )
    for gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mod[gvar] = func.with_attr("tir_var_upper_bound", {"seq_len": 32})
    schedule = SCHEDULE_CLASSES[schedule_class]
    executable = compile_module(mod, webgpu_target(), schedule, AttentionShape(1, 1, 64, "float32"))
    return executable.mod.imports[0].imports[0].inspect_source()


@pytest.mark.parametrize("seq_len", [1, "seq_len"])
def test_cpu_emulated_kernels_use_no_workgroup_memory(seq_len):
    wgsl = _wgsl("cpu-emulated", seq_len)
    assert "var<workgroup>" not in wgsl
    assert "workgroupBarrier" not in wgsl


@pytest.mark.parametrize("seq_len", [1, "seq_len"])
def test_cpu_emulated_4bit_matmuls_are_the_hand_written_kernel(seq_len):
    wgsl = _wgsl("cpu-emulated", seq_len)
    kernels = [k for k in re.split(r"^fn ", wgsl, flags=re.M)[1:] if not k.startswith("to_word_major")]
    matmuls = [k for k in kernels if "dequantize_matmul" in k.split("(")[0]]
    # RMSNorm, the first projection, the second with the residual add folded into its store.
    assert len(kernels) == 3 and len(matmuls) == 2
    assert "add" in matmuls[1].split("(")[0]
    for kernel in matmuls:
        # Nibbles are masked in place (q * 16^b), never shifted down and masked.
        assert "(15u<<4u)" in kernel and ">> 28u" in kernel.replace(">>28u", ">> 28u")
        assert not re.search(r">>\s*4u\)\s*&\s*15u", kernel)


@pytest.mark.parametrize("seq_len", [1, "seq_len"])
def test_cpu_emulated_8bit_matmul_is_the_hand_written_kernel(seq_len):
    """A module kept at 8 bits: bytes masked in place (q * 256^b), the top one shifted down."""
    matmuls = _matmul_kernels(_wgsl("cpu-emulated", seq_len, wide=True))
    assert len(matmuls) == 2 and all("var<workgroup>" not in k for k in matmuls)
    wide, narrow = matmuls
    assert "(255u<<8u)" in wide and ">> 24u" in wide.replace(">>24u", ">> 24u")
    assert "(15u<<4u)" in narrow and ">> 28u" in narrow.replace(">>28u", ">> 28u")


def test_cpu_emulated_relays_4bit_weights_read_only_by_the_hand_written_kernel():
    """`prepare_params` relays each 4-bit weight word-major ([96, 8] and [64, 12] words here);
    the gpu class's `prepare_params` relays nothing. (That the kernels then read the relaid
    words correctly is the browser parity tests' job; Qwen2's tied embedding, read by a lookup
    too, stays row-major there.)"""
    relaid = sorted(re.findall(r"^fn (to_word_major_\w+?)_kernel", _wgsl("cpu-emulated", 1), flags=re.M))
    assert relaid == ["to_word_major_64x12", "to_word_major_96x8"]
    assert "to_word_major" not in _wgsl("gpu", 1)


def test_gpu_class_keeps_the_gpu_schedules():
    # dlight's GEMV and reductions stage partial sums in workgroup memory.
    assert "var<workgroup>" in _wgsl("gpu", 1)


def _matmul_kernels(wgsl: str) -> list[str]:
    kernels = re.split(r"^fn ", wgsl, flags=re.M)[1:]
    return [k for k in kernels if "dequantize_matmul" in k.split("(")[0]]


def test_gpu_class_prompt_matmuls_are_the_tiled_kernel():
    """A prompt's 4-bit matmuls are compiler/q4_gpu.py's: the activations and dequantized weights
    staged in workgroup memory, nibbles made floats without an int-to-float conversion (numerics
    are tested in the browser and under Deno against transformers)."""
    wgsl = _wgsl("gpu", "seq_len")
    assert "var<workgroup> xs" in wgsl and "var<workgroup> ws" in wgsl
    matmuls = _matmul_kernels(wgsl)
    assert len(matmuls) == 2
    for kernel in matmuls:
        assert "bitcast<f32>" in kernel and "f32(i32(" not in kernel
    # One token's GEMV stays dlight's.
    decode = _matmul_kernels(_wgsl("gpu", 1))
    assert decode and all("var<workgroup> xs" not in k and "f32(i32(" in k for k in decode)


def test_gpu_dot4_class_decodes_with_integer_dot_products():
    """gpu-dot4's one-token 4-bit matmuls stage the activations as two int8 planes and multiply
    with dot4I8Packed; its prompt matmuls stay the gpu class's; asymmetric schemes' GEMVs (a
    minimum per group) stay dlight's (numerics: tests/test_deno.py against transformers)."""
    wgsl = _wgsl("gpu-dot4", 1)
    decode = _matmul_kernels(wgsl)
    assert len(decode) == 2 and wgsl.count("var<workgroup> planes") == 2
    for kernel in decode:  # four a word of weights: high and low plane, even and odd nibbles
        assert kernel.count("dot4I8Packed(") % 4 == 0 and "dot4I8Packed(" in kernel
    assert _matmul_kernels(_wgsl("gpu-dot4", "seq_len")) == _matmul_kernels(_wgsl("gpu", "seq_len"))
    asymmetric = _matmul_kernels(_wgsl("gpu-dot4", 1, wide=True))
    assert len(asymmetric) == 2 and all("dot4I8Packed" not in k and "f32(i32(" in k for k in asymmetric)


def _loop_bodies(wgsl: str) -> list[str]:
    """The text of every loop's body in a WGSL source, by matching braces."""
    bodies = []
    for match in re.finditer(r"^\s*(?:(?:for|while)\s*\(.*|loop\s*)\{\s*$", wgsl, flags=re.M):
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(wgsl[end], 0)
            end += 1
        bodies.append(wgsl[match.end() : end])
    return bodies


@pytest.mark.parametrize("factory", [_decode, _prefill_paged, _prefill_ragged])
def test_cpu_emulated_attention_kernels_have_no_barrier_in_a_loop(factory):
    """SwiftShader switches between a workgroup's SIMD groups at every barrier: there is none in
    a loop. Prefill has threads enough without workgroup memory; decode (2 KV heads of 3 query
    heads here) merges its 4 threads' softmax states through it after the loop, a few barriers a
    query head (TVM may add one to ours)."""
    func = factory(2, 6, 64, "float32").with_attr("global_symbol", "main")
    wgsl = tvm.tirx.build(func, target=webgpu_target()).imports[0].inspect_source()
    bodies = _loop_bodies(wgsl)
    assert any("exp2" in body for body in bodies), "the key loop was not found"
    assert not any("workgroupBarrier" in body for body in bodies)
    if factory is _decode:
        assert 3 * 3 <= wgsl.count("workgroupBarrier") <= 4 * 3 and "var<workgroup>" in wgsl
    else:
        assert "workgroupBarrier" not in wgsl and "var<workgroup>" not in wgsl


def test_unknown_schedule_class_is_a_clear_error():
    with pytest.raises(OptionsError, match="cpu-emulated"):
        schedule_classes(("gpu", "tpu"))
    chosen = schedule_classes(("cpu-emulated", "gpu", "gpu"))
    assert [c.name for c in chosen] == ["cpu-emulated", "gpu"]
    # What the page reads from the model index to pick a library for its adapter.
    assert [c.adapter for c in chosen] == ["fallback", "hardware"]
