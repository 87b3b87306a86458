"""Drive a built chat site through the page's own API (`window.webllmApp`), as check and bench do.

The page (web/src/page/app.ts) sets `window.webllmAppReady = true` once it exposes

    webllmApp.site              the parsed site.json
    webllmApp.engine            the page's engine handle (maybe in a Web Worker), or null
    webllmApp.adapter           the WebGPU adapter report
    webllmApp.loadModel(id)     loads a model of the site, returns a load report

Everything here goes through those and the engine's OpenAI-style API, so a deployed site is
tested exactly as visitors use it. Every call returns plain data; a JS failure or a timeout
comes back as an `error` entry, never as an exception, so a report can carry on.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from webllm_build.errors import BrowserError, VerifyError
from webllm_build.serve import serve_in_background
from webllm_build.verify.browser import BrowserSession, PageLog, evaluate

APP_READY = "window.webllmAppReady === true"
# The page script only reads site.json and imports the engine before it is ready.
READY_TIMEOUT_S = 60

# Rejects after `ms` and runs `onTimeout`; shared by the scripts below.
_WITH_TIMEOUT = """
const withTimeout = (promise, ms, what, onTimeout) => {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => {
            if (onTimeout) onTimeout();
            const e = new Error(`${what} did not finish within ${ms / 1000} s.`);
            e.code = "timeout";
            reject(e);
        }, ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
};
const asError = (e) => ({code: e?.code ?? null, message: String(e?.message ?? e)});
"""

LOAD_SCRIPT = (
    "async ([id, timeoutMs]) => {"
    + _WITH_TIMEOUT
    + """
    const started = performance.now();
    try {
        const report = await withTimeout(webllmApp.loadModel(id), timeoutMs, `Loading ${id}`);
        const seconds = (performance.now() - started) / 1000;
        return {report: JSON.parse(JSON.stringify(report ?? null)), seconds, error: null};
    } catch (e) {
        return {report: null, seconds: (performance.now() - started) / 1000, error: asError(e)};
    }
}"""
)

# Streams the completion so time to first token is measured where a visitor would see it.
CREATE_SCRIPT = (
    "async ([request, timeoutMs]) => {"
    + _WITH_TIMEOUT
    + """
    const engine = webllmApp.engine;
    if (!engine) return {error: {code: "no-model", message: "No model is loaded."}};
    const started = performance.now();
    let firstToken = null;
    const chunks = [];
    const run = async () => {
        const stream = await engine.chat.completions.create({...request, stream: true});
        for await (const chunk of stream) {
            const choice = chunk.choices[0];
            if (firstToken === null && (choice.delta.content || choice.finish_reason)) {
                firstToken = performance.now();
            }
            chunks.push(chunk);
        }
    };
    try {
        await withTimeout(run(), timeoutMs, "The completion", () => engine.interruptGenerate());
    } catch (e) {
        return {error: asError(e), chunks, seconds: (performance.now() - started) / 1000};
    }
    return {
        error: null,
        chunks,
        seconds: (performance.now() - started) / 1000,
        ttft_s: firstToken === null ? null : (firstToken - started) / 1000,
    };
}"""
)


def fetch_json(url: str, timeout_s: float = 30) -> Any:
    """A JSON file of the site, read over HTTP as the browser would (no-cache: fixed names change)."""
    request = urllib.request.Request(url, headers={"Cache-Control": "no-cache"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise VerifyError(f"Could not read {url}: {exc}. Is it a site built by webllm_build site?") from None


@contextmanager
def site_url(target: str | Path) -> Iterator[str]:
    """The URL of a site: a folder is served on loopback for the duration, a URL is used as is."""
    text = str(target)
    if text.startswith(("http://", "https://")):
        yield text if text.endswith("/") else text + "/"
        return
    folder = Path(target)
    if not (folder / "site.json").is_file():
        raise VerifyError(
            f"{folder} is not a built site (no site.json). Build one with: webllm_build site --out {folder}"
        )
    with serve_in_background(folder) as url:
        yield url


def select_models(entries: list[dict[str, Any]], wanted: tuple[str, ...]) -> list[dict[str, Any]]:
    """The site.json entries named in `wanted` (all when empty); an unknown id is an error."""
    ids = [e["id"] for e in entries]
    unknown = [m for m in wanted if m not in ids]
    if unknown:
        raise VerifyError(f"The site has no model {', '.join(unknown)}; it has: {', '.join(ids)}.")
    return [e for e in entries if not wanted or e["id"] in wanted]


class SitePage:
    """One tab on a site, in a fresh browser context (its own empty cache), ready to drive."""

    def __init__(
        self,
        browser: BrowserSession | None,
        url: str,
        *,
        timeout_s: float = 120,
        opened: tuple[Any, PageLog] | None = None,
        engine_in_page: bool = False,
    ) -> None:
        """Opens `url` in `browser`, or drives `opened`, a (page, log) of the site already open
        (the chat page a test operates through its controls: its loaded engine is reused).
        `engine_in_page` keeps a browser's engine out of its Web Worker, where a page script
        (the profiler) cannot see its GPU calls."""
        self.url = url
        self.timeout_s = timeout_s
        if opened is not None:
            self.page, self.log = opened
        try:
            if opened is None:
                assert browser is not None, "SitePage needs a browser or an opened page"
                self.page, self.log = browser.open(
                    url, ready=APP_READY, timeout_ms=READY_TIMEOUT_S * 1000, workers=not engine_in_page
                )
        except BrowserError as exc:
            raise BrowserError(
                f"{exc}\nThe page never set window.webllmAppReady: is {url} a chat site built by "
                f"webllm_build site (a recent one: rebuild older sites)?"
            ) from None
        except Exception as exc:  # Playwright's Error from goto (unreachable host, bad URL)
            raise BrowserError(f"Could not open {url}: {str(exc).splitlines()[0]}") from None
        self.site: dict[str, Any] = self._eval("() => webllmApp.site")
        self.model_id: str | None = None

    def _eval(self, expression: str, arg: Any = None) -> Any:
        return evaluate(self.page, self.log, expression, arg)

    @property
    def models(self) -> list[dict[str, Any]]:
        return list(self.site["models"])

    def model_entry(self, model_id: str) -> dict[str, Any]:
        for entry in self.models:
            if entry["id"] == model_id:
                return entry
        known = ", ".join(m["id"] for m in self.models)
        raise VerifyError(f"The site has no model {model_id!r}; it has: {known}.")

    def model_url(self, model_id: str) -> str:
        """The model directory's absolute URL (its base_url may point at another origin)."""
        return urljoin(self.url, self.model_entry(model_id)["base_url"])

    def adapter(self) -> dict[str, Any] | None:
        return self._eval("() => webllmApp.adapter ?? null")

    def load(self, model_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """{report, seconds, error}: the page's load report and the wall time in the page."""
        self.model_entry(model_id)
        result = self._eval(LOAD_SCRIPT, [model_id, int((timeout_s or self.timeout_s) * 1000)])
        if result["error"] is None:
            self.model_id = model_id
        return result

    def create(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        """A completion, put together from its stream: {content, tool_calls, token_ids, logprobs,
        finish_reason, usage, ttft_s, seconds, error}. `logprobs` is the per-token list when the
        request asked."""
        raw = self._eval(CREATE_SCRIPT, [request, int((timeout_s or self.timeout_s) * 1000)])
        chunks = raw.get("chunks", [])
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        logprobs = [
            entry for c in chunks for entry in ((c["choices"][0].get("logprobs") or {}).get("content") or [])
        ]
        finals = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]]
        usages = [c["usage"] for c in chunks if c.get("usage")]
        calls = [
            {k: v for k, v in call.items() if k != "index"}
            for c in chunks
            for call in c["choices"][0]["delta"].get("tool_calls") or []
        ]
        return {
            "content": content,
            "tool_calls": calls or None,
            "token_ids": [entry["token_id"] for entry in logprobs] if request.get("logprobs") else None,
            "logprobs": logprobs if request.get("logprobs") else None,
            "finish_reason": finals[-1] if finals else None,
            "usage": usages[-1] if usages else None,
            "ttft_s": raw.get("ttft_s"),
            "seconds": raw.get("seconds"),
            "error": raw["error"],
        }

    def evaluate(self, expression: str, arg: Any = None) -> Any:
        """Any JS function in the page, e.g. "async () => webllmApp.engine.runtimeStats()"."""
        return self._eval(expression, arg)

    def reset(self) -> None:
        self._eval("() => webllmApp.engine.resetChat()")

    def runtime_stats(self) -> dict[str, Any] | None:
        """The engine's runtimeStats() (GPU bytes held, adapter), or None if this engine lacks it."""
        return self._eval(
            "async () => { const e = webllmApp.engine;"
            " return e && e.runtimeStats ? await e.runtimeStats().catch(() => null) : null; }"
        )

    def reload(self) -> None:
        """Reload the tab: a second visit with the context's caches kept; no model is loaded after."""
        self.page.reload()
        try:
            self.page.wait_for_function(APP_READY, timeout=READY_TIMEOUT_S * 1000)
        except Exception as exc:  # Playwright's TimeoutError; its module is imported lazily
            raise BrowserError(
                f"The page {self.url} did not become ready again: {exc}\n{self.log.tail()}"
            ) from None
        self.model_id = None

    def close(self) -> None:
        self.page.context.close()


def page_log(log: PageLog) -> dict[str, list[str]]:
    """The console lines and page errors of a tab, for reports."""
    return {"console": list(log.console), "page_errors": list(log.errors)}
