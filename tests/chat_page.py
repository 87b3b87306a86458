"""The generated chat page, driven as a visitor drives it: clicks, taps and keys, never its script API.

Shared by the chat parity tests (tests/test_site_chat.py) and the UI and accessibility tests
(tests/test_page_ui.py). The sites they chat with are the session fixtures in conftest.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conftest import REPO

from webllm_build.verify.reference import hf_greedy, load_reference

TINY = "tiny-llama-q4f32_1"
HOSTILE = "hostile-q4f32_1"
# Whole tokens of the hostile model's tokenizer, so the model can emit them one at a time.
HOSTILE_TOKENS = ['<img src=x onerror="window.pwned=1">', " and <script>window.pwned=2</script>"]

APP_READY = "window.webllmAppReady === true"
# axe-core from the engine's npm dev dependencies; it is injected into the page under audit.
AXE_SCRIPT = REPO / "web" / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.2 A and AA (contrast and target size included) plus axe's best practices (landmarks,
# heading order, one main, ...).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
# The context options of a visitor whose Copy buttons the test can check.
CLIPBOARD = {"permissions": ["clipboard-read", "clipboard-write"]}


class ChatPage:
    """The chat page of a served site, operated through its controls only."""

    def __init__(self, browser: Any, url: str, *, webgpu: bool = True, **context_options: Any) -> None:
        """A new visitor (empty caches); `context_options` set the viewport, theme, permissions..."""
        self.page, self.log = browser.open(
            url, ready=APP_READY, webgpu=webgpu, context_options=context_options
        )

    def settings(
        self, temperature: float | str, max_tokens: int | str, top_p: float | str | None = None
    ) -> None:
        """Open the Sampling panel (if closed) and type the values into its fields."""
        if not self.page.eval_on_selector("#settings", "details => details.open"):
            self.page.click("#settings summary")
        self.page.fill("#temperature", str(temperature))
        self.page.fill("#max-tokens", str(max_tokens))
        if top_p is not None:
            self.page.fill("#top-p", str(top_p))

    def tools(self, tools_json: str, choice: str = "auto") -> None:
        """Open the Tools panel (if closed), paste `tools_json` and pick the tool choice."""
        if not self.page.eval_on_selector("#tools-panel", "details => details.open"):
            self.page.click("#tools-panel summary")
        self.page.fill("#tools", tools_json)
        self.page.select_option("#tool-choice", choice)

    def load(self, model_id: str | None = None) -> None:
        if model_id is not None:
            self.page.select_option("#model", model_id)
        self.page.click("#load")
        self.wait_until_loaded()

    def wait_until_loaded(self) -> None:
        self.page.wait_for_function(
            "document.getElementById('progress-text').textContent.endsWith('is ready.') ||"
            " !document.getElementById('error').hidden",
            timeout=120_000,
        )
        assert self.page.is_hidden("#error"), self.page.inner_text("#error")

    def assistant_count(self) -> int:
        return self.page.locator(".message.assistant").count()

    def send(self, text: str) -> None:
        """Type `text` and click Send; returns once its reply has started."""
        before = self.assistant_count()
        self.page.fill("#prompt", text)
        self.page.click("#send")
        self.wait_for_reply_to_start(before)

    def wait_for_reply_to_start(self, before: int) -> None:
        # The reply's element appears the moment the page sends: a refusal to send times out here.
        self.page.wait_for_function(
            "n => document.querySelectorAll('.message.assistant').length > n", arg=before, timeout=10_000
        )

    def wait_for_reply(self) -> str:
        """The last reply once it has finished (the page marks it aria-busy while it streams)."""
        self.page.wait_for_function(
            "!document.querySelector('.message.assistant:last-child[aria-busy]')", timeout=300_000
        )
        assert self.page.is_hidden("#error"), self.page.inner_text("#error")
        return self.last_reply()

    def last_reply(self) -> str:
        return self.page.eval_on_selector_all(".message.assistant", "els => els.at(-1).dataset.raw")

    def user_messages(self) -> list[str]:
        return self.page.eval_on_selector_all(".message.user", "els => els.map(e => e.dataset.raw)")

    def wait_for_streaming(self) -> None:
        self.page.wait_for_function(
            "(document.querySelector('.message.assistant:last-child')?.dataset.raw || '').length > 0"
        )

    def stats_tokens(self) -> int:
        """The reply's token count as the status line shows it ("12 tokens, 30.1 tokens/s")."""
        match = re.match(r"(\d+) tokens?,", self.page.inner_text("#stats"))
        assert match, self.page.inner_text("#stats")
        return int(match.group(1))

    def usage(self) -> dict:
        return self.page.evaluate("window.webllmApp.lastUsage")

    def axe_violations(self) -> list[str]:
        """axe-core's violations in the page as it is now, one line each (empty: none)."""
        if not self.page.evaluate("typeof window.axe !== 'undefined'"):
            self.page.add_script_tag(path=str(AXE_SCRIPT))
        return self.page.evaluate(
            """async (tags) => {
                const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
                const where = (v) => v.nodes.map((n) => n.target.join(" ")).join(", ");
                return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} at ${where(v)}`);
            }""",
            AXE_TAGS,
        )


def greedy(reference: Any, ids: list[int], steps: int) -> list[int]:
    eos = reference.model.generation_config.eos_token_id
    return hf_greedy(reference.model, ids, steps, eos if isinstance(eos, list) else [eos])


def long_reply_prompt(checkpoint: Path, tokens: int) -> tuple[str, str]:
    """A prompt whose greedy reply (transformers) runs the full `tokens`, so only Stop ends it
    early, and that reply's text."""
    reference = load_reference(str(checkpoint), "q4f32_1")
    for text in ("Count", "Hello", "Tell me a story", "Go on", "Why?", "More", "List numbers"):
        ids = greedy(reference, reference.prompt_ids([{"role": "user", "content": text}]), tokens)
        if len(ids) == tokens:
            return text, reference.decode(ids)
    raise AssertionError(f"no prompt makes the tiny model reply {tokens} tokens")


def focused(page: Any) -> str:
    """The focused control's id, else its accessible label or text ("Copy reply", "Sampling")."""
    return page.evaluate(
        """() => { const e = document.activeElement;
            return e.id || e.getAttribute('aria-label') || e.textContent.trim(); }"""
    )


def tab_to(page: Any, target: str, *, backwards: bool = False, limit: int = 30) -> list[str]:
    """Press Tab (or Shift+Tab) until `target` has the focus; returns every stop on the way.

    Each stop must show a focus ring: an outline at least 2 px wide.
    """
    stops: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        stops.append(focused(page))
        ring = page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement);"
            " return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }"
        )
        assert ring, f"{stops[-1]} has no visible focus ring"
        if stops[-1] == target:
            return stops
    raise AssertionError(f"Tab never reached {target}: {stops}")


def clipboard(page: Any) -> str:
    return page.evaluate("navigator.clipboard.readText()")
