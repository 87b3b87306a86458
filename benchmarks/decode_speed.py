"""Benchmark (not a test): SmolLM2-135M generation speed in headless Chromium, per schedule class.

For each class: compile (cached), load in the page, then 3 runs of a chat prompt (prefill) and
64 greedy tokens (decode), timed inside the page; median tok/s. One more, profiled run counts
dispatches per decoded token and, where the adapter has `timestamp-query`, splits GPU time by
kernel family. Writes benchmarks/results/decode_speed-<class>.json (q4f32_1), or
decode_speed-<class>-<quant>.json for another `--quant`.

    .venv/bin/python benchmarks/decode_speed.py --schedules cpu-emulated [--quant q4f32_asym]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "smollm2-135m"
# Rendered with SmolLM2's chat template (default system prompt) this is 39 tokens.
PROMPT = "Give me a short introduction to language models."
NEW_TOKENS = 64
RUNS = 3
DEFAULT_QUANT = "q4f32_1"  # the figures in the README's history were taken with it

# Runs prefill and `steps` greedy decodes on window.model, each timed after its GPU work ends.
# Greedy runs as the engine runs it at temperature 0: the GPU picks each token and runs ahead of
# the token ids coming back (greedy_run.ts).
RUN_SCRIPT = """async ([ids, steps]) => {
  model.reset();
  const t0 = performance.now();
  const tokens = [await model.prefillGreedy(ids)];
  const t1 = performance.now();
  const run = model.greedyRun(tokens[0], steps);
  for (let i = 0; i < steps; i++) tokens.push(await run.next());
  run.close();
  const t2 = performance.now();
  return {prefill_ms: t1 - t0, decode_ms: t2 - t1, tokens: tokens.slice(0, steps)};
}"""

PREFILL_ONLY = "async (ids) => { model.reset(); await model.prefillGreedy(ids); }"
DECODE_ONE = "async (t) => { await model.decodeGreedy(t); }"

# Kernel name -> family; first match wins.
FAMILIES = [
    ("q4 matmul/gemv", r"dequantize_matmul|q4_gemv|q4_matmul"),
    ("attention", r"attention|batch_decode|batch_prefill|attn"),
    ("kv append + rotary", r"kv_cache|rope|append"),
    ("rms_norm", r"rms_norm"),
    ("silu*mul", r"silu"),
    ("embedding", r"embed"),
    ("greedy argmax", r"argmax"),
]


def family(kernel: str) -> str:
    return next((name for name, pattern in FAMILIES if re.search(pattern, kernel)), "other")


def chat_prompt_ids(tokenizer_path: Path, chat_template: str) -> list[int]:
    import jinja2.sandbox
    from tokenizers import Tokenizer

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(chat_template).render(
        messages=[{"role": "user", "content": PROMPT}], add_generation_prompt=True
    )
    return Tokenizer.from_file(str(tokenizer_path)).encode(text, add_special_tokens=False).ids


def split_by_family(timed_ns: dict[str, int] | None) -> dict[str, float] | None:
    if timed_ns is None:
        return None
    split: dict[str, float] = {}
    for kernel, ns in timed_ns.items():
        split[family(kernel)] = split.get(family(kernel), 0.0) + ns / 1e6
    return {k: round(v, 2) for k, v in sorted(split.items(), key=lambda kv: -kv[1])}


def bench_class(schedules: str, runs_n: int, new_tokens: int, quantization: str) -> dict:
    from webllm_build.build import plan_and_build
    from webllm_build.plan import BuildOptions
    from webllm_build.serve import serve_in_background
    from webllm_build.verify import profiling
    from webllm_build.verify.browser import evaluate, launch_browser
    from webllm_build.verify.testing import PageModel, stage_models

    with tempfile.TemporaryDirectory(prefix="webllm-bench-speed-") as tmp:
        options = BuildOptions(model=MODEL, quantization=quantization, schedules=(schedules,))
        compiled = plan_and_build(options, Path(tmp) / "m", log=print)
        ids = chat_prompt_ids(compiled.tokenizer, compiled.config["chat_template"])
        site = stage_models(Path(tmp) / "site", {"smollm2": compiled.directory})
        with serve_in_background(site) as url, launch_browser() as browser:
            model = PageModel(browser, url, "smollm2")
            profiling.install(model.page, model.log)
            started = time.perf_counter()
            model.load_result = model.load()
            load_s = time.perf_counter() - started
            if model.load_result["error"]:
                raise SystemExit(f"load failed: {model.load_result['error']}\n{model.log.tail()}")
            adapter = evaluate(model.page, model.log, "webllm.probeWebGPU()")
            runs = [evaluate(model.page, model.log, RUN_SCRIPT, [ids, new_tokens]) for _ in range(runs_n)]
            # Profiled run: prefill, then one decode step counted alone, then the decode steps timed.
            profiling.reset(model.page, model.log, timing=False)
            evaluate(model.page, model.log, PREFILL_ONLY, ids)
            prefill_profile = profiling.collect(model.page, model.log)
            evaluate(model.page, model.log, DECODE_ONE, runs[0]["tokens"][0])
            decode_profile = profiling.collect(model.page, model.log)
            profiling.reset(model.page, model.log, timing=True)
            evaluate(model.page, model.log, DECODE_ONE, runs[0]["tokens"][1])
            decode_timed = profiling.collect(model.page, model.log)
            evaluate(model.page, model.log, PREFILL_ONLY, ids)
            prefill_timed = profiling.collect(model.page, model.log)

    prefill = [len(ids) / (r["prefill_ms"] / 1000) for r in runs]
    decode = [new_tokens / (r["decode_ms"] / 1000) for r in runs]
    return {
        "schedules": schedules,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_at_start": LOAD_AT_START,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "browser": browser_version(),
        "adapter": f"{adapter.get('vendor')} / {adapter.get('architecture')}",
        "fallback_adapter": adapter.get("isFallbackAdapter"),
        "model": f"{MODEL} {quantization}",
        # wasm instantiate, WebGPU pipelines (SwiftShader compiles every kernel here), weights.
        "model_load_s": round(load_s, 2),
        "prompt_tokens": len(ids),
        "new_tokens": new_tokens,
        "prefill_tok_s": [round(x, 2) for x in prefill],
        "decode_tok_s": [round(x, 2) for x in decode],
        "prefill_tok_s_median": round(statistics.median(prefill), 2),
        "decode_tok_s_median": round(statistics.median(decode), 2),
        "same_tokens_every_run": all(r["tokens"] == runs[0]["tokens"] for r in runs),
        "tokens": runs[0]["tokens"],
        "dispatches_per_decode_token": decode_profile["dispatches"],
        "dispatches_per_prefill": prefill_profile["dispatches"],
        "decode_kernels": decode_profile["counts"],
        "decode_gpu_ms_by_family": split_by_family(decode_timed["timed_ns"]),
        "prefill_gpu_ms_by_family": split_by_family(prefill_timed["timed_ns"]),
        "decode_gpu_ms_by_kernel": {
            k: round(v / 1e6, 3)
            for k, v in sorted((decode_timed["timed_ns"] or {}).items(), key=lambda kv: -kv[1])
        },
    }


def browser_version() -> str:
    from webllm_build.compiler.toolchain import find_chromium

    return str(find_chromium().version)


LOAD_AT_START = [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", default="cpu-emulated", help="schedule class(es), comma-separated")
    # Fewer runs and tokens only to get a first look at hopelessly slow builds.
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--new-tokens", type=int, default=NEW_TOKENS)
    parser.add_argument("--quant", default=DEFAULT_QUANT)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for schedules in args.schedules.split(","):
        result = bench_class(schedules, args.runs, args.new_tokens, args.quant)
        suffix = "" if args.quant == DEFAULT_QUANT else f"-{args.quant}"
        (RESULTS / f"decode_speed-{schedules}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "tokens"}, indent=2))


if __name__ == "__main__":
    main()
