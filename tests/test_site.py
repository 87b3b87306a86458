"""The site stage: files, site.json, caching rules, atomic and deterministic rebuilds, the page."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from checkpoints import make_llama
from conftest import CI_SCHEDULES, run_cli

from webllm_build.artifacts import read_model_index, verify_directory
from webllm_build.build import plan_and_build
from webllm_build.errors import LoaderError, OptionsError, SiteError, StorageError
from webllm_build.paths import WEB_BUNDLE, WEB_PAGE_BUNDLE
from webllm_build.plan import BuildOptions
from webllm_build.serve import HASHED_NAME, serve_in_background
from webllm_build.site import SiteOptions, build_site

SLUG = "tiny-llama-q4f32_1"
FIXED_NAMES = ("index.html", "app.js", "site.json", "_headers", "README.md")
HOSTILE = (
    'Look: <img src=x onerror="window.pwned=1"> and <script>window.pwned=1</script>\n\n'
    "**bold** and *it* with `<b>code</b>`\n\n```html\n<img src=x onerror=window.pwned=1>\n```\n"
)


def _options(models: list[Path], out: Path, **overrides) -> SiteOptions:
    # A prefill chunk of 4 matches the other browser tests' tiny Llama, so its library is cached.
    settings = {"prefill_chunk": 4, "schedules": CI_SCHEDULES, **overrides}
    return SiteOptions(models=[str(m) for m in models], out=out, **settings)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("site_checkpoints")
    return {
        "llama": make_llama(root / "tiny-llama", seed=3, initializer_range=0.2),
        "other": make_llama(root / "Other Llama", seed=5, initializer_range=0.2),
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory, checkpoints, wasm_runtime):
    out = tmp_path_factory.mktemp("site") / "dist"
    logs: list[str] = []
    result = build_site(_options([checkpoints["llama"]], out, title="Tiny <chat>"), logs.append)
    return result, logs


@pytest.fixture(scope="module")
def two_model_site(tmp_path_factory, checkpoints, wasm_runtime):
    out = tmp_path_factory.mktemp("site2") / "dist"
    return build_site(_options([checkpoints["llama"], checkpoints["other"]], out))


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_site_files_and_hashed_names(site):
    result, _ = site
    out = result.directory
    for name in FIXED_NAMES:
        assert (out / name).is_file(), name
    assert re.fullmatch(r"webllm_build-[0-9a-f]{16}\.js", result.engine)
    assert (out / result.engine).read_bytes() == WEB_BUNDLE.read_bytes()
    # The page's own script is the small one; the engine bundle is the worker's.
    (page_script,) = [p for p in out.glob("webllm_build-page-*.js")]
    assert page_script.read_bytes() == WEB_PAGE_BUNDLE.read_bytes()
    assert page_script.name in (out / "app.js").read_text() and result.engine in (out / "app.js").read_text()
    # The page's own script stays small beside the engine: minified, markdown-it and DOMPurify
    # are most of its ~160 KB.
    assert page_script.stat().st_size < 192 * 1024
    assert HASHED_NAME.search(result.engine)
    assert [p.name for p in (out / "models").iterdir()] == [SLUG]
    assert verify_directory(out / "models" / SLUG) == []
    assert not [p for p in out.parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_site_json_schema(site):
    result, _ = site
    document = json.loads((result.directory / "site.json").read_text())
    assert document == {
        "format": 1,
        "title": "Tiny <chat>",
        "engine": result.engine,
        "models": [
            {
                "id": SLUG,
                "title": "tiny-llama (q4f32_1)",
                "family": "tiny-llama",
                "base_url": f"models/{SLUG}/",
                "quantization": "q4f32_1",
                "required_features": [],
                "download_bytes": document["models"][0]["download_bytes"],
                "default": True,
                "random_weights": False,
                "memory": document["models"][0]["memory"],
            }
        ],
    }
    model_dir = result.directory / "models" / SLUG
    index = read_model_index(model_dir)
    shards = json.loads((model_dir / "tensor-cache.json").read_text())["records"]
    expected = sum(s["nbytes"] for s in shards) + sum(
        index.files[role].nbytes for role in ("library", "tokenizer")
    )
    assert document["models"][0]["download_bytes"] == expected
    # The memory estimate's weights are every tensor the library reads, as the manifest lists them.
    memory = document["models"][0]["memory"]
    assert memory["weights_bytes"] == sum(t["nbytes"] for shard in shards for t in shard["records"])
    parts = ("weights_bytes", "kv_cache_bytes", "workspace_bytes")
    assert memory["total_bytes"] == sum(memory[part] for part in parts)
    assert memory == index.extra["memory"]


def test_page_uses_only_relative_urls(site):
    result, _ = site
    html = (result.directory / "index.html").read_text()
    app = (result.directory / "app.js").read_text()
    assert "<title>Tiny &lt;chat&gt;</title>" in html  # autoescaped
    for text in (html, app):
        assert "http://" not in text and "https://" not in text
    references = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert "app.js" in references
    assert all(not ref.startswith("/") for ref in references)
    # Every URL the script builds is resolved against its own location.
    for literal in re.findall(r'new URL\(("[^"]*")', app):
        assert not json.loads(literal).startswith("/"), literal
    assert json.dumps(result.engine) in app


def test_base_url_points_models_at_another_origin(tmp_path, checkpoints, wasm_runtime):
    out = tmp_path / "dist"
    result = build_site(_options([checkpoints["llama"]], out, base_url="https://cdn.example.com/chat/"))
    entry = json.loads((out / "site.json").read_text())["models"][0]
    assert entry["base_url"] == f"https://cdn.example.com/chat/models/{SLUG}/"
    # The files are still there, to be uploaded to the base URL.
    assert verify_directory(out / "models" / SLUG) == []
    readme = (out / "README.md").read_text()
    assert "Access-Control-Allow-Origin" in readme and "https://cdn.example.com/chat/models/" in readme
    assert result.models[0].base_url == entry["base_url"]


def test_two_models_one_default(two_model_site):
    document = json.loads((two_model_site.directory / "site.json").read_text())
    ids = [m["id"] for m in document["models"]]
    assert ids == [SLUG, "other-llama-q4f32_1"]
    assert [m["default"] for m in document["models"]] == [True, False]
    for model_id in ids:
        assert verify_directory(two_model_site.directory / "models" / model_id) == []


def test_rebuild_is_byte_identical_and_reuses_models(site, checkpoints):
    result, first_logs = site
    out = result.directory
    before = _snapshot(out)
    assert any(line.startswith("Building") for line in first_logs)
    logs: list[str] = []
    again = build_site(_options([checkpoints["llama"]], out, title="Tiny <chat>"), logs.append)
    assert any(line.startswith("Reusing") for line in logs), logs
    assert not any(line.startswith(("Building", "Compiling", "Converting")) for line in logs), logs
    assert all(model.reused for model in again.models)
    after = _snapshot(out)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    # Model files were carried over, not rewritten.
    for name, (_, mtime) in before.items():
        if name.startswith("models/"):
            assert after[name][1] == mtime, name


def test_a_damaged_model_is_rebuilt(tmp_path, checkpoints, wasm_runtime):
    out = tmp_path / "dist"
    build_site(_options([checkpoints["llama"]], out))
    shard = next((out / "models" / SLUG).glob("params-*.bin"))
    original = shard.read_bytes()
    shard.write_bytes(b"\0" * len(original))
    logs: list[str] = []
    build_site(_options([checkpoints["llama"]], out), logs.append)
    assert not any(line.startswith("Reusing") for line in logs), logs
    assert shard.read_bytes() == original
    # Other sizes are other inputs: recompiled, not reused.
    logs.clear()
    build_site(_options([checkpoints["llama"]], out, context_window=128), logs.append)
    assert not any(line.startswith("Reusing") for line in logs), logs


def test_a_changed_checkpoint_is_rebuilt(tmp_path, checkpoints, wasm_runtime):
    """The plan key covers the checkpoint's files: new weights under the same path are a new build."""
    checkpoint = tmp_path / "tiny-llama"
    shutil.copytree(checkpoints["llama"], checkpoint)
    out = tmp_path / "dist"
    build_site(_options([checkpoint], out))
    shards = sorted((out / "models" / SLUG).glob("params-*.bin"))
    logs: list[str] = []
    build_site(_options([checkpoint], out), logs.append)
    assert any(line.startswith("Reusing") for line in logs), logs
    retrained = make_llama(tmp_path / "retrained", seed=4, initializer_range=0.2)
    for weights in retrained.glob("*.safetensors"):
        shutil.copy(weights, checkpoint / weights.name)
    logs.clear()
    build_site(_options([checkpoint], out), logs.append)
    assert not any(line.startswith("Reusing") for line in logs), logs
    assert sorted((out / "models" / SLUG).glob("params-*.bin")) != shards


def _header_rules(text: str) -> dict[str, dict[str, str]]:
    rules: dict[str, dict[str, str]] = {}
    path = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            path = line.strip()
            rules[path] = {}
        else:
            key, _, value = line.strip().partition(":")
            rules[path][key] = value.strip()
    return rules


def test_headers_file_caches_hashed_files_forever(site):
    result, _ = site
    rules = _header_rules((result.directory / "_headers").read_text())
    assert rules["/"]["Cache-Control"] == "no-cache"
    assert rules["/models/*/model-*.wasm"]["Content-Type"] == "application/wasm"
    # Every file the page fetches matches one rule, immutable exactly when its name is hashed.
    for path in result.directory.rglob("*"):
        if not path.is_file() or path.name in ("_headers", "README.md"):
            continue
        url = "/" + str(path.relative_to(result.directory))
        matching = [rule for pattern, rule in rules.items() if fnmatch.fnmatchcase(url, pattern)]
        assert len(matching) == 1, url
        immutable = "immutable" in matching[0]["Cache-Control"]
        assert immutable == bool(HASHED_NAME.search(path.name)), url


def test_bad_inputs_leave_no_output(tmp_path, checkpoints):
    out = tmp_path / "dist"
    with pytest.raises(LoaderError, match="not a preset"):
        build_site(SiteOptions(models=["no-such-model-xyz"], out=out))
    with pytest.raises(OptionsError, match="Unknown quantization"):
        build_site(_options([checkpoints["llama"]], out, quantization="q3"))
    with pytest.raises(OptionsError, match="Unknown schedule class"):
        build_site(_options([checkpoints["llama"]], out, schedules=("gpu", "tpu")))
    with pytest.raises(OptionsError, match="not an absolute"):
        build_site(_options([checkpoints["llama"]], out, base_url="cdn/models"))
    assert not out.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="Cannot write"):
        build_site(_options([checkpoints["llama"]], tmp_path / "file" / "dist"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(SiteError, match="not a site"):
        build_site(_options([checkpoints["llama"]], mine))
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]


def test_one_mistake_is_one_error_from_compile_and_from_site(tmp_path, checkpoints):
    """A bad --quant is the same OptionsError, with the same message, from either stage."""
    with pytest.raises(OptionsError) as from_site:
        build_site(_options([checkpoints["llama"]], tmp_path / "site", quantization="q3f16_1"))
    with pytest.raises(OptionsError) as from_compile:
        plan_and_build(BuildOptions(model=str(checkpoints["llama"]), quantization="q3f16_1"), tmp_path / "m")
    assert str(from_site.value) == str(from_compile.value)
    assert not (tmp_path / "site").exists() and not (tmp_path / "m").exists()


def test_cli_bad_model_exits_1_without_traceback(tmp_path):
    out = tmp_path / "X"
    result = run_cli("site", "--model", "no-such-model-xyz", "--out", str(out))
    assert result.returncode == 1
    assert "error:" in result.stderr and "not a preset" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not out.exists()


# --- the page in headless Chromium ---------------------------------------------------------------


def test_page_lists_the_models(two_model_site, browser):
    with serve_in_background(two_model_site.directory) as url:
        page, log = browser.open(url, ready="window.webllmSiteReady === true")
        options = page.eval_on_selector_all("#model option", "els => els.map(e => [e.value, e.selected])")
        assert options == [[SLUG, True], ["other-llama-q4f32_1", False]]
        assert page.is_hidden("#no-webgpu")
        # The engine bundle imports and finds WebGPU: Load becomes usable.
        page.wait_for_function("!document.getElementById('load').disabled", timeout=30_000)
        assert page.is_hidden("#error"), page.inner_text("#error")
        assert not log.errors, log.tail()


def test_page_without_webgpu_says_which_browsers_work(site, browser):
    result, _ = site
    with serve_in_background(result.directory) as url:
        page, _ = browser.open(url, ready="window.webllmSiteReady === true", webgpu=False)
        assert page.is_visible("#no-webgpu")
        assert page.is_disabled("#load")
        text = page.inner_text("#no-webgpu")
        for needle in ("Chrome", "Safari 26", "Firefox 141", "--enable-unsafe-webgpu"):
            assert needle in text


def test_markdown_renderer_escapes_model_output(site, browser):
    result, _ = site
    with serve_in_background(result.directory) as url:
        page, _ = browser.open(url, ready="window.webllmSiteReady === true")
        found = page.evaluate(
            """(text) => {
                const box = document.createElement("div");
                box.innerHTML = window.webllmRenderMarkdown(text);
                document.body.append(box);
                return {
                    injected: box.querySelectorAll("img, script, b, [onerror]").length,
                    strong: box.querySelectorAll("strong").length,
                    em: box.querySelectorAll("em").length,
                    code: [...box.querySelectorAll("code")].map((c) => c.textContent),
                    pre: box.querySelectorAll("pre").length,
                    text: box.textContent,
                    pwned: window.pwned === 1,
                };
            }""",
            HOSTILE,
        )
        page.wait_for_timeout(100)  # an onerror handler would have run by now
        assert found["injected"] == 0
        assert not found["pwned"] and not page.evaluate("window.pwned === 1")
        assert '<img src=x onerror="window.pwned=1">' in found["text"]
        assert "<script>window.pwned=1</script>" in found["text"]
        assert found["strong"] == 1 and found["em"] == 1 and found["pre"] == 1
        assert found["code"] == ["<b>code</b>", "<img src=x onerror=window.pwned=1>"]
