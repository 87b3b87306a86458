"""The chat page as people use it: by mouse, by keyboard alone, on a phone, with a screen reader.

Every action is a click, a tap or a key press on the real site, served by `webllm_build serve`,
in headless Chromium on SwiftShader's WebGPU; the page's script API (window.webllmApp) never
drives it. axe-core audits each state the page can be in, in the light and the dark theme.
"""

from __future__ import annotations

from typing import Any

import pytest
from chat_page import (
    CLIPBOARD,
    HOSTILE,
    HOSTILE_TOKENS,
    TINY,
    ChatPage,
    clipboard,
    focused,
    long_reply_prompt,
    tab_to,
)
from playwright.sync_api import expect

PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 3,
    "is_mobile": True,
    "has_touch": True,
}


def message_count(page: Any) -> int:
    return page.locator("#conversation .message").count()


def test_clicking_send_sends(chat_site, browser):
    # The page as it was before: the hidden Top-p field's default (0.95) was off its step grid,
    # so the browser refused to submit the form and Send did nothing.
    chat = ChatPage(browser, chat_site)
    chat.load(TINY)
    chat.page.fill("#prompt", "Hello")
    chat.page.click("#send")
    chat.wait_for_reply_to_start(0)
    assert chat.wait_for_reply()
    assert chat.user_messages() == ["Hello"]
    assert chat.page.input_value("#prompt") == ""


def test_every_control_by_mouse(chat_site, browser):
    chat = ChatPage(browser, chat_site, **CLIPBOARD)
    page = chat.page
    page.select_option("#model", HOSTILE)
    page.click("#load")
    chat.wait_until_loaded()
    assert focused(page) == "prompt"  # ready to type

    # Ordinary values typed over the defaults: none may block sending.
    page.click("#settings summary")
    assert page.eval_on_selector("#settings", "d => d.open")
    for field, value in (("#temperature", "1"), ("#top-p", "0.9"), ("#max-tokens", "256")):
        page.click(field)
        page.fill(field, value)
    page.click("#prompt")
    chat.send("Hi")
    chat.wait_for_reply()
    assert page.locator(".field-error:visible").count() == 0

    # The fields reach the engine: greedy gives the model's known reply, cut at max tokens.
    page.fill("#temperature", "0")
    page.fill("#top-p", "0.95")
    page.fill("#max-tokens", "1")
    chat.send("Hi")
    assert chat.wait_for_reply() == HOSTILE_TOKENS[0]
    assert chat.stats_tokens() == 1
    page.fill("#max-tokens", "256")
    chat.send("Hi again")
    assert chat.wait_for_reply() == "".join(HOSTILE_TOKENS)

    page.click(".message.assistant:last-child .copy")
    assert clipboard(page) == "".join(HOSTILE_TOKENS)
    expect(page.locator(".message.assistant:last-child .copy")).to_have_text("Copied")
    page.locator(".message.user .copy").last.click()
    assert clipboard(page) == "Hi again"

    page.click("#settings summary")
    assert not page.eval_on_selector("#settings", "d => d.open")
    page.click("#new-chat")
    assert message_count(page) == 0
    chat.send("Hi")  # the page chats on after a new chat
    assert chat.wait_for_reply() == "".join(HOSTILE_TOKENS)
    assert not chat.log.errors, chat.log.tail()


def test_every_control_by_keyboard(chat_site, chat_checkpoints, browser):
    prompt, full = long_reply_prompt(chat_checkpoints[TINY], 200)
    chat = ChatPage(browser, chat_site, **CLIPBOARD)
    page, keys = chat.page, chat.page.keyboard

    assert tab_to(page, "model") == ["model"]
    keys.press("ArrowDown")
    assert page.input_value("#model") == HOSTILE
    keys.press("ArrowUp")
    assert page.input_value("#model") == TINY
    assert tab_to(page, "load") == ["load"]
    keys.press("Enter")
    chat.wait_until_loaded()
    assert focused(page) == "prompt"

    # Tab order: the composer, then the Sampling panel (Stop is skipped while it is disabled).
    assert tab_to(page, "Sampling") == ["send", "new-chat", "Sampling"]
    keys.press("Enter")
    assert page.eval_on_selector("#settings", "d => d.open")
    for field, value in (("temperature", "0"), ("top-p", "0.9"), ("max-tokens", "200")):
        assert tab_to(page, field) == [field]
        keys.press("Control+A")
        keys.type(value)
    assert tab_to(page, "prompt", backwards=True) == [
        "top-p",
        "temperature",
        "Sampling",
        "new-chat",
        "send",
        "prompt",
    ]

    # Enter sends; Escape stops a reply midway.
    keys.type(prompt)
    keys.press("Enter")
    chat.wait_for_reply_to_start(0)
    chat.wait_for_streaming()
    keys.press("Escape")
    reply = chat.wait_for_reply()
    assert 0 < chat.stats_tokens() < 200 and full.startswith(reply)
    assert focused(page) == "prompt"

    # Stop as a button: the next Tab stop while a reply streams; the focus then comes back.
    keys.type(prompt)
    keys.press("Enter")
    chat.wait_for_reply_to_start(1)
    chat.wait_for_streaming()
    assert tab_to(page, "stop") == ["stop"]
    keys.press("Space")
    chat.wait_for_reply()
    assert chat.stats_tokens() < 200
    assert focused(page) == "prompt"

    # The reply's Copy button sits just before the message box.
    assert tab_to(page, "Copy reply", backwards=True) == ["Copy reply"]
    keys.press("Enter")
    assert clipboard(page) == chat.last_reply()

    assert tab_to(page, "new-chat")[-1] == "new-chat"
    keys.press("Enter")
    assert message_count(page) == 0

    # Shift+Enter adds a line; the Send button works from the keyboard too.
    tab_to(page, "prompt", backwards=True)
    keys.type("Hi")
    keys.press("Shift+Enter")
    keys.type("there")
    assert page.input_value("#prompt") == "Hi\nthere"
    assert tab_to(page, "send") == ["send"]
    keys.press("Enter")
    chat.wait_for_reply_to_start(0)
    chat.wait_for_reply()
    assert chat.user_messages() == ["Hi\nthere"]
    assert not chat.log.errors, chat.log.tail()


def test_an_invalid_sampling_value_is_explained_next_to_its_field(chat_site, browser):
    chat = ChatPage(browser, chat_site)
    page = chat.page
    chat.load(TINY)
    page.click("#settings summary")
    cases = [
        ("temperature", "3", "0.7", "Temperature must be a number from 0 to 2."),
        ("temperature", "", "0.7", "Temperature must be a number from 0 to 2."),
        ("top-p", "0", "0.95", "Top-p must be a number from 0.01 to 1."),
        ("top-p", "1.5", "0.95", "Top-p must be a number from 0.01 to 1."),
        ("max-tokens", "2.5", "512", "Max tokens must be a whole number, 1 or more."),
        ("max-tokens", "0", "512", "Max tokens must be a whole number, 1 or more."),
    ]
    for field, bad, good, message in cases:
        page.fill(f"#{field}", bad)
        page.press(f"#{field}", "Tab")  # the value is committed: the message appears
        expect(page.locator(f"#{field}-error")).to_have_text(message)
        expect(page.locator(f"#{field}")).to_have_attribute("aria-invalid", "true")
        expect(page.locator(f"#{field}")).to_have_accessible_description(message)
        page.fill(f"#{field}", good)  # fixed: the message goes at once
        expect(page.locator(f"#{field}-error")).to_be_hidden()

    # Sending with a bad value in the closed panel opens it on that field, and sends nothing.
    page.fill("#top-p", "2")
    page.click("#settings summary")
    page.fill("#prompt", "Hello")
    page.click("#send")
    expect(page.locator("#top-p-error")).to_have_text("Top-p must be a number from 0.01 to 1.")
    assert page.eval_on_selector("#settings", "d => d.open")
    assert focused(page) == "top-p"
    assert message_count(page) == 0 and page.input_value("#prompt") == "Hello"
    assert chat.axe_violations() == []

    page.fill("#top-p", "0.9")
    page.fill("#temperature", "0.75")  # off the old 0.1 step grid: fine now
    page.click("#send")
    chat.wait_for_reply_to_start(0)
    chat.wait_for_reply()


def test_the_error_action_by_keyboard(variants_site, browser):
    # SwiftShader lacks shader-f16: picking the f16 build offers the f32 one in the error.
    chat = ChatPage(browser, variants_site)
    page, keys = chat.page, chat.page.keyboard
    tab_to(page, "model")
    keys.press("ArrowUp")
    assert page.input_value("#model") == "tiny-llama-q4f16_1"
    tab_to(page, "load")
    keys.press("Enter")
    expect(page.locator("#error")).to_contain_text("shader-f16")
    action = page.inner_text("#error .error-action")
    assert tab_to(page, action) == [action]
    keys.press("Enter")
    chat.wait_until_loaded()
    assert page.input_value("#model") == "tiny-llama-q4f32_1"


def test_phone_width(chat_site, browser):
    chat = ChatPage(browser, chat_site, **PHONE)
    page = chat.page
    page.tap("#settings summary")
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "6")
    page.tap("#load")
    chat.wait_until_loaded()
    page.tap("#prompt")
    page.fill("#prompt", "Hello")
    page.tap("#send")
    chat.wait_for_reply_to_start(0)
    chat.wait_for_reply()

    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["viewport"]["width"]
    boxes = page.eval_on_selector_all(
        "button:not([hidden]), select, textarea, input, summary",
        "els => els.filter(e => e.offsetParent)"
        "  .map(e => [e.id || e.textContent, e.getBoundingClientRect().toJSON()])",
    )
    for name, box in boxes:
        assert 0 <= box["left"] and box["right"] <= PHONE["viewport"]["width"], name
    assert chat.axe_violations() == []
    page.tap("#new-chat")
    assert message_count(page) == 0


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_state_passes_axe(chat_site, browser, scheme):
    violations: dict[str, list[str]] = {}
    chat = ChatPage(browser, chat_site, color_scheme=scheme)
    page = chat.page
    violations["before load"] = chat.axe_violations()

    held: list[Any] = []  # weight downloads, held until the loading page is audited
    page.route("**/params-*.bin", lambda route: held.append(route))
    page.click("#load")
    while not held:
        page.wait_for_timeout(50)
    assert page.is_visible("#progress")
    violations["loading"] = chat.axe_violations()
    for route in held:
        route.continue_()
    page.unroute("**/params-*.bin")
    chat.wait_until_loaded()

    chat.settings(temperature=0, max_tokens=6)
    chat.send("Hello")
    reply = chat.wait_for_reply()
    violations["chatting"] = chat.axe_violations()
    # The reply reached the polite live region whole, in order, once.
    spoken = page.eval_on_selector_all("#announcer p", "ps => ps.map(p => p.textContent).join(' ')")
    assert spoken.split() == reply.split()
    expect(page.locator("#announcer")).to_have_attribute("aria-live", "polite")

    failing = ChatPage(browser, chat_site, color_scheme=scheme)

    def damage(route):
        response = route.fetch()
        body = bytearray(response.body())
        body[0] ^= 0xFF
        route.fulfill(response=response, body=bytes(body))

    failing.page.route("**/params-*.bin", damage)
    failing.page.click("#load")
    error = failing.page.locator("#error")
    error.wait_for(state="visible", timeout=60_000)
    expect(error).to_have_attribute("role", "alert")  # read out at once
    expect(error).to_contain_text("damaged")
    violations["error"] = failing.axe_violations()

    no_gpu = ChatPage(browser, chat_site, color_scheme=scheme, webgpu=False)
    expect(no_gpu.page.locator("#no-webgpu")).to_be_visible()
    violations["no WebGPU"] = no_gpu.axe_violations()

    assert violations == {state: [] for state in violations}
