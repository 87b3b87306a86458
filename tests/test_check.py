"""`webllm_build check`: golden outputs of a built site in headless Chromium.

A good build passes; a weight shard from a build with another seed fails with a diff that
names the first diverging token; JUnit XML parses; transformers' recorded golden equals what
the browser gives; the pytest fixture hands out a loaded page with the engine's extras.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from checkpoints import make_llama
from conftest import CI_SCHEDULES, run_cli

from webllm_build.errors import WebLLMBuildError
from webllm_build.site import SiteOptions, build_site
from webllm_build.verify.check import CheckOptions, junit_xml, run_check
from webllm_build.verify.golden import GOLDEN_VERSION, Expected, compare, read_golden

MODEL = "tiny-llama-q4f32_1"


@pytest.fixture(scope="module")
def golden(tiny_site, tmp_path_factory) -> Path:
    """The default cases recorded from the tiny site itself."""
    path = tmp_path_factory.mktemp("golden") / "golden.json"
    report = run_check(CheckOptions(target=str(tiny_site), golden=path, record=True))
    assert report.passed, report.summary()
    return path


@pytest.fixture(scope="module")
def swapped_site(tiny_site, tmp_path_factory) -> Path:
    """The tiny site with its weight shard replaced by the shard of a build with another seed.

    The manifest names the new shard (file and sha256), as a deploy mixing two builds would,
    so the engine loads it without complaint and only the outputs can tell.
    """
    root = tmp_path_factory.mktemp("swapped")
    other = make_llama(root / "tiny-llama", seed=4, initializer_range=0.2)
    other_site = build_site(
        SiteOptions(models=[str(other)], out=root / "other", prefill_chunk=4, schedules=CI_SCHEDULES)
    ).directory
    site = root / "dist"
    shutil.copytree(tiny_site, site)
    ours, theirs = site / "models" / MODEL, other_site / "models" / MODEL
    manifest = json.loads((ours / "tensor-cache.json").read_text())
    their_shards = json.loads((theirs / "tensor-cache.json").read_text())["records"]
    shard, replacement = manifest["records"][0], their_shards[0]
    assert shard["sha256"] != replacement["sha256"]
    (ours / shard["dataPath"]).unlink()
    shutil.copy2(theirs / replacement["dataPath"], ours / replacement["dataPath"])
    shard["dataPath"], shard["sha256"] = replacement["dataPath"], replacement["sha256"]
    (ours / "tensor-cache.json").write_text(json.dumps(manifest, indent=2))
    return site


def test_recorded_golden_file_format(golden, tiny_site):
    document = json.loads(golden.read_text())
    assert document["format"] == "webllm_build-golden" and document["version"] == GOLDEN_VERSION
    assert document["source"] == "browser"
    entry = document["models"][MODEL]
    assert entry["quantization"] == "q4f32_1" and entry["spec"].endswith("tiny-llama")
    assert len(entry["cases"]) == 3
    for case in entry["cases"]:
        expected = case["expected"]
        assert len(expected["token_ids"]) == len(expected["top_logprobs"]) > 0
        assert expected["prompt_tokens"] > 0 and expected["finish_reason"] in ("stop", "length")
        for step, token in zip(expected["top_logprobs"], expected["token_ids"], strict=True):
            assert step[0][0] == token  # greedy: the chosen token is the most likely one
            assert [lp for _, lp in step] == sorted((lp for _, lp in step), reverse=True)


def test_good_build_passes_with_reports(golden, tiny_site, tmp_path):
    report = run_check(CheckOptions(target=str(tiny_site), golden=golden))
    assert report.passed, report.summary()
    assert [c.status for c in report.models[0].cases] == ["pass"] * 3
    assert report.adapter["available"]
    document = report.to_json()
    assert document["passed"] and document["models"][0]["load_seconds"] > 0
    suites = ET.fromstring(junit_xml(report))
    suite = suites.find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "0" and suite.get("errors") == "0"


def test_swapped_shard_fails_with_a_diff(golden, swapped_site, tmp_path):
    junit, report_json = tmp_path / "junit.xml", tmp_path / "report.json"
    result = run_cli(
        "check", str(swapped_site), "--golden", str(golden), "--junit", str(junit), "--json", str(report_json)
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "tokens differ from index" in result.stdout
    assert "expected text:" in result.stdout and "actual text:" in result.stdout
    assert "FAILED" in result.stdout and "Traceback" not in result.stderr
    # JUnit XML as CI systems read it: well formed, one failure per case, the diff in it.
    suites = ET.parse(junit).getroot()
    assert suites.tag == "testsuites"
    suite = suites.find("testsuite")
    assert suite.get("name") == MODEL and suite.get("failures") == "3"
    failures = [case.find("failure") for case in suite.findall("testcase")]
    assert all(f is not None and "tokens differ" in f.get("message") for f in failures)
    report = json.loads(report_json.read_text())
    assert report["passed"] is False
    assert {c["status"] for c in report["models"][0]["cases"]} == {"fail"}
    assert report["models"][0]["console"], "the browser console is captured into the report"


def test_transformers_golden_equals_the_browser(golden, tiny_site, tmp_path):
    reference = tmp_path / "reference.json"
    recorded = run_check(
        CheckOptions(target=str(tiny_site), golden=reference, record=True, reference="transformers")
    )
    assert recorded.passed, recorded.summary()
    from_browser = read_golden(golden).models[MODEL].cases
    from_transformers = read_golden(reference).models[MODEL].cases
    assert read_golden(reference).source == "transformers"
    for ours, theirs in zip(from_browser, from_transformers, strict=True):
        assert ours.expected.token_ids == theirs.expected.token_ids, ours.name
        assert ours.expected.text == theirs.expected.text
        assert ours.expected.prompt_tokens == theirs.expected.prompt_tokens
        assert compare(theirs.expected, ours.expected, tolerance=0.01) == []


def test_case_timeout_is_an_error_and_the_next_case_still_runs(golden, tiny_site, tmp_path):
    document = json.loads(golden.read_text())
    document["models"][MODEL]["cases"][0]["timeout_s"] = 0.01
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(document))
    report = run_check(CheckOptions(target=str(tiny_site), golden=path))
    statuses = [c.status for c in report.models[0].cases]
    assert statuses == ["error", "pass", "pass"], report.summary()
    assert "timeout" in report.models[0].cases[0].problems[0]
    assert not report.passed


def test_compare_names_the_first_diverging_token_and_logprob_drift():
    want = Expected([5, 6, 7], "abc", "length", 10, [[(5, -0.1), (9, -2.5)], [(6, -0.2)], [(7, -0.3)]])
    assert compare(want, want, 0.01) == []
    diverged = Expected([5, 6, 8], "abd", "length", 10, [[(5, -0.1), (9, -2.5)], [(6, -0.2)], [(8, -0.3)]])
    (problem,) = compare(want, diverged, 0.01)
    assert problem.startswith("tokens differ from index 2") and '"abc"' in problem and '"abd"' in problem
    drifted = Expected([5, 6, 7], "abc", "length", 10, [[(5, -0.1), (9, -2.6)], [(6, -0.2)], [(7, -0.3)]])
    assert compare(want, drifted, 0.2) == []
    (drift,) = compare(want, drifted, 0.05)
    assert drift == "step 0: logprob of token 9 is -2.6000, expected -2.5000 (tolerance 0.05)"
    shorter_prompt = Expected([5, 6, 7], "abc", "length", 9, want.top_logprobs)
    assert "prompt is 9 tokens, expected 10" in compare(want, shorter_prompt, 0.01)[0]


def test_golden_file_errors_say_what_to_do(tmp_path):
    with pytest.raises(WebLLMBuildError, match="--record"):
        read_golden(tmp_path / "missing.json")
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"format": "webllm_build-golden", "version": 99, "models": {}}))
    with pytest.raises(WebLLMBuildError, match="version 99"):
        read_golden(future)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"format": "webllm_build-golden", "version": GOLDEN_VERSION, "models": {}}))
    with pytest.raises(WebLLMBuildError, match="not a built site"):
        run_check(CheckOptions(target=str(tmp_path), golden=empty))


def test_fixture_gives_a_loaded_page_and_engine_extras(webllm_page):
    request = {
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 5,
        "logprobs": True,
        "top_logprobs": 3,
    }
    reply = webllm_page.create(request)
    assert reply["error"] is None
    assert len(reply["token_ids"]) == reply["usage"]["completion_tokens"]
    for entry in reply["logprobs"]:
        assert len(entry["top_logprobs"]) == 3
        assert entry["token_id"] == entry["top_logprobs"][0]["token_id"]  # greedy
        assert entry["logprob"] <= 0 and bytes(entry["bytes"]).decode("utf-8") == entry["token"]
    # ignore_eos: exactly max_tokens come out whatever the model says.
    plain = {"messages": request["messages"], "max_tokens": 12}
    long = webllm_page.create({**plain, "ignore_eos": True})
    assert long["usage"]["completion_tokens"] == 12 and long["token_ids"] is None
    stats = webllm_page.runtime_stats()
    assert stats["gpu_allocated_bytes"] > 88_000  # at least the weights
    assert stats["gpu_peak_bytes"] >= stats["gpu_allocated_bytes"]
    assert stats["adapter"]["available"]
