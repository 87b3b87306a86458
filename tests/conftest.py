from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Test builds carry only the kernels SwiftShader runs, one link per model instead of two;
# tests/test_browser_models.py builds and checks every schedule class.
CI_SCHEDULES = ("cpu-emulated",)

# The fixtures users get from webllm_build.testing (webllm_page etc.); ours pick the site below.
pytest_plugins = ["webllm_build.testing"]


@pytest.fixture(scope="session")
def wasm_runtime():
    """The cached TVM wasm runtime, built once per machine (make setup builds it too)."""
    from webllm_build.compiler.runtime import build_runtime

    return build_runtime()


@pytest.fixture(scope="session")
def browser():
    from webllm_build.browser import launch_browser

    with launch_browser() as session:
        yield session


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
    """The site webllm_page (webllm_build.testing) loads in this project's tests."""
    return str(tiny_site)


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
