"""Benchmark (not a test): compile time and output sizes of SmolLM2-135M per quantization.

Each build compiles and links from scratch (a fresh library cache; the wasm runtime is reused,
its cold build is benchmarks/toolchain.py's subject). Writes benchmarks/results/compile.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "compile.json"
QUANTIZATIONS = ("q4f32_1", "q4f16_1", "q0f32", "q0f16")


def main() -> None:
    from webllm_build.compiler.runtime import build_runtime, runtime_root

    runtime = build_runtime(print)
    rows = []
    with tempfile.TemporaryDirectory(prefix="webllm-bench-") as tmp:
        cache = Path(tmp) / "cache"
        shutil.copytree(runtime.directory, cache / "runtime" / runtime.directory.name)
        os.environ["WEBLLM_BUILD_CACHE"] = str(cache)
        assert runtime_root() == cache / "runtime"
        from webllm_build.build import plan_and_build
        from webllm_build.plan import BuildOptions

        for quantization in QUANTIZATIONS:
            start = time.perf_counter()
            out = plan_and_build(
                BuildOptions(model="smollm2-135m", quantization=quantization), Path(tmp) / quantization
            )
            seconds = time.perf_counter() - start
            weights = sum(p.stat().st_size for p in out.directory.glob("params-*.bin"))
            rows.append(
                {
                    "model": "smollm2-135m",
                    "quantization": quantization,
                    "compile_and_link_s": round(seconds, 1),
                    "wasm_bytes": out.library.stat().st_size,
                    "weight_bytes": weights,
                }
            )
            print(rows[-1])
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "target": "webgpu", "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
