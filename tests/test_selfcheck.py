"""The foundation end to end: a dynamic-shape Relax module on WebGPU in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from webllm_build.serve import serve_in_background
from webllm_build.verify import selfcheck
from webllm_build.verify.browser import evaluate, write_harness


@pytest.fixture(scope="module")
def dense_softmax_wasm(tmp_path_factory, wasm_runtime) -> Path:
    out = tmp_path_factory.mktemp("dense_softmax") / "dense_softmax.wasm"
    return selfcheck.build_webgpu_library(out, lambda _m: None)


def test_library_is_standalone_wasm(dense_softmax_wasm):
    data = dense_softmax_wasm.read_bytes()
    assert data[:4] == b"\0asm"
    # The kernels travel inside the library as WGSL source.
    assert b"@compute" in data


def test_webgpu_in_chromium_matches_numpy_for_two_lengths(dense_softmax_wasm, browser):
    rng = np.random.default_rng(1)
    cases = {n: selfcheck.make_inputs(n, rng) for n in (5, 64)}
    outputs, adapter = selfcheck.run_in_browser(dense_softmax_wasm, cases, browser)
    assert adapter["available"]
    for n, (x, w, b) in cases.items():
        assert outputs[n].shape == (n, selfcheck.OUT_FEATURES)
        np.testing.assert_allclose(outputs[n], selfcheck.reference(x, w, b), atol=1e-5)
        # Rows are distributions: a wrong reduction or a shape mixup breaks this first.
        np.testing.assert_allclose(outputs[n].sum(axis=-1), 1.0, atol=1e-5)


def test_cpu_build_matches_numpy():
    rng = np.random.default_rng(2)
    cases = {n: selfcheck.make_inputs(n, rng) for n in (1, 19)}
    for n, out in selfcheck.run_on_cpu(cases).items():
        np.testing.assert_allclose(out, selfcheck.reference(*cases[n]), atol=1e-6)


def _load_library_error(page, log, name: str) -> dict | None:
    """The {code, message} of the error loading library `name` in the page, None if it loads."""
    return evaluate(
        page,
        log,
        """async (url) => {
        try { await webllm.loadLibrary(url); return null; }
        catch (e) { return {code: e.code, message: e.message}; } }""",
        name,
    )


def test_page_without_webgpu_gets_a_clear_error(tmp_path, browser, dense_softmax_wasm):
    site = write_harness(tmp_path)
    (site / dense_softmax_wasm.name).write_bytes(dense_softmax_wasm.read_bytes())
    with serve_in_background(site) as url:
        page, log = browser.open(url, webgpu=False)
        assert evaluate(page, log, "webllm.probeWebGPU()")["available"] is False
        error = _load_library_error(page, log, dense_softmax_wasm.name)
    assert error["code"] == "no-webgpu"
    assert "WebGPU" in error["message"]


def test_chromium_gpu_runtime_finds_a_hardware_gpu_or_says_why(tmp_path, dense_softmax_wasm):
    """`--runtime chromium-gpu` asks headless Chromium for the machine's GPU through Vulkan. Where
    there is one, the adapter is hardware (not SwiftShader's fallback); on a machine without a
    Vulkan GPU driver (CI) the adapter request never answers, and the engine says so after its
    timeout instead of hanging the page, both when probing and when loading a library."""
    from webllm_build.verify.browser import launch_runtime

    site = write_harness(tmp_path)
    (site / dense_softmax_wasm.name).write_bytes(dense_softmax_wasm.read_bytes())
    with serve_in_background(site) as url, launch_runtime("chromium-gpu") as session:
        page, log = session.open(url)
        adapter = evaluate(page, log, "webllm.probeWebGPU()")
        if adapter["available"]:
            assert adapter["isFallbackAdapter"] is False
            return
        error = _load_library_error(page, log, dense_softmax_wasm.name)
    assert error["code"] == "no-webgpu"
    if adapter["reason"] == "navigator.gpu.requestAdapter() returned no adapter.":
        return  # a Chromium that answers "none" at once instead of hanging (not this machine's)
    assert "did not answer within 15 s" in adapter["reason"]
    assert "chromium-gpu" in adapter["reason"] and "Vulkan GPU driver" in adapter["reason"]
    assert error["message"] == adapter["reason"]
