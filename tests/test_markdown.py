"""Replies as markdown (web/src/page/markdown.ts): what renders, and that no payload a model writes
comes alive in the page.

The renderer runs in the real page (window.webllmRenderMarkdown) and its HTML is inserted the way
the conversation inserts it, with innerHTML. markdown-it-py, the Python port of the page's
markdown-it, is the independent reference for the documents' structure. A model whose reply is a
markdown document shows the same in a real conversation: streamed, styled, copied, audited.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from chat_page import APP_READY, CLIPBOARD, ChatPage, clipboard, tab_to
from conftest import CI_SCHEDULES
from playwright.sync_api import expect

MARKDOWN = "markdown-q4f32_1"
# The markdown model's reply, one token per item: the stream stops inside the code fence once.
MARKDOWN_TOKENS = [
    "# Steps\n\n1. Install\n2. Run:\n   - `make demo`\n   - or read [the docs](https://example.com/docs)\n\n",
    "| Model | Size |\n| :--- | ---: |\n| **tiny** | 1 MB |\n\n> Runs on *your* GPU.\n\n",
    "```python\nprint('<b>hi</b>')\n",
    "x = 1\n```\n\nMail [us](mailto:team@example.com).",
]
CODE = "print('<b>hi</b>')\nx = 1"

# Inserts the rendered text into the page as the conversation does; returns the box's id.
INSERT = """(text) => {
    const box = document.createElement("div");
    box.id = `md-${document.querySelectorAll("[id^=md-]").length}`;
    box.innerHTML = window.webllmRenderMarkdown(text);
    document.body.append(box);
    return box.id;
}"""

# A node as nested lists: [tag, {attributes}, ...children], text as strings less the newlines
# markdown-it writes between tags.
SHAPE = """(id) => {
    const text = (node) => node.textContent.replace(/^\\n+|\\n+$/g, "");
    const shape = (node) => node.nodeType === Node.TEXT_NODE ? text(node) : [
        node.localName,
        Object.fromEntries([...node.attributes].map((a) => [a.name, a.value])),
        ...[...node.childNodes].filter((c) => c.nodeType !== Node.TEXT_NODE || text(c)).map(shape),
    ];
    return shape(document.getElementById(id)).slice(2);
}"""


@pytest.fixture(scope="module")
def markdown_site(tmp_path_factory, wasm_runtime):
    """A chat site of one model whose reply is MARKDOWN_TOKENS; its URL."""
    from checkpoints import make_hostile_llama

    from webllm_build.serve import serve_in_background
    from webllm_build.site import SiteOptions, build_site

    root = tmp_path_factory.mktemp("markdown_site")
    checkpoint = make_hostile_llama(root / "markdown", MARKDOWN_TOKENS)
    # The hostile chat model's shapes and prefill chunk: its library is cached.
    build_site(
        SiteOptions(models=[str(checkpoint)], out=root / "dist", prefill_chunk=4, schedules=CI_SCHEDULES)
    )
    with serve_in_background(root / "dist") as url:
        yield url


@pytest.fixture(scope="module")
def page(markdown_site, browser):
    page, _ = browser.open(markdown_site, ready=APP_READY)
    return page


def shape(page: Any, text: str) -> list:
    return page.evaluate(SHAPE, page.evaluate(INSERT, text))


A = {"target": "_blank", "rel": "noopener noreferrer"}


def test_lists(page):
    nested = ["ol", {}, ["li", {}, "first"], ["li", {}, "second"]]
    assert shape(page, "- one\n- two\n  1. first\n  2. second\n\n3. three\n4. four") == [
        ["ul", {}, ["li", {}, "one"], ["li", {}, "two", nested]],
        ["ol", {"start": "3"}, ["li", {}, "three"], ["li", {}, "four"]],
    ]


def test_headings_start_at_h2_and_never_skip_a_level(page):
    # The page's own h1 is its title; a reply's outline hangs below it.
    text = "# One\n\n### Three\n\n## Two\n\n###### Six\n\nSetext\n======"
    assert shape(page, text) == [
        ["h2", {}, "One"],
        ["h3", {}, "Three"],
        ["h3", {}, "Two"],
        ["h4", {}, "Six"],
        ["h2", {}, "Setext"],
    ]


def test_a_gfm_table(page):
    text = "| Left | Center | Right |\n| :--- | :---: | ---: |\n| `a` | **b** | [c](https://c.example/) |"
    assert shape(page, text) == [
        [
            "table",
            {},
            [
                "thead",
                {},
                [
                    "tr",
                    {},
                    ["th", {"style": "text-align:left"}, "Left"],
                    ["th", {"style": "text-align:center"}, "Center"],
                    ["th", {"style": "text-align:right"}, "Right"],
                ],
            ],
            [
                "tbody",
                {},
                [
                    "tr",
                    {},
                    ["td", {"style": "text-align:left"}, ["code", {}, "a"]],
                    ["td", {"style": "text-align:center"}, ["strong", {}, "b"]],
                    ["td", {"style": "text-align:right"}, ["a", {"href": "https://c.example/", **A}, "c"]],
                ],
            ],
        ]
    ]


def test_links_open_in_a_new_tab_without_a_handle_on_the_page(page):
    text = (
        "[web](http://a.example/x?y=1&z=2) [secure](https://b.example/ 'Title') [mail](mailto:me@c.example)"
        " <https://d.example/> https://e.example/f [ref][r]\n\n[r]: https://g.example/"
    )
    links = page.eval_on_selector_all(
        f"#{page.evaluate(INSERT, text)} a",
        "as => as.map((a) => [a.textContent,"
        " ...['href', 'target', 'rel', 'title'].map((n) => a.getAttribute(n))])",
    )
    assert links == [
        ["web", "http://a.example/x?y=1&z=2", "_blank", "noopener noreferrer", None],
        ["secure", "https://b.example/", "_blank", "noopener noreferrer", None],
        ["mail", "mailto:me@c.example", "_blank", "noopener noreferrer", None],
        ["https://d.example/", "https://d.example/", "_blank", "noopener noreferrer", None],
        ["https://e.example/f", "https://e.example/f", "_blank", "noopener noreferrer", None],
        ["ref", "https://g.example/", "_blank", "noopener noreferrer", None],
    ]
    # Bare names stay text: "main.py" is no link to a host in Paraguay.
    assert shape(page, "Run main.py or node.js") == [["p", {}, "Run main.py or node.js"]]


def test_code_spans_fences_emphasis_and_blockquotes(page):
    text = (
        "Use `a < b` and **bold**, *it*, ~~gone~~.\n\n"
        "```js\nif (a < b) {\n  x();\n}\n```\n\n"
        "    indented\n\n"
        "> quoted *text*\n> - item"
    )
    assert shape(page, text) == [
        [
            "p",
            {},
            "Use ",
            ["code", {}, "a < b"],
            " and ",
            ["strong", {}, "bold"],
            ", ",
            ["em", {}, "it"],
            ", ",
            ["s", {}, "gone"],
            ".",
        ],
        ["pre", {}, ["code", {}, "if (a < b) {\n  x();\n}"]],
        ["pre", {}, ["code", {}, "indented"]],
        ["blockquote", {}, ["p", {}, "quoted ", ["em", {}, "text"]], ["ul", {}, ["li", {}, "item"]]],
    ]


def test_a_streaming_reply_with_an_unclosed_fence(page):
    # Mid-stream, the fence runs to the end of the text so far: the code is code, never text.
    assert shape(page, "Here:\n\n```python\ndef f():\n    return '<i>'") == [
        ["p", {}, "Here:"],
        ["pre", {}, ["code", {}, "def f():\n    return '<i>'"]],
    ]
    assert shape(page, "Here:\n\n```") == [["p", {}, "Here:"], ["pre", {}, ["code", {}]]]


def test_line_breaks_as_the_model_wrote_them(page):
    assert shape(page, "one\ntwo\n\nthree") == [["p", {}, "one", ["br", {}], "two"], ["p", {}, "three"]]


def test_images_become_links_and_fetch_nothing(page):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    text = (
        "![a cat](https://img.example/cat.png) ![](https://img.example/x.png)"
        " [![logo](https://img.example/l.png)](https://l.example/)"
    )
    assert shape(page, text) == [
        [
            "p",
            {},
            ["a", {"href": "https://img.example/cat.png", **A}, "Image: a cat"],
            " ",
            ["a", {"href": "https://img.example/x.png", **A}, "Image: https://img.example/x.png"],
            " ",
            ["a", {"href": "https://l.example/", **A}, "Image: logo"],
        ]
    ]
    page.wait_for_timeout(200)
    assert [url for url in requests if "example" in url] == []


class _Shape(HTMLParser):
    """markdown-it-py's HTML as SHAPE draws the page's DOM (attributes left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[list] = [["root", {}]]

    def handle_starttag(self, tag: str, attrs: list) -> None:
        node: list = [tag, {}]
        self.stack[-1].append(node)
        self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.stack[-1].append([tag, {}])

    def handle_endtag(self, tag: str) -> None:
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if data.strip("\n"):
            parent = self.stack[-1]
            if isinstance(parent[-1], str):
                parent[-1] += data
            else:
                parent.append(data)


def _tags(node: Any) -> Any:
    """The tree without attributes, headings as "h" (the page renumbers them)."""
    if isinstance(node, str):
        return node.strip("\n")
    tag = "h" if tag_is_heading(node[0]) else node[0]
    return [tag, *[_tags(child) for child in node[2:]]]


def tag_is_heading(tag: str) -> bool:
    return len(tag) == 2 and tag[0] == "h" and tag[1].isdigit()


REFERENCE_DOCUMENTS = [
    "# Title\n\nSome *text* with **bold**, `code` and ~~strike~~.\n\n## Sub\n\nMore.",
    "1. a\n2. b\n   - c\n   - d\n\n     para in d\n3. e\n\n- [x] task?\n- loose\n\n- list",
    "| a | b |\n|---|:-:|\n| 1 | *2* |\n| `a\\|b` | [x](https://x.example/) |",
    "> quote\n>\n> > nested\n>\n> ```\n> code\n> ```\n\n---\n\nafter",
    "Line one\nline two  \nline three\\\nend\n\n```\nunclosed fence\n\nstill code",
    "Text with <b>html</b> & entities &copy; and <span onclick=x>span</span>\n\n<div>\nblock\n</div>",
    "[a](https://a.example/) [b](<https://b.example/ x>) <mailto:c@c.example> [c](javascript:x)",
]


@pytest.mark.parametrize("text", REFERENCE_DOCUMENTS, ids=range(len(REFERENCE_DOCUMENTS)))
def test_structure_matches_markdown_it_py(page, text):
    markdown_it = pytest.importorskip("markdown_it")
    reference = markdown_it.MarkdownIt("commonmark", {"html": False, "breaks": True})
    reference.enable(["table", "strikethrough"])
    reference.validateLink = lambda url: url.strip().lower().startswith(("http:", "https:", "mailto:"))
    parser = _Shape()
    parser.feed(reference.render(text))
    assert [_tags(n) for n in shape(page, text)] == [_tags(n) for n in parser.stack[0][2:]]


# Each payload would set window.pwned if it ran.
PAYLOADS = [
    "<script>window.pwned=1</script>",
    '<img src=x onerror="window.pwned=1">',
    "Hello <img src=x onerror=window.pwned=1> and <b onmouseover=window.pwned=1>b</b> inline",
    "```html\n<script>window.pwned=1</script>\n<img src=x onerror=window.pwned=1>\n```",
    "`<img src=x onerror=window.pwned=1>` and `<script>window.pwned=1</script>`",
    "[a](javascript:window.pwned=1)",
    "[a](JaVaScRiPt:window.pwned=1)",
    "[a](jav&#x09;ascript:window.pwned=1)",
    "[a](&#106;avascript:window.pwned=1)",
    "[a](javascript&colon;window.pwned=1)",
    "[a](<java script:window.pwned=1>)",
    "[a](data:text/html;base64,PHNjcmlwdD53aW5kb3cucHduZWQ9MTwvc2NyaXB0Pg==)",
    "[a](vbscript:msgbox(1))",
    "[a](file:///etc/passwd) [b](//evil.example/x) [c](/relative) [d](#top)",
    "<javascript:window.pwned=1> <JAVASCRIPT:window.pwned=1>"
    " <data:text/html,<script>window.pwned=1</script>>",
    "[a][x] and [b]\n\n[x]: javascript:window.pwned=1\n[b]: data:text/html,<script>window.pwned=1</script>",
    "![x](javascript:window.pwned=1) ![y](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9d2luZG93LnB3bmVkPTE+)",
    '![z](data:image/png;base64,iVBORw0KGgo=) ![w](https://img.example/x.png" onerror="window.pwned=1)',
    "<!-- comment --><script>window.pwned=1</script><!-- <img src=x onerror=window.pwned=1> -->",
    "<svg onload=window.pwned=1><svg/onload=window.pwned=1>",
    '<iframe src="javascript:window.pwned=1"></iframe><object data="javascript:window.pwned=1"></object>'
    '<embed src="javascript:window.pwned=1">',
    "<details open ontoggle=window.pwned=1>x</details><a href=javascript:window.pwned=1>a</a>",
    "| a | b |\n|---|---|\n| <img src=x onerror=window.pwned=1> | [x](javascript:window.pwned=1) |\n"
    "| `<script>window.pwned=1</script>` | ![i](javascript:window.pwned=1) |\n"
    "| <svg onload=window.pwned=1> | ok |",
    '[a](https://a.example/" onmouseover="window.pwned=1) [b](https://b.example/ "t\\" onmouseover=x")',
    "[<img src=x onerror=window.pwned=1>](https://a.example/) https://a.example/<script>window.pwned=1</script>",
    "<style>*{display:none}</style><link rel=stylesheet href=https://evil.example/x.css><base href=https://evil.example/>",
    '<math><mtext><table><mglyph><style><img src=x onerror="window.pwned=1">',
]


def inert(page: Any, box_id: str) -> dict:
    return page.evaluate(
        """(id) => {
            const box = document.getElementById(id);
            const all = [...box.querySelectorAll("*")];
            return {
                handlers: all.flatMap((e) => [...e.attributes].filter((a) => /^on/i.test(a.name))
                    .map((a) => `${e.localName} ${a.name}`)),
                active: all.map((e) => e.localName).filter((name) =>
                    /^(script|iframe|object|embed|img|svg|math|style|link|base|form|input)$/.test(name)),
                sources: all.filter((e) => e.hasAttribute("src")).map((e) => e.localName),
                hrefs: [...box.querySelectorAll("[href]")].map((e) => e.getAttribute("href"))
                    .filter((h) => !/^(https?|mailto):/i.test(h) || !["http:", "https:", "mailto:"]
                        .includes(new URL(h, location.href).protocol)),
                styles: all.filter((e) => e.hasAttribute("style") && !/^t[hd]$/.test(e.localName))
                    .map((e) => e.localName),
                pwned: window.pwned,
            };
        }""",
        box_id,
    )


@pytest.mark.parametrize("text", PAYLOADS, ids=range(len(PAYLOADS)))
def test_no_payload_comes_alive(page, text):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    box = page.evaluate(INSERT, text)
    page.wait_for_timeout(100)  # an onerror or onload handler would have run by now
    found = inert(page, box)
    assert found == {"handlers": [], "active": [], "sources": [], "hrefs": [], "styles": [], "pwned": None}
    assert not [url for url in requests if "example" in url or url.startswith(("data:", "javascript:"))]


def test_markup_a_model_writes_is_shown_as_text(page):
    text = "Look: <img src=x onerror=window.pwned=1> and [a](javascript:alert(1))"
    assert page.inner_text(f"#{page.evaluate(INSERT, text)}") == text


def test_a_markdown_reply_in_the_conversation(markdown_site, browser):
    chat = ChatPage(browser, markdown_site, **CLIPBOARD)
    page = chat.page
    chat.load()
    # Every redraw of the streaming reply: a fence never shows as text, not even unclosed.
    page.evaluate(
        """() => { window.redraws = [];
            new MutationObserver(() => {
                const body = document.querySelector(".message.assistant:last-child > div");
                if (body) window.redraws.push(body.textContent);
            }).observe(document.getElementById("conversation"), {childList: true, subtree: true}); }"""
    )
    chat.send("Hi")
    assert chat.wait_for_reply() == "".join(MARKDOWN_TOKENS)
    assert not any("```" in text for text in page.evaluate("window.redraws"))

    reply = page.locator(".message.assistant").last
    expect(reply.locator("h2")).to_have_text("Steps")
    expect(reply.locator("ol > li")).to_have_count(2)
    expect(reply.locator("ol > li ul > li")).to_have_count(2)
    expect(reply.locator("table th")).to_have_text(["Model", "Size"])
    expect(reply.locator("blockquote em")).to_have_text("your")
    docs = reply.get_by_role("link", name="the docs")
    expect(docs).to_have_attribute("href", "https://example.com/docs")
    expect(docs).to_have_attribute("rel", "noopener noreferrer")

    # The code block's own Copy, by mouse and by keyboard; the reply's Copy copies all of it.
    copy = reply.get_by_role("button", name="Copy code")
    expect(copy).to_have_count(1)
    copy.click()
    assert clipboard(page) == CODE
    expect(copy).to_have_text("Copied")
    page.evaluate("navigator.clipboard.writeText('')")
    page.click("#prompt")
    assert tab_to(page, "Copy code", backwards=True)[-2:] == [CODE, "Copy code"]
    page.keyboard.press("Enter")
    assert clipboard(page) == CODE
    reply.get_by_role("button", name="Copy reply").click()
    assert clipboard(page) == "".join(MARKDOWN_TOKENS)
    assert not chat.log.errors, chat.log.tail()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_markdown_reply_passes_axe(markdown_site, browser, scheme):
    chat = ChatPage(browser, markdown_site, color_scheme=scheme)
    chat.load()
    chat.send("Hi")
    chat.wait_for_reply()
    assert chat.axe_violations() == []


def test_a_markdown_reply_fits_a_phone(markdown_site, browser):
    width = 360
    chat = ChatPage(browser, markdown_site, viewport={"width": width, "height": 740}, is_mobile=True)
    chat.load()
    chat.send("Hi")
    chat.wait_for_reply()
    assert chat.page.evaluate("document.documentElement.scrollWidth") <= width
    assert chat.axe_violations() == []
