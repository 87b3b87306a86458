"""Where webllm_build keeps its cache and finds the site templates and the browser engine.

In a checkout (or an editable install) they are the repository's `site_templates/` and `web/dist/`;
an installed wheel carries copies under `webllm_build/assets/` (setup.py puts them there).
"""

from __future__ import annotations

import os
from pathlib import Path

from webllm_build.errors import ToolchainError

PACKAGE_DIR = Path(__file__).resolve().parent
ASSETS_DIR = PACKAGE_DIR / "assets"
REPO_DIR = PACKAGE_DIR.parent
WEB_DIR = REPO_DIR / "web"  # the engine's sources and npm packages: a checkout only
INSTALLED = ASSETS_DIR.is_dir()
WEB_DIST = ASSETS_DIR / "web" if INSTALLED else WEB_DIR / "dist"
WEB_BUNDLE = WEB_DIST / "webllm_build.js"
# Its TypeScript declarations (the library API), shipped beside it in the site.
WEB_TYPES = WEB_DIST / "webllm_build.d.ts"
# The chat page's own small script: starts the engine (WEB_BUNDLE) in a Web Worker.
WEB_PAGE_BUNDLE = WEB_DIST / "webllm_build-page.js"
# The site's service worker (offline.py): Workbox precaching, and the one that retires it.
WEB_SW_BUNDLE = WEB_DIST / "webllm_build-sw.js"
WEB_SW_RETIRE_BUNDLE = WEB_DIST / "webllm_build-sw-retire.js"
TEMPLATES_DIR = ASSETS_DIR / "site_templates" if INSTALLED else REPO_DIR / "site_templates"
# What to do when the engine bundle is missing.
BUILD_WEB_HINT = "Reinstall webllm_build." if INSTALLED else "Build it with: make web"

CACHE_ENV = "WEBLLM_BUILD_CACHE"


def cache_dir() -> Path:
    """The user cache root: $WEBLLM_BUILD_CACHE, else $XDG_CACHE_HOME/webllm_build, else ~/.cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "webllm_build"


def require_web_bundles() -> None:
    """Fail with what to do when the browser engine's bundles are not built."""
    for bundle in (WEB_BUNDLE, WEB_TYPES, WEB_PAGE_BUNDLE, WEB_SW_BUNDLE, WEB_SW_RETIRE_BUNDLE):
        if not bundle.is_file():
            raise ToolchainError(f"The browser engine bundle {bundle} is missing. {BUILD_WEB_HINT}")
