"""Drive the browser engine from Python: a page with compiled models served next to it.

Used by this project's tests and meant for users' CI: everything runs in the real headless
Chromium on its real WebGPU adapter, through the engine's public API.

It is also a pytest plugin. Enable it with `pytest -p webllm_build.verify.testing` (or
`pytest_plugins = ["webllm_build.verify.testing"]` in a top-level conftest.py) and point it at a site:

    pytest -p webllm_build.verify.testing --webllm-site dist/            # or a URL; or WEBLLM_SITE=...

    def test_reply(webllm_page):                                  # a loaded site, a fresh chat
        reply = webllm_page.create({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8})
        assert reply["error"] is None and reply["finish_reason"] in ("stop", "length")

Fixtures: `webllm_page` (a SitePage with the model loaded and the chat reset, per test),
`webllm_loaded_page` (the same tab, once per session), `webllm_site_url`, `webllm_model_id`
(--webllm-model, else the site's default model), `webllm_browser` (--webllm-browser; with
`--webllm-runtime deno` the engine runs in Deno instead of Chromium). Override
`webllm_site` in a conftest.py to build or pick the site in code.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webllm_build.errors import BrowserError
from webllm_build.verify.browser import RUNTIMES, BrowserSession, evaluate, launch_runtime, write_harness
from webllm_build.verify.sitepage import SitePage, site_url

__all__ = ["LOAD_SCRIPT", "PageModel", "SitePage", "stage_models"]


def stage_models(directory: Path, models: dict[str, Path]) -> Path:
    """The harness page in `directory` with each compiled model copied under its name."""
    write_harness(directory)
    for name, model_dir in models.items():
        shutil.copytree(model_dir, directory / name, dirs_exist_ok=True)
    return directory


LOAD_SCRIPT = """async ([name, options]) => {
    const events = [], warnings = [];
    try {
        window.model = await webllm.Model.load(new URL(name + '/', location.href).href, {
            ...options,
            onProgress: (e) => events.push(e),
            onWarning: (w) => warnings.push({code: w.code, message: w.message}),
        });
        return {report: window.model.loadReport, events, warnings, error: null};
    } catch (e) {
        const error = {code: e.code ?? null, message: String(e.message ?? e)};
        return {report: null, events, warnings, error};
    }
}"""


class PageModel:
    """A page holding one model of the site; each call runs in the browser, returns plain values.

    `PageModel(browser, url, name)` opens the page only; `PageModel.loaded(...)` also loads the
    model and fails loudly, and keeps the engine's report, progress events and warnings in
    `load_result`.
    """

    def __init__(self, browser: BrowserSession, url: str, name: str) -> None:
        self.page, self.log = browser.open(url)
        self.name = name
        self.load_result: dict[str, Any] = {}

    @classmethod
    def loaded(cls, browser: BrowserSession, url: str, name: str, **load_options: Any) -> PageModel:
        model = cls(browser, url, name)
        model.load_result = model.load(**load_options)
        if model.load_result["error"]:
            raise BrowserError(f"Loading {name} failed: {model.load_result['error']}\n{model.log.tail()}")
        return model

    def _eval(self, expression: str, arg: Any = None) -> Any:
        return evaluate(self.page, self.log, expression, arg)

    def load(self, **options: Any) -> dict[str, Any]:
        """Load (again) with engine options such as store="indexeddb"; errors come back as data."""
        return self._eval(LOAD_SCRIPT, [self.name, options])

    def reload(self) -> None:
        """Reload the page: a second visit, with the browser's storage kept."""
        self.page.reload()
        self.page.wait_for_function("window.webllmReady === true")

    def reset(self) -> None:
        self._eval("() => model.reset()")

    def prefill(self, ids: list[int]) -> list[float]:
        return self._eval("async (ids) => Array.from(await model.prefill(ids))", ids)

    def decode(self, token: int) -> list[float]:
        return self._eval("async (t) => Array.from(await model.decode(t))", token)

    def greedy(self, ids: list[int], steps: int) -> list[int]:
        return self._eval("async ([ids, n]) => model.greedy(ids, n)", [ids, steps])

    def start_engine(self) -> Any:
        """`window.engine`: the OpenAI-style Engine (web/src/engine.ts) in this page, this model
        loaded into it; returns the Playwright page to evaluate requests in."""
        self._eval(
            "async (name) => { window.engine = await webllm.createEngine();"
            " await window.engine.reload(new URL(name + '/', location.href).href); }",
            self.name,
        )
        return self.page

    def delete_cached_weights(self) -> int:
        return self._eval(
            "(name) => webllm.deleteCachedWeights(new URL(name + '/', location.href).href, model.manifest)",
            self.name,
        )


# --- the pytest plugin -------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("webllm_build")
    group.addoption("--webllm-site", default=None, help="a built site folder or URL (or set WEBLLM_SITE)")
    group.addoption("--webllm-model", default=None, help="the model id to load (default: the site's default)")
    group.addoption("--webllm-browser", default=None, help="a Chromium executable (default: Debian's)")
    group.addoption(
        "--webllm-runtime",
        choices=RUNTIMES,
        default="chromium",
        help="where the engine runs: headless Chromium (default) or Deno (wgpu: lavapipe, real GPUs)",
    )
    group.addoption("--webllm-timeout", type=float, default=600, help="seconds for a load or a completion")


@pytest.fixture(scope="session")
def webllm_browser(pytestconfig: pytest.Config) -> Iterator[BrowserSession]:
    executable = pytestconfig.getoption("--webllm-browser")
    runtime = pytestconfig.getoption("--webllm-runtime")
    with launch_runtime(runtime, Path(executable) if executable else None) as browser:
        yield browser


@pytest.fixture(scope="session")
def webllm_site(pytestconfig: pytest.Config) -> str:
    """The site under test; override this fixture to build one in code."""
    site = pytestconfig.getoption("--webllm-site") or os.environ.get("WEBLLM_SITE")
    if not site:
        pytest.skip("no site to test: pass --webllm-site DIR|URL or set WEBLLM_SITE")
    return str(site)


@pytest.fixture(scope="session")
def webllm_site_url(webllm_site: str | Path) -> Iterator[str]:
    with site_url(webllm_site) as url:
        yield url


@pytest.fixture(scope="session")
def webllm_model_id(pytestconfig: pytest.Config, webllm_browser: BrowserSession, webllm_site_url: str) -> str:
    chosen = pytestconfig.getoption("--webllm-model")
    if chosen:
        return str(chosen)
    page = SitePage(webllm_browser, webllm_site_url)
    try:
        models = page.models
    finally:
        page.close()
    return next((m["id"] for m in models if m.get("default")), models[0]["id"])


@pytest.fixture(scope="session")
def webllm_loaded_page(
    pytestconfig: pytest.Config, webllm_browser: BrowserSession, webllm_site_url: str, webllm_model_id: str
) -> Iterator[SitePage]:
    timeout_s = float(pytestconfig.getoption("--webllm-timeout"))
    page = SitePage(webllm_browser, webllm_site_url, timeout_s=timeout_s)
    loaded = page.load(webllm_model_id)
    if loaded["error"]:
        page.close()
        pytest.fail(f"Loading {webllm_model_id} failed: {loaded['error']['message']}\n{page.log.tail()}")
    yield page
    page.close()


@pytest.fixture
def webllm_page(webllm_loaded_page: SitePage) -> SitePage:
    """The session's loaded tab with a fresh chat (the engine's KV cache reset)."""
    webllm_loaded_page.reset()
    return webllm_loaded_page
