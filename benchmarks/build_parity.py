"""Do two builds of one model agree? Greedy tokens and top log-probabilities, side by side in one run.

    python benchmarks/build_parity.py SITE MODEL_A MODEL_B [--runtime deno] [--steps 32] [--json OUT]

Each model of the site (e.g. phi-3.5-mini-q4f16_1-random and phi-3.5-mini-q4f32_1-random, whose
random weights come from one generator) answers the same prompt greedily with `ignore_eos`; the
report gives the first index where their tokens differ (none: null) and the largest gap between
their log-probabilities of the tokens both chose, up to that index.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from webllm_build.verify.browser import RUNTIMES, launch_runtime
from webllm_build.verify.sitepage import SitePage, site_url

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def greedy(page: SitePage, model_id: str, steps: int) -> dict:
    loaded = page.load(model_id)
    if loaded["error"]:
        raise SystemExit(f"{model_id}: {loaded['error']['message']}")
    reply = page.create(
        {
            "messages": [{"role": "user", "content": PROMPT}],
            "temperature": 0,
            "max_tokens": steps,
            "ignore_eos": True,
            "logprobs": True,
            "top_logprobs": 5,
        }
    )
    if reply["error"]:
        raise SystemExit(f"{model_id}: {reply['error']['message']}")
    return {"load_s": loaded["seconds"], **reply}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site")
    parser.add_argument("models", nargs=2)
    parser.add_argument("--runtime", choices=RUNTIMES, default="chromium")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with site_url(args.site) as url, launch_runtime(args.runtime) as runtime:
        page = SitePage(runtime, url, timeout_s=1800)
        try:
            replies = {model: greedy(page, model, args.steps) for model in args.models}
            adapter = page.adapter()
        finally:
            page.close()
    a, b = (replies[m] for m in args.models)
    diverged = next(
        (i for i, (x, y) in enumerate(zip(a["token_ids"], b["token_ids"], strict=True)) if x != y), None
    )
    agreed = slice(0, diverged)
    gap = max(
        (
            abs(x["logprob"] - y["logprob"])
            for x, y in zip(a["logprobs"][agreed], b["logprobs"][agreed], strict=True)
        ),
        default=0.0,
    )
    report = {
        "runtime": args.runtime,
        "adapter": adapter,
        "steps": args.steps,
        "models": args.models,
        "first_divergence": diverged,
        "max_chosen_logprob_gap": gap,
        "replies": {m: {k: replies[m][k] for k in ("token_ids", "usage", "load_s")} for m in args.models},
    }
    print(
        json.dumps({k: report[k] for k in ("models", "steps", "first_divergence", "max_chosen_logprob_gap")})
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
