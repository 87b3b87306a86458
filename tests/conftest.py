from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Test builds carry only the kernels SwiftShader runs, one link per model instead of two;
# tests/test_browser_models.py builds and checks every schedule class.
CI_SCHEDULES = ("cpu-emulated",)
# Libraries linked without binaryen's optimizer (compiler/link.py): ~15 s less per library, and
# the suite links dozens. test_wheel.py builds the default site as users get it, at -O2.
os.environ["WEBLLM_BUILD_FAST_LINK"] = "1"

# The fixtures users get from webllm_build.verify.testing (webllm_page etc.); ours pick the site below.
pytest_plugins = ["webllm_build.verify.testing"]


@pytest.fixture(scope="session")
def wasm_runtime():
    """The cached TVM wasm runtime, built once per machine (make setup builds it too)."""
    from webllm_build.compiler.runtime import build_runtime

    return build_runtime()


@pytest.fixture(scope="session")
def browser():
    """The session's Chromium. Its pages run without the site's service worker, whose precaching
    (the engine and every library, ~14 MB into Cache Storage) competed with each test's model
    load on this 2-core machine for ~5 s a page; test_offline.py allows it and tests it."""
    from webllm_build.verify.browser import BrowserSession, launch_browser

    class WithoutServiceWorkers(BrowserSession):
        def open(self, url, *, context_options=None, **options):
            context_options = {"service_workers": "block", **(context_options or {})}
            return super().open(url, context_options=context_options, **options)

    with launch_browser() as session:
        yield WithoutServiceWorkers(session._browser)


@pytest.fixture(scope="session")
def webllm_browser(browser):
    """The plugin's fixtures share this session's Chromium."""
    return browser


@pytest.fixture(scope="session")
def tiny_site(tmp_path_factory, wasm_runtime) -> Path:
    """A chat site of one tiny 4-bit Llama, built once per session (its library is cached)."""
    from checkpoints import make_llama

    from webllm_build.site import SiteOptions, build_site

    root = tmp_path_factory.mktemp("tiny_site")
    checkpoint = make_llama(root / "tiny-llama", seed=3, initializer_range=0.2)
    return build_site(
        SiteOptions(models=[str(checkpoint)], out=root / "dist", prefill_chunk=4, schedules=CI_SCHEDULES)
    ).directory


@pytest.fixture(scope="session")
def webllm_site(tiny_site) -> str:
    """The site webllm_page (webllm_build.verify.testing) loads in this project's tests."""
    return str(tiny_site)


@pytest.fixture(scope="session")
def chat_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """The chat sites' models by site id: a tiny Llama, and one whose reply is HTML markup."""
    from chat_page import HOSTILE, HOSTILE_TOKENS, TINY
    from checkpoints import make_hostile_llama, make_llama

    root = tmp_path_factory.mktemp("chat_checkpoints")
    return {
        TINY: make_llama(root / "tiny-llama", seed=3, initializer_range=0.2),
        HOSTILE: make_hostile_llama(root / "hostile", HOSTILE_TOKENS),
    }


@pytest.fixture(scope="session")
def chat_site(tmp_path_factory, chat_checkpoints, wasm_runtime):
    """The chat site of both chat_checkpoints, served by the real `webllm_build serve`; its URL."""
    from webllm_build.site import SiteOptions, build_site

    out = tmp_path_factory.mktemp("chat_site") / "dist"
    # A prefill chunk of 4 matches the other browser tests' tiny Llama, so its library is cached.
    build_site(
        SiteOptions(
            models=[str(p) for p in chat_checkpoints.values()],
            out=out,
            prefill_chunk=4,
            schedules=CI_SCHEDULES,
        )
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "webllm_build", "serve", str(out), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(
                        f"webllm_build serve exited: {server.stderr.read().decode()}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def variants_site(tmp_path_factory, chat_checkpoints, wasm_runtime):
    """The tiny Llama built twice, q4f16_1 (the default) and q4f32_1; its URL."""
    from chat_page import TINY

    from webllm_build.serve import serve_in_background
    from webllm_build.site import SiteOptions, build_site

    out = tmp_path_factory.mktemp("variants_site") / "dist"
    options = SiteOptions(
        models=[str(chat_checkpoints[TINY])],
        quantization="q4f16_1,q4f32_1",
        out=out,
        prefill_chunk=4,
        schedules=CI_SCHEDULES,
    )
    build_site(options)
    with serve_in_background(out) as url:
        yield url


@pytest.fixture(scope="session")
def default_site(tmp_path_factory, wasm_runtime):
    """The default site as `webllm_build site` builds it (SmolLM2-135M from its GGUF), the
    SwiftShader kernels only; its BuiltSite."""
    from webllm_build.site import SiteOptions, build_site

    out = tmp_path_factory.mktemp("smollm2_site") / "dist"
    return build_site(SiteOptions(models=["smollm2-135m"], out=out, schedules=CI_SCHEDULES))


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "webllm_build", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
        check=False,
    )
