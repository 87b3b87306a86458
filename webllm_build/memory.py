"""How much GPU memory a compiled model needs, estimated at build time for the page to check
against the visitor's adapter before downloading anything (web/src/page/memory.ts).

Three parts, each an upper bound of what the engine allocates (measured against tvmjs's own
counters in tests/test_memory.py):
- the weights: every parameter tensor as the library reads it;
- the KV cache for the whole context window: one buffer of pages per layer, as TVM's paged KV
  cache allocates it (keys and values, `page_size` positions a page);
- the workspace: activations of one prefill chunk, where the memory planner keeps at most a few
  of a layer's tensors alive at once; the logits and sampling buffers over the vocabulary; the
  KV cache's attention temporaries (a chunk's output and its merge buffer); and a margin of 5% of
  the weights plus 1 MiB for the runtime's own small buffers, which tests/test_memory.py found
  to be 0.5 MiB (a 2-layer toy) to 4% of the weights (SmolLM2, Qwen3).

Not counted: the `cpu-emulated` libraries (compiler/weight_layout.py) relay 4-bit weights on the
GPU once at load, and the old and new copies coexist for a moment: that class's load peaks above
the steady state (Llama-3.2-1B q4f32_1: by 441 MB over 773 MB of weights; Qwen3-0.6B: 86 MB).
Its adapters are CPU emulations (SwiftShader), whose memory is the machine's.

The largest single buffer matters on its own: WebGPU refuses any buffer over the adapter's
`maxBufferSize`, or one bound to a shader over `maxStorageBufferBindingSize`, however much memory
the GPU has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from webllm_build.models import ModelConfig

# Tensors of the vocabulary's length that decoding keeps: logits, probabilities after softmax,
# the masked logits of constrained decoding, and one spare for the sampling kernels.
VOCAB_BUFFERS = 4
# The runtime's small buffers (page tables, readback, uniforms), measured: see above.
MARGIN_FRACTION = 0.05
MARGIN_BYTES = 1 << 20


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    workspace: int
    largest_buffer: int
    largest_buffer_name: str  # a parameter's name, or "KV cache (one layer)"
    context_window: int  # the KV cache's length in tokens

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.workspace

    def to_json(self) -> dict[str, Any]:
        return {
            "weights_bytes": self.weights,
            "kv_cache_bytes": self.kv_cache,
            "workspace_bytes": self.workspace,
            "total_bytes": self.total,
            "largest_buffer_bytes": self.largest_buffer,
            "largest_buffer": self.largest_buffer_name,
            "context_window": self.context_window,
        }


def kv_cache_layer_bytes(config: ModelConfig, page_size: int, dtype: str) -> int:
    """One layer's buffer of pages for the whole context window: (pages, 2, kv heads, page, dim)."""
    pages = math.ceil(config.context_window / page_size)
    return pages * 2 * config.num_kv_heads * page_size * config.head_dim * np.dtype(dtype).itemsize


def estimate_memory(
    config: ModelConfig,
    params: Iterable[tuple[str, tuple[int, ...], str]],
    page_size: int,
    dtype: str,
) -> MemoryEstimate:
    """The estimate for a model whose library reads `params` (name, shape, dtype) and whose
    activations and KV cache are `dtype`."""
    sizes = {name: math.prod(shape) * np.dtype(param_dtype).itemsize for name, shape, param_dtype in params}
    layer = kv_cache_layer_bytes(config, page_size, dtype)
    # Per token of the chunk: the residual stream and its normed copies, the fused q/k/v
    # projection and its rotated or normed copies, the attention output, and the MLP's fused
    # gate-up projection with its activation.
    attention_width = (config.num_heads + 2 * config.num_kv_heads) * config.head_dim
    width = 3 * config.hidden_size + 2 * attention_width + 4 * config.intermediate_size
    activations = config.prefill_chunk * width * np.dtype(dtype).itemsize
    # f32 whatever the model's dtype, as TVM's paged KV cache allocates them.
    attention = 2 * config.prefill_chunk * config.num_heads * config.head_dim * 4
    weights = sum(sizes.values())
    margin = int(MARGIN_FRACTION * weights) + MARGIN_BYTES
    name, biggest = max(sizes.items(), key=lambda item: item[1], default=("", 0))
    if layer > biggest:
        name, biggest = "KV cache (one layer)", layer
    return MemoryEstimate(
        weights=weights,
        kv_cache=layer * config.num_layers,
        workspace=activations + attention + VOCAB_BUFFERS * config.vocab_size * 4 + margin,
        largest_buffer=biggest,
        largest_buffer_name=name,
        context_window=config.context_window,
    )
