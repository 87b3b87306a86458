"""The site's service worker: Workbox precaching, so the chat works offline after one visit.

`sw.js` is the Workbox bundle of web/src/sw.ts with this build's precache manifest where the
bundle says `self.__WB_MANIFEST`: the injection workbox-build's `injectManifest` makes, done here
so building a site needs no Node. The manifest holds every file a visit needs except the weights,
which the engine keeps in its own verified store. Entries follow workbox-build's conventions:
URLs relative to sw.js, and a revision (the file's md5, as workbox-build computes it) only for
names that do not carry their content's hash.

A site built without offline support still writes sw.js: one that retires an earlier build's
worker (drops its precache and unregisters). Otherwise a visitor whose browser installed that
worker would be served the old build from its cache indefinitely: an update check that finds no
sw.js leaves the installed worker in place.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from webllm_build.artifacts import HASHED_NAME, read_model_index, read_weights_manifest
from webllm_build.errors import SiteError
from webllm_build.paths import WEB_SW_BUNDLE, WEB_SW_RETIRE_BUNDLE

SERVICE_WORKER = "sw.js"
MANIFEST_MARKER = "self.__WB_MANIFEST"
# Top-level files a visit loads: the page, its scripts, site.json. Not README.md, _headers, the
# type declarations or sw.js itself (the browser fetches that one on its own, bypassing caches).
PAGE_SUFFIXES = (".html", ".js", ".json")


def _entry(path: Path, url: str) -> dict[str, Any]:
    revision = None if HASHED_NAME.search(path.name) else hashlib.md5(path.read_bytes()).hexdigest()
    return {"url": url, "revision": revision}


def precache_manifest(site: Path, models_url: dict[str, str]) -> list[dict[str, Any]]:
    """Workbox's precache entries for the site in `site`: `models_url` maps each model directory
    (relative to `site`, "models/<id>") to the URL the page loads it from (relative, or another
    origin's with --base-url)."""
    entries = [
        _entry(path, path.name)
        for path in sorted(site.iterdir())
        if path.is_file() and path.suffix in PAGE_SUFFIXES and path.name != SERVICE_WORKER
    ]
    for relative, url in sorted(models_url.items()):
        directory = site / relative
        index = read_model_index(directory)
        weights = read_weights_manifest(directory / index.files["tensor_cache"].path)
        shards = {shard.data_path for shard in weights.shards}
        entries += [
            _entry(path, url + path.name)
            for path in sorted(directory.iterdir())
            if path.is_file() and path.name not in shards
        ]
    return entries


def write_service_worker(site: Path, models_url: dict[str, str] | None) -> None:
    """Write `site`/sw.js: Workbox precaching of `precache_manifest`, or (models_url None: built
    with --no-offline) the worker that retires an earlier build's."""
    if models_url is None:
        (site / SERVICE_WORKER).write_bytes(WEB_SW_RETIRE_BUNDLE.read_bytes())
        return
    source = WEB_SW_BUNDLE.read_text(encoding="utf-8")
    if source.count(MANIFEST_MARKER) != 1:
        raise SiteError(f"{WEB_SW_BUNDLE} does not contain {MANIFEST_MARKER} once. Rebuild it: make web")
    manifest = json.dumps(precache_manifest(site, models_url), separators=(",", ":"))
    (site / SERVICE_WORKER).write_text(source.replace(MANIFEST_MARKER, manifest), encoding="utf-8")
