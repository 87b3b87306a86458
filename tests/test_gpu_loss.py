"""A GPU device lost mid-reply: the page says so, reloads the model from the browser's storage once
by itself, and the conversation goes on from its messages; a second loss offers the reload.

The device is destroyed through the page's testing aid (window.webllmApp.destroyGpuDeviceForTesting,
GPUDevice.destroy() in the engine) while a reply streams, in headless Chromium on SwiftShader, with
the engine in its Web Worker and in the page. Replies after the reload are compared with
transformers on the whole conversation, partly generated reply included.
"""

from __future__ import annotations

from typing import Any

import pytest
from chat_page import TINY, ChatPage, greedy

from webllm_build.serve import serve_in_background
from webllm_build.verify.reference import load_reference
from webllm_build.verify.testing import PageModel, stage_models

# The tiny model's context is 256 tokens: a short first reply, a long second one (still streaming
# when the device goes), then short replies.
CONTEXT = 256
SHORT = 8
LONG = 150
# Destroys the device from inside the page as soon as the last reply shows text: mid-reply
# whatever the machine's speed (a round trip through Playwright could come after the end).
ARM_LOSS = """() => {
    window.lossDone = new Promise((resolve, reject) => {
        const watch = new MutationObserver(() => {
            if (!document.querySelector('.message.assistant:last-child')?.dataset.raw) return;
            watch.disconnect();
            window.webllmApp.destroyGpuDeviceForTesting().then(resolve, reject);
        });
        const everything = {subtree: true, childList: true, attributes: true};
        watch.observe(document.getElementById('conversation'), everything);
    });
}"""

REPLY_DONE = "!document.querySelector('.message.assistant:last-child[aria-busy]')"
READY = "document.getElementById('progress-text').textContent.endsWith('is ready.')"
ERROR_SAYS = "text => document.getElementById('error').textContent.includes(text)"


def long_second_turn(reference: Any, first: str) -> tuple[list[dict[str, str]], str, str]:
    """The first turn (`first` and its greedy reply of at most SHORT tokens) and a second message
    whose greedy reply runs the full LONG tokens, so only the loss ends it; with that reply's text."""
    ids = reference.prompt_ids([{"role": "user", "content": first}])
    history = [
        {"role": "user", "content": first},
        {"role": "assistant", "content": reference.decode(greedy(reference, ids, SHORT))},
    ]
    for text in ("Count", "Tell me a story", "Go on", "More", "List numbers", "Why?"):
        turn = [*history, {"role": "user", "content": text}]
        reply = greedy(reference, reference.prompt_ids(turn), LONG)
        if len(reply) == LONG:
            return history, text, reference.decode(reply)
    raise AssertionError(f"no second message makes the tiny model reply {LONG} tokens")


def open_chat(browser: Any, url: str, engine_kind: str) -> ChatPage:
    chat = ChatPage(browser, url)
    if engine_kind == "page":
        # A browser without workers (or without WebGPU in them) runs the engine in the page.
        chat.page.context.add_init_script("Object.defineProperty(window, 'Worker', {value: undefined})")
        chat.page.reload()
        chat.page.wait_for_function("window.webllmAppReady === true")
    assert chat.page.evaluate("window.webllmApp.engineKind") == engine_kind
    return chat


def continued(chat: ChatPage, text: str) -> list[dict[str, str]]:
    """The page's conversation followed by `text`: what the engine is asked when `text` is sent."""
    return [*chat.page.evaluate("window.webllmApp.messages"), {"role": "user", "content": text}]


def expected_reply(reference: Any, messages: list[dict[str, str]], steps: int) -> tuple[int, str]:
    ids = reference.prompt_ids(messages)
    return len(ids), reference.decode(greedy(reference, ids, min(steps, CONTEXT - len(ids))))


@pytest.mark.parametrize("engine_kind", ["worker", "page"])
def test_a_lost_gpu_is_survived_with_the_conversation(chat_site, chat_checkpoints, browser, engine_kind):
    reference = load_reference(str(chat_checkpoints[TINY]), "q4f32_1")
    history, second, full = long_second_turn(reference, "Hello, world!")
    chat = open_chat(browser, chat_site, engine_kind)
    page = chat.page
    shards: list[str] = []
    page.on("request", lambda r: shards.append(r.url) if "/params-" in r.url else None)
    chat.settings(temperature=0, max_tokens=SHORT)
    chat.load(TINY)
    assert shards, "the first load downloads the weights"

    chat.send("Hello, world!")
    assert chat.wait_for_reply() == history[1]["content"]

    # The device goes while the second reply streams.
    chat.settings(temperature=0, max_tokens=LONG)
    page.evaluate(ARM_LOSS)
    chat.send(second)
    page.evaluate("window.lossDone")
    downloaded = len(shards)
    page.wait_for_function(REPLY_DONE, timeout=60_000)
    partial = chat.last_reply()
    assert partial and full.startswith(partial) and partial != full
    error = page.locator("#error")
    assert error.is_visible()
    assert "GPU" in error.inner_text() and "lost" in error.inner_text()
    assert not page.is_enabled("#send")  # nothing to send to until the model is back

    # Reloaded once, by itself, from the browser's storage: no shard comes from the network.
    page.wait_for_function(ERROR_SAYS, arg="was reloaded", timeout=120_000)
    page.wait_for_function(READY)
    assert len(shards) == downloaded, shards[downloaded:]
    assert chat.page.is_enabled("#send")
    assert page.locator(".message.assistant").count() == 2  # the cut reply stays shown
    assert chat.page.evaluate("window.webllmApp.messages") == [
        *history,
        {"role": "user", "content": second},
        {"role": "assistant", "content": partial},  # and stays in the history
    ]

    # The next message continues the whole conversation: the engine prefills all of it anew.
    chat.settings(temperature=0, max_tokens=SHORT)
    prompt_tokens, expected = expected_reply(reference, continued(chat, "And then?"), SHORT)
    chat.send("And then?")
    assert chat.wait_for_reply() == expected
    usage = chat.usage()
    assert usage["prompt_tokens"] == usage["prefill_tokens"] == prompt_tokens

    # A second loss (this time between replies) is not retried by itself: the visitor reloads.
    page.evaluate("window.webllmApp.destroyGpuDeviceForTesting()")
    button = page.locator("#error .error-action")
    button.wait_for(state="visible", timeout=60_000)
    assert button.inner_text() == "Reload the model"
    assert not page.is_enabled("#send")
    assert chat.axe_violations() == []
    button.click()
    page.wait_for_function(READY, timeout=120_000)
    assert page.is_hidden("#error")
    assert len(shards) == downloaded, shards[downloaded:]
    prompt_tokens, expected = expected_reply(reference, continued(chat, "Why?"), SHORT)
    chat.send("Why?")
    assert chat.wait_for_reply() == expected
    assert chat.usage()["prefill_tokens"] == prompt_tokens
    assert not chat.log.errors, chat.log.tail()


@pytest.fixture(scope="module")
def harness(tiny_site, tmp_path_factory):
    """The engine alone (the harness page, no chat page to recover), the tiny site's model as "tiny"."""
    model_dir = next((tiny_site / "models").iterdir())
    with serve_in_background(stage_models(tmp_path_factory.mktemp("harness"), {"tiny": model_dir})) as url:
        yield url


def test_every_call_fails_with_gpu_lost_until_the_reload(harness, browser):
    page = PageModel(browser, harness, "tiny").start_engine()
    outcome = page.evaluate(
        """async () => {
            const engine = window.engine;
            const request = {messages: [{role: "user", content: "Count"}], max_tokens: 500, ignore_eos: true};
            const first = engine.deviceLost();
            const stream = await engine.chat.completions.create({...request, stream: true});
            let chunks = 0, streamError = null;
            try {
                for await (const chunk of stream) {
                    if (++chunks === 3) await engine.destroyDeviceForTesting();
                }
            } catch (e) { streamError = e.code; }
            const loss = await first;
            const codes = [];
            for (const call of [
                () => engine.chat.completions.create(request),
                () => engine.runtimeStats(),
                () => engine.resetChat(),
                () => engine.destroyDeviceForTesting(),
            ]) {
                try { await call(); codes.push(null); } catch (e) { codes.push(e.code); }
            }
            const again = await engine.deviceLost();
            await engine.reload(new URL("tiny/", location.href).href);
            const reply = await engine.chat.completions.create({...request, max_tokens: 4});
            const next = engine.deviceLost(loss.count);
            await engine.destroyDeviceForTesting();
            return {chunks, streamError, loss, codes, again, reply: reply.usage, second: await next};
        }"""
    )
    assert 3 <= outcome["chunks"] < 500 and outcome["streamError"] == "gpu-lost"
    assert outcome["loss"]["count"] == 1 and outcome["loss"]["reason"] == "destroyed"
    assert "reload the model" in outcome["loss"]["message"]
    assert outcome["codes"] == ["gpu-lost"] * 4
    assert outcome["again"] == outcome["loss"]  # asked again, the past loss answers at once
    assert outcome["reply"]["completion_tokens"] == 4  # reloaded, the engine answers again
    assert outcome["second"]["count"] == 2
