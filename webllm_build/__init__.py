"""webllm_build: compile language models with Apache TVM into a static WebGPU chat site."""

from __future__ import annotations

from webllm_build.errors import WebLLMBuildError

__all__ = ["WebLLMBuildError"]
__version__ = "0.1.0"
