"""A Hugging Face tokenizer.json rebuilt from a GGUF's tokenizer metadata (byte-level BPE).

A GGUF stores the vocabulary, merges and token kinds, plus the name of llama.cpp's pre-tokenizer
(`tokenizer.ggml.pre`). Each name maps to the pre-tokenizer of the Hugging Face tokenizer.json
the GGUF was converted from, which splits text as llama.cpp does (llama-vocab.cpp); a wrong split
silently changes token ids, so an unknown name is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

from webllm_build.errors import LoaderError

# llama.cpp token kinds (tokenizer.ggml.token_type).
_CONTROL = 3
_USER_DEFINED = 4

_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class _PreTokenizer:
    split: str | None = None  # a split regex; None: ByteLevel's own (GPT-2's)
    digits: bool = False  # split every digit off first (StarCoder-family vocabularies)
    ignore_merges: bool = False  # a whole piece found in the vocabulary is one token (Llama 3)

    def build(self) -> pre_tokenizers.PreTokenizer:
        steps: list[pre_tokenizers.PreTokenizer] = []
        if self.digits:
            steps.append(pre_tokenizers.Digits(individual_digits=True))
        if self.split is not None:
            steps.append(pre_tokenizers.Split(Regex(self.split), behavior="isolated"))
        steps.append(
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=self.split is None)
        )
        return pre_tokenizers.Sequence(steps)


PRE_TOKENIZERS: dict[str, _PreTokenizer] = {
    "gpt-2": _PreTokenizer(),
    "phi-2": _PreTokenizer(),
    "smollm": _PreTokenizer(digits=True),
    "starcoder": _PreTokenizer(digits=True),
    "refact": _PreTokenizer(digits=True),
    "llama-bpe": _PreTokenizer(split=_LLAMA3_SPLIT, ignore_merges=True),
    "llama3": _PreTokenizer(split=_LLAMA3_SPLIT, ignore_merges=True),
    "qwen2": _PreTokenizer(split=_QWEN2_SPLIT),
    "deepseek-r1-qwen": _PreTokenizer(split=_QWEN2_SPLIT),
}


def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table, the spelling of every byte-level BPE vocabulary."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(256 + n)
    return table


def tokenizer_json_from_gguf(path: Path, metadata: dict[str, Any]) -> str:
    model = metadata.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise LoaderError(
            f"{path}: field 'tokenizer.ggml.model' is {model!r}; only byte-level BPE ('gpt2') tokenizers "
            f"can be rebuilt from a GGUF. Use the model's Hugging Face checkpoint instead"
        )
    pre_name = metadata.get("tokenizer.ggml.pre")
    pre = PRE_TOKENIZERS.get(pre_name)
    if pre is None:
        raise LoaderError(
            f"{path}: field 'tokenizer.ggml.pre' is {pre_name!r}, a pre-tokenizer webllm_build does not "
            f"know (known: {', '.join(PRE_TOKENIZERS)}). Use the model's Hugging Face checkpoint instead"
        )
    tokens: list[str] = _field(path, metadata, "tokenizer.ggml.tokens")
    kinds: list[int] = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ")) for m in _field(path, metadata, "tokenizer.ggml.merges")]
    if len(kinds) != len(tokens) or any(len(m) != 2 for m in merges):
        raise LoaderError(
            f"{path}: inconsistent tokenizer metadata (token_type length or a merge is malformed)"
        )

    alphabet = byte_alphabet()
    spelled = set(alphabet.values())
    vocab: dict[str, int] = {}
    for token_id, (token, kind) in enumerate(zip(tokens, kinds, strict=True)):
        if kind not in (_CONTROL, _USER_DEFINED) and not set(token) <= spelled:
            # A normal token spelled in raw text: respell it in the byte alphabet BPE produces.
            token = "".join(alphabet[b] for b in token.encode("utf-8"))
        vocab.setdefault(token, token_id)
    if len(vocab) != len(tokens):
        raise LoaderError(f"{path}: field 'tokenizer.ggml.tokens' holds duplicate tokens")

    tokenizer = Tokenizer(models.BPE(vocab, merges, ignore_merges=pre.ignore_merges, fuse_unk=False))
    tokenizer.pre_tokenizer = pre.build()
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = _post_processor(tokens, metadata)
    # Control tokens (<|im_start|>) are special: matched whole and skipped when decoding with
    # skip_special_tokens; user-defined ones are matched whole but decode as text.
    tokenizer.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, k in zip(tokens, kinds, strict=True)
            if k == _CONTROL
        ]
    )
    tokenizer.add_tokens(
        [
            AddedToken(t, special=False, normalized=False)
            for t, k in zip(tokens, kinds, strict=True)
            if k == _USER_DEFINED
        ]
    )
    return tokenizer.to_str(pretty=False)


def _post_processor(tokens: list[str], metadata: dict[str, Any]) -> Any:
    """BOS/EOS added around the text as llama.cpp does (tokenizer.ggml.add_bos_token / add_eos_token)."""
    added: dict[str, tuple[str, int]] = {}
    for key in ("bos", "eos"):
        token_id = metadata.get(f"tokenizer.ggml.{key}_token_id")
        if metadata.get(f"tokenizer.ggml.add_{key}_token") and token_id is not None:
            added[key] = (tokens[token_id], token_id)
    if not added:
        return processors.ByteLevel(trim_offsets=False)

    bos = [added["bos"][0]] if "bos" in added else []
    eos = [added["eos"][0]] if "eos" in added else []

    def around(piece: str, type_id: int) -> list[str]:
        return [f"{token}:{type_id}" for token in (*bos, piece, *eos)]

    return processors.TemplateProcessing(
        single=around("$A", 0), pair=around("$A", 0) + around("$B", 1), special_tokens=list(added.values())
    )


def _field(path: Path, metadata: dict[str, Any], key: str) -> Any:
    if key not in metadata:
        raise LoaderError(f"{path}: required field {key!r} is missing")
    return metadata[key]
