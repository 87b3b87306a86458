"""The browser's weight loading: progress, caching, integrity, resume, storage failures.

A tiny Llama split into many small shards, served by our own server (or, to cut a download
midway, by the same app behind a fault-injecting middleware), loaded by the real engine in
headless Chromium.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from aiohttp import web
from checkpoints import make_llama
from conftest import CI_SCHEDULES

from webllm_build.build import plan_and_build
from webllm_build.plan import BuildOptions
from webllm_build.serve import make_app, serve_app_in_background, serve_in_background
from webllm_build.verify.testing import PageModel, stage_models

PROMPT = [5, 17, 42, 7, 99, 3]


@pytest.fixture(scope="module")
def site(tmp_path_factory, wasm_runtime) -> Path:
    root = tmp_path_factory.mktemp("weights_site")
    compiled = plan_and_build(
        # ~86 KiB of weights in 20 KiB shards: enough shards for parallelism and partial loads.
        BuildOptions(
            model=str(make_llama(root / "ckpt", seed=3)),
            quantization="q4f32_1",
            prefill_chunk=4,
            shard_mb=0.02,
            schedules=CI_SCHEDULES,
        ),
        root / "out",
    )
    return stage_models(root / "site", {"llama": compiled.directory})


def shard_names(site: Path) -> list[str]:
    manifest = json.loads((site / "llama" / "tensor-cache.json").read_text())
    return [shard["dataPath"] for shard in manifest["records"]]


class RequestLog:
    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: web.Request) -> None:
        self.paths.append(request.path)

    def shards(self) -> list[str]:
        return [p.rsplit("/", 1)[-1] for p in self.paths if "/params-" in p]


def test_progress_and_a_second_visit_loads_from_the_cache(site, browser):
    shards = shard_names(site)
    assert len(shards) >= 4
    requests = RequestLog()
    with serve_in_background(site, on_request=requests) as url:
        model = PageModel.loaded(browser, url, "llama")
        events = model.load_result["events"]
        loaded = [e["loadedBytes"] for e in events]
        assert loaded == sorted(loaded), "progress must never go backwards"
        assert events[-1]["phase"] == "done" and events[-1]["percent"] == 100
        assert {e["phase"] for e in events} >= {"download", "verify", "upload", "done"}
        assert sorted(requests.shards()) == sorted(shards)
        tokens = model.greedy(PROMPT, 8)

        model.reload()
        before = len(requests.shards())
        second = model.load()
        assert second["error"] is None
        assert len(requests.shards()) == before, "a second visit must not download weights"
        assert second["report"]["fromCache"] == len(shards)
        assert model.greedy(PROMPT, 8) == tokens


def test_indexeddb_store_also_serves_a_second_visit(site, browser):
    requests = RequestLog()
    with serve_in_background(site, on_request=requests) as url:
        model = PageModel.loaded(browser, url, "llama", store="indexeddb")
        model.reload()
        before = len(requests.shards())
        assert model.load(store="indexeddb")["report"]["fromCache"] == len(shard_names(site))
        assert len(requests.shards()) == before


def test_a_corrupted_shard_is_refetched_once_then_reported(site, browser, tmp_path):
    broken = shutil.copytree(site, tmp_path / "site")
    victim = shard_names(broken)[1]
    data = bytearray((broken / "llama" / victim).read_bytes())
    data[100] ^= 0xFF
    (broken / "llama" / victim).write_bytes(bytes(data))
    requests = RequestLog()
    with serve_in_background(broken, on_request=requests) as url:
        page_model = PageModel(browser, url, "llama")
        result = page_model.load()
    assert result["error"]["code"] == "corrupt-shard"
    assert victim in result["error"]["message"]
    assert requests.shards().count(victim) == 2


def test_an_interrupted_download_resumes_without_refetching(site, browser):
    shards = shard_names(site)
    dropped = shards[-1]
    attempts: dict[str, int] = {}
    requests = RequestLog()

    @web.middleware
    async def drop_once(request: web.Request, handler):
        name = request.path.rsplit("/", 1)[-1]
        attempts[name] = attempts.get(name, 0) + 1
        if name == dropped and attempts[name] == 1:
            body = (site / "llama" / name).read_bytes()
            response = web.StreamResponse(headers={"Content-Length": str(len(body))})
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            request.transport.close()  # the server drops the connection midway
            return response
        return await handler(request)

    app = make_app(site, on_request=requests)
    app.middlewares.append(drop_once)
    with serve_app_in_background(app) as url:
        page_model = PageModel(browser, url, "llama")
        first = page_model.load()
        assert first["error"] is not None and first["error"]["code"] == "fetch-failed"
        fetched_first = set(requests.shards())

        page_model.reload()
        requests.paths.clear()
        second = page_model.load()
    assert second["error"] is None
    refetched = set(requests.shards())
    assert dropped in refetched
    assert not (refetched & (fetched_first - {dropped})), "completed shards must come from the cache"
    assert second["report"]["fromCache"] == len(shards) - len(refetched)


def test_storage_unavailable_warns_and_still_loads(site, browser):
    with serve_in_background(site) as url:
        page_model = PageModel(browser, url, "llama")
        page_model.page.evaluate("() => Object.defineProperty(window, 'caches', {value: undefined})")
        result = page_model.load()
    assert result["error"] is None
    assert [w["code"] for w in result["warnings"]] == ["storage-unavailable"]
    assert "network" in result["warnings"][0]["message"]


def test_quota_exceeded_names_the_bytes_and_still_loads(site, browser):
    with serve_in_background(site) as url:
        page_model = PageModel(browser, url, "llama")
        cdp = page_model.page.context.new_cdp_session(page_model.page)
        cdp.send("Storage.overrideQuotaForOrigin", {"origin": url.rstrip("/"), "quotaSize": 4096})
        result = page_model.load()
    assert result["error"] is None
    quota = [w for w in result["warnings"] if w["code"] == "quota-exceeded"]
    assert len(quota) == 1, result["warnings"]
    assert "MiB" in quota[0]["message"] and "available" in quota[0]["message"]


def test_delete_cached_model_frees_its_bytes(site, browser):
    total = sum((site / "llama" / name).stat().st_size for name in shard_names(site))
    requests = RequestLog()
    with serve_in_background(site, on_request=requests) as url:
        model = PageModel.loaded(browser, url, "llama")
        assert model.delete_cached_weights() == total
        requests.paths.clear()
        model.reload()
        assert model.load()["report"]["fromNetwork"] == len(shard_names(site))
        assert len(requests.shards()) == len(shard_names(site))


def test_tvmjs_own_loader_reads_our_weights(site, browser):
    """Interoperability: tvmjs's fetchTensorCache loads the same directory, tensor for tensor."""
    config_name = json.loads((site / "llama" / "webllm-model.json").read_text())["files"]["config"]["path"]
    config = json.loads((site / "llama" / config_name).read_text())
    with serve_in_background(site) as url:
        page_model = PageModel(browser, url, "llama")
        shapes = page_model.page.evaluate(
            """async ([library, names]) => {
                const base = new URL('llama/', location.href).href;
                const lib = await webllm.loadLibrary(new URL(library, base).href);
                await lib.tvm.fetchTensorCache(base, lib.device, {cacheScope: 'tvmjs-interop'});
                const shapeOf = (name) => lib.tvm.tensorCacheGet(name)?.shape ?? null;
                return lib.tvm.withNewScope(() => names.map(shapeOf));
            }""",
            [config["library"], config["param_names"]],
        )
    manifest = json.loads((site / "llama" / "tensor-cache.json").read_text())
    expected = {r["name"]: r["shape"] for shard in manifest["records"] for r in shard["records"]}
    assert shapes == [expected[name] for name in config["param_names"]]
