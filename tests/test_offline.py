"""The site offline after one visit, and a new build taking over cleanly (webllm_build/offline.py,
web/src/sw.ts, web/src/page/updates.ts), in headless Chromium with the site served by our
aiohttp server, which counts every request it gets.

The precache manifest is checked against workbox-build's own getManifest over the same folder.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from chat_page import HOSTILE, HOSTILE_TOKENS, TINY, ChatPage
from conftest import CI_SCHEDULES, run_cli

from webllm_build.artifacts import HASHED_NAME
from webllm_build.offline import SERVICE_WORKER, precache_manifest
from webllm_build.paths import WEB_DIR
from webllm_build.serve import serve_in_background
from webllm_build.site import SiteOptions, build_site

PROMPT = "Hello there"
# Resolves once the service worker is activated: its precache is complete and cleaned.
SW_READY = """navigator.serviceWorker.ready.then(({ active }) => active.state === "activated"
    ? active.state
    : new Promise((done) => active.addEventListener("statechange", () => done(active.state))))"""


def build(out: Path, checkpoint: Path, title: str, *, offline: bool = True) -> Path:
    # A prefill chunk of 4 and the CI schedules: the other browser tests' tiny Llama, whose
    # library is cached.
    options = SiteOptions(
        models=[str(checkpoint)],
        out=out,
        title=title,
        prefill_chunk=4,
        schedules=CI_SCHEDULES,
        offline=offline,
    )
    return build_site(options).directory


def first_visit(browser: Any, url: str) -> ChatPage:
    """A visitor's first page with the site's service worker allowed, once it is activated."""
    page = ChatPage(browser, url, service_workers="allow")
    assert page.page.evaluate(SW_READY) == "activated"
    return page


def chat(page: ChatPage, model_id: str) -> str:
    page.load(model_id)
    page.settings(temperature=0, max_tokens=6)
    page.send(PROMPT)
    return page.wait_for_reply()


def precached(page: Any) -> dict[str, str | None]:
    """The precache's entries: URL path -> revision (None for content-hashed names)."""
    keys = page.evaluate(
        """async () => { const out = [];
            for (const name of await caches.keys())
              if (name.startsWith('workbox-precache'))
                for (const request of await (await caches.open(name)).keys()) out.push(request.url);
            return out; }"""
    )
    entries: dict[str, str | None] = {}
    for key in keys:
        parts = urlsplit(key)
        revision = parts.query.removeprefix("__WB_REVISION__=") if parts.query else None
        entries[parts.path] = revision
    return entries


def test_the_precache_manifest_is_workbox_builds(tiny_site):
    ours = precache_manifest(
        tiny_site,
        {
            str(p.relative_to(tiny_site)): str(p.relative_to(tiny_site)) + "/"
            for p in (tiny_site / "models").iterdir()
        },
    )
    script = """
    const { getManifest } = require("workbox-build");
    getManifest({
      globDirectory: process.argv[1],
      globPatterns: ["*.{html,js,json}", "models/**/*"],
      globIgnores: ["sw.js", "models/**/params-*.bin"],
      dontCacheBustURLsMatching: new RegExp(process.argv[2]),
      maximumFileSizeToCacheInBytes: 1 << 30,
    }).then((result) => console.log(JSON.stringify(result.manifestEntries)));
    """
    run = subprocess.run(
        ["node", "-e", script, str(tiny_site), HASHED_NAME.pattern],
        cwd=WEB_DIR,
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = json.loads(run.stdout)
    assert sorted(ours, key=lambda e: e["url"]) == sorted(theirs, key=lambda e: e["url"])
    urls = {entry["url"] for entry in ours}
    assert {"index.html", "app.js", "site.json"} <= urls
    assert any(url.endswith(".wasm") for url in urls)  # the library
    assert not any("params-" in url for url in urls)  # weights stay in the engine's store
    # sw.js carries exactly this manifest.
    assert json.dumps(ours, separators=(",", ":")) in (tiny_site / SERVICE_WORKER).read_text()


def test_after_one_visit_the_site_opens_loads_and_answers_offline(tmp_path, chat_checkpoints, browser):
    site = build(tmp_path / "dist", chat_checkpoints[TINY], "Offline chat")
    with serve_in_background(site) as url:
        page = first_visit(browser, url)
        online = chat(page, TINY)
    # The server is gone and the context offline (which alone would not stop the browser's own
    # check for a new sw.js): everything must come from the browser's storage.
    page.page.context.set_offline(True)
    page.page.reload()
    page.page.wait_for_function("window.webllmAppReady === true")
    assert page.page.evaluate("navigator.serviceWorker.controller !== null")
    offline = chat(page, TINY)
    page.page.context.close()
    assert online and offline == online


def test_a_new_build_takes_over_on_the_next_visit_with_no_old_file(tmp_path, chat_checkpoints, browser):
    out = tmp_path / "dist"
    build(out, chat_checkpoints[TINY], "First build")
    with serve_in_background(out) as url:
        page = first_visit(browser, url)
        chat(page, TINY)
        context = page.page.context
        page.page.close()

        second = build(out, chat_checkpoints[HOSTILE], "Second build")
        visit = context.new_page()
        received: list[Any] = []
        visit.on("response", lambda response: received.append(response))
        # The old worker serves the first build's page; it finds the new build waiting, has
        # nothing to lose (no model loaded) and switches, which reloads it.
        visit.goto(url)
        visit.wait_for_function("document.title === 'Second build' && window.webllmAppReady === true")
        # The responses of the document the switch loaded: from its navigation on.
        switched = max(i for i, r in enumerate(received) if r.request.is_navigation_request())
        assert b"Second build" in received[switched].body()
        reply = chat(ChatPageOn(visit), HOSTILE)
        entries = precached(visit)
        after = {
            urlsplit(r.url).path.lstrip("/") or "index.html": r.body()
            for r in received[switched:]
            if r.url.startswith(url) and r.status == 200
        }
        context.close()
    assert reply == "".join(HOSTILE_TOKENS)
    # Every file the page and its engine received after the switch is the second build's.
    assert {"index.html", "app.js", "site.json", f"models/{HOSTILE}/webllm-model.json"} <= set(after)
    for path, body in after.items():
        file = second / path
        assert file.is_file(), f"{path} is not a file of the second build"
        assert body == file.read_bytes(), f"{path} differs from the second build's"
    # The precache now holds the second build alone, each entry at its current revision.
    ours = {
        "/" + e["url"]: e["revision"]
        for e in precache_manifest(second, {f"models/{HOSTILE}": f"models/{HOSTILE}/"})
    }
    assert entries == ours


class ChatPageOn(ChatPage):
    """A ChatPage around a page that is already open."""

    def __init__(self, page: Any) -> None:
        self.page = page


def test_an_open_page_says_a_new_version_is_ready_and_switches_when_asked(
    tmp_path, chat_checkpoints, browser
):
    out = tmp_path / "dist"
    build(out, chat_checkpoints[TINY], "First build")
    with serve_in_background(out) as url:
        page = first_visit(browser, url)
        chat(page, TINY)  # a loaded model: the page must not reload by itself
        build(out, chat_checkpoints[HOSTILE], "Second build")
        page.page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.update())")
        page.page.wait_for_selector("#update", state="visible")
        assert page.page.title() == "First build" and page.assistant_count() == 1
        page.page.click("#update-now")
        page.page.wait_for_function("document.title === 'Second build' && window.webllmAppReady === true")
        assert page.page.evaluate("document.querySelector('#model').options.length") == 1
        page.page.context.close()


def test_a_build_without_offline_retires_the_service_worker(tmp_path, chat_checkpoints, browser):
    out = tmp_path / "dist"
    build(out, chat_checkpoints[TINY], "First build")
    with serve_in_background(out) as url:
        page = first_visit(browser, url)
        assert precached(page.page)
        build(out, chat_checkpoints[TINY], "Online only", offline=False)
        page.page.reload()  # the browser checks sw.js on navigation and finds the retiring one
        page.page.wait_for_function(
            "navigator.serviceWorker.getRegistrations().then(r => r.length === 0)", polling=200
        )
        page.page.wait_for_function("document.title === 'Online only'")
        assert precached(page.page) == {}
        assert page.page.evaluate("navigator.serviceWorker.controller") is None
        page.page.context.close()


@pytest.mark.parametrize("offline", [True, False])
def test_the_page_registers_a_worker_only_when_built_offline(tmp_path, chat_checkpoints, offline):
    # Through the command line, as a user builds it (`site --no-offline`).
    out = tmp_path / "dist"
    flags = [] if offline else ["--no-offline"]
    arguments = ["--model", str(chat_checkpoints[TINY]), "--out", str(out), "--prefill-chunk", "4"]
    result = run_cli("site", *arguments, "--schedules", ",".join(CI_SCHEDULES), *flags)
    assert result.returncode == 0, result.stderr
    app = (out / "app.js").read_text()
    assert ('new URL("sw.js"' in app) == offline
    assert (out / SERVICE_WORKER).is_file()  # the retiring worker, when not offline
    assert ("__WB_REVISION__" in (out / SERVICE_WORKER).read_text()) == offline
