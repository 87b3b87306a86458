from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


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
