"""The page asks the browser to keep the model it stores (navigator.storage.persist(), once) and
shows the storage figures (navigator.storage.estimate()) and whether the browser granted it.

Headless Chromium decides persist() by its own heuristics; one test takes its answer as it is,
another has the browser grant it (a stand-in StorageManager) to see the other wording.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import urljoin

from chat_page import HOSTILE, TINY, ChatPage

# Counts the page's persist() calls and passes them on to the browser.
COUNT_PERSIST = """(() => {
    const persist = StorageManager.prototype.persist;
    window.persistCalls = 0;
    StorageManager.prototype.persist = function () {
        window.persistCalls += 1;
        return persist.call(this);
    };
})()"""
# A browser that grants persistent storage when asked.
GRANT_PERSIST = """(() => {
    let granted = false;
    window.persistCalls = 0;
    StorageManager.prototype.persisted = async () => granted;
    StorageManager.prototype.persist = async () => {
        window.persistCalls += 1;
        granted = true;
        return true;
    };
})()"""
SHOWN = "window.webllmApp.storage !== null && !document.getElementById('storage').hidden"


def open_with(browser: Any, url: str, script: str) -> ChatPage:
    chat = ChatPage(browser, url)
    chat.page.context.add_init_script(script)
    chat.page.reload()
    chat.page.wait_for_function("window.webllmAppReady === true")
    return chat


def weight_bytes(site_url: str, model_id: str) -> int:
    """The bytes of the model's weight shards, from the served site's own files."""

    def get(url: str) -> dict:
        with urllib.request.urlopen(url) as response:
            return json.load(response)

    entry = next(m for m in get(urljoin(site_url, "site.json"))["models"] if m["id"] == model_id)
    base = urljoin(site_url, entry["base_url"])
    manifest = get(urljoin(base, get(urljoin(base, "webllm-model.json"))["files"]["tensor_cache"]["path"]))
    return sum(shard["nbytes"] for shard in manifest["records"])


def test_storage_figures_and_persistence_are_shown_after_a_load(chat_site, browser):
    chat = open_with(browser, chat_site, COUNT_PERSIST)
    page = chat.page
    assert page.is_hidden("#storage")
    chat.load(TINY)
    page.wait_for_function(SHOWN)
    assert page.evaluate("window.persistCalls") == 1  # asked while the weights were being stored
    # The figures are read after persist() answered; poll until the report says what it answered.
    persisted = page.evaluate("navigator.storage.persisted()")
    page.wait_for_function("(p) => window.webllmApp.storage.persisted === p", arg=persisted)

    report = page.evaluate("window.webllmApp.storage")
    estimate = page.evaluate("navigator.storage.estimate()")
    assert weight_bytes(chat_site, TINY) < report["usage"] <= estimate["usage"]
    assert 0 < report["quota"] and abs(report["quota"] - estimate["quota"]) <= 0.01 * estimate["quota"]
    text = page.inner_text("#storage")
    assert text.startswith("Stored on this device: ") and " available; " in text
    assert ("kept until you clear it" in text) == persisted
    assert ("may clear it" in text) == (not persisted)
    assert chat.axe_violations() == []

    # Asked once per visit: a second model's load does not ask again.
    chat.load(HOSTILE)
    page.wait_for_function(SHOWN)
    assert page.evaluate("window.persistCalls") == 1
    assert page.evaluate("window.webllmApp.storage.usage") > report["usage"]
    assert not chat.log.errors, chat.log.tail()


def test_granted_persistence_is_reported(chat_site, browser):
    chat = open_with(browser, chat_site, GRANT_PERSIST)
    chat.load(TINY)
    chat.page.wait_for_function(SHOWN + " && window.webllmApp.storage.persisted")
    assert chat.page.evaluate("window.persistCalls") == 1
    assert chat.page.inner_text("#storage").endswith("kept until you clear it.")
