"""`webllm_build bench`: how fast a built site's models load and generate in headless Chromium.

Per run, a fresh browser context (empty HTTP and Cache API storage) loads the model from the
network (cold), the tab is reloaded and loads it again from the browser's cache (warm), then one
greedy completion per prompt length gives time to first token, prefill and decode tokens/s.
GPU memory is what the engine's runtimeStats() counts. A WebGPU microbenchmark in the same
browser measures the adapter's memory bandwidth and f32 matmul rate; decode is reported as a
fraction of the bandwidth roofline (weight bytes read per token x tokens/s / bandwidth).
Every measured number is reported as min / median / max over the runs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from webllm_build.atomic import atomic_write_text
from webllm_build.errors import OptionsError, ToolchainError, VerifyError
from webllm_build.verify import profiling
from webllm_build.verify.browser import evaluate, launch_runtime
from webllm_build.verify.sitepage import SitePage, fetch_json, select_models, site_url

REPORT_FORMAT = "webllm_build-bench-report"
MICROBENCH = Path(__file__).with_name("microbench.js")
# Filler for prompts of a given length: ordinary words, so every tokenizer splits it alike.
FILLER = (
    "The history of the printing press shows how a single invention can change the way people "
    "share ideas, learn new skills and argue about the world they live in. "
)
INSTALL_PLOT = "pip install 'webllm_build[plot]'   (matplotlib)"


@dataclass(frozen=True)
class BenchOptions:
    target: str  # a site folder or its URL
    models: tuple[str, ...] = ()  # empty: every model of the site
    prompt_tokens: tuple[int, ...] = (16, 128, 512)
    gen_tokens: int = 128
    runs: int = 3
    timeout_s: float = 1800
    browser: Path | None = None
    runtime: str = "chromium"  # or "chromium-gpu", "deno" (browser.RUNTIMES)
    # The microbenchmark's streaming-read size and the least time one timed submission takes.
    bandwidth_bytes: int = 64 << 20
    microbench_min_ms: float = 200
    # Also time the kernels of a prefill and of a few decode steps with timestamp queries.
    gpu_time: bool = False


# The constrained side of the decode comparison: a JSON object whose one string runs free, so the
# grammar is checked at every token (xgrammar's mask, uploaded, masked argmax on the GPU) while
# the reply can go on as long as the free one.
CONSTRAINED_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "bench",
        "schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
}


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """min / median / max of the measured values (None where a run failed)."""
    kept = [v for v in values if v is not None]
    if not kept:
        return {"min": None, "median": None, "max": None, "values": list(values)}
    return {"min": min(kept), "median": statistics.median(kept), "max": max(kept), "values": list(values)}


class PromptBuilder:
    """Chat messages whose rendered prompt is a given number of tokens (or the nearest below).

    Renders the model's own chat template with jinja2 and counts with its tokenizer.json, as
    the browser engine does; the engine's own count comes back in the report as prompt_tokens.
    """

    def __init__(self, model_url: str) -> None:
        import jinja2.sandbox
        from tokenizers import Tokenizer

        index = fetch_json(urljoin(model_url, "webllm-model.json"))
        config = fetch_json(urljoin(model_url, index["files"]["config"]["path"]))
        tokenizer_url = urljoin(model_url, index["files"]["tokenizer"]["path"])
        self.tokenizer = Tokenizer.from_str(json.dumps(fetch_json(tokenizer_url)))
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.template = env.from_string(config["chat_template"] or "")
        bos = config.get("bos_token_id")
        self.special = {
            "bos_token": self.tokenizer.id_to_token(bos) if bos is not None else "",
            "eos_token": self.tokenizer.id_to_token(config["eos_token_ids"][0]),
        }
        self.words = (FILLER * 8).split()

    def count(self, messages: list[dict[str, str]]) -> int:
        text = self.template.render(messages=messages, add_generation_prompt=True, **self.special)
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def messages(self, words: int) -> list[dict[str, str]]:
        repeated = self.words * (words // len(self.words) + 1)
        return [{"role": "user", "content": " ".join(repeated[:words])}]

    def build(self, target: int) -> list[dict[str, str]]:
        low, high = 0, 1
        while self.count(self.messages(high)) <= target:
            low, high = high, high * 2
        while high - low > 1:  # the most words that still fit
            middle = (low + high) // 2
            low, high = (middle, high) if self.count(self.messages(middle)) <= target else (low, middle)
        return self.messages(low)


def _raise(message: str) -> None:
    raise VerifyError(f"The chat template raised: {message}")


def run_microbenchmark(page: SitePage, options: BenchOptions) -> dict[str, Any]:
    text = MICROBENCH.read_text(encoding="utf-8")
    source = text[text.index("async (") :].rstrip().rstrip(";")
    settings = {"bandwidthBytes": options.bandwidth_bytes, "minMs": options.microbench_min_ms}
    return evaluate(page.page, page.log, source, settings)


def model_facts(url: str, entry: dict[str, Any]) -> dict[str, Any]:
    model_url = urljoin(url, entry["base_url"])
    index = fetch_json(urljoin(model_url, "webllm-model.json"))
    manifest = fetch_json(urljoin(model_url, index["files"]["tensor_cache"]["path"]))
    return {
        "id": entry["id"],
        "spec": index.get("model"),
        "quantization": index.get("quantization"),
        "download_bytes": entry.get("download_bytes"),
        # Decode reads every weight once per token (the embedding only one row, but most
        # models' lm_head reads a matrix of the same size), so this is the bytes per token. A
        # random-weights model downloads none (ParamBytes 0): its tensors are listed under random.
        "weight_bytes": manifest["metadata"]["ParamBytes"]
        or sum(record["nbytes"] for record in manifest.get("random", {}).get("records", [])),
    }


def _bench_model(
    browser: Any, url: str, entry: dict[str, Any], options: BenchOptions, log: Callable[[str], None]
) -> dict[str, Any]:
    facts = model_facts(url, entry)
    model_id = entry["id"]
    builder = PromptBuilder(urljoin(url, entry["base_url"]))
    prompts = {target: builder.build(target) for target in options.prompt_tokens}
    cold: list[float | None] = []
    warm: list[float | None] = []
    memory: list[float | None] = []
    peak: list[float | None] = []
    schedules: set[str] = set()  # the kernel class the page loaded (one, unless the site changed)
    per_prompt: dict[int, dict[str, list]] = {
        t: {
            "prompt_tokens": [],
            "ttft_s": [],
            "prefill_tokens_per_s": [],
            "decode_tokens_per_s": [],
            "completion_tokens": [],
        }
        for t in options.prompt_tokens
    }
    errors: list[str] = []
    # Free and constrained decoding of the same prompt, alternately in one page (run by run).
    constrained: dict[str, list[float | None]] = {"free": [], "constrained": []}
    for run in range(options.runs):
        log(f"{model_id}: run {run + 1} of {options.runs}: cold load...")
        page = SitePage(browser, url, timeout_s=options.timeout_s)  # a fresh context: empty caches
        try:
            loaded = page.load(model_id)
            cold.append(None if loaded["error"] else loaded["seconds"])
            if loaded["error"]:
                errors.append(f"run {run + 1}: cold load failed: {loaded['error']['message']}")
                continue
            log(f"{model_id}: run {run + 1}: warm load...")
            page.reload()
            loaded = page.load(model_id)
            warm.append(None if loaded["error"] else loaded["seconds"])
            if loaded["error"]:
                errors.append(f"run {run + 1}: warm load failed: {loaded['error']['message']}")
                continue
            for target, messages in prompts.items():
                log(f"{model_id}: run {run + 1}: {target}-token prompt, {options.gen_tokens} tokens...")
                page.reset()
                request = {"messages": messages, "max_tokens": options.gen_tokens, "temperature": 0}
                reply = page.create({**request, "ignore_eos": True})
                row = per_prompt[target]
                if reply["error"]:
                    errors.append(f"run {run + 1}, {target}-token prompt: {reply['error']['message']}")
                    for values in row.values():
                        values.append(None)
                    continue
                usage = reply["usage"]
                row["prompt_tokens"].append(usage["prompt_tokens"])
                row["completion_tokens"].append(usage["completion_tokens"])
                row["ttft_s"].append(reply["ttft_s"])
                row["prefill_tokens_per_s"].append(usage["prefill_tokens_per_s"])
                # One token gives no decode rate: the first comes out of the prefill.
                row["decode_tokens_per_s"].append(
                    usage["decode_tokens_per_s"] if usage["completion_tokens"] > 1 else None
                )
            log(f"{model_id}: run {run + 1}: free and constrained decoding, side by side...")
            first = prompts[options.prompt_tokens[0]]
            for kind, extra in (
                ("free", {"ignore_eos": True}),
                ("constrained", {"response_format": CONSTRAINED_FORMAT}),
            ):
                page.reset()
                reply = page.create(
                    {"messages": first, "max_tokens": options.gen_tokens, "temperature": 0, **extra}
                )
                if reply["error"]:
                    errors.append(f"run {run + 1}, {kind} decoding: {reply['error']['message']}")
                usage = reply["usage"]
                ok = not reply["error"] and usage["completion_tokens"] > 1
                constrained[kind].append(usage["decode_tokens_per_s"] if ok else None)
            stats = page.runtime_stats()
            memory.append(stats["gpu_allocated_bytes"] if stats else None)
            peak.append(stats["gpu_peak_bytes"] if stats else None)
            if stats and stats.get("schedule"):
                schedules.add(stats["schedule"])
            if stats is None:
                errors.append("the site's engine has no runtimeStats(): GPU memory unknown")
        finally:
            page.close()
    decode_all = [v for row in per_prompt.values() for v in row["decode_tokens_per_s"]]
    gpu = None
    if options.gpu_time:
        log(f"{model_id}: GPU time of a prefill and of {TIMED_DECODE_STEPS} decode steps...")
        gpu = _gpu_time(browser, url, model_id, prompts[options.prompt_tokens[0]], options)
    return {
        **facts,
        "gpu_time": gpu,
        "schedule": ",".join(sorted(schedules)) or None,
        "cold_load_s": spread(cold),
        "warm_load_s": spread(warm),
        "gpu_memory_bytes": spread(memory),
        "gpu_peak_bytes": spread(peak),
        "prompts": [
            {"target_tokens": target, **{name: spread(values) for name, values in row.items()}}
            for target, row in per_prompt.items()
        ],
        "decode_tokens_per_s": spread(decode_all),
        "constrained_decode": {
            "free_tokens_per_s": spread(constrained["free"]),
            "constrained_tokens_per_s": spread(constrained["constrained"]),
            # Per run: constrained over free, measured back to back.
            "ratio": spread(
                [
                    c / f if c and f else None
                    for c, f in zip(constrained["constrained"], constrained["free"], strict=True)
                ]
            ),
        },
        "errors": errors,
    }


# Decode steps timed kernel by kernel: few enough that every pass of a prefill and the steps fits
# the profiler's 2048 timestamp pairs.
TIMED_DECODE_STEPS = 3
# The quantized matrix-vector products of a decode step, by TIR kernel name (dlight's and ours).
QUANTIZED_GEMV = re.compile(r"dequantize_matmul|q4_gemv")


def _gpu_time(
    browser: Any, url: str, model_id: str, messages: list[dict[str, str]], options: BenchOptions
) -> dict[str, Any] | None:
    """GPU time by timestamp queries: one prefill (a 1-token reply) and, by difference with a
    reply TIMED_DECODE_STEPS tokens longer, a decode step. None where the adapter cannot time.
    The engine runs in the page, not in a browser's worker, so the profiler sees its dispatches."""
    page = SitePage(browser, url, timeout_s=options.timeout_s, engine_in_page=True)
    request = {"messages": messages, "temperature": 0, "ignore_eos": True}
    try:
        profiling.install(page.page, page.log)
        if page.load(model_id)["error"]:
            return None
        # An untimed reply first: the first use of each buffer and pipeline costs extra GPU time
        # (measured on the H200: without it a decode step came out negative).
        page.reset()
        page.create({**request, "max_tokens": 2})
        timed = []
        for tokens in (1, 1 + TIMED_DECODE_STEPS):
            page.reset()
            profiling.reset(page.page, page.log, timing=True)
            reply = page.create({**request, "max_tokens": tokens})
            profile = profiling.collect(page.page, page.log)
            if reply["error"] or not profile["timed_ns"] or profile["untimed"]:
                return None
            timed.append(profile)
        prefill, longer = (t["timed_ns"] for t in timed)
        per_step = {k: (ns - prefill.get(k, 0)) / TIMED_DECODE_STEPS / 1e6 for k, ns in longer.items()}
        steps = {
            k: (n - timed[0]["counts"].get(k, 0)) / TIMED_DECODE_STEPS for k, n in timed[1]["counts"].items()
        }
        gemvs = _gemvs_in_one_pass(page, request, steps, per_step)
    finally:
        page.close()
    top = sorted(per_step.items(), key=lambda kv: -kv[1])[:12]
    return {
        "prefill_ms": sum(prefill.values()) / 1e6,
        "prefill_dispatches": timed[0]["dispatches"],
        "decode_ms_per_token": sum(per_step.values()),
        "decode_dispatches_per_token": (timed[1]["dispatches"] - timed[0]["dispatches"]) / TIMED_DECODE_STEPS,
        "decode_ms_by_kernel": {name: round(ms, 4) for name, ms in top},
        "decode_gemvs": gemvs,
    }


def _gemvs_in_one_pass(
    page: SitePage,
    request: dict[str, Any],
    calls_per_step: dict[str, float],
    ms_per_step: dict[str, float],
) -> dict[str, Any] | None:
    """The decode step's quantized GEMVs timed as the engine runs them, in one compute pass: a
    reply's dispatches are recorded, then each GEMV kernel's dispatches (each layer's weights
    once) are replayed back to back in one timed pass. Timing every dispatch in its own pass (the
    per-kernel profile) adds each pass's fixed cost, several microseconds on an H100, to every
    call; the bandwidth microbenchmark is timed over many dispatches in one pass, as this is."""
    names = [k for k, calls in calls_per_step.items() if calls > 0 and QUANTIZED_GEMV.search(k)]
    if not names:
        return None
    page.reset()
    profiling.record(page.page, page.log, on=True)
    reply = page.create({**request, "max_tokens": 1 + TIMED_DECODE_STEPS})
    profiling.record(page.page, page.log, on=False)
    if reply["error"]:
        return None
    replayed = profiling.replay(page.page, page.log, "^(" + "|".join(map(re.escape, names)) + ")$")
    kernels = {}
    for name in names:
        r = replayed.get(name)
        if not r:
            return None
        kernels[name] = {
            "calls_per_step": calls_per_step[name],
            "distinct_weights": r["dispatches"],
            "read_bytes_per_call": r["read_bytes"] / r["dispatches"],
            "us_per_call_in_one_pass": r["ns"] / r["dispatches"] / 1e3,
            "us_per_call_each_in_its_pass": ms_per_step[name] * 1e3 / calls_per_step[name],
            "each_waits_for_the_last": r["each_waits_for_the_last"],
        }
    read = sum(k["read_bytes_per_call"] * k["calls_per_step"] for k in kernels.values())
    one_pass = sum(k["us_per_call_in_one_pass"] * k["calls_per_step"] for k in kernels.values())
    own_pass = sum(ms_per_step[name] for name in names) * 1e3
    return {
        "read_bytes_per_step": read,
        "us_per_step_in_one_pass": one_pass,
        "us_per_step_each_in_its_pass": own_pass,
        "gb_per_s_in_one_pass": read / one_pass / 1e3,
        "gb_per_s_each_in_its_pass": read / own_pass / 1e3,
        "kernels": kernels,
    }


def _with_roofline(model: dict[str, Any], micro: dict[str, Any]) -> dict[str, Any]:
    bandwidth = micro["bandwidth"]["gb_per_s"] * 1e9
    rates = model["decode_tokens_per_s"]["values"]
    values = [None if v is None else model["weight_bytes"] * v / bandwidth for v in rates]
    model = {**model, "decode_bandwidth_fraction": spread(values)}
    gemvs = (model.get("gpu_time") or {}).get("decode_gemvs")
    if gemvs:
        gemvs = {
            **gemvs,
            "bandwidth_fraction_in_one_pass": gemvs["gb_per_s_in_one_pass"] * 1e9 / bandwidth,
            "bandwidth_fraction_each_in_its_pass": gemvs["gb_per_s_each_in_its_pass"] * 1e9 / bandwidth,
        }
        model["gpu_time"] = {**model["gpu_time"], "decode_gemvs": gemvs}
    return model


def run_bench(options: BenchOptions, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Measure every selected model of the site; returns the report (see the README, "bench")."""
    if options.runs < 1 or options.gen_tokens < 1 or not options.prompt_tokens:
        raise OptionsError("--runs and --gen-tokens must be at least 1, with at least one prompt length.")
    started = time.monotonic()
    with site_url(options.target) as url, launch_runtime(options.runtime, options.browser) as browser:
        page = SitePage(browser, url, timeout_s=options.timeout_s)
        try:
            entries = select_models(page.models, options.models)
            adapter = page.adapter()
            user_agent = evaluate(page.page, page.log, "() => navigator.userAgent")
            log("WebGPU microbenchmark (memory bandwidth, f32 matmul)...")
            micro = run_microbenchmark(page, options)
        finally:
            page.close()
        models = [_with_roofline(_bench_model(browser, url, e, options, log), micro) for e in entries]
    return {
        "format": REPORT_FORMAT,
        "version": 1,
        "target": options.target,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "browser": user_agent,
        "adapter": adapter,
        "microbenchmark": micro,
        "settings": {
            "prompt_tokens": list(options.prompt_tokens),
            "gen_tokens": options.gen_tokens,
            "runs": options.runs,
        },
        "models": models,
        "seconds": time.monotonic() - started,
    }


def merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from several runs of the same bench (e.g. interleaved with another build's):
    every spread gets all their values; the rest comes from the first report."""

    def merge(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, dict) and not all(isinstance(v, dict) for v in values):
            return first  # measured in one run only (gpu_time)
        if isinstance(first, dict) and set(first) >= {"min", "median", "max", "values"}:
            return spread([v for value in values for v in value["values"]])
        if isinstance(first, dict):
            return {key: merge([value[key] for value in values]) for key in first}
        if isinstance(first, list) and first and all(isinstance(v, dict) for v in first):
            return [merge([value[i] for value in values]) for i in range(len(first))]
        if isinstance(first, list):
            return [item for value in values for item in value]  # errors: all of them
        return first

    merged = {**reports[0], "models": merge([r["models"] for r in reports])}
    merged["settings"] = {**reports[0]["settings"], "runs": sum(r["settings"]["runs"] for r in reports)}
    merged["microbenchmark_runs"] = [r["microbenchmark"] for r in reports]
    merged["seconds"] = sum(r["seconds"] for r in reports)
    return merged


def _median(value: Any) -> float | None:
    return value.get("median") if isinstance(value, dict) else value


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    adapter = report.get("adapter") or {}
    micro = report["microbenchmark"]
    lines = [
        f"adapter: {adapter.get('vendor')} / {adapter.get('architecture')} {adapter.get('description', '')}",
        f"roofline: {micro['bandwidth']['gb_per_s']:.2f} GB/s streaming read, "
        f"{micro['matmul']['gflop_per_s']:.2f} GFLOP/s f32 matmul (n={micro['matmul']['n']})",
    ]
    for m in report["models"]:
        kernels = f", {m['schedule']} kernels" if m.get("schedule") else ""
        lines.append(
            f"\n{m['id']} ({m['quantization']}{kernels}, {m['weight_bytes'] / 2**20:.1f} MiB of weights)"
        )
        lines.append(
            f"  load: cold {_fmt(_median(m['cold_load_s']))} s, warm {_fmt(_median(m['warm_load_s']))} s; "
            f"GPU memory {_fmt(_median(m['gpu_memory_bytes']), 2**20, 1)} MiB"
        )
        lines.append("  prompt  TTFT s  prefill tok/s  decode tok/s   (medians)")
        for p in m["prompts"]:
            prompt, ttft = _median(p["prompt_tokens"]), _median(p["ttft_s"])
            prefill, decode = _median(p["prefill_tokens_per_s"]), _median(p["decode_tokens_per_s"])
            cells = f"{_fmt(prompt, digits=0):>6}  {_fmt(ttft):>6}  {_fmt(prefill):>13}  {_fmt(decode):>12}"
            lines.append("  " + cells)
        gpu = m.get("gpu_time")
        if gpu:
            lines.append(
                f"  GPU time: prefill {gpu['prefill_ms']:.2f} ms ({gpu['prefill_dispatches']} dispatches), "
                f"decode {gpu['decode_ms_per_token']:.3f} ms per token "
                f"({gpu['decode_dispatches_per_token']:.0f} dispatches)"
            )
            gemvs = gpu.get("decode_gemvs")
            if gemvs and "bandwidth_fraction_in_one_pass" in gemvs:
                lines.append(
                    f"  decode GEMVs: {gemvs['us_per_step_in_one_pass']:.0f} us per token in one pass, "
                    f"{gemvs['bandwidth_fraction_in_one_pass'] * 100:.1f}% of the bandwidth roofline "
                    f"({gemvs['bandwidth_fraction_each_in_its_pass'] * 100:.1f}% timed each in its own pass)"
                )
        c = m["constrained_decode"]
        lines.append(
            f"  constrained decode (JSON Schema): {_fmt(_median(c['constrained_tokens_per_s']))} tok/s "
            f"against {_fmt(_median(c['free_tokens_per_s']))} free, "
            f"ratio {_fmt(_median(c['ratio']), digits=3)}"
        )
        fraction = _median(m["decode_bandwidth_fraction"])
        percent = None if fraction is None else fraction * 100
        lines.append(f"  decode at {_fmt(percent, digits=1)}% of the bandwidth roofline")
        lines += [f"  error: {e}" for e in m["errors"]]
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")


# (label, where in a model's entry, higher is better)
COMPARED = [
    ("cold load s", lambda m: _median(m["cold_load_s"]), False),
    ("warm load s", lambda m: _median(m["warm_load_s"]), False),
    ("GPU memory MiB", lambda m: (_median(m["gpu_memory_bytes"]) or 0) / 2**20 or None, False),
    ("decode tok/s", lambda m: _median(m["decode_tokens_per_s"]), True),
]


def compare_reports(new: dict[str, Any], old: dict[str, Any]) -> str:
    """new / old per model and metric, medians; an arrow marks the better direction."""
    lines = [f"{'model':<28} {'metric':<26} {'old':>10} {'new':>10} {'new/old':>8}"]
    old_models = {m["id"]: m for m in old.get("models", [])}
    for model in new["models"]:
        before = old_models.get(model["id"])
        if before is None:
            lines.append(f"{model['id']:<28} (not in the earlier report)")
            continue
        rows = list(COMPARED)
        for prompt in model["prompts"]:
            target = prompt["target_tokens"]
            for key, label, higher in (
                ("ttft_s", "TTFT s", False),
                ("prefill_tokens_per_s", "prefill tok/s", True),
            ):
                rows.append((f"{label} @{target}", _prompt_metric(target, key), higher))
        for label, get, higher in rows:
            a, b = _safe(get, before), _safe(get, model)
            ratio = "-" if not a or b is None else f"{b / a:.3f}"
            better = "" if not a or b is None or b == a else ("+" if (b > a) == higher else "-")
            lines.append(f"{model['id']:<28} {label:<26} {_fmt(a):>10} {_fmt(b):>10} {ratio:>8} {better}")
    return "\n".join(lines)


def _prompt_metric(target: int, key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(model: dict[str, Any]) -> float | None:
        row = next((p for p in model["prompts"] if p["target_tokens"] == target), None)
        return None if row is None else _median(row[key])

    return get


def _safe(get: Callable[[dict[str, Any]], float | None], model: dict[str, Any]) -> float | None:
    try:
        return get(model)
    except (KeyError, TypeError):
        return None


def read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VerifyError(f"Cannot read the bench report {path}: {exc}") from None
    if report.get("format") != REPORT_FORMAT:
        raise VerifyError(f"{path} is not a webllm_build bench report (written by bench --json).")
    return report


def plot_report(report: dict[str, Any], path: Path) -> None:
    """Tokens/s by prompt length per model, and decode as a fraction of the bandwidth roofline."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ToolchainError(f"--plot needs matplotlib. Install it with: {INSTALL_PLOT}") from None
    figure, (speed, roofline) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    for model in report["models"]:
        lengths = [_median(p["prompt_tokens"]) for p in model["prompts"]]
        for key, style in (("prefill_tokens_per_s", "-o"), ("decode_tokens_per_s", "--s")):
            medians = [_median(p[key]) for p in model["prompts"]]
            low = [(m or 0) - (p[key]["min"] or 0) for m, p in zip(medians, model["prompts"], strict=True)]
            high = [(p[key]["max"] or 0) - (m or 0) for m, p in zip(medians, model["prompts"], strict=True)]
            label = f"{model['id']} {key.split('_')[0]}"
            speed.errorbar(lengths, medians, yerr=[low, high], fmt=style, capsize=3, label=label)
    speed.set_xscale("log", base=2)
    ticks = sorted({t for m in report["models"] for p in m["prompts"] if (t := _median(p["prompt_tokens"]))})
    speed.set_xticks(ticks, [f"{t:g}" for t in ticks])
    speed.set_xlabel("prompt tokens")
    speed.set_ylabel("tokens/s (median, min-max)")
    speed.legend(fontsize=8)
    speed.grid(alpha=0.3)
    fractions = [(_median(m["decode_bandwidth_fraction"]) or 0) * 100 for m in report["models"]]
    roofline.bar([m["id"] for m in report["models"]], fractions)
    roofline.set_ylabel("decode, % of memory bandwidth roofline")
    roofline.tick_params(axis="x", labelrotation=20, labelsize=8)
    adapter = report.get("adapter") or {}
    bandwidth = report["microbenchmark"]["bandwidth"]["gb_per_s"]
    figure.suptitle(f"{adapter.get('vendor')} / {adapter.get('architecture')}: {bandwidth:.2f} GB/s read")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
