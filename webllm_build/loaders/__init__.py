"""The checkpoint-loading stage: a model spec in, a lazily read checkpoint with HF names out.

source = resolve_model("phi")          # preset, hub repo id, HF directory or .gguf file
checkpoint = load_checkpoint(source)   # config, tensors, tokenizer, chat template, eos ids
checkpoint = load_without_weights("phi")   # for random weights: config (+ tokenizer), no tensors
"""

from __future__ import annotations

from webllm_build.loaders.checkpoint import Checkpoint, ExactGroups, ModelSource, TensorSource
from webllm_build.loaders.gguf_file import load_gguf
from webllm_build.loaders.hf_dir import load_hf_dir
from webllm_build.loaders.resolve import resolve_model
from webllm_build.loaders.stand_in import load_without_weights

__all__ = [
    "Checkpoint",
    "ExactGroups",
    "ModelSource",
    "TensorSource",
    "load_checkpoint",
    "load_without_weights",
    "resolve_model",
]


def load_checkpoint(source: ModelSource) -> Checkpoint:
    """Config, tokenizer and lazily read tensors of a resolved model; raises LoaderError."""
    return load_gguf(source) if source.kind == "gguf" else load_hf_dir(source)
