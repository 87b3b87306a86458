"""Run a compiled model directory on the CPU from Python: chunked prefill, decode, greedy.

This is the same protocol the browser engine follows (create the paged KV cache, add a
sequence, begin/end forward around each call), on the CPU build of the same module, so tests
can check a model quickly and `check --reference` has a fast path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.contrib import tvmjs
from tvm.runtime import ShapeTuple

from webllm_build.artifacts import read_model_index, read_weights_manifest
from webllm_build.errors import ArtifactError, VerifyError
from webllm_build.random_weights import generate

SEQUENCE_ID = 0


class CpuModel:
    """One conversation's state on a CPU-compiled model directory."""

    def __init__(self, directory: Path) -> None:
        index = read_model_index(directory)
        self.config = json.loads((directory / index.files["config"].path).read_text())
        if not self.config["library"].endswith(".so"):
            raise ArtifactError(f"{directory} holds a WebGPU build; compile with target cpu.")
        self.device = tvm.cpu()
        self.vm = relax.VirtualMachine(
            tvm.runtime.load_module(str(directory / self.config["library"])), self.device
        )
        manifest = read_weights_manifest(directory / index.files["tensor_cache"].path)
        if manifest.random is not None:
            # The same values the browser generates (random_weights.py).
            random = manifest.random
            tensors = {
                rec.name: tvm.runtime.tensor(generate(random, rec), self.device) for rec in random.records
            }
        else:
            tensors, _ = tvmjs.load_tensor_cache(str(directory), self.device)
        # The same loading protocol as the browser's (identity on a CPU build).
        self.params = self.vm["prepare_params"]([tensors[name] for name in self.config["param_names"]])
        self._begin = tvm.get_global_func("vm.builtin.kv_state_begin_forward")
        self._end = tvm.get_global_func("vm.builtin.kv_state_end_forward")
        self.reset()

    def reset(self) -> None:
        c = self.config
        self.cache = self.vm["create_paged_kv_cache"](
            ShapeTuple([1]),
            ShapeTuple([c["context_window"]]),
            ShapeTuple([c["prefill_chunk"]]),
            ShapeTuple([c["page_size"]]),
            ShapeTuple([0]),
        )
        tvm.get_global_func("vm.builtin.kv_state_add_sequence")(self.cache, SEQUENCE_ID)
        self.length = 0

    def _forward(self, function: str, ids: list[int]) -> np.ndarray:
        if self.length + len(ids) > self.config["context_window"]:
            raise VerifyError(
                f"{self.length + len(ids)} tokens exceed the context window of "
                f"{self.config['context_window']}."
            )
        embed = self.vm["embed"](tvm.runtime.tensor(np.asarray(ids, dtype="int32")), self.params)
        embed = embed.numpy().reshape(1, len(ids), -1)
        self._begin(self.cache, ShapeTuple([SEQUENCE_ID]), ShapeTuple([len(ids)]))
        logits, self.cache = self.vm[function](tvm.runtime.tensor(embed), self.cache, self.params)
        self._end(self.cache)
        self.length += len(ids)
        return logits.numpy().reshape(-1)

    def prefill(self, ids: list[int]) -> np.ndarray:
        """Feed `ids` in prefill-chunk-sized pieces; returns the last position's logits."""
        chunk = self.config["prefill_chunk"]
        for start in range(0, len(ids), chunk):
            logits = self._forward("prefill", ids[start : start + chunk])
        return logits

    def decode(self, token: int) -> np.ndarray:
        return self._forward("decode", [token])

    def greedy(self, ids: list[int], steps: int) -> list[int]:
        logits = self.prefill(ids)
        out: list[int] = []
        for _ in range(steps):
            out.append(int(np.argmax(logits)))
            if out[-1] in self.config["eos_token_ids"]:
                break
            logits = self.decode(out[-1])
        return out
