"""Headless Chromium with WebGPU, driven through Playwright; shared by doctor, check, bench and tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from webllm_build.compiler.toolchain import INSTALL_CHROMIUM, find_chromium
from webllm_build.errors import BrowserError
from webllm_build.paths import TEMPLATES_DIR, WEB_BUNDLE, require_web_bundles

# --enable-unsafe-webgpu: Linux Chromium hides WebGPU without it; on a machine with no GPU it
# then offers SwiftShader's Vulkan as a fallback adapter. The rest keep a closed network quiet.
CHROMIUM_ARGS = (
    "--enable-unsafe-webgpu",
    "--no-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
)
# Headless Chromium on Linux keeps WebGPU on SwiftShader unless told to reach a GPU through
# Vulkan (ANGLE on Vulkan, no window surface, past the GPU blocklist). The `chromium-gpu` runtime
# adds these; on a machine without a Vulkan GPU driver the adapter request then never answers,
# which the engine's probe turns into an error after a timeout (web/src/webgpu.ts).
CHROMIUM_HARDWARE_GPU_ARGS = (
    "--enable-features=Vulkan",
    "--use-angle=vulkan",
    "--disable-vulkan-surface",
    "--ignore-gpu-blocklist",
)


@dataclass
class PageLog:
    """What the page printed and threw, kept for error messages and reports."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def tail(self, lines: int = 15) -> str:
        return "\n".join((self.console + self.errors)[-lines:])


class BrowserSession:
    """One headless Chromium; `open(url)` gives a page whose console is captured."""

    def __init__(self, browser: Any) -> None:
        self._browser = browser

    def open(
        self,
        url: str,
        *,
        ready: str = "window.webllmReady === true",
        timeout_ms: int = 60_000,
        webgpu: bool = True,
        context_options: dict[str, Any] | None = None,
        workers: bool = True,
    ) -> tuple[Any, PageLog]:
        """A fresh browser context (empty caches) with `url` open; `context_options` are
        Playwright's new_context options (viewport, color_scheme, permissions, is_mobile, ...).
        `workers=False` hides Web Workers, so the page runs its engine in the page itself."""
        context = self._browser.new_context(**(context_options or {}))
        if not webgpu:
            context.add_init_script("Object.defineProperty(navigator, 'gpu', {value: undefined})")
        if not workers:
            context.add_init_script("delete globalThis.Worker")
        page = context.new_page()
        log = PageLog()
        page.on("console", lambda msg: log.console.append(f"[{msg.type}] {msg.text}"))
        page.on("pageerror", lambda exc: log.errors.append(f"[pageerror] {exc}"))
        page.goto(url)
        try:
            page.wait_for_function(ready, timeout=timeout_ms)
        except Exception as exc:  # Playwright's TimeoutError; its module is imported lazily
            raise BrowserError(f"The page {url} did not become ready: {exc}\n{log.tail()}") from None
        return page, log


def evaluate(page: Any, log: PageLog, expression: str, arg: Any = None) -> Any:
    """Run an async JS expression in the page; a JS exception becomes a BrowserError."""
    try:
        return page.evaluate(expression, arg)
    except Exception as exc:
        raise BrowserError(f"The page raised: {str(exc).splitlines()[0]}\n{log.tail()}") from None


# Playwright's sync API runs one driver per thread and refuses a second one while the first
# runs, so nested launches (a test's browser plus `check`'s own) share one driver.
_driver: Any = None
_driver_users = 0


@contextmanager
def _playwright_driver(sync_playwright: Any) -> Iterator[Any]:
    global _driver, _driver_users
    if _driver is None:
        _driver = sync_playwright().start()
    _driver_users += 1
    try:
        yield _driver
    finally:
        _driver_users -= 1
        if _driver_users == 0:
            _driver.stop()
            _driver = None


@contextmanager
def launch_browser(executable: Path | None = None, hardware_gpu: bool = False) -> Iterator[BrowserSession]:
    """Headless Chromium: Debian's by default, or any Chromium-based browser at `executable`;
    with `hardware_gpu`, its WebGPU asks for the machine's GPU through Vulkan."""
    if executable is not None and not Path(executable).is_file():
        raise BrowserError(f"--browser {executable} does not exist. Pass the path of a Chromium executable.")
    chromium_path = str(executable) if executable is not None else find_chromium().path
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserError(
            "The Python package playwright is missing. Install it with: pip install playwright"
        ) from None
    with _playwright_driver(sync_playwright) as driver:
        try:
            browser = driver.chromium.launch(
                executable_path=chromium_path,
                args=[*CHROMIUM_ARGS, *(CHROMIUM_HARDWARE_GPU_ARGS if hardware_gpu else ())],
                headless=True,
            )
        except PlaywrightError as exc:
            raise BrowserError(
                f"Chromium at {chromium_path} did not start: {str(exc).splitlines()[0]}. "
                f"Reinstall it with: {INSTALL_CHROMIUM}"
            ) from None
        try:
            yield BrowserSession(browser)
        finally:
            browser.close()


# Where check, bench and the pytest fixture run a site's engine: headless Chromium (the browser
# visitors use; SwiftShader), headless Chromium on the machine's GPU (Vulkan), or Deno (wgpu:
# lavapipe with shader-f16 without a GPU, the GPU where there is one).
RUNTIMES = ("chromium", "chromium-gpu", "deno")


@contextmanager
def launch_runtime(runtime: str = "chromium", browser: Path | None = None) -> Iterator[Any]:
    """A session whose `open(url)` gives a page on `runtime`; `browser` picks Chromium's executable."""
    if runtime in ("chromium", "chromium-gpu"):
        with launch_browser(browser, hardware_gpu=runtime == "chromium-gpu") as session:
            yield session
    elif runtime == "deno":
        if browser is not None:
            raise BrowserError("--browser names a Chromium executable; it does not apply to --runtime deno.")
        from webllm_build.verify.deno import launch_deno  # imports this module: loaded only when asked for

        with launch_deno() as session:
            yield session
    else:
        raise BrowserError(f"Unknown runtime {runtime!r}: pick one of {', '.join(RUNTIMES)}.")


def write_harness(directory: Path, title: str = "webllm_build harness") -> Path:
    """A page that only loads the engine bundle, for doctor, the self-check and tests."""
    require_web_bundles()
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(WEB_BUNDLE, directory / WEB_BUNDLE.name)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True)
    (directory / "index.html").write_text(env.get_template("harness.html").render(title=title))
    # A site of no models, so that `--runtime deno` (deno_page.js reads site.json) opens it too.
    (directory / "site.json").write_text(json.dumps({"format": 1, "engine": WEB_BUNDLE.name, "models": []}))
    return directory
