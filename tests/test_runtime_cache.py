"""The wasm runtime cache: keyed by its inputs, verified on load, rebuilt when damaged."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from webllm_build.atomic import atomic_directory, sweep_stale_temps
from webllm_build.compiler import runtime as rt


def test_key_names_tvm_and_emcc_versions():
    key = rt.runtime_key("3.1.6")
    assert key.startswith("tvm0.27.0.post1-emcc3.1.6-")
    assert rt.runtime_key("3.1.7") != key


def test_built_runtime_has_all_units_and_a_verified_manifest(wasm_runtime):
    names = sorted(obj.name for obj in wasm_runtime.objects)
    assert names == sorted(f"{unit}.o" for unit in rt.UNITS)
    for obj in wasm_runtime.objects:
        assert obj.read_bytes()[:4] == b"\0asm"  # wasm objects, not LLVM bitcode
    manifest = json.loads((wasm_runtime.directory / rt.MANIFEST).read_text())
    assert manifest["key"] == wasm_runtime.key


def test_damaged_or_partial_entries_are_not_trusted(wasm_runtime, tmp_path, monkeypatch):
    monkeypatch.setenv("WEBLLM_BUILD_CACHE", str(tmp_path))
    copy = rt.runtime_root() / wasm_runtime.key
    shutil.copytree(wasm_runtime.directory, copy)
    assert rt.load_cached_runtime(wasm_runtime.key) is not None

    victim = copy / "webgpu_runtime.o"
    victim.write_bytes(victim.read_bytes()[:-100])  # truncated, as by a full disk
    assert rt.load_cached_runtime(wasm_runtime.key) is None

    (copy / rt.MANIFEST).unlink()  # an entry whose build never finished
    assert rt.load_cached_runtime(wasm_runtime.key) is None


def test_damaged_runtime_is_rebuilt(wasm_runtime, tmp_path, monkeypatch):
    """The real rebuild (1-2 minutes): emcc compiles the three units again."""
    monkeypatch.setenv("WEBLLM_BUILD_CACHE", str(tmp_path))
    copy = rt.runtime_root() / wasm_runtime.key
    shutil.copytree(wasm_runtime.directory, copy)
    (copy / "wasm_runtime.o").write_bytes(b"garbage")
    leftover = rt.runtime_root() / ".tmp-leftover-from-a-crash"
    leftover.mkdir()
    os.utime(leftover, (0, 0))  # a killed build, long ago

    rebuilt = rt.build_runtime()
    assert rebuilt.directory == copy
    assert (copy / "wasm_runtime.o").read_bytes()[:4] == b"\0asm"
    assert not any(p.name.startswith(".tmp-") for p in rt.runtime_root().iterdir())


def test_interrupted_atomic_write_leaves_nothing(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(KeyboardInterrupt), atomic_directory(final) as tmp:
        (tmp / "half.o").write_bytes(b"half")
        raise KeyboardInterrupt
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_only_stale_temp_dirs(tmp_path):
    stale = tmp_path / ".tmp-killed-build"
    stale.mkdir()
    os.utime(stale, (0, 0))
    (tmp_path / ".tmp-build-running-now").mkdir()
    (tmp_path / "kept").mkdir()
    sweep_stale_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-build-running-now", "kept"]


def test_atomic_output_is_an_ordinary_directory(tmp_path):
    """Not mkdtemp's 0700: a web server running as another user must read a built site."""
    final = tmp_path / "site"
    with atomic_directory(final) as tmp:
        (tmp / "index.html").write_text("hi")
    assert final.stat().st_mode & 0o055 == 0o055 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
