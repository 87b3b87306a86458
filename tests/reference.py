"""The independent reference for tests: transformers on the CPU (lives in webllm_build.verify.reference)."""

from __future__ import annotations

from webllm_build.verify.reference import hf_greedy, hf_greedy_logprobs, hf_last_logits, requantize_

__all__ = ["hf_greedy", "hf_greedy_logprobs", "hf_last_logits", "requantize_"]
