"""Benchmark (not a test): two or more builds of a site measured by `bench`, interleaved in one run.

A shared or thermally drifting machine makes figures taken minutes apart incomparable, so each
round runs every site once (one bench run: cold load, warm load, one completion per prompt
length), alternating the order between rounds; the rounds are then merged per site.

    .venv/bin/python benchmarks/side_by_side.py --runtime deno --rounds 2 \\
        --prompt-tokens 128,512,2048 --gen-tokens 64 --json-prefix out/phi old=.sites/phi new=.sites/phi-new

Writes <prefix>-<name>.json per site (bench reports) and prints each site's report and the
ratios of the last site to the first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from webllm_build.verify.bench import (
    BenchOptions,
    compare_reports,
    format_report,
    merge_reports,
    run_bench,
    write_report,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sites", nargs="+", help="NAME=SITE_FOLDER, two or more")
    parser.add_argument("--runtime", default="chromium")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompt-tokens", default="128,512")
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--model", action="append", help="only this model id (repeatable)")
    parser.add_argument("--json-prefix", type=Path, required=True)
    parser.add_argument("--gpu-time", action="store_true", help="bench --gpu-time, in the first round only")
    args = parser.parse_args()
    sites = dict(entry.split("=", 1) for entry in args.sites)
    if len(sites) < 2:
        parser.error("give at least two NAME=SITE_FOLDER")
    prompts = tuple(int(n) for n in args.prompt_tokens.split(","))
    rounds: dict[str, list[dict]] = {name: [] for name in sites}
    names = list(sites)
    for round_index in range(args.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            print(f"round {round_index + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            options = BenchOptions(
                target=sites[name],
                models=tuple(args.model or ()),
                prompt_tokens=prompts,
                gen_tokens=args.gen_tokens,
                runs=1,
                runtime=args.runtime,
                gpu_time=args.gpu_time and round_index == 0,
            )
            rounds[name].append(run_bench(options, lambda m: print(m, file=sys.stderr, flush=True)))
    merged = {name: merge_reports(reports) for name, reports in rounds.items()}
    for name, report in merged.items():
        write_report(report, Path(f"{args.json_prefix}-{name}.json"))
        print(f"\n== {name} ({sites[name]})\n{format_report(report)}")
    first, last = names[0], names[-1]
    print(f"\n== {last} against {first}, interleaved over {args.rounds} rounds")
    print(compare_reports(merged[last], merged[first]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
