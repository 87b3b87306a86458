"""A Hugging Face model directory (a local folder or a hub cache snapshot) as a Checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from webllm_build.errors import LoaderError
from webllm_build.loaders.checkpoint import Checkpoint, LazyTensor, ModelSource, TensorSource, token_ids
from webllm_build.loaders.tensor_files import read_safetensors, read_torch_bin

# The weight layouts save_pretrained writes, in order of preference: safetensors needs no
# unpickling and no torch.
_SHARDED = (
    ("model.safetensors.index.json", read_safetensors),
    ("pytorch_model.bin.index.json", read_torch_bin),
)
_SINGLE = (("model.safetensors", read_safetensors), ("pytorch_model.bin", read_torch_bin))

REQUIRED_CONFIG_FIELDS = ("architectures",)


def load_hf_dir(source: ModelSource, *, weights: bool = True) -> Checkpoint:
    """The checkpoint in a directory; without `weights`, its tensors are not looked for."""
    root = source.path
    config = read_config(root / "config.json")
    tensors = TensorSource(root, read_weights(root) if weights else {})
    tokenizer_path = root / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise LoaderError(
            f"{tokenizer_path} is missing: webllm_build needs a fast (tokenizers) tokenizer. If the model "
            f"has only a slow one, convert it with transformers: "
            f"AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)"
        )
    tokenizer_json = tokenizer_path.read_text(encoding="utf-8")
    try:
        tokenizer = Tokenizer.from_str(tokenizer_json)
    except Exception as e:  # tokenizers reports every parse failure as a bare Exception
        raise LoaderError(f"{tokenizer_path}: not a valid tokenizers JSON file: {e}") from None
    tokenizer_config = read_json(root / "tokenizer_config.json", required=False)
    generation_config = read_json(root / "generation_config.json", required=False)

    def special(field: str) -> int | None:
        return _token_id(tokenizer, tokenizer_config.get(field), root / "tokenizer_config.json", field)

    bos_candidates = token_ids(
        config.get("bos_token_id"), generation_config.get("bos_token_id"), special("bos_token")
    )
    return Checkpoint(
        source=source,
        config=config,
        tensors=tensors,
        tokenizer_json=tokenizer_json,
        chat_template=read_chat_template(root, tokenizer_config),
        bos_token_id=bos_candidates[0] if bos_candidates else None,
        eos_token_ids=token_ids(
            config.get("eos_token_id"), generation_config.get("eos_token_id"), special("eos_token")
        ),
        generation_config=generation_config,
    )


def read_json(path: Path, *, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise LoaderError(f"{path} is missing")
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LoaderError(f"{path}: unreadable JSON: {e}") from None
    if not isinstance(value, dict):
        raise LoaderError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_config(path: Path) -> dict[str, Any]:
    config = read_json(path)
    for field in REQUIRED_CONFIG_FIELDS:
        if field not in config:
            raise LoaderError(f"{path}: required field {field!r} is missing")
    architectures = config["architectures"]
    if not (
        isinstance(architectures, list) and architectures and all(isinstance(a, str) for a in architectures)
    ):
        raise LoaderError(
            f"{path}: field 'architectures' must be a non-empty list of names, got {architectures!r}"
        )
    return with_rope_scaling(config)


def with_rope_scaling(config: dict[str, Any]) -> dict[str, Any]:
    """Add `rope_theta` / `rope_scaling` / `partial_rotary_factor` where only `rope_parameters` has them.

    transformers >= 5 saves rotary settings as one `rope_parameters` dict, while published checkpoints
    (and configs rebuilt from GGUF) use the older top-level keys; exposing the older keys in both
    cases leaves the model side one shape to parse. Keys already present win.
    """
    params = config.get("rope_parameters")
    if isinstance(params, dict) and isinstance(params.get("full_attention"), dict):
        # Per layer type (Gemma 3): the published keys are the global layers' and
        # `rope_local_base_freq` for the sliding ones.
        local = params.get("sliding_attention") or {}
        config = {**config, "rope_parameters": params["full_attention"]}
        if "rope_theta" in local:
            config.setdefault("rope_local_base_freq", local["rope_theta"])
        return with_rope_scaling(config)
    if not isinstance(params, dict) or not ({"rope_type", "rope_theta"} & params.keys()):
        return config
    config = dict(config)
    for key in ("rope_theta", "partial_rotary_factor"):
        if key in params:
            config.setdefault(key, params[key])
    scaling = {k: v for k, v in params.items() if k not in ("rope_theta", "partial_rotary_factor")}
    scaled = scaling.get("rope_type", scaling.get("type", "default")) != "default"
    config.setdefault("rope_scaling", scaling if scaled else None)
    return config


def read_weights(root: Path) -> dict[str, LazyTensor]:
    for index_name, read in _SHARDED:
        index_path = root / index_name
        if index_path.is_file():
            return _read_sharded(index_path, read)
    for file_name, read in _SINGLE:
        if (root / file_name).is_file():
            return read(root / file_name)
    raise LoaderError(
        f"{root}: no weights found (expected {', '.join(name for name, _ in _SINGLE + _SHARDED)})"
    )


def _read_sharded(index_path: Path, read: Callable[[Path], dict[str, LazyTensor]]) -> dict[str, LazyTensor]:
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise LoaderError(f"{index_path}: field 'weight_map' is missing or empty")
    shards: dict[str, dict[str, LazyTensor]] = {}
    tensors: dict[str, LazyTensor] = {}
    for name, shard_name in weight_map.items():
        if shard_name not in shards:
            shard_path = index_path.parent / shard_name
            if not shard_path.is_file():
                raise LoaderError(
                    f"{index_path}: shard {shard_name!r} (listed for tensor {name!r}) is missing; "
                    f"download the checkpoint again"
                )
            shards[shard_name] = read(shard_path)
        if name not in shards[shard_name]:
            raise LoaderError(
                f"{index_path}: tensor {name!r} is not in shard {shard_name!r} as the index says"
            )
        tensors[name] = shards[shard_name][name]
    return tensors


def read_chat_template(root: Path, tokenizer_config: dict[str, Any]) -> str | None:
    """The default chat template, from wherever transformers would take it, newest convention first."""
    jinja = root / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = read_json(root / "chat_template.json", required=False).get("chat_template")
    if template is None:
        template = tokenizer_config.get("chat_template")
    if isinstance(template, list):
        # Several named templates (e.g. "default", "tool_use"): the chat site needs the default one.
        by_name = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = by_name.get("default")
    if template is not None and not isinstance(template, str):
        raise LoaderError(f"{root}: field 'chat_template' must be a string, got {type(template).__name__}")
    return template


def _token_id(tokenizer: Tokenizer, token: Any, path: Path, field: str) -> int | None:
    """The id of a special token named by its text (tokenizer_config's convention)."""
    if isinstance(token, dict):  # a serialized AddedToken
        token = token.get("content")
    if token is None:
        return None
    token_id = tokenizer.token_to_id(token) if isinstance(token, str) else None
    if token_id is None:
        raise LoaderError(f"{path}: field {field!r} names {token!r}, which is not in tokenizer.json")
    return token_id
