"""Prove the toolchain end to end on a tiny Relax module with a dynamic dimension.

softmax(x @ w + b) with x of shape (n, 64) is compiled for WebGPU with a wasm32 host, linked
with our runtime, run by tvmjs in headless Chromium for two values of n, and compared with
numpy; the same module compiled for the CPU is compared too, since later stages use the CPU
build as a fast reference.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from webllm_build.compiler.link import link_wasm
from webllm_build.compiler.runtime import build_runtime
from webllm_build.compiler.target import cpu_target, webgpu_target
from webllm_build.errors import BrowserError
from webllm_build.serve import serve_in_background
from webllm_build.verify.browser import BrowserSession, evaluate, launch_browser, write_harness

IN_FEATURES, OUT_FEATURES = 64, 32
# Two lengths, one not a multiple of any workgroup size, so nothing can assume a fixed shape.
SEQUENCE_LENGTHS = (3, 37)
# f32 on SwiftShader vs float64 numpy; softmax outputs are in [0, 1].
TOLERANCE = 1e-5


@I.ir_module
class DenseSoftmax:
    @R.function
    def main(
        x: R.Tensor(("n", IN_FEATURES), "float32"),
        w: R.Tensor((IN_FEATURES, OUT_FEATURES), "float32"),
        b: R.Tensor((OUT_FEATURES,), "float32"),
    ) -> R.Tensor(("n", OUT_FEATURES), "float32"):
        with R.dataflow():
            logits = R.add(R.matmul(x, w), b)
            probs = R.nn.softmax(logits, axis=-1)
            R.output(probs)
        return probs


def reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    logits = x.astype(np.float64) @ w.astype(np.float64) + b
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def make_inputs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, IN_FEATURES), dtype=np.float32)
    w = rng.standard_normal((IN_FEATURES, OUT_FEATURES), dtype=np.float32) * 0.3
    b = rng.standard_normal(OUT_FEATURES, dtype=np.float32)
    return x, w, b


@dataclass
class SelfCheckReport:
    cpu_max_error: dict[int, float] = field(default_factory=dict)
    webgpu_max_error: dict[int, float] = field(default_factory=dict)
    adapter: dict = field(default_factory=dict)
    wasm_bytes: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        errors = [*self.cpu_max_error.values(), *self.webgpu_max_error.values()]
        return len(errors) == 2 * len(SEQUENCE_LENGTHS) and max(errors) <= TOLERANCE


def run_on_cpu(cases: dict[int, tuple[np.ndarray, ...]]) -> dict[int, np.ndarray]:
    executable = tvm.compile(DenseSoftmax, cpu_target())
    vm = relax.VirtualMachine(executable, tvm.cpu())
    dev = tvm.cpu()
    return {
        n: vm["main"](*(tvm.runtime.tensor(a, device=dev) for a in arrays)).numpy()
        for n, arrays in cases.items()
    }


def build_webgpu_library(output: Path, log: Callable[[str], None]) -> Path:
    runtime = build_runtime(log)
    executable = tvm.compile(DenseSoftmax, webgpu_target())
    return link_wasm(executable, output, runtime)


def run_in_browser(
    wasm: Path, cases: dict[int, tuple[np.ndarray, ...]], browser: BrowserSession | None = None
) -> tuple[dict, dict]:
    """Run the library in headless Chromium; returns (outputs by n, adapter report).

    Pass `browser` to reuse a running session (Playwright's sync API cannot nest).
    """
    site = write_harness(wasm.parent, "webllm_build self-check")
    with serve_in_background(site) as url, ExitStack() as stack:
        session = browser or stack.enter_context(launch_browser())
        page, log = session.open(url)
        adapter = evaluate(page, log, "webllm.probeWebGPU()")
        if not adapter.get("available"):
            raise BrowserError(
                f"Headless Chromium has no WebGPU adapter ({adapter.get('reason')}). "
                "Run `webllm_build doctor` to see what is missing."
            )
        evaluate(page, log, "async (url) => { window.lib = await webllm.loadLibrary(url); }", wasm.name)
        outputs = {}
        for n, arrays in cases.items():
            inputs = [{"shape": list(a.shape), "data": a.ravel().tolist()} for a in arrays]
            result = evaluate(page, log, "(inputs) => webllm.runFloat32(window.lib, 'main', inputs)", inputs)
            outputs[n] = np.asarray(result["data"], dtype=np.float32).reshape(result["shape"])
    return outputs, adapter


def run_selfcheck(log: Callable[[str], None] = print) -> SelfCheckReport:
    report = SelfCheckReport()
    rng = np.random.default_rng(0)
    cases = {n: make_inputs(n, rng) for n in SEQUENCE_LENGTHS}
    expected = {n: reference(*arrays) for n, arrays in cases.items()}

    start = time.perf_counter()
    for n, out in run_on_cpu(cases).items():
        report.cpu_max_error[n] = float(np.abs(out - expected[n]).max())
    report.timings["cpu_compile_and_run_s"] = time.perf_counter() - start
    log(f"CPU (llvm): max |error| {max(report.cpu_max_error.values()):.2e}")

    with tempfile.TemporaryDirectory(prefix="webllm-selfcheck-") as tmp:
        start = time.perf_counter()
        wasm = build_webgpu_library(Path(tmp) / "dense_softmax.wasm", log)
        report.timings["webgpu_compile_and_link_s"] = time.perf_counter() - start
        report.wasm_bytes = wasm.stat().st_size
        log(
            f"Linked {wasm.name}: {report.wasm_bytes / 1e6:.1f} MB in "
            f"{report.timings['webgpu_compile_and_link_s']:.1f} s"
        )
        start = time.perf_counter()
        outputs, report.adapter = run_in_browser(wasm, cases)
        report.timings["browser_s"] = time.perf_counter() - start
    for n, out in outputs.items():
        report.webgpu_max_error[n] = float(np.abs(out - expected[n]).max())
    log(
        f"WebGPU in headless Chromium ({report.adapter.get('vendor')} "
        f"{report.adapter.get('architecture')}): max |error| "
        f"{max(report.webgpu_max_error.values()):.2e} for n = {', '.join(map(str, outputs))}"
    )
    return report
