"""Where webllm_build keeps its cache and finds the files that ship with the repository."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
WEB_DIR = REPO_DIR / "web"
WEB_BUNDLE = WEB_DIR / "dist" / "webllm_build.js"
# The chat page's own small script: starts the engine (WEB_BUNDLE) in a Web Worker.
WEB_PAGE_BUNDLE = WEB_DIR / "dist" / "webllm_build-page.js"
TEMPLATES_DIR = REPO_DIR / "site_templates"

CACHE_ENV = "WEBLLM_BUILD_CACHE"


def cache_dir() -> Path:
    """The user cache root: $WEBLLM_BUILD_CACHE, else $XDG_CACHE_HOME/webllm_build, else ~/.cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "webllm_build"
