"""Tiny random-weight Hugging Face checkpoints on disk, made by transformers itself.

Each factory writes a directory that transformers' `from_pretrained` loads (config.json,
safetensors or .bin weights, generation_config.json, tokenizer.json, tokenizer_config.json) and
returns its path; keyword overrides go straight into the config class:

    make_llama(tmp_path / "llama")                                 # GQA, 2 layers, hidden 64
    make_llama(tmp_path / "l3", rope_scaling=LLAMA3_ROPE_SCALING)  # Llama 3.1-style rope
    make_phi(tmp_path / "phi")                                     # phi-1.5/phi-2, partial rotary 0.5
    make_phi3(tmp_path / "phi3", **PHI3_LONGROPE)                  # Phi-3.5-style longrope
    make_qwen2(tmp_path / "qwen2")                                 # q/k/v biases, tied, theta 1e6
    make_qwen3(tmp_path / "qwen3")                                 # q/k norm, head_dim 32 != 64/4
    make_smollm3(tmp_path / "smollm3")                             # no rotary in layer 3 of 4
    make_mistral(tmp_path / "mistral")                             # a Llama by another name
    make_gemma3(tmp_path / "gemma3")                               # local + global layers, window 16
    make_hostile_llama(tmp_path / "h", ["<b>", "</b>"])          # greedy reply: exactly those tokens

Weights are seeded, so the same call writes the same values.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

# Every tiny model shares one trained byte-level BPE tokenizer; VOCAB_SIZE covers all its ids.
VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ENDOFTEXT_ID, IM_START_ID, IM_END_ID = range(3)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen2.5's template without its tool branches: ChatML with a default system message.
QWEN2_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
    "<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

_SMALL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 256,
    "vocab_size": VOCAB_SIZE,
    "bos_token_id": ENDOFTEXT_ID,
    "eos_token_id": IM_END_ID,
    "pad_token_id": None,
    "tie_word_embeddings": False,
}

LLAMA3_ROPE_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}

# Phi-3.5-mini's rope: longrope with one factor per rotary frequency. With head_dim 16 and
# partial_rotary_factor 0.5 the rotary width is 8, so 4 frequencies.
PHI3_LONGROPE = {
    "partial_rotary_factor": 0.5,
    "original_max_position_embeddings": 64,
    "rope_scaling": {
        "type": "longrope",
        "short_factor": [1.0, 1.1, 1.25, 1.5],
        "long_factor": [1.0, 2.0, 4.0, 8.0],
    },
}

_CORPUS = """\
The quick brown fox jumps over the lazy dog. Hello, world! How are you today?
def add(a, b):
    return a + b  # numbers 0123456789 and 3.14159
for i in range(10): print(i * i)
Café naïve résumé 日本語 中文 😀 ✨ — “quotes” and ‘apostrophes’ don't won't it's.
<html><body class="main">Tabs\tand\nnewlines\r\n and    runs of spaces.</body></html>
"""


@cache
def tokenizer_json() -> str:
    """A byte-level BPE (GPT-2 / SmolLM2 style) with ChatML special tokens, trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 20, trainer=trainer)
    return tokenizer.to_str()


def write_tokenizer(
    directory: Path, *, chat_template_file: bool = False, chat_template: str = CHATML_TEMPLATE
) -> None:
    """tokenizer.json + tokenizer_config.json; the template goes to chat_template.jinja if asked."""
    (directory / "tokenizer.json").write_text(tokenizer_json(), encoding="utf-8")
    tokenizer_config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|im_end|>",
        "model_max_length": 256,
    }
    if chat_template_file:
        (directory / "chat_template.jinja").write_text(chat_template, encoding="utf-8")
    else:
        tokenizer_config["chat_template"] = chat_template
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2), encoding="utf-8")


def _save(
    directory: Path,
    model_class: Any,
    config_class: Any,
    defaults: dict[str, Any],
    overrides: dict[str, Any],
    *,
    seed: int,
    dtype: str,
    max_shard_size: str | None,
    safe_serialization: bool,
    chat_template_file: bool = False,
    chat_template: str = CHATML_TEMPLATE,
    random_biases: bool = False,
    random_norms: bool = False,
) -> Path:
    import torch
    from transformers import GenerationConfig

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Deep copy: transformers writes into the rope dicts it is given (it adds rope_theta).
    config = config_class(**copy.deepcopy(_SMALL | defaults | overrides))
    torch.manual_seed(seed)
    model = model_class(config).to(getattr(torch, dtype)).eval()
    if random_biases:
        # transformers zeroes biases at init, which would leave a model's bias path untested.
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(".bias"):
                    param.normal_(0.0, config.initializer_range)
    if random_norms:
        # Norm gains start at 1 (Gemma's offsets at 0), which would leave a wrong or missing gain
        # (q/k norms) unseen.
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("norm.weight"):
                    param.normal_(float(param.mean()), 0.2)
    if safe_serialization:
        model.save_pretrained(directory, **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    else:
        # transformers >= 5 always writes safetensors; .bin checkpoints (older hub repos) are written
        # the way transformers 4 did: torch.save of the state dict, sharded with an index.
        model.config.architectures = [model_class.__name__]  # as model.save_pretrained records it
        model.config.save_pretrained(directory)
        _save_torch_bin(model, directory, _bytes(max_shard_size) if max_shard_size else None)
    # Chat models stop at end-of-turn and end-of-text: a list, as in Phi-3's generation config.
    GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=[IM_END_ID, ENDOFTEXT_ID]
    ).save_pretrained(directory)
    write_tokenizer(directory, chat_template_file=chat_template_file, chat_template=chat_template)
    return directory


def _bytes(size: str) -> int:
    units = {"GB": 10**9, "MB": 10**6, "KB": 10**3, "B": 1}
    unit = next(u for u in units if size.upper().endswith(u))
    return int(float(size[: -len(unit)]) * units[unit])


def _save_torch_bin(model: Any, directory: Path, max_shard_bytes: int | None) -> None:
    import torch

    state = {
        name: tensor.contiguous()
        for name, tensor in model.state_dict().items()
        if not (name == "lm_head.weight" and model.config.tie_word_embeddings)
    }
    shards: list[dict[str, Any]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if max_shard_bytes is not None and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    if len(shards) == 1:
        torch.save(shards[0], directory / "pytorch_model.bin")
        return
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        file_name = f"pytorch_model-{i:05d}-of-{len(shards):05d}.bin"
        torch.save(shard, directory / file_name)
        weight_map.update(dict.fromkeys(shard, file_name))
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
        "weight_map": weight_map,
    }
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def _factory(arch: str, defaults: dict[str, Any], doc: str, config_class: str = "", **save_options: Any):
    """A `make_<arch>(directory, *, seed, dtype, max_shard_size, safe_serialization, **config)`
    that saves transformers' `<arch>ForCausalLM` with `defaults` under the overrides (its config
    class `<arch>Config` unless named)."""

    def make(
        directory: Path,
        *,
        seed: int = 0,
        dtype: str = "float32",
        max_shard_size: str | None = None,
        safe_serialization: bool = True,
        **config_overrides: Any,
    ) -> Path:
        import transformers

        return _save(
            directory,
            getattr(transformers, f"{arch}ForCausalLM"),
            getattr(transformers, config_class or f"{arch}Config"),
            defaults,
            config_overrides,
            seed=seed,
            dtype=dtype,
            max_shard_size=max_shard_size,
            safe_serialization=safe_serialization,
            **save_options,
        )

    make.__doc__ = doc
    return make


make_llama = _factory(
    "Llama",
    {"num_key_value_heads": 2, "rope_theta": 10000.0, "rms_norm_eps": 1e-5},
    "A LlamaForCausalLM with grouped-query attention (4 query heads, 2 kv heads).",
)


def make_hostile_llama(directory: Path, tokens: list[str]) -> Path:
    """A tiny Llama whose greedy reply is `tokens` then end-of-turn, whatever it is asked.

    Every layer's output projections are zero, so the last hidden state is the current token's
    embedding; the lm_head row of token B is the direction of token A's embedding exactly when B
    should follow A. Random 64-d embeddings are near-orthogonal, so that row wins by a wide margin.
    """
    import torch
    from safetensors.torch import load_file, save_file
    from tokenizers import Tokenizer

    make_llama(directory, seed=11, vocab_size=520, num_hidden_layers=1)
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.add_tokens(tokens)
    write_tokenizer(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    hostile_ids = [tokenizer.token_to_id(t) for t in tokens]
    # The generation prompt ends with "assistant\n"; its last token starts the chain.
    last = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False).ids[-1]
    chain = [last, *hostile_ids, IM_END_ID]

    weights = load_file(str(directory / "model.safetensors"))
    for name in weights:
        if name.endswith(("o_proj.weight", "down_proj.weight")):
            weights[name].zero_()
    embed = weights["model.embed_tokens.weight"]
    head = torch.zeros_like(weights["lm_head.weight"])
    for current, following in zip(chain, chain[1:], strict=False):
        head[following] = 4 * embed[current] / embed[current].norm()
    weights["lm_head.weight"] = head
    weights["model.norm.weight"] = torch.ones_like(weights["model.norm.weight"])
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    return directory


make_phi = _factory(
    "Phi",
    {"num_key_value_heads": 4, "partial_rotary_factor": 0.5, "rope_theta": 10000.0, "hidden_act": "gelu_new"},
    "A PhiForCausalLM (phi-1.5 / phi-2 layout: parallel block, LayerNorm, biases, partial rotary).",
)

make_phi3 = _factory(
    "Phi3",
    {"num_key_value_heads": 2, "rope_theta": 10000.0, "original_max_position_embeddings": 256},
    "A Phi3ForCausalLM (fused qkv_proj and gate_up_proj); its chat template is a .jinja file.",
    chat_template_file=True,
)

make_qwen2 = _factory(
    "Qwen2",
    {"num_key_value_heads": 2, "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": True},
    "A Qwen2ForCausalLM as Qwen2.5-0.5B/1.5B are: GQA, q/k/v biases, tied embeddings, theta 1e6.",
    chat_template=QWEN2_TEMPLATE,
    random_biases=True,
)

make_qwen3 = _factory(
    "Qwen3",
    {
        "num_key_value_heads": 2,
        "head_dim": 32,
        "rope_theta": 1e6,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
    "A Qwen3ForCausalLM as Qwen3-0.6B is: GQA, an RMSNorm per query and key head, tied embeddings, "
    "and heads wider than hidden / heads (here 4 x 32 over a hidden size of 64).",
    chat_template=QWEN2_TEMPLATE,
    random_norms=True,
)

make_smollm3 = _factory(
    "SmolLM3",
    {
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "rope_theta": 5e6,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
    "A SmolLM3ForCausalLM: a Llama (GQA, tied) whose every fourth layer skips rotary, so four "
    "layers to have one such.",
)

make_mistral = _factory(
    "Mistral",
    {"num_key_value_heads": 2, "rope_theta": 1e6, "rms_norm_eps": 1e-5, "sliding_window": None},
    "A MistralForCausalLM as v0.2 / v0.3 are (GQA, no sliding window, untied).",
)

# Gemma 3 with both layer kinds, and a window short enough for a test prompt to outrun it.
GEMMA3_WINDOW = 16

make_gemma3 = _factory(
    "Gemma3",
    {
        "num_hidden_layers": 4,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "query_pre_attn_scalar": 24,
        "rope_theta": 1e6,
        "rope_local_base_freq": 1e4,
        "sliding_window": GEMMA3_WINDOW,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
        "attn_implementation": "eager",
    },
    "A Gemma3ForCausalLM (text) as Gemma-3-1B is: one kv head, q/k norms, (1 + w) norms four a "
    "block, GeGLU, scaled tied embeddings; layers 0, 1 and 3 local (window "
    f"{GEMMA3_WINDOW}, theta 1e4), layer 2 global (theta 1e6); an attention scale of 24 ** -0.5 "
    "that is not head_dim's.",
    config_class="Gemma3TextConfig",
    random_norms=True,
)

# --- GGUF, as llama.cpp's convert_hf_to_gguf.py writes it ----------------------------------------

_GGUF_ARCH = {"llama": "LLAMA", "phi": "PHI2", "phi3": "PHI3"}


def llama_cpp_permute(w: Any, n_head: int) -> Any:
    """convert_hf_to_gguf's Llama q/k permutation: each head's two rotary halves interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(
    hf_dir: Path,
    path: Path,
    *,
    qtype: str = "F32",
    pre: str = "gpt-2",
    fuse_qkv: bool = False,
    embedding_qtype: str | None = None,
) -> Path:
    """The GGUF of a factory checkpoint: llama.cpp's tensor names (from gguf's own name map), its
    metadata keys and its q/k permutation for Llama; 2-D weights stored as `qtype` (F32, F16, BF16,
    Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), norms and biases as F32, as llama.cpp keeps them.
    `embedding_qtype` stores the token embedding otherwise (SmolLM2's file: Q4_1 with a Q8_0
    embedding).

    `fuse_qkv` writes phi-1.5/phi-2 attention as one attn_qkv tensor, as older conversions did.
    The tokenizer is the factory's byte-level BPE, padded to vocab_size with [PAD{i}] tokens.
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    hf_dir, path = Path(hf_dir), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = json.loads((hf_dir / "config.json").read_text())
    rope = config.get("rope_parameters") or {}
    state = load_file(hf_dir / "model.safetensors")
    arch = gguf.MODEL_ARCH[_GGUF_ARCH[config["model_type"]]]
    arch_name = gguf.MODEL_ARCH_NAMES[arch]
    n_layer, n_head = config["num_hidden_layers"], config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads") or n_head
    head_dim = config["hidden_size"] // n_head
    names = gguf.get_tensor_name_map(arch, n_layer)

    writer = gguf.GGUFWriter(path, arch_name)
    writer.add_block_count(n_layer)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    partial = rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
    writer.add_rope_dimension_count(int(head_dim * partial))
    writer.add_rope_freq_base(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    if config["model_type"] == "phi":
        writer.add_layer_norm_eps(config["layer_norm_eps"])
    else:
        writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    if rope.get("rope_type") == "longrope":
        writer.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        writer.add_tensor("rope_factors_long.weight", np.asarray(rope["long_factor"], dtype=np.float32))
        writer.add_tensor("rope_factors_short.weight", np.asarray(rope["short_factor"], dtype=np.float32))
    _add_gguf_tokenizer(writer, hf_dir, config, pre)

    if fuse_qkv:
        for layer in range(n_layer):
            prefix = f"model.layers.{layer}.self_attn."
            for kind in ("weight", "bias"):
                parts = [state.pop(f"{prefix}{p}_proj.{kind}") for p in "qkv"]
                state[f"{prefix}qkv.{kind}"] = np.concatenate(parts)
    for hf_name, tensor in state.items():
        stem, kind = hf_name.rsplit(".", 1)
        gguf_name = "blk.{}.attn_qkv.{}".format(stem.split(".")[2], kind) if stem.endswith("qkv") else None
        gguf_name = gguf_name or f"{names.get_name(stem)}.{kind}"
        if config["model_type"] == "llama" and stem.endswith(("q_proj", "k_proj")):
            tensor = llama_cpp_permute(tensor, n_head if stem.endswith("q_proj") else n_kv)
        tensor = np.ascontiguousarray(tensor, dtype=np.float32)
        kind = embedding_qtype if embedding_qtype and stem.endswith("embed_tokens") else qtype
        if tensor.ndim == 2 and kind != "F32":
            q = gguf.GGMLQuantizationType[kind]
            data = tensor.astype(np.float16) if kind == "F16" else gguf.quants.quantize(tensor, q)
            writer.add_tensor(gguf_name, data, raw_dtype=q)
        else:
            writer.add_tensor(gguf_name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_gguf_tokenizer(writer: Any, hf_dir: Path, config: dict[str, Any], pre: str) -> None:
    tokenizer = json.loads((hf_dir / "tokenizer.json").read_text())
    by_id = {i: t for t, i in tokenizer["model"]["vocab"].items()}
    special = {t["id"] for t in tokenizer["added_tokens"] if t["special"]}
    tokens, kinds = [], []
    for i in range(config["vocab_size"]):
        if i in by_id:
            tokens.append(by_id[i])
            kinds.append(3 if i in special else 1)  # CONTROL / NORMAL
        else:  # convert_hf_to_gguf pads the vocabulary up to the embedding's rows
            tokens.append(f"[PAD{i}]")
            kinds.append(4)  # USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)
