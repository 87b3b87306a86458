"""Errors a user can cause, one subclass per area of the tool.

Every message says what went wrong and what to do about it; the CLI prints it without a
traceback and exits non-zero. One mistake raises one class wherever it is made (a bad `--quant`
is an OptionsError from `compile` and from `site` alike).

    WebLLMBuildError
    ├── OptionsError        an option's value is invalid (unknown quantization or schedule class,
    │                       a size that must be positive, a malformed URL or list)
    ├── ToolchainError      emcc / chromium / node missing, the wasm runtime or engine not built
    ├── StorageError        the cache or an output directory cannot be written
    ├── LoaderError         a model spec cannot be resolved, or a checkpoint is unreadable,
    │                       incomplete or unsupported (names the file and the field)
    ├── CompileError        a Relax module fails to compile or link
    ├── ArtifactError       a compiled model directory is missing, unreadable or not one
    │                       (names the file and what to do)
    ├── SiteError           a site cannot be written where asked (the output folder, model ids)
    ├── ServeError          a folder cannot be served (not a directory, the port is taken)
    ├── BrowserError        headless Chromium or Deno cannot start, has no WebGPU, or a page fails
    └── VerifyError         check / bench / the references cannot judge a build (no golden
                            file, a mismatch, a model the site does not have)
"""

from __future__ import annotations


class WebLLMBuildError(Exception):
    """Base of every error webllm_build raises on purpose."""


class OptionsError(WebLLMBuildError):
    """An option's value cannot be used."""


class ToolchainError(WebLLMBuildError):
    """A build tool is missing or broken."""


class StorageError(WebLLMBuildError):
    """A directory the tool writes (its cache, an --out) cannot be written."""


class LoaderError(WebLLMBuildError):
    """A model spec or checkpoint cannot be used."""


class CompileError(WebLLMBuildError):
    """Compiling or linking a model library failed."""


class ArtifactError(WebLLMBuildError):
    """A compiled model directory cannot be written, read or trusted."""


class SiteError(WebLLMBuildError):
    """A site cannot be written where or as asked."""


class ServeError(WebLLMBuildError):
    """A folder cannot be served."""


class BrowserError(WebLLMBuildError):
    """Headless Chromium, Deno or their WebGPU adapter is unusable."""


class VerifyError(WebLLMBuildError):
    """A check, benchmark or reference run cannot judge a build."""
