"""The site stage: model specs in, a static chat site out.

    <out>/index.html               the chat page (fixed name, revalidate)
    <out>/app.js                   its script, a plain ES module (fixed name, revalidate)
    <out>/site.json                the models on offer and the engine's name (fixed name, revalidate)
    <out>/webllm_build-<hash>.js   the engine bundle, named by its content (immutable)
    <out>/webllm_build.js          the engine for other pages to import: re-exports it (revalidate)
    <out>/webllm_build*.d.ts       the engine's TypeScript declarations, beside each
    <out>/sw.js                    the service worker: the site offline after one visit (offline.py)
    <out>/models/<slug>/           one compiled model directory each (see build.py)
    <out>/_headers, <out>/README.md  caching rules for Netlify / Cloudflare Pages, and for the rest

Every URL the page uses is relative, so the site works from any sub-path. The whole folder is
written atomically; a model directory the previous build left in the same folder is carried
over instead of rebuilt when it is intact and its recorded plan key equals this build's (plan.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from webllm_build.artifacts import (
    content_hashed_copy,
    read_model_index,
    read_weights_manifest,
    verify_directory,
)
from webllm_build.atomic import atomic_directory, sweep_stale_temps
from webllm_build.build import build_model
from webllm_build.compiler.schedules import DEFAULT_SCHEDULES
from webllm_build.errors import ArtifactError, OptionsError, SiteError
from webllm_build.offline import SERVICE_WORKER, write_service_worker
from webllm_build.paths import TEMPLATES_DIR, WEB_BUNDLE, WEB_PAGE_BUNDLE, WEB_TYPES, require_web_bundles
from webllm_build.plan import DEFAULT_PREFILL_CHUNK, BuildOptions, ModelPlan, plan_model
from webllm_build.presets import DEFAULT_PRESET, PRESETS
from webllm_build.quantize import get_quantization

SITE_FORMAT = 1
SITE_FILE = "site.json"
MODELS_DIR = "models"
ENGINE_STEM = "webllm_build"
DEFAULT_TITLE = "Private chat in your browser"
# Files the page templates render, each written under the same name into the site.
PAGE_TEMPLATES = ("index.html", "app.js", "_headers", "README.md")


@dataclass(frozen=True)
class SiteOptions:
    models: Sequence[str] = ()  # empty: the default preset; the first one is the page's default
    # None: each preset's choice, else q4f32_1. A comma list ("q4f16_1,q4f32_1") builds each model
    # once per scheme; the page then picks one the visitor's GPU can run.
    quantization: str | None = None
    out: Path = Path("dist")
    base_url: str | None = None  # another origin serving models/ (a CDN); None: beside the page
    title: str | None = None  # None: DEFAULT_TITLE
    context_window: int | None = None
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK
    random_weights: bool = False  # every model with seeded random weights (see plan.BuildOptions)
    # Kernel schedule classes to build per model (compiler/schedules.py): the page loads the
    # library that suits the visitor's adapter.
    schedules: tuple[str, ...] = DEFAULT_SCHEDULES
    # A service worker precaches the page, engine, libraries and configs (offline.py), so the chat
    # opens and answers with no network after one visit.
    offline: bool = True


@dataclass(frozen=True)
class SiteModel:
    """One entry of site.json, plus how this build got it."""

    id: str  # the slug: its directory under models/
    title: str
    spec: str
    base_url: str
    quantization: str
    required_features: list[str]
    download_bytes: int
    default: bool
    reused: bool  # carried over from the previous build instead of compiled
    random_weights: bool = False
    # The GPU memory it needs (memory.py), which the page checks before downloading; None for
    # a model directory built before the estimate existed.
    memory: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            # Builds of one model share a family: the page offers an f32 one when f16 cannot run.
            "family": _base_name(self.spec),
            "base_url": self.base_url,
            "quantization": self.quantization,
            "required_features": self.required_features,
            "download_bytes": self.download_bytes,
            "default": self.default,
            "random_weights": self.random_weights,
            "memory": self.memory,
        }


@dataclass(frozen=True)
class SiteResult:
    directory: Path
    engine: str  # the engine bundle's hashed file name
    models: list[SiteModel]


@dataclass(frozen=True)
class _Entry:
    """One model of the site: its build plan, and its id and title on the page."""

    spec: str
    slug: str
    title: str
    plan: ModelPlan


def _base_name(spec: str) -> str:
    """The preset name, or the sanitized last component of a path or repo id."""
    if spec in PRESETS:
        return spec
    last = spec.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].removesuffix(".gguf")
    return re.sub(r"[^a-z0-9._-]+", "-", last.lower()).strip("-.") or "model"


def model_slug(spec: str, quantization: str) -> str:
    """The model's directory name under models/ and its id in site.json."""
    return f"{_base_name(spec)}-{quantization}"


def _quantizations(options: SiteOptions) -> list[str | None]:
    if options.quantization is None:
        return [None]
    names = [name.strip() for name in options.quantization.split(",") if name.strip()]
    for name in names:
        get_quantization(name)  # fail before resolving (maybe downloading) models
    if not names or len(set(names)) != len(names):
        raise OptionsError(
            f"--quant {options.quantization!r} must name distinct schemes, e.g. q4f16_1,q4f32_1."
        )
    return list(names)


def _entry(spec: str, quantization: str | None, options: SiteOptions) -> _Entry:
    plan = plan_model(
        BuildOptions(
            model=spec,
            quantization=quantization,
            context_window=options.context_window,
            prefill_chunk=options.prefill_chunk,
            target="webgpu",
            random_weights=options.random_weights,
            schedules=options.schedules,
        )
    )
    q = plan.quantization
    preset = PRESETS.get(plan.checkpoint.source.preset or "")
    # A preset's description starts with the model's proper name ("SmolLM2-135M-Instruct, a ...").
    name = re.split(r",| \(", preset.description)[0] if preset else _base_name(spec)
    # The picker shows the title: a random-weights build says so, and gets an id of its own.
    random = "-random" if options.random_weights else ""
    return _Entry(
        spec=spec,
        slug=model_slug(spec, q.name) + random,
        title=f"{name} ({q.name}{', random weights' if random else ''})",
        plan=plan,
    )


def _check_base_url(base_url: str | None) -> str | None:
    if base_url is None:
        return None
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", base_url):
        raise OptionsError(
            f"--base-url {base_url!r} is not an absolute http(s) URL. Pass the address the models/ "
            f"folder will be uploaded under, such as https://cdn.example.com/chat"
        )
    return base_url.rstrip("/")


def _check_out(out: Path) -> None:
    # The build replaces `out` wholesale, so it must never be a folder of the user's own files.
    if out.exists() and not out.is_dir():
        raise SiteError(f"{out} exists and is not a directory. Pick another --out.")
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_FILE).is_file():
        raise SiteError(
            f"{out} is not empty and holds no {SITE_FILE}, so it is not a site this tool built; "
            f"building would replace its contents. Pick a new or empty --out."
        )


def _reusable(directory: Path, plan: ModelPlan) -> bool:
    """Whether a previous build's model directory is intact and was built from the same plan."""
    if not directory.is_dir():
        return False
    try:
        recorded = read_model_index(directory).extra.get("plan_key")
        return recorded == plan.key and not verify_directory(directory)
    except (ArtifactError, OSError, ValueError):
        return False


def _link_or_copy(src: str, dst: str) -> None:
    # Hard links make carrying a model over free; every file in it is replaced, never rewritten.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _site_model(
    directory: Path, entry: _Entry, base_url: str | None, default: bool, reused: bool
) -> SiteModel:
    index = read_model_index(directory)
    manifest = read_weights_manifest(directory / index.files["tensor_cache"].path)
    relative = f"{MODELS_DIR}/{entry.slug}/"
    return SiteModel(
        id=entry.slug,
        title=entry.title,
        spec=entry.spec,
        base_url=f"{base_url}/{relative}" if base_url else relative,
        quantization=str(index.extra.get("quantization")),
        required_features=list(index.extra.get("required_features", [])),
        download_bytes=manifest.param_bytes + index.files["library"].nbytes + index.files["tokenizer"].nbytes,
        default=default,
        reused=reused,
        random_weights=bool(index.extra.get("random_weights")),
        memory=index.extra.get("memory"),
    )


def build_site(options: SiteOptions, log: Callable[[str], None] = lambda _m: None) -> SiteResult:
    """Compile (or carry over) every model and write the site into `options.out` atomically."""
    require_web_bundles()
    base_url = _check_base_url(options.base_url)
    specs = list(options.models) or [DEFAULT_PRESET]
    entries = [_entry(spec, q, options) for spec in specs for q in _quantizations(options)]
    slugs = [entry.slug for entry in entries]
    if len(set(slugs)) != len(slugs):
        duplicate = next(slug for slug in slugs if slugs.count(slug) > 1)
        raise SiteError(
            f"Two --model arguments give the same model id {duplicate!r}. Drop the repeat, or "
            f"rename one of the directories."
        )
    title = options.title or DEFAULT_TITLE
    out = options.out
    _check_out(out)
    sweep_stale_temps(out.parent)

    models: list[SiteModel] = []
    with atomic_directory(out) as tmp:
        (tmp / MODELS_DIR).mkdir()
        for i, entry in enumerate(entries):
            previous = out / MODELS_DIR / entry.slug
            target = tmp / MODELS_DIR / entry.slug
            reused = _reusable(previous, entry.plan)
            if reused:
                log(f"Reusing {previous} (intact, built from the same plan).")
                shutil.copytree(previous, target, copy_function=_link_or_copy)
            else:
                log(f"Building {entry.spec} into {MODELS_DIR}/{entry.slug}/...")
                build_model(entry.plan, target, log)
            models.append(_site_model(target, entry, base_url, default=i == 0, reused=reused))

        engine = content_hashed_copy(WEB_BUNDLE, tmp, ENGINE_STEM)
        # The engine as a library: its declarations beside it (named after the code they describe,
        # as TypeScript pairs them), and a fixed-name entry, revalidated, that re-exports this
        # build's, so <site>/webllm_build.js stays importable across deploys.
        for name in (engine.removesuffix(".js") + ".d.ts", f"{ENGINE_STEM}.d.ts"):
            shutil.copyfile(WEB_TYPES, tmp / name)
        (tmp / f"{ENGINE_STEM}.js").write_text(f'export * from "./{engine}";\n', encoding="utf-8")
        page_engine = content_hashed_copy(WEB_PAGE_BUNDLE, tmp, f"{ENGINE_STEM}-page")
        site = {
            "format": SITE_FORMAT,
            "title": title,
            "engine": engine,
            "models": [model.to_json() for model in models],
        }
        (tmp / SITE_FILE).write_text(json.dumps(site, indent=2) + "\n", encoding="utf-8")
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            # HTML-escape what the page and its script render; README and _headers are plain text.
            autoescape=jinja2.select_autoescape(("html", "js")),
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
        )
        context = {
            "title": title,
            "engine": engine,
            "page_engine": page_engine,
            "models": models,
            "base_url": base_url,
            "service_worker": SERVICE_WORKER if options.offline else None,
        }
        for name in PAGE_TEMPLATES:
            (tmp / name).write_text(env.get_template(name).render(context), encoding="utf-8")
        models_url = {f"{MODELS_DIR}/{model.id}": model.base_url for model in models}
        write_service_worker(tmp, models_url if options.offline else None)
    log(f"Wrote the site for {len(models)} model(s) into {out}.")
    return SiteResult(out, engine, models)
