"""Drive the browser engine from Python: a page with compiled models served next to it.

Used by this project's tests and meant for users' CI: everything runs in the real headless
Chromium on its real WebGPU adapter, through the engine's public API.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from webllm_build.browser import BrowserSession, evaluate, write_harness
from webllm_build.errors import BrowserError


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

    def delete_cached_weights(self) -> int:
        return self._eval(
            "(name) => webllm.deleteCachedWeights(new URL(name + '/', location.href).href, model.manifest)",
            self.name,
        )
