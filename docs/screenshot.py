"""Screenshots of the chat page in each of its states, from a real run, for review and the README.

    .venv/bin/python docs/screenshot.py [--out docs/screenshots]

Builds (or reuses) the default SmolLM2 site in a temporary folder, serves it with the project's
server and drives the page as a visitor does (clicks and typing) in headless Chromium:

    before-load.png    the page as it opens
    loading.png        weights downloading (the rest of the download is held back for the shot)
    chatting.png       one greedy answer (the README's picture); chatting-dark.png the same, dark
    phone.png          the same conversation at phone width (390 px)
    invalid-field.png  Send with an out-of-range Top-p: the panel opens on the explained field
    error.png          a weight shard that fails its integrity check
    no-webgpu.png      a browser without WebGPU
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from webllm_build.serve import serve_in_background
from webllm_build.site import SiteOptions, build_site
from webllm_build.verify.browser import BrowserSession, launch_browser

QUESTION = "What is the capital of France? Answer in one sentence."
APP_READY = "window.webllmAppReady === true"
WINDOW = {"width": 900, "height": 640}
SHARDS = "**/params-*.bin"


def open_page(browser: BrowserSession, url: str, **options: Any) -> Any:
    page, _ = browser.open(url, ready=APP_READY, context_options={"viewport": WINDOW}, **options)
    return page


def chat(browser: BrowserSession, url: str, out: Path) -> None:
    page = open_page(browser, url)
    page.screenshot(path=str(out / "before-load.png"))

    # Let the first shard through, hold the rest: the bar stops part-way for the picture.
    let_through = 1
    held: list[Any] = []

    def hold_after_first(route: Any) -> None:
        nonlocal let_through
        if let_through:
            let_through -= 1
            route.continue_()
        else:
            held.append(route)

    page.route(SHARDS, hold_after_first)
    page.click("#load")
    page.wait_for_function("document.getElementById('progress-bar').value > 0", timeout=300_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(out / "loading.png"))
    for route in held:
        route.continue_()
    page.unroute(SHARDS)
    page.wait_for_function(
        "document.getElementById('progress-text').textContent.endsWith('is ready.')", timeout=300_000
    )

    page.click("#settings summary")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "48")
    page.click("#settings summary")  # folded away again
    page.fill("#prompt", QUESTION)
    page.click("#send")
    page.wait_for_selector(".message.assistant[aria-busy]")
    page.wait_for_selector(".message.assistant[aria-busy]", state="detached", timeout=900_000)
    page.locator("#prompt").blur()
    page.screenshot(path=str(out / "chatting.png"))
    print(f"chatting.png: the page said {page.inner_text('#stats')!r}")
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(out / "chatting-dark.png"))
    page.emulate_media(color_scheme="light")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(out / "phone.png"))
    page.set_viewport_size(WINDOW)

    page.click("#settings summary")
    page.fill("#top-p", "1.5")
    page.click("#settings summary")  # folded: Send must open it on the field
    page.fill("#prompt", "And of Italy?")
    page.click("#send")
    page.wait_for_selector("#top-p-error:not(:empty)")
    page.screenshot(path=str(out / "invalid-field.png"))


def failures(browser: BrowserSession, url: str, out: Path) -> None:
    def damage(route: Any) -> None:
        response = route.fetch()
        body = bytearray(response.body())
        body[0] ^= 0xFF
        route.fulfill(response=response, body=bytes(body))

    page = open_page(browser, url)
    page.route(SHARDS, damage)
    page.click("#load")
    page.wait_for_selector("#error", state="visible", timeout=300_000)
    page.screenshot(path=str(out / "error.png"))

    page = open_page(browser, url, webgpu=False)
    page.screenshot(path=str(out / "no-webgpu.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, launch_browser() as browser:
        site = build_site(SiteOptions(out=Path(tmp) / "dist"), print)
        with serve_in_background(site.directory) as url:
            chat(browser, url, args.out)
            failures(browser, url, args.out)
    print(f"Saved the page's states in {args.out}")


if __name__ == "__main__":
    main()
