"""Link a compiled Relax executable and the cached TVM runtime into one model `.wasm`."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from tvm.runtime.executable import Executable

from webllm_build.compiler.runtime import WasmRuntime
from webllm_build.compiler.toolchain import emcc_env, find_emcc
from webllm_build.errors import CompileError

# STANDALONE_WASM: tvmjs supplies the WASI imports itself, so no emscripten JS glue is wanted.
# ERROR_ON_UNDEFINED_SYMBOLS=0: the WebGPU and tvmjs environment functions are JS imports.
# -O2, not -O3: binaryen's -O3 made every link ~4x slower (27 s against 112 s for the self-check
# library here) for a 3% smaller file, and Phi-3.5-mini decoded as fast either way on an H200,
# where decode is bound by this code's CPU time (89.0 against 87.5 tokens/s, interleaved:
# benchmarks/results/side_by_side_h200_phi35_q4f16_link_*.json).
#
# WEBLLM_BUILD_FAST_LINK=1 links at -O1, which skips binaryen's optimizer: ~0.6 s a link against
# ~15 s, for a library ~60% larger (7.3 MB against 4.6 MB for a tiny model; LLVM has optimized
# the code either way). For development and the test suite, which links dozens of libraries.
FAST_LINK_ENV = "WEBLLM_BUILD_FAST_LINK"
LINK_FLAGS = (
    "--no-entry",
    "-sWASM_BIGINT=1",
    "-sERROR_ON_UNDEFINED_SYMBOLS=0",
    "-sSTANDALONE_WASM=1",
    "-sALLOW_MEMORY_GROWTH=1",
    "-sTOTAL_MEMORY=160MB",
)


def link_flags() -> tuple[str, ...]:
    """emcc's flags for a model library (plan.library_key hashes them)."""
    return ("-O1" if os.environ.get(FAST_LINK_ENV) == "1" else "-O2", *LINK_FLAGS)


def _emcc_linker(runtime: WasmRuntime):
    emcc = find_emcc()

    def link(output: str, objects: list[str], options: list[str] | None = None) -> None:
        cmd = [emcc.path, *link_flags(), "-o", output, *map(str, runtime.objects), *objects]
        cmd += options or []
        proc = subprocess.run(cmd, capture_output=True, text=True, env=emcc_env(), check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise CompileError(f"emcc failed to link {Path(output).name}:\n{tail}")

    # TVM writes its host code as wasm objects instead of LLVM 22 bitcode, which emcc's
    # LLVM 14 linker cannot read.
    link.object_format = "o"
    return link


def link_wasm(executable: Executable, output: Path, runtime: WasmRuntime) -> Path:
    """Export `executable` (built for a wasm32 host) as a self-contained model library."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".link-") as tmp:
        staged = Path(tmp) / output.name
        executable.export_library(str(staged), fcompile=_emcc_linker(runtime))
        staged.replace(output)
    return output
