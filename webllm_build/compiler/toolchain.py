"""Find the external tools (emcc, chromium, deno, node) and report their versions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from webllm_build.errors import ToolchainError
from webllm_build.paths import WEB_DIR

INSTALL_EMCC = "sudo apt-get install -y emscripten   (or: make setup)"
INSTALL_CHROMIUM = "sudo apt-get install -y chromium   (or: make setup)"
INSTALL_NODE = "sudo apt-get install -y nodejs npm   (or: make setup)"
INSTALL_DENO = "cd web && npm install   (or: make setup; npm's deno package), or any deno 2.x on PATH"


@dataclass(frozen=True)
class Tool:
    name: str
    path: str
    version: str


def emcc_env() -> dict[str, str]:
    """Environment for Debian's emcc.

    Debian's emcc imports `acorn` from the Debian node modules, which NodeSource's node does not
    search by default; and its system-library cache is prebuilt and frozen, so EM_CACHE must
    not redirect it to an empty directory.
    """
    env = dict(os.environ)
    env.pop("EM_CACHE", None)
    node_path = [p for p in env.get("NODE_PATH", "").split(os.pathsep) if p]
    if os.path.isdir("/usr/share/nodejs") and "/usr/share/nodejs" not in node_path:
        node_path.append("/usr/share/nodejs")
    env["NODE_PATH"] = os.pathsep.join(node_path)
    return env


def _first_line(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"`{' '.join(cmd)}` could not run: {exc}") from None
    text = (out.stdout or out.stderr).strip()
    if out.returncode != 0 or not text:
        detail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ToolchainError(f"`{' '.join(cmd)}` failed: {detail[0]}")
    return text.splitlines()[0]


def find_emcc() -> Tool:
    path = shutil.which("emcc")
    if path is None:
        raise ToolchainError(
            "emcc (Emscripten) is not installed; it links model libraries to WebAssembly. "
            f"Install it with: {INSTALL_EMCC}"
        )
    line = _first_line([path, "--version"], env=emcc_env())
    match = re.search(r"\b(\d+\.\d+\.\d+)\b", line)
    return Tool("emcc", path, match.group(1) if match else line)


def find_chromium() -> Tool:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            line = _first_line([path, "--version"])
            match = re.search(r"(\d+\.\d+\.\d+\.\d+)", line)
            return Tool("chromium", path, match.group(1) if match else line)
    raise ToolchainError(
        "Chromium is not installed; headless tests and benchmarks run the model in it. "
        f"Install it with: {INSTALL_CHROMIUM}"
    )


def find_deno() -> Tool:
    """Deno: the project's own first (npm `deno`, whose binary comes in the one platform package
    npm installs, e.g. @deno/linux-x64-glibc), else one on PATH."""
    local = sorted((WEB_DIR / "node_modules" / "@deno").glob("*/deno"))
    path = str(local[0]) if local else shutil.which("deno")
    if path is None:
        raise ToolchainError(
            f"Deno is not installed; --runtime deno runs the engine in it. Install it with: {INSTALL_DENO}"
        )
    match = re.search(r"(\d+\.\d+\.\d+)", _first_line([path, "--version"]))
    return Tool("deno", path, match.group(1) if match else "unknown")


def find_node() -> Tool:
    path = shutil.which("node")
    if path is None:
        raise ToolchainError(
            f"Node.js is not installed; it bundles the browser engine. Install it with: {INSTALL_NODE}"
        )
    return Tool("node", path, _first_line([path, "--version"]).lstrip("v"))
