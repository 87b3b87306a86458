"""The compile targets: WebGPU kernels with a wasm32 host for browsers, LLVM for the CPU reference."""

from __future__ import annotations

from tvm.target import Target

WASM_TRIPLE = "wasm32-unknown-unknown-wasm"


def webgpu_target() -> Target:
    # TVM 0.27 dropped CLI-style target strings ("llvm -mtriple=..."): only the dict form works.
    return Target("webgpu", host={"kind": "llvm", "mtriple": WASM_TRIPLE})


def cpu_target() -> Target:
    return Target({"kind": "llvm"})
