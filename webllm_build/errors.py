"""Errors a user can cause, one subclass per pipeline stage.

Every message says what went wrong and what to do about it; the CLI prints it without a
traceback and exits non-zero.

    WebLLMBuildError
    ├── ToolchainError      emcc / chromium / node missing, the wasm runtime cannot be built
    ├── CacheError          the cache directory is unwritable
    ├── LoaderError         a model spec cannot be resolved, or a checkpoint is unreadable,
    │                       incomplete or unsupported (names the file and the field)
    ├── CompileError        a Relax module fails to compile or link
    ├── ArtifactError       a compiled model directory is missing, unreadable or not one
    │                       (names the file and what to do)
    └── BrowserError        headless Chromium cannot start, has no WebGPU, or a page fails
"""

from __future__ import annotations


class WebLLMBuildError(Exception):
    """Base of every error webllm_build raises on purpose."""


class ToolchainError(WebLLMBuildError):
    """A build tool is missing or broken."""


class CacheError(WebLLMBuildError):
    """The cache directory cannot be used."""


class LoaderError(WebLLMBuildError):
    """A model spec or checkpoint cannot be used."""


class CompileError(WebLLMBuildError):
    """Compiling or linking a model library failed."""


class ArtifactError(WebLLMBuildError):
    """A compiled model directory cannot be written, read or trusted."""


class BrowserError(WebLLMBuildError):
    """Headless Chromium or its WebGPU adapter is unusable."""
