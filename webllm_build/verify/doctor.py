"""`webllm_build doctor`: what is installed, what is built, and what the browser's WebGPU offers."""

from __future__ import annotations

import platform
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from webllm_build.errors import WebLLMBuildError
from webllm_build.paths import BUILD_WEB_HINT, WEB_BUNDLE


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _package_version(name: str) -> Finding:
    try:
        return Finding(name, True, metadata.version(name))
    except metadata.PackageNotFoundError:
        return Finding(name, False, "not installed", fix="make setup")


def _tool(name: str, finder, fix: str) -> Finding:
    try:
        tool = finder()
    except WebLLMBuildError as exc:
        return Finding(name, False, str(exc).split(";")[0], fix=fix)
    return Finding(name, True, f"{tool.version} ({tool.path})")


def _runtime() -> Finding:
    from webllm_build.compiler.runtime import load_cached_runtime, runtime_key, runtime_root
    from webllm_build.compiler.toolchain import find_emcc

    try:
        key = runtime_key(find_emcc().version)
    except WebLLMBuildError:
        return Finding("wasm runtime", False, "cannot be built without emcc", fix="make setup")
    runtime = load_cached_runtime(key)
    if runtime is None:
        return Finding(
            "wasm runtime",
            False,
            f"not built (would go to {runtime_root() / key})",
            fix="make runtime",
        )
    return Finding("wasm runtime", True, f"built: {runtime.directory}")


def _bundle() -> Finding:
    if WEB_BUNDLE.is_file():
        return Finding("JS engine bundle", True, str(WEB_BUNDLE))
    return Finding("JS engine bundle", False, "not built", fix=BUILD_WEB_HINT)


def _webgpu() -> list[Finding]:
    from webllm_build.serve import serve_in_background
    from webllm_build.verify.browser import evaluate, launch_browser, write_harness

    try:
        with tempfile.TemporaryDirectory() as tmp:
            site = write_harness(Path(tmp), "webllm_build doctor")
            with serve_in_background(site) as url, launch_browser() as browser:
                page, log = browser.open(url)
                adapter = evaluate(page, log, "webllm.probeWebGPU()")
    except WebLLMBuildError as exc:
        return [Finding("WebGPU adapter", False, str(exc).splitlines()[0], fix="make setup")]
    if not adapter.get("available"):
        return [
            Finding(
                "WebGPU adapter",
                False,
                adapter.get("reason", "none"),
                fix="run Chromium with --enable-unsafe-webgpu (webllm_build does)",
            )
        ]
    limits = adapter["limits"]
    kind = "fallback (CPU-emulated)" if adapter["isFallbackAdapter"] else "hardware"
    return [
        Finding("WebGPU adapter", True, f"{adapter['vendor']} / {adapter['architecture']} ({kind})"),
        Finding(
            "  limits",
            True,
            f"maxBufferSize {limits['maxBufferSize'] / 2**20:.0f} MiB, "
            f"maxStorageBufferBindingSize {limits['maxStorageBufferBindingSize'] / 2**20:.0f} MiB, "
            f"workgroup storage {limits['maxComputeWorkgroupStorageSize'] // 1024} KiB, "
            f"{limits['maxComputeInvocationsPerWorkgroup']} invocations/workgroup",
        ),
        Finding(
            "  shader-f16",
            adapter["shaderF16"],
            "yes" if adapter["shaderF16"] else "no: only f32 model variants (q4f32_1, q0f32) run",
            required=False,
        ),
    ]


def run_doctor(print_line=print) -> bool:
    """Print every finding; True when nothing required is missing."""
    from webllm_build.compiler import toolchain as tc

    findings = [
        Finding("python", True, platform.python_version()),
        _package_version("apache-tvm"),
        _package_version("apache-tvm-ffi"),
        _package_version("playwright"),
        _tool("emcc", tc.find_emcc, tc.INSTALL_EMCC),
        _tool("chromium", tc.find_chromium, tc.INSTALL_CHROMIUM),
        _tool("node", tc.find_node, tc.INSTALL_NODE),
        _runtime(),
        _bundle(),
    ]
    findings += _webgpu()
    width = max(len(f.name) for f in findings)
    for f in findings:
        mark = "ok " if f.ok else ("MISSING" if f.required else "no ")
        print_line(f"{mark:8}{f.name:<{width}}  {f.detail}")
        if not f.ok and f.fix:
            print_line(f"{'':8}{'':<{width}}  fix: {f.fix}")
    missing = [f.name for f in findings if f.required and not f.ok]
    if missing:
        print_line(f"\nMissing: {', '.join(missing)}. Run the fix commands above (or `make setup`).")
    return not missing
