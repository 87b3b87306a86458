"""Drive the browser engine from Python: a page with compiled models served next to it.

Used by this project's tests and meant for users' CI: everything runs in the real headless
Chromium on its real WebGPU adapter, through the engine's public API.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from webllm_build.browser import BrowserSession, PageLog, evaluate, write_harness


def stage_models(directory: Path, models: dict[str, Path]) -> Path:
    """The harness page in `directory` with each compiled model copied under its name."""
    write_harness(directory)
    for name, model_dir in models.items():
        shutil.copytree(model_dir, directory / name, dirs_exist_ok=True)
    return directory


class PageModel:
    """A model loaded in a page; each call runs in the browser and returns plain Python values."""

    def __init__(self, browser: BrowserSession, url: str, name: str) -> None:
        self.page, self.log = browser.open(url)
        self.name = name
        self._eval(
            "async (name) => { window.model = await webllm.Model.load("
            "new URL(name + '/', location.href).href); }",
            name,
        )

    def _eval(self, expression: str, arg: Any = None) -> Any:
        return evaluate(self.page, self.log, expression, arg)

    def reset(self) -> None:
        self._eval("() => model.reset()")

    def prefill(self, ids: list[int]) -> list[float]:
        return self._eval("async (ids) => Array.from(await model.prefill(ids))", ids)

    def decode(self, token: int) -> list[float]:
        return self._eval("async (t) => Array.from(await model.decode(t))", token)

    def greedy(self, ids: list[int], steps: int) -> list[int]:
        return self._eval("async ([ids, n]) => model.greedy(ids, n)", [ids, steps])

    @property
    def console(self) -> PageLog:
        return self.log
