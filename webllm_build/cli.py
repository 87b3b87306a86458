"""Command line: parses arguments and hands them to the stage functions, nothing more."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from webllm_build.errors import WebLLMBuildError


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _doctor(_args: argparse.Namespace) -> int:
    from webllm_build.verify.doctor import run_doctor

    return 0 if run_doctor() else 1


def _selfcheck(_args: argparse.Namespace) -> int:
    from webllm_build.verify.selfcheck import TOLERANCE, run_selfcheck

    report = run_selfcheck(_log)
    if report.passed:
        print(f"Toolchain self-check passed (every error <= {TOLERANCE:g}).")
        return 0
    print(
        f"Toolchain self-check FAILED: CPU errors {report.cpu_max_error}, "
        f"WebGPU errors {report.webgpu_max_error} (tolerance {TOLERANCE:g})."
    )
    return 1


def _runtime(_args: argparse.Namespace) -> int:
    from webllm_build.compiler.runtime import build_runtime

    runtime = build_runtime(_log)
    print(runtime.directory)
    return 0


def _schedules(value: str | None) -> tuple[str, ...]:
    from webllm_build.compiler.schedules import DEFAULT_SCHEDULES

    return DEFAULT_SCHEDULES if value is None else tuple(value.split(","))


def _compile(args: argparse.Namespace) -> int:
    from webllm_build.build import plan_and_build
    from webllm_build.plan import BuildOptions
    from webllm_build.presets import DEFAULT_PRESET

    options = BuildOptions(
        model=args.model or DEFAULT_PRESET,
        quantization=args.quant,
        context_window=args.context_window,
        prefill_chunk=args.prefill_chunk,
        target=args.target,
        shard_mb=args.shard_mb,
        bf16=args.bf16,
        random_weights=args.random_weights,
        schedules=_schedules(args.schedules),
    )
    result = plan_and_build(options, args.out, _log)
    c = result.config
    print(f"Compiled {c['model']} ({c['architecture']}, {c['quantization']}) into {result.directory}")
    return 0


def _site(args: argparse.Namespace) -> int:
    from webllm_build.site import SiteOptions, build_site

    options = SiteOptions(
        models=args.model or [],
        quantization=args.quant,
        out=args.out,
        base_url=args.base_url,
        title=args.title,
        context_window=args.context_window,
        prefill_chunk=args.prefill_chunk,
        random_weights=args.random_weights,
        schedules=_schedules(args.schedules),
        offline=args.offline,
    )
    result = build_site(options, _log)
    for model in result.models:
        how = "reused" if model.reused else "compiled"
        print(f"{model.id}: {model.title}, {model.download_bytes / 2**20:.1f} MiB ({how})")
    print(f"Site written to {result.directory}. Try it: webllm_build serve {result.directory}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from webllm_build.artifacts import format_report, inspect_model

    report = inspect_model(args.directory, verify=args.verify)
    print(format_report(report, tensors=args.tensors))
    return 1 if report.problems else 0


def _models(_args: argparse.Namespace) -> int:
    from webllm_build.presets import DEFAULT_PRESET, list_presets

    presets = list_presets()
    width = max(len(p.name) for p in presets)
    for p in presets:
        default = "  (default)" if p.name == DEFAULT_PRESET else ""
        print(f"{p.name:<{width}}  {p.quantization:<8} {p.description}{default}")
    print("\nAlso accepted: a Hugging Face repo id, a local HF directory, or a .gguf file.")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from webllm_build.serve import serve_forever

    serve_forever(args.directory, host=args.host, port=args.port, isolation_headers=args.isolation_headers)
    return 0


def _check(args: argparse.Namespace) -> int:
    from webllm_build.verify.check import CheckOptions, run_check, write_json_report, write_junit

    options = CheckOptions(
        target=args.site,
        golden=args.golden,
        record=args.record,
        reference=args.reference,
        models=tuple(args.model or ()),
        timeout_s=args.timeout,
        browser=args.browser,
        runtime=args.runtime,
        checkpoint=args.checkpoint,
    )
    report = run_check(options, _log)
    if args.json:
        write_json_report(report, args.json)
    if args.junit:
        write_junit(report, args.junit)
    print(report.summary())
    return 0 if report.passed else 1


SCHEDULES_HELP = (
    "WebGPU kernel schedule classes, one library each, comma-separated: gpu (real GPUs), "
    "gpu-dot4 (real GPUs, integer dot products for decoding; needs WGSL's "
    "packed_4x8_integer_dot_product), cpu-emulated (SwiftShader-like fallback adapters); the "
    "page takes the first listed for its adapter that its browser compiles "
    "(default: gpu,cpu-emulated)"
)
RANDOM_WEIGHTS_HELP = (
    "seeded random weights, generated in the browser (nothing to download): benchmark a model's "
    "shapes without its checkpoint; presets need no download at all (a stand-in tokenizer is made)"
)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive token counts, such as 16,128,512")
    return values


def _bench(args: argparse.Namespace) -> int:
    from webllm_build.verify.bench import (
        BenchOptions,
        compare_reports,
        format_report,
        plot_report,
        read_report,
        run_bench,
        write_report,
    )

    earlier = read_report(args.compare) if args.compare else None  # a bad path fails before measuring
    options = BenchOptions(
        target=args.site,
        models=tuple(args.model or ()),
        prompt_tokens=args.prompt_tokens,
        gen_tokens=args.gen_tokens,
        runs=args.runs,
        browser=args.browser,
        runtime=args.runtime,
        timeout_s=args.timeout,
        gpu_time=args.gpu_time,
    )
    report = run_bench(options, _log)
    if args.json:
        write_report(report, args.json)
    print(format_report(report))
    if args.plot:
        plot_report(report, args.plot)
        print(f"Plot written to {args.plot}")
    if earlier is not None:
        print(f"\nCompared with {args.compare}:")
        print(compare_reports(report, earlier))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webllm_build",
        description="Compile language models with Apache TVM into a static WebGPU chat site.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "doctor", help="report tool versions, the wasm runtime and the browser's WebGPU adapter"
    ).set_defaults(run=_doctor)
    commands.add_parser(
        "selfcheck",
        help="compile a tiny dynamic-shape kernel, run it in headless Chromium "
        "and on the CPU, and compare with numpy",
    ).set_defaults(run=_selfcheck)
    commands.add_parser(
        "runtime", help="build (or find cached) the TVM wasm runtime and print its directory"
    ).set_defaults(run=_runtime)

    compile_ = commands.add_parser(
        "compile", help="compile a model into a WebGPU library, converted weights and a config"
    )
    compile_.add_argument(
        "--model",
        default=None,
        help="preset, HF repo id, HF directory or .gguf (default: smollm2-135m; see `webllm_build models`)",
    )
    compile_.add_argument(
        "--quant",
        default=None,
        help="q4f32_1, q4f16_1, q4f32_asym, q4f16_asym, q0f32 or q0f16 (default: the preset's choice; "
        "a .gguf keeps its own blocks as q4f32_asym; else q4f32_1)",
    )
    compile_.add_argument("--context-window", type=int, default=None)
    compile_.add_argument("--prefill-chunk", type=int, default=512)
    compile_.add_argument(
        "--target",
        choices=["webgpu", "cpu"],
        default="webgpu",
        help="cpu builds the same model for the local CPU (a fast reference)",
    )
    compile_.add_argument("--shard-mb", type=float, default=32, help="weight shard size cap in MiB")
    compile_.add_argument(
        "--bf16",
        action="store_true",
        help="store f32 tensors as bf16 (half the download; ~2e-3 logit change)",
    )
    compile_.add_argument("--random-weights", action="store_true", help=RANDOM_WEIGHTS_HELP)
    compile_.add_argument("--schedules", default=None, help=SCHEDULES_HELP)
    compile_.add_argument("--out", type=Path, required=True)
    compile_.set_defaults(run=_compile)

    site = commands.add_parser("site", help="compile models and write the static chat site")
    site.add_argument(
        "--model",
        action="append",
        help="preset, HF repo id, HF directory or .gguf; repeat for a model picker, the first is "
        "the default (default: smollm2-135m)",
    )
    site.add_argument(
        "--quant",
        default=None,
        help="quantization for every model (default: each preset's); a comma list builds each model "
        "once per scheme, e.g. q4f16_1,q4f32_1, and the page picks one the visitor's GPU can run",
    )
    site.add_argument("--out", type=Path, default=Path("dist"), help="the site folder (default: dist)")
    site.add_argument(
        "--base-url",
        default=None,
        help="serve the models from this URL instead of beside the page (upload OUT/models/ there)",
    )
    site.add_argument("--title", default=None, help="the page's title")
    site.add_argument("--context-window", type=int, default=None)
    site.add_argument("--prefill-chunk", type=int, default=512)
    site.add_argument("--random-weights", action="store_true", help=RANDOM_WEIGHTS_HELP)
    site.add_argument("--schedules", default=None, help=SCHEDULES_HELP)
    site.add_argument(
        "--no-offline",
        dest="offline",
        action="store_false",
        help="no service worker: the site needs the network on every visit (an earlier build's "
        "worker is retired)",
    )
    site.set_defaults(run=_site)

    commands.add_parser("models", help="list the model presets").set_defaults(run=_models)

    inspect = commands.add_parser(
        "inspect", help="parameters, bytes, shards and features of a compiled model"
    )
    inspect.add_argument("directory", type=Path)
    inspect.add_argument("--verify", action="store_true", help="check every file's size and sha256")
    inspect.add_argument(
        "--tensors", action="store_true", help="how each quantized weight was imported (exact or quantized)"
    )
    inspect.set_defaults(run=_inspect)

    serve = commands.add_parser("serve", help="serve a built site as a static CDN would")
    serve.add_argument("directory", type=Path)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--isolation-headers",
        action="store_true",
        help="send COOP/COEP headers (cross-origin isolation)",
    )
    serve.set_defaults(run=_serve)

    check = commands.add_parser(
        "check", help="run a built site's models in headless Chromium and compare with a golden file"
    )
    check.add_argument("site", help="a site folder (served on loopback) or the URL of a deployed site")
    check.add_argument(
        "--golden", type=Path, default=Path("webllm-golden.json"), help="default: webllm-golden.json"
    )
    check.add_argument(
        "--record", action="store_true", help="write the golden file from this build instead of checking"
    )
    check.add_argument(
        "--reference",
        choices=["transformers"],
        default=None,
        help="with --record: take the expected tokens from transformers on the CPU",
    )
    check.add_argument(
        "--checkpoint", default=None, help="with --reference: the checkpoint, if not the one the build names"
    )
    check.add_argument("--model", action="append", help="only this model id (repeatable)")
    check.add_argument("--junit", type=Path, default=None, help="write JUnit XML here")
    check.add_argument("--json", type=Path, default=None, help="write the JSON report here")
    check.add_argument("--browser", type=Path, default=None, help="a Chromium executable to use")
    _add_runtime_argument(check)
    check.add_argument(
        "--timeout", type=float, default=None, help="seconds per case and per load (default: 600)"
    )
    check.set_defaults(run=_check)

    bench = commands.add_parser("bench", help="load times, first-token time, tokens/s in headless Chromium")
    bench.add_argument("site", help="a site folder (served on loopback) or the URL of a deployed site")
    bench.add_argument("--model", action="append", help="only this model id (repeatable)")
    bench.add_argument(
        "--prompt-tokens", type=_int_list, default=(16, 128, 512), help="prompt lengths (default: 16,128,512)"
    )
    bench.add_argument("--gen-tokens", type=int, default=128, help="tokens per reply (default: 128)")
    bench.add_argument("--runs", type=int, default=3, help="runs, each a cold and a warm load (default: 3)")
    bench.add_argument("--json", type=Path, default=None, help="write the report here")
    bench.add_argument("--plot", type=Path, default=None, help="draw tokens/s and the roofline (matplotlib)")
    bench.add_argument("--compare", type=Path, default=None, help="an earlier --json report: print ratios")
    bench.add_argument("--browser", type=Path, default=None, help="a Chromium executable to use")
    bench.add_argument(
        "--gpu-time",
        action="store_true",
        help="also time a prefill and a decode step kernel by kernel (needs timestamp queries)",
    )
    _add_runtime_argument(bench)
    bench.add_argument("--timeout", type=float, default=1800, help="seconds per load or completion")
    bench.set_defaults(run=_bench)
    return parser


def _add_runtime_argument(parser: argparse.ArgumentParser) -> None:
    from webllm_build.verify.browser import RUNTIMES

    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="chromium",
        help="run the engine in headless Chromium (default; SwiftShader's WebGPU), in headless "
        "Chromium on this machine's GPU through Vulkan (chromium-gpu; needs a Vulkan GPU driver), "
        "or in Deno (WebGPU through wgpu: Mesa's lavapipe without a GPU, with shader-f16; real GPUs "
        "on servers)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except WebLLMBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
