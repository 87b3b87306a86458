"""The static server behaves like a CDN and never serves outside its folder."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest

from webllm_build.serve import IMMUTABLE, REVALIDATE, serve_in_background


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><p>hi</p>")
    (root / "model-0123456789abcdef.wasm").write_bytes(b"\0asm" + bytes(range(256)) * 4)
    (root / "config.json").write_text('{"a": 1}' + " " * 2000)
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    with serve_in_background(root) as url:
        yield url


def fetch(url: str, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, b""


def test_wasm_type_and_immutable_caching_for_hashed_names(site):
    status, headers, body = fetch(site + "model-0123456789abcdef.wasm")
    assert status == 200 and body[:4] == b"\0asm"
    assert headers["Content-Type"] == "application/wasm"
    assert headers["Cache-Control"] == IMMUTABLE


def test_top_level_files_revalidate_and_support_etag(site):
    status, headers, _ = fetch(site)
    assert status == 200 and headers["Cache-Control"] == REVALIDATE
    status, _, _ = fetch(site, {"If-None-Match": headers["ETag"]})
    assert status == 304


def test_range_requests(site):
    status, headers, body = fetch(site + "model-0123456789abcdef.wasm", {"Range": "bytes=4-7"})
    assert status == 206 and body == bytes([0, 1, 2, 3])
    assert headers["Content-Range"].startswith("bytes 4-7/")


def test_json_is_compressed_when_asked(site):
    _, headers, _ = fetch(site + "config.json", {"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip"


@pytest.mark.parametrize("path", ["../secret.txt", "%2e%2e/secret.txt", "link.txt", "missing"])
def test_nothing_outside_the_folder(site, path):
    status, _, body = fetch(site + path)
    assert status == 404 and b"outside" not in body
