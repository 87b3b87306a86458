"""The command line as a user meets it: real subprocesses, real tools, and broken setups."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import run_cli


def _path_without(*tools: str, tmp_path: Path) -> str:
    """A PATH holding everything on the current PATH except `tools`."""
    shadow = tmp_path / "bin"
    shadow.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            if entry.name not in tools and not (shadow / entry.name).exists():
                (shadow / entry.name).symlink_to(entry.path)
    return str(shadow)


def test_doctor_reports_everything_present(wasm_runtime):
    result = run_cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("apache-tvm", "emcc", "chromium", "node", "wasm runtime", "WebGPU adapter"):
        assert name in result.stdout
    assert "swiftshader" in result.stdout.lower() or "WebGPU adapter" in result.stdout
    assert "shader-f16" in result.stdout
    assert str(wasm_runtime.directory) in result.stdout


def test_doctor_names_the_fix_when_emcc_and_chromium_are_missing(tmp_path):
    result = run_cli("doctor", env={"PATH": _path_without("emcc", "chromium", tmp_path=tmp_path)})
    assert result.returncode == 1
    assert "apt-get install -y emscripten" in result.stdout
    assert "apt-get install -y chromium" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_runtime_without_emcc_fails_with_the_install_command(tmp_path):
    result = run_cli(
        "runtime",
        env={
            "PATH": _path_without("emcc", tmp_path=tmp_path),
            "WEBLLM_BUILD_CACHE": str(tmp_path / "cache"),
        },
    )
    assert result.returncode == 1
    assert "emcc" in result.stderr and "apt-get install -y emscripten" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "cache").exists()


def test_unwritable_cache_dir_is_reported(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    result = run_cli("runtime", env={"WEBLLM_BUILD_CACHE": str(blocker / "cache")})
    assert result.returncode == 1
    assert "Cannot write" in result.stderr and str(blocker) in result.stderr
    assert "Traceback" not in result.stderr


def test_cached_runtime_is_reused(wasm_runtime):
    result = run_cli("runtime")
    assert result.returncode == 0
    assert result.stdout.strip() == str(wasm_runtime.directory)
    assert "Building" not in result.stderr


def test_selfcheck_command_passes():
    result = run_cli("selfcheck")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-check passed" in result.stdout
    assert "WebGPU in headless Chromium" in result.stderr


def test_unknown_command_exits_nonzero():
    result = run_cli("frobnicate")
    assert result.returncode != 0
    assert "invalid choice" in result.stderr
