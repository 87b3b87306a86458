"""The engine as a library: a page outside the site imports it, types checked, and chats.

The test page is a TypeScript app of its own: it imports the engine by a bare name, resolved for
`tsc` (strict, no library check skipped) to the npm package that `node build.mjs package` writes
and for the browser, by an import map, to the stable `webllm_build.js` of a site served from
another origin. There it starts the engine's worker, loads the site's model and streams a reply.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from aiohttp import web

from webllm_build.paths import WEB_BUNDLE, WEB_DIR, WEB_TYPES
from webllm_build.serve import make_app, serve_app_in_background, serve_in_background
from webllm_build.verify.browser import evaluate

TSC = WEB_DIR / "node_modules" / ".bin" / "tsc"
PACKAGE = "webllm-build"
TSCONFIG = {
    "compilerOptions": {
        "target": "ES2022",
        "module": "ESNext",
        "moduleResolution": "Bundler",
        "lib": ["ES2022", "DOM", "DOM.Iterable"],
        "types": [],
        "strict": True,
        "skipLibCheck": False,
        "outDir": "out",
    },
}

# The test page's script: what a library user writes, plus a window hook for the test.
MAIN_TS = """\
import { createWorkerEngine, EngineError, type FinishReason, type LoadProgress } from "webllm-build";

const messages = [{ role: "user", content: "hello there" }];

async function chat(modelUrl: string) {
  const engine = createWorkerEngine();
  const progress: LoadProgress[] = [];
  await engine.reload(modelUrl, { onProgress: (p) => progress.push(p) });
  const stream = await engine.chat.completions.create({ messages, stream: true, max_tokens: 12 });
  const chunks: string[] = [];
  let finishReason: FinishReason | null = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (choice.delta.content) chunks.push(choice.delta.content);
    finishReason = choice.finish_reason ?? finishReason;
  }
  await engine.resetChat();
  const whole = await engine.chat.completions.create({ messages, max_tokens: 12 });
  engine.terminate();
  return { chunks, finishReason, whole, kind: engine.kind, lastProgress: progress.at(-1) };
}

async function failure(modelUrl: string) {
  const engine = createWorkerEngine();
  try {
    await engine.reload(modelUrl);
    return null;
  } catch (error) {
    if (!(error instanceof EngineError)) throw error;
    return { code: error.code, message: error.message };
  } finally {
    engine.terminate();
  }
}

Object.assign(window, { libraryTest: { chat, failure } });
"""

# Each line misuses the API; tsc must reject each one, with this error.
WRONG_TS = {
    'import { createWorkerEngine, EngineError, type EngineErrorCode } from "webllm-build";': None,
    "const engine = createWorkerEngine();": None,
    "await engine.reload(42);": "TS2345",  # the model's URL is a string
    'const stream = await engine.chat.completions.create({ messages: [], stream: true });': None,
    "for await (const chunk of stream) console.log(chunk.choices[0].delta.text);": "TS2339",
    'const whole = await engine.chat.completions.create({ messages: [], stream: false });': None,
    "for await (const chunk of whole) console.log(chunk);": "TS2504",  # not a stream
    'const code: EngineErrorCode = "no-such-code";': "TS2322",
    'new EngineError("fetch-failed");': "TS2554",  # a message is required
    'engine.chat.completions.create({ messages: "hello" });': "TS2769",
}


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The npm package as `node build.mjs package <dir>` writes it, installed in an app's
    node_modules as npm would."""
    app = tmp_path_factory.mktemp("library_app")
    directory = app / "node_modules" / PACKAGE
    subprocess.run(["node", "build.mjs", "package", str(directory)], cwd=WEB_DIR, check=True, timeout=120)
    return directory


def tsc(app: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TSC), "-p", str(app)], capture_output=True, text=True, timeout=300, check=False
    )


def test_the_package_exports_the_bundle_and_its_declarations(package):
    manifest = json.loads((package / "package.json").read_text())
    assert manifest["name"] == PACKAGE and manifest["type"] == "module"
    assert manifest["exports"]["."] == {"types": "./webllm_build.d.ts", "import": "./webllm_build.js"}
    assert manifest["types"] == "./webllm_build.d.ts"
    assert sorted(manifest["files"]) == sorted(p.name for p in package.iterdir() if p.name != "package.json")
    assert (package / "webllm_build.js").read_bytes() == WEB_BUNDLE.read_bytes()
    assert (package / "webllm_build.d.ts").read_bytes() == WEB_TYPES.read_bytes()
    assert "createWorkerEngine" in (package / "README.md").read_text()
    declarations = WEB_TYPES.read_text()
    # The library's API only: the harness's building blocks (typed with tvmjs's classes) stay out.
    assert "function createWorkerEngine(scriptUrl?: string | URL): WorkerEngine;" in declarations
    assert "readonly code: EngineErrorCode;" in declarations
    assert "import " not in declarations and "loadLibrary" not in declarations


def test_the_site_ships_a_stable_entry_and_the_declarations(tiny_site, tmp_path):
    engine = json.loads((tiny_site / "site.json").read_text())["engine"]
    assert re.fullmatch(r"webllm_build-[0-9a-f]{16}\.js", engine)
    assert (tiny_site / "webllm_build.js").read_text() == f'export * from "./{engine}";\n'
    for name in ("webllm_build.d.ts", engine.removesuffix(".js") + ".d.ts"):
        assert (tiny_site / name).read_bytes() == WEB_TYPES.read_bytes()
    assert "webllm_build.js" in (tiny_site / "README.md").read_text()
    # The site README's way for TypeScript: the name mapped to the site's declarations by `paths`.
    (tmp_path / "main.ts").write_text(MAIN_TS)
    paths = {PACKAGE: [str(tiny_site / "webllm_build.d.ts")]}
    options = {**TSCONFIG["compilerOptions"], "noEmit": True, "paths": paths}
    (tmp_path / "tsconfig.json").write_text(json.dumps({"compilerOptions": options, "files": ["main.ts"]}))
    result = tsc(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_wrong_usage_fails_the_type_check(package):
    app = package.parent.parent / "wrong"
    app.mkdir()
    lines = list(WRONG_TS)
    (app / "wrong.ts").write_text("\n".join([*lines, "export {};"]) + "\n")
    (app / "tsconfig.json").write_text(json.dumps({**TSCONFIG, "files": ["wrong.ts"]}))
    (app / "node_modules").symlink_to(package.parent)
    result = tsc(app)
    assert result.returncode != 0
    errors = {int(m[1]): m[2] for m in re.finditer(r"wrong\.ts\((\d+),\d+\): error (TS\d+)", result.stdout)}
    expected = {i + 1: code for i, code in enumerate(WRONG_TS.values()) if code}
    assert errors == expected, result.stdout


@pytest.fixture(scope="module")
def site_url(tiny_site):
    """The site on an origin of its own, sending CORS headers as a CDN for other origins would;
    yields its URL and the Origin header of every engine request."""
    origins: list[str | None] = []

    def record(request: web.Request) -> None:
        if request.path.rsplit("/", 1)[-1].startswith("webllm_build"):
            origins.append(request.headers.get("Origin"))

    async def allow_any_origin(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Access-Control-Allow-Origin"] = "*"

    app = make_app(tiny_site, on_request=record)
    app.on_response_prepare.append(allow_any_origin)
    with serve_app_in_background(app) as url:
        yield url, origins


@pytest.fixture(scope="module")
def test_page(package, site_url):
    """The app compiled by tsc and served from a second origin; its URL."""
    url, _ = site_url
    app = package.parent.parent
    (app / "main.ts").write_text(MAIN_TS)
    (app / "tsconfig.json").write_text(json.dumps({**TSCONFIG, "files": ["main.ts"]}))
    result = tsc(app)
    assert result.returncode == 0, result.stdout + result.stderr
    import_map = json.dumps({"imports": {PACKAGE: f"{url}webllm_build.js"}})
    (app / "index.html").write_text(
        '<!doctype html>\n<meta charset="utf-8">\n<title>webllm_build as a library</title>\n'
        f'<script type="importmap">{import_map}</script>\n'
        '<script type="module" src="out/main.js"></script>\n'
    )
    with serve_in_background(app) as page_url:
        yield page_url


def test_a_page_on_another_origin_streams_a_reply(tiny_site, site_url, test_page, browser):
    url, origins = site_url
    model = json.loads((tiny_site / "site.json").read_text())["models"][0]
    page, log = browser.open(test_page, ready="window.libraryTest !== undefined")
    try:
        result = evaluate(page, log, "url => window.libraryTest.chat(url)", url + model["base_url"])
    finally:
        page.context.close()
    assert result["kind"] == "worker"
    assert result["lastProgress"]["percent"] == 100
    whole = result["whole"]["choices"][0]
    assert whole["message"]["content"], result
    assert "".join(result["chunks"]) == whole["message"]["content"]
    assert result["finishReason"] in ("stop", "length")
    assert result["finishReason"] == whole["finish_reason"]
    # The worker fetched the engine across origins (CORS), from the page's origin.
    page_origin = test_page.rstrip("/")
    assert page_origin != url.rstrip("/") and origins and set(origins) == {page_origin}


def test_a_missing_model_is_an_engine_error_with_a_code(site_url, test_page, browser):
    url, _ = site_url
    page, log = browser.open(test_page, ready="window.libraryTest !== undefined")
    try:
        result = evaluate(page, log, "url => window.libraryTest.failure(url)", url + "models/no-such-model/")
    finally:
        page.context.close()
    assert result is not None and result["code"] == "fetch-failed", result
    assert "no-such-model" in result["message"]
