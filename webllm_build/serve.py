"""Serve a built folder the way a static CDN would (aiohttp).

Content-hashed files get a year of immutable caching, everything else must be revalidated;
`.wasm` is `application/wasm` so browsers can stream-compile it; ETag and Range come from
aiohttp's FileResponse. Nothing outside the folder is reachable: no listing, no `..`, no
symlink that leads out.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import mimetypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

from webllm_build.artifacts import HASHED_NAME
from webllm_build.errors import ServeError

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
COMPRESSIBLE = {".js", ".mjs", ".json", ".html", ".css", ".map", ".txt", ".svg", ".md"}
# .d.ts declarations are text (a guess from ".ts" says MPEG transport stream).
MIME_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".ts": "text/plain; charset=utf-8",
}


def _resolve(root: Path, request_path: str) -> Path | None:
    relative = request_path.lstrip("/") or "index.html"
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        return None
    if candidate.is_dir():
        candidate = candidate / "index.html"
    return candidate if candidate.is_file() else None


@functools.lru_cache(maxsize=256)
def _gzip_file(path: Path, mtime_ns: int, size: int) -> tuple[bytes, str]:
    """Compressed bytes and a weak ETag, cached per file version (mtime and size key it)."""
    body = gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)
    return body, f'W/"{mtime_ns:x}-{size:x}-gz"'


def _gzipped(request: web.Request, path: Path, headers: dict[str, str]) -> web.Response:
    # Compressed once per file version with an exact Content-Length: streaming compression of
    # a FileResponse broke off responses in Chromium now and then ("Failed to fetch").
    stat = path.stat()
    body, etag = _gzip_file(path, stat.st_mtime_ns, stat.st_size)
    headers = {**headers, "Content-Encoding": "gzip", "Vary": "Accept-Encoding", "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body if request.method == "GET" else None, headers=headers)


def make_app(
    root: Path,
    *,
    isolation_headers: bool = False,
    on_request: Callable[[web.Request], None] | None = None,
) -> web.Application:
    """An aiohttp app serving `root`. `isolation_headers` adds COOP/COEP (for SharedArrayBuffer);
    `on_request` sees every request first (tests count requests with it)."""
    root = root.resolve()

    async def handle(request: web.Request) -> web.StreamResponse:
        if on_request is not None:
            on_request(request)
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        path = _resolve(root, request.path)
        if path is None:
            raise web.HTTPNotFound()
        headers = {
            "Cache-Control": IMMUTABLE if HASHED_NAME.search(path.name) else REVALIDATE,
            "Content-Type": MIME_TYPES.get(path.suffix)
            or mimetypes.guess_type(path.name)[0]
            or "application/octet-stream",
            "X-Content-Type-Options": "nosniff",
            # Public files: a page on another origin may import the engine and load the models
            # (the engine as a library), as from a CDN.
            "Access-Control-Allow-Origin": "*",
        }
        if isolation_headers:
            headers["Cross-Origin-Opener-Policy"] = "same-origin"
            headers["Cross-Origin-Embedder-Policy"] = "require-corp"
        wants_gzip = "gzip" in request.headers.get("Accept-Encoding", "")
        if path.suffix in COMPRESSIBLE and wants_gzip and "Range" not in request.headers:
            return _gzipped(request, path, headers)
        return web.FileResponse(path, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@contextmanager
def serve_in_background(
    root: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    isolation_headers: bool = False,
    on_request: Callable[[web.Request], None] | None = None,
) -> Iterator[str]:
    """Serve `root` from a background thread; yields the base URL (port 0 picks a free one)."""
    app = make_app(root, isolation_headers=isolation_headers, on_request=on_request)
    with serve_app_in_background(app, host=host, port=port) as url:
        yield url


@contextmanager
def serve_app_in_background(app: web.Application, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run any aiohttp app (ours, or ours behind test middleware) on a background thread."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    box: dict[str, object] = {}

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        sock = site._server.sockets[0]  # the only way aiohttp exposes the bound port
        box["port"] = sock.getsockname()[1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except OSError as exc:
            box["error"] = exc
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, name="webllm-build-serve", daemon=True)
    thread.start()
    started.wait()
    if "error" in box:
        raise ServeError(f"Cannot listen on {host}:{port}: {box['error']}. Pick another --port.")
    try:
        yield f"http://{host}:{box['port']}/"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def serve_forever(
    root: Path, *, host: str = "127.0.0.1", port: int = 8000, isolation_headers: bool = False
) -> None:
    if not root.is_dir():
        raise ServeError(f"{root} is not a directory. Build a site first, then serve it.")
    print(f"Serving {root} at http://{host}:{port}/ (Ctrl-C stops)")
    try:
        web.run_app(make_app(root, isolation_headers=isolation_headers), host=host, port=port, print=None)
    except OSError as exc:
        raise ServeError(f"Cannot listen on {host}:{port}: {exc.strerror}. Pick another --port.") from None
