"""How a tokenizer spells its vocabulary, for the grammar engine in the browser.

xgrammar (the page's structured-output engine, npm `@mlc-ai/web-xgrammar`) matches grammar text
against each token's string, so it must know how those strings encode bytes: GPT-2's byte-level
alphabet ("Ġ" for a space), SentencePiece's byte fallback ("<0x0A>" tokens, "▁" for a space), or
raw text. Its Python package reads that off tokenizer.json; its wasm build cannot, so the build
reads it here, by the same rules (tests/test_structured.py compares the two), into the browser
config.
"""

from __future__ import annotations

import json
from typing import Any

SPACE = "\u2581"  # SentencePiece's "▁"


def _members(component: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    """A tokenizer.json component and, for a `Sequence`, the ones it chains."""
    if not isinstance(component, dict):
        return []
    if component.get("type") == "Sequence":
        return [m for m in component.get(key, []) if isinstance(m, dict)]
    return [component]


def tokenizer_kind(tokenizer_json: str) -> dict[str, Any]:
    """{"vocab_type": "byte_level" | "byte_fallback" | "raw", "prepend_space": bool}."""
    spec = json.loads(tokenizer_json)
    decoders = {d.get("type") for d in _members(spec.get("decoder"), "decoders")}
    if "ByteLevel" in decoders:
        vocab_type = "byte_level"
    elif "ByteFallback" in decoders:
        vocab_type = "byte_fallback"
    else:
        vocab_type = "raw"
    # A space put before the text by the tokenizer itself: a normalizer prepending "▁", or a
    # Metaspace pre-tokenizer whose prepend scheme adds one (xgrammar looks at a lone one only).
    pre = spec.get("pre_tokenizer") or {}
    prepends = any(
        n.get("type") == "Prepend" and n.get("prepend") == SPACE
        for n in _members(spec.get("normalizer"), "normalizers")
    ) or (pre.get("type") == "Metaspace" and pre.get("prepend_scheme") in ("always", "first"))
    return {"vocab_type": vocab_type, "prepend_space": prepends}
