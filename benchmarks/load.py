"""Benchmark (not a test): cold and warm weight loading of SmolLM2-135M q4f32_1 in Chromium.

Cold: a fresh browser context downloads every shard from the local server (loopback).
Warm: the same context reloads the page and loads from the Cache API. Times are split into
download, hash (sha256), store and GPU upload as the engine reports them. Writes
benchmarks/results/load.json.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "load.json"


def main() -> None:
    from webllm_build.build import plan_and_build
    from webllm_build.plan import BuildOptions
    from webllm_build.serve import serve_in_background
    from webllm_build.verify.browser import evaluate, launch_browser
    from webllm_build.verify.testing import PageModel, stage_models

    with tempfile.TemporaryDirectory(prefix="webllm-bench-load-") as tmp:
        compiled = plan_and_build(BuildOptions(model="smollm2-135m", quantization="q4f32_1"), Path(tmp) / "m")
        site = stage_models(Path(tmp) / "site", {"smollm2": compiled.directory})
        manifest = json.loads((compiled.directory / "tensor-cache.json").read_text())
        wire = {"shards": 0}

        def count(request) -> None:
            if "/params-" in request.path:
                wire["shards"] += (site / request.path.lstrip("/")).stat().st_size

        with serve_in_background(site, on_request=count) as url, launch_browser() as browser:
            start = time.perf_counter()
            model = PageModel.loaded(browser, url, "smollm2")
            cold_s = time.perf_counter() - start
            cold = model.load_result["report"]
            adapter = evaluate(model.page, model.log, "webllm.probeWebGPU()")
            model.reload()
            start = time.perf_counter()
            warm = model.load()["report"]
            warm_s = time.perf_counter() - start

    def row(report: dict, seconds: float) -> dict:
        t = report["timings"]
        return {
            "page_load_s": round(seconds, 2),
            "weights_wall_s": round(t["wallMs"] / 1000, 2),
            "download_s": round(t["downloadMs"] / 1000, 2),
            "hash_s": round(t["verifyMs"] / 1000, 2),
            "store_s": round(t["storeMs"] / 1000, 2),
            "gpu_upload_s": round(t["uploadMs"] / 1000, 2),
            "shards_from_cache": report["fromCache"],
            "shards_from_network": report["fromNetwork"],
        }

    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "adapter": f"{adapter.get('vendor')} / {adapter.get('architecture')}",
        "model": "smollm2-135m q4f32_1",
        "shards": len(manifest["records"]),
        "weight_bytes_stored": manifest["metadata"]["ParamBytes"],
        "weight_bytes_on_wire_cold": wire["shards"],
        "f32_equivalent_bytes": manifest["metadata"]["ParamSize"] * 4,
        "cold": row(cold, cold_s),
        "warm": row(warm, warm_s),
        "note": "timings are summed over shards; 4 workers overlap, so parts can exceed the wall time",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
