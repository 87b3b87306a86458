"""Take the README's screenshot from a real run: the default site, a real chat, headless Chromium.

    .venv/bin/python docs/screenshot.py [--out docs/screenshot.png]

Builds (or reuses) the default SmolLM2 site in a temporary folder, serves it with the project's
server, loads the model through the page, asks one question greedily and captures the page.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from webllm_build.browser import launch_browser
from webllm_build.serve import serve_in_background
from webllm_build.site import SiteOptions, build_site

QUESTION = "What is the capital of France? Answer in one sentence."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("screenshot.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, launch_browser() as browser:
        site = build_site(SiteOptions(out=Path(tmp) / "dist"), print)
        with serve_in_background(site.directory) as url:
            page, log = browser.open(url, ready="window.webllmAppReady === true")
            page.set_viewport_size({"width": 900, "height": 640})
            page.click("#settings summary")
            page.fill("#temperature", "0")
            page.fill("#max-tokens", "48")
            page.click("#load")
            page.wait_for_function(
                "document.getElementById('progress-text').textContent.endsWith('is ready.')", timeout=300_000
            )
            page.fill("#prompt", QUESTION)
            page.press("#prompt", "Enter")
            page.wait_for_function("!document.getElementById('stop').disabled")
            page.wait_for_function("document.getElementById('stop').disabled", timeout=900_000)
            page.click("#settings summary")  # fold the settings away again
            page.screenshot(path=str(args.out))
            print(f"Saved {args.out}; the page said: {page.inner_text('#stats')}")
            if log.errors:
                print("\n".join(log.errors))


if __name__ == "__main__":
    main()
