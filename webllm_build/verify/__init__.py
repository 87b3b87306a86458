"""Verification tools: run a built site or model directory and judge it.

Headless Chromium and Deno sessions (`browser`, `deno`, `sitepage`, `testing`), the CPU runner and
the transformers reference (`runner`, `reference`), golden files and `check`, `bench` with its
dispatch `profiling`, and the environment reports (`doctor`, `selfcheck`). Nothing in the build
pipeline imports these; they import the pipeline's outputs.
"""
