"""Ships the chat site's templates and the browser engine's bundles inside the wheel.

They live outside the package in the repository (`site_templates/`, `web/`), so building the
wheel builds the engine (npm ci when web/node_modules is missing, then tsc and esbuild) and copies
both into `webllm_build/assets/`, where `webllm_build.paths` looks first. An editable install has
no assets folder and keeps reading them from the checkout.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
WEB = ROOT / "web"
# The bundles the site ships (webllm_build.paths names them); source maps stay out of the wheel.
BUNDLES = (
    "webllm_build.js",
    "webllm_build.d.ts",
    "webllm_build-page.js",
    "webllm_build-sw.js",
    "webllm_build-sw-retire.js",
)


def build_engine() -> None:
    if not (WEB / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True)
    subprocess.run(["npx", "--no-install", "tsc", "-p", "."], cwd=WEB, check=True)
    subprocess.run(["node", "build.mjs"], cwd=WEB, check=True)


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        build_engine()
        assets = Path(self.build_lib) / "webllm_build" / "assets"
        shutil.rmtree(assets, ignore_errors=True)
        shutil.copytree(ROOT / "site_templates", assets / "site_templates")
        (assets / "web").mkdir(parents=True)
        for name in BUNDLES:
            shutil.copy2(WEB / "dist" / name, assets / "web" / name)


setup(cmdclass={"build_py": BuildWithAssets})
