"""Benchmark (not a test): cold build of the TVM wasm runtime and one model-library link.

Runs against a fresh temporary cache, so the runtime build is really cold. Writes
benchmarks/results/toolchain.json; the README quotes it.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "toolchain.json"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="webllm-bench-cache-") as cache:
        os.environ["WEBLLM_BUILD_CACHE"] = cache
        import tvm

        from webllm_build.compiler.link import link_wasm
        from webllm_build.compiler.runtime import build_runtime
        from webllm_build.compiler.target import webgpu_target
        from webllm_build.compiler.toolchain import find_emcc
        from webllm_build.verify.selfcheck import DenseSoftmax

        start = time.perf_counter()
        runtime = build_runtime(print)
        cold_runtime_s = time.perf_counter() - start

        start = time.perf_counter()
        build_runtime()
        warm_runtime_s = time.perf_counter() - start

        start = time.perf_counter()
        executable = tvm.compile(DenseSoftmax, webgpu_target())
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        wasm = link_wasm(executable, Path(cache) / "dense_softmax.wasm", runtime)
        link_s = time.perf_counter() - start

        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "emcc": find_emcc().version,
            "tvm": tvm.__version__,
            "runtime_cold_build_s": round(cold_runtime_s, 1),
            "runtime_warm_lookup_s": round(warm_runtime_s, 2),
            "runtime_object_bytes": sum(o.stat().st_size for o in runtime.objects),
            "dense_softmax_compile_s": round(compile_s, 1),
            "dense_softmax_link_s": round(link_s, 1),
            "dense_softmax_wasm_bytes": wasm.stat().st_size,
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
