"""`webllm_build check`: a built site's models give their golden outputs in headless Chromium.

Opens the site (a folder served on loopback, or a deployed URL), loads each model through the
page's own API, runs every golden case (greedy unless the case says otherwise) with a timeout,
and compares token ids, text and top-k log-probabilities. `record=True` writes the golden file
instead: from this build, or with `reference="transformers"` from transformers on the CPU for
the checkpoint the build came from. Results: a report (JSON), optional JUnit XML, and pass/fail.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from webllm_build.atomic import atomic_write_text
from webllm_build.errors import OptionsError
from webllm_build.verify.browser import launch_runtime
from webllm_build.verify.golden import (
    DEFAULTS,
    Case,
    Expected,
    Golden,
    compare,
    expected_from_completion,
    read_golden,
)
from webllm_build.verify.sitepage import SitePage, fetch_json, page_log, select_models, site_url

REPORT_FORMAT = "webllm_build-check-report"
REFERENCES = ("transformers",)


@dataclass(frozen=True)
class CheckOptions:
    target: str  # a site folder or its URL
    golden: Path = Path("webllm-golden.json")
    record: bool = False
    reference: str | None = None  # None: the browser itself; "transformers": CPU reference (record only)
    models: tuple[str, ...] = ()  # empty: every model of the site
    timeout_s: float | None = None  # per case and per load; None: the golden file's default
    browser: Path | None = None  # another Chromium executable
    runtime: str = "chromium"  # or "chromium-gpu", "deno" (browser.RUNTIMES)
    checkpoint: str | None = None  # the reference's checkpoint, if not the spec the build recorded


@dataclass
class CaseResult:
    name: str
    status: str  # "pass", "fail", "error" (the case could not run), "recorded"
    seconds: float
    problems: list[str] = field(default_factory=list)
    expected: dict[str, Any] | None = None
    actual: dict[str, Any] | None = None


@dataclass
class ModelResult:
    id: str
    spec: str | None = None
    quantization: str | None = None
    load_seconds: float | None = None
    error: str | None = None  # the model could not be loaded or checked at all
    cases: list[CaseResult] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.error is None and all(c.status in ("pass", "recorded") for c in self.cases)


@dataclass
class CheckReport:
    target: str
    golden: str
    mode: str  # "check" or "record"
    source: str  # where expectations come from: "browser" or "transformers"
    adapter: dict[str, Any] | None = None
    models: list[ModelResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.models) and all(m.passed for m in self.models)

    def to_json(self) -> dict[str, Any]:
        return {"format": REPORT_FORMAT, "version": 1, "passed": self.passed, **asdict(self)}

    def summary(self) -> str:
        lines = []
        for model in self.models:
            if model.error:
                lines.append(f"ERROR {model.id}: {model.error}")
            for case in model.cases:
                head = f"{case.status.upper():<8} {model.id} / {case.name} ({case.seconds:.1f} s)"
                lines.append(head if not case.problems else head + "\n  " + "\n  ".join(case.problems))
        cases = [c for m in self.models for c in m.cases]
        failed = sum(c.status in ("fail", "error") for c in cases)
        failed += sum(m.error is not None for m in self.models)
        verdict = "recorded" if self.mode == "record" else ("PASSED" if self.passed else "FAILED")
        lines.append(f"{verdict}: {len(cases)} case(s) on {len(self.models)} model(s), {failed} failing")
        return "\n".join(lines)


def _model_index(page_or_url: str, entry: dict[str, Any]) -> dict[str, Any]:
    return fetch_json(urljoin(urljoin(page_or_url, entry["base_url"]), "webllm-model.json"))


def _run_case(page: SitePage, case: Case, defaults: dict[str, Any], timeout_s: float) -> tuple[dict, float]:
    started = time.monotonic()
    page.reset()  # every case from an empty KV cache, as recorded
    completion = page.create(case.request(defaults), timeout_s)
    return completion, time.monotonic() - started


class _ModelTab:
    """A fresh tab with one model loaded; replaced by another when a case times out."""

    def __init__(self, browser: Any, url: str, model: ModelResult, timeout_s: float) -> None:
        self.browser, self.url, self.model, self.timeout_s = browser, url, model, timeout_s
        self.page: SitePage | None = None

    def open(self) -> SitePage | None:
        self.close()
        self.page = SitePage(self.browser, self.url, timeout_s=self.timeout_s)
        loaded = self.page.load(self.model.id, self.timeout_s)
        if self.model.load_seconds is None:
            self.model.load_seconds = loaded["seconds"]
        if loaded["error"]:
            self.model.error = f"loading failed: {loaded['error']['message']}"
            return None
        return self.page

    def close(self) -> None:
        if self.page is not None:
            captured = page_log(self.page.log)
            self.model.console += captured["console"]
            self.model.page_errors += captured["page_errors"]
            self.page.close()
            self.page = None


def _check_model(
    tab: _ModelTab, model: ModelResult, golden: Golden, options: CheckOptions, log: Callable[[str], None]
) -> None:
    defaults = golden.defaults
    entry = golden.models.get(model.id)
    if entry is None and not options.record:
        model.error = f"the golden file has no cases for this model; record them: --record --model {model.id}"
        return
    if entry is None:
        entry = golden.cases_for(model.id, model.spec, model.quantization)
    entry.spec, entry.quantization = model.spec, model.quantization
    log(f"Loading {model.id}...")
    page = tab.open()
    for case in entry.cases:
        if page is None:
            return
        log(f"  {model.id} / {case.name}")
        completion, seconds = _run_case(page, case, defaults, case.timeout_s or tab.timeout_s)
        result = CaseResult(case.name, "pass", seconds)
        model.cases.append(result)
        if completion["error"]:
            result.status = "error"
            result.problems = [f"{completion['error']['code'] or 'error'}: {completion['error']['message']}"]
            if completion["error"]["code"] == "timeout":
                # The engine may still be busy with it: the next case gets a fresh tab.
                page = tab.open()
            continue
        actual = expected_from_completion(completion)
        result.actual = actual.to_json()
        if options.record:
            case.expected = actual
            result.status = "recorded"
            continue
        if case.expected is None:
            result.status = "error"
            result.problems = ["the case has no expected output; record it with --record"]
            continue
        result.expected = case.expected.to_json()
        tolerance = case.logprob_tolerance
        if tolerance is None:
            tolerance = defaults["logprob_tolerance"]
        result.problems = compare(case.expected, actual, float(tolerance))
        if result.problems:
            result.status = "fail"


def _record_reference(url: str, golden: Golden, report: CheckReport, options: CheckOptions, log) -> None:
    """Expected outputs from transformers on the CPU; no browser involved."""
    from webllm_build.verify.reference import hf_greedy_logprobs, load_reference, require_transformers

    require_transformers()
    site = fetch_json(urljoin(url, "site.json"))
    for entry in select_models(site["models"], options.models):
        index = _model_index(url, entry)
        config = fetch_json(urljoin(urljoin(url, entry["base_url"]), index["files"]["config"]["path"]))
        spec = options.checkpoint or index.get("model")
        model = ModelResult(entry["id"], spec, index.get("quantization"))
        report.models.append(model)
        if not spec:
            model.error = "the model's index does not name its checkpoint; pass --checkpoint SPEC"
            continue
        log(f"Loading {spec} in transformers ({model.quantization})...")
        reference = load_reference(spec, str(model.quantization))
        cases = golden.cases_for(model.id, spec, model.quantization)
        cases.spec, cases.quantization = spec, model.quantization
        for case in cases.cases:
            if not case.greedy or case.structure:
                why = "greedy cases without response_format or tools" if case.greedy else "greedy cases"
                model.cases.append(
                    CaseResult(case.name, "error", 0.0, [f"transformers can only record {why}"])
                )
                continue
            started = time.monotonic()
            prompt = reference.prompt_ids(case.messages)
            max_tokens = case.max_tokens or golden.defaults["max_tokens"]
            budget = min(max_tokens, config["context_window"] - len(prompt))
            tokens, top = hf_greedy_logprobs(
                reference.model, prompt, budget, config["eos_token_ids"], int(golden.defaults["top_logprobs"])
            )
            eos = config["eos_token_ids"]
            case.expected = Expected(
                token_ids=tokens,
                text=reference.decode([t for t in tokens if t not in eos]),
                finish_reason="stop" if tokens and tokens[-1] in eos else "length",
                prompt_tokens=len(prompt),
                top_logprobs=top,
            )
            model.cases.append(
                CaseResult(case.name, "recorded", time.monotonic() - started, actual=case.expected.to_json())
            )


def run_check(options: CheckOptions, log: Callable[[str], None] = lambda _m: None) -> CheckReport:
    """Check (or with `record`, record) every selected model of the site against the golden file."""
    if options.reference is not None and options.reference not in REFERENCES:
        raise OptionsError(f"Unknown --reference {options.reference!r}; choose: {', '.join(REFERENCES)}.")
    if options.reference is not None and not options.record:
        raise OptionsError("--reference records expectations: use it together with --record.")
    started = time.monotonic()
    golden = (
        read_golden(options.golden)
        if options.golden.exists() or not options.record
        else Golden(defaults=dict(DEFAULTS))
    )
    if options.record:
        golden.source = options.reference or "browser"
    report = CheckReport(
        target=options.target,
        golden=str(options.golden),
        mode="record" if options.record else "check",
        source=options.reference or ("browser" if options.record else golden.source),
    )
    with site_url(options.target) as url:
        if options.reference == "transformers":
            _record_reference(url, golden, report, options, log)
        else:
            _check_in_browser(url, golden, report, options, log)
    report.seconds = time.monotonic() - started
    if options.record and report.passed:
        golden.write(options.golden)
        log(f"Wrote {options.golden}.")
    return report


def _check_in_browser(url: str, golden: Golden, report: CheckReport, options: CheckOptions, log) -> None:
    timeout_s = options.timeout_s or float(golden.defaults["timeout_s"])
    with launch_runtime(options.runtime, options.browser) as browser:
        page = SitePage(browser, url, timeout_s=timeout_s)
        report.adapter = page.adapter()
        entries = select_models(page.models, options.models)
        page.close()
        for entry in entries:
            index = _model_index(url, entry)
            model = ModelResult(entry["id"], index.get("model"), index.get("quantization"))
            report.models.append(model)
            # A fresh tab per model: one model's failure (or a hung GPU) cannot spill into the next.
            tab = _ModelTab(browser, url, model, timeout_s)
            try:
                _check_model(tab, model, golden, options, log)
            finally:
                tab.close()


def write_json_report(report: CheckReport, path: Path) -> None:
    atomic_write_text(path, json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")


_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    """Console output may hold control characters (ANSI colors) that XML 1.0 cannot carry."""
    return _XML_INVALID.sub("\ufffd", text)


def junit_xml(report: CheckReport) -> str:
    """JUnit XML, as CI systems read it: one testsuite per model, one testcase per golden case."""
    suites = ET.Element("testsuites", name="webllm_build check", time=f"{report.seconds:.3f}")
    for model in report.models:
        failures = sum(c.status == "fail" for c in model.cases)
        errors = sum(c.status == "error" for c in model.cases) + (model.error is not None)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=model.id,
            tests=str(len(model.cases) + (model.error is not None)),
            failures=str(failures),
            errors=str(errors),
            time=f"{sum(c.seconds for c in model.cases) + (model.load_seconds or 0):.3f}",
        )
        if model.error is not None:
            case = ET.SubElement(suite, "testcase", classname=model.id, name="load", time="0")
            ET.SubElement(case, "error", message=_xml_text(model.error)).text = _xml_text(model.error)
        for result in model.cases:
            case = ET.SubElement(
                suite, "testcase", classname=model.id, name=result.name, time=f"{result.seconds:.3f}"
            )
            if result.status in ("fail", "error"):
                kind = "failure" if result.status == "fail" else "error"
                failure = ET.SubElement(case, kind, message=_xml_text(result.problems[0].splitlines()[0]))
                failure.text = _xml_text("\n".join(result.problems))
        log = "\n".join(model.console + model.page_errors)
        if log:
            ET.SubElement(suite, "system-out").text = _xml_text(log)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_junit(report: CheckReport, path: Path) -> None:
    atomic_write_text(path, junit_xml(report))
