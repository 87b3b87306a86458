"""Checkpoints without weights, for `--random-weights`: a config, and a tokenizer if there is one.

A preset takes its config.json from the package (presets.py), so it needs no download; its
tokenizer is then a stand-in, made here. A directory, a .gguf file or a hub repo id (whose
config and tokenizer files only are downloaded) bring their own tokenizer where they have one.

The stand-in tokenizer covers the model's whole vocabulary, so every id the model can produce
decodes, and any text encodes:
- ids 0-255 are the 256 bytes (GPT-2's byte-level alphabet, no merges), so a text of N ASCII
  characters is exactly N tokens: a benchmark builds prompts of a chosen length from plain text;
- ids 256 and up are made-up words (" a", " b", ..., " aa", ...), so random output reads as
  gibberish words in the chat page;
- one special token, <|endoftext|>, sits at id vocab_size, just past what the model's logits
  reach: it is the eos token the engine wants, yet never generated, so every reply runs to its
  token budget (steady lengths for benchmarks).
Its chat template is plain text ("<|user|>\\n...") made of byte tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

from webllm_build.errors import LoaderError
from webllm_build.loaders.checkpoint import Checkpoint, ModelSource, TensorSource, token_ids
from webllm_build.loaders.gguf_file import load_gguf
from webllm_build.loaders.hf_dir import load_hf_dir, read_config, with_rope_scaling
from webllm_build.loaders.resolve import _REPO_ID, download_snapshot
from webllm_build.presets import CONFIGS_DIR, PRESETS

BYTE_TOKENS = 256
BYTE_LEVEL = {"type": "ByteLevel", "trim_offsets": True, "use_regex": True}
EOS_TOKEN = "<|endoftext|>"
STAND_IN_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def load_without_weights(spec: str) -> Checkpoint:
    """What compiling `spec` with random weights needs: its config, and a tokenizer."""
    if spec in PRESETS:
        preset = PRESETS[spec]
        source = ModelSource("config", CONFIGS_DIR / preset.config, preset.name)
        return stand_in_checkpoint(source, with_rope_scaling(preset.hf_config()))
    path = Path(spec).expanduser()
    if not path.exists() and _REPO_ID.fullmatch(spec):
        path = download_snapshot(spec, weights=False)
    if path.is_file() and path.suffix.lower() == ".gguf":
        return load_gguf(ModelSource("gguf", path.resolve(), None))
    if path.is_dir():
        path = path.resolve()
        source = ModelSource("hf-dir", path, None)
        if (path / "tokenizer.json").is_file():
            return load_hf_dir(source, weights=False)
        return stand_in_checkpoint(source, read_config(path / "config.json"))
    if path.is_file() and path.suffix.lower() == ".json":
        return stand_in_checkpoint(ModelSource("config", path.resolve(), None), read_config(path))
    raise LoaderError(
        f"{spec!r} is not a preset ({', '.join(PRESETS)}), an existing directory, .gguf or config.json "
        f"file, or a Hugging Face repo id (owner/name)"
    )


def stand_in_checkpoint(source: ModelSource, config: dict) -> Checkpoint:
    vocab_size = config.get("vocab_size")
    if not isinstance(vocab_size, int) or vocab_size < BYTE_TOKENS:
        raise LoaderError(
            f"{source.path}: `vocab_size` is {vocab_size!r}; a stand-in tokenizer needs at least "
            f"{BYTE_TOKENS} ids (one per byte)."
        )
    return Checkpoint(
        source=source,
        config=config,
        tensors=TensorSource(source.path, {}),
        tokenizer_json=stand_in_tokenizer(vocab_size),
        chat_template=STAND_IN_TEMPLATE,
        bos_token_id=None,
        eos_token_ids=token_ids(vocab_size),
        tokenizer_stand_in=True,
    )


def _byte_alphabet() -> list[str]:
    """GPT-2's printable stand-in character for each byte value, in byte order."""
    printable = {
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    }
    chars, extra = [], 0
    for byte in range(BYTE_TOKENS):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(BYTE_TOKENS + extra))
            extra += 1
    return chars


def _word(n: int) -> str:
    """The n-th made-up word (bijective base 26: a, ..., z, aa, ab, ...), after a space (Ġ)."""
    letters = ""
    n += 1
    while n:
        n, digit = divmod(n - 1, 26)
        letters = chr(ord("a") + digit) + letters
    return "Ġ" + letters


def stand_in_tokenizer(vocab_size: int) -> str:
    """A tokenizers JSON document covering ids 0..vocab_size-1, plus eos at vocab_size."""
    vocab = {char: i for i, char in enumerate(_byte_alphabet())}
    vocab.update({_word(i - BYTE_TOKENS): i for i in range(BYTE_TOKENS, vocab_size)})
    document = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": vocab_size,
                "content": EOS_TOKEN,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        ],
        "normalizer": None,
        "pre_tokenizer": {**BYTE_LEVEL, "add_prefix_space": False},
        "post_processor": None,
        "decoder": {**BYTE_LEVEL, "add_prefix_space": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
