"""Benchmark (not a test): `webllm_build bench` on SmolLM2-135M-Instruct, q4f32_1 and q0f32.

Builds one site per quantization (compiled libraries are cached), runs bench on each in headless
Chromium and writes benchmarks/results/bench_smollm2.json (both reports) and bench_smollm2.png.
The defaults suit SwiftShader, the CI machine's adapter (~10 prefill / ~5 decode tokens/s for
q4f32_1); on a real GPU pass larger ones: site_bench.py 16,128,512 128 3.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
QUANTIZATIONS = ("q4f32_1", "q0f32")


def main(prompt_tokens: str = "16,64,128", gen_tokens: int = 32, runs: int = 3) -> None:
    from webllm_build.site import SiteOptions, build_site
    from webllm_build.verify.bench import BenchOptions, format_report, plot_report, run_bench

    reports = []
    with tempfile.TemporaryDirectory(prefix="webllm-site-bench-") as tmp:
        for quantization in QUANTIZATIONS:
            site = build_site(
                SiteOptions(models=["smollm2-135m"], quantization=quantization, out=Path(tmp) / quantization),
                lambda m: print(m, file=sys.stderr),
            )
            options = BenchOptions(
                target=str(site.directory),
                prompt_tokens=tuple(int(t) for t in prompt_tokens.split(",")),
                gen_tokens=gen_tokens,
                runs=runs,
            )
            report = run_bench(options, lambda m: print(m, file=sys.stderr, flush=True))
            print(format_report(report), flush=True)
            reports.append(report)
    combined = {**reports[0], "models": [m for r in reports for m in r["models"]]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_smollm2.json").write_text(json.dumps(combined, indent=2) + "\n")
    plot_report(combined, RESULTS / "bench_smollm2.png")


if __name__ == "__main__":
    main(*(int(a) if i else a for i, a in enumerate(sys.argv[1:])))
