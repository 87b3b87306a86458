#!/usr/bin/env bash
# WebLLM 0.2.79 (the peer engine) on this machine's GPU, with its own prebuilt Phi-3 libraries and
# synthetic weights: one JSON report per library in OUTDIR. Run from the repository root, with
# .peer/ (web-llm, its two libs, the weight writer, the stand-in tokenizer) beside benchmarks/:
#
#   bash benchmarks/webllm_peer/bench.sh DENO OUTDIR [run.js options, e.g. --quick]
#
# ONLY=NAME runs one of the libs below. Needs python3 with numpy (the weights, ~2 GB per lib, are
# drawn into $WORK, default /tmp/webllm_peer, and reused) and nothing from the network.
set -euo pipefail

DENO=${1:?usage: bench.sh DENO OUTDIR [run.js options]}
OUT=${2:?usage: bench.sh DENO OUTDIR [run.js options]}
shift 2
PEER=.peer
WORK=${WORK:-/tmp/webllm_peer}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"

# name | lib | quantization
LIBS=(
  "phi-3.5-mini-q4f32_1|Phi-3.5-mini-instruct-q4f32_1-ctx4k_cs1k-webgpu.wasm|q4f32_1"
  "phi-3-mini-q4f16_1|Phi-3-mini-4k-instruct-q4f16_1-ctx4k_cs1k-webgpu.wasm|q4f16_1"
)

status=0
for entry in "${LIBS[@]}"; do
  IFS='|' read -r name lib quant <<<"$entry"
  [[ -n "${ONLY:-}" && "$ONLY" != "$name" ]] && continue
  weights="$WORK/$name"
  if [[ ! -f "$weights/ndarray-cache.json" ]]; then
    echo "== $name: drawing random weights into $weights" >&2
    "$PYTHON" "$PEER/convert/gguf_to_mlc.py" --source random --quant "$quant" \
      --wasm "$PEER/$lib" --tokenizer "$PEER/tokenizer.json" --out "$weights" >&2
  fi
  echo "== $name: WebLLM under Deno" >&2
  # A fresh DENO_DIR per run: the Cache API starts empty, as on a browser's first visit.
  deno_dir=$(mktemp -d "$WORK/deno-XXXXXX")
  if DENO_DIR="$deno_dir" NO_COLOR=1 DENO_NO_UPDATE_CHECK=1 XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}" \
    "$DENO" run -A --no-prompt --location http://127.0.0.1/ benchmarks/webllm_peer/run.js \
    --model "$weights" --lib "$PEER/$lib" --webllm "$PEER/node_modules/@mlc-ai/web-llm/lib/index.js" "$@" \
    >"$OUT/webllm_$name.json.tmp" 2> >(tee "$OUT/webllm_$name.log" >&2); then
    mv "$OUT/webllm_$name.json.tmp" "$OUT/webllm_$name.json"
    echo "== $name: wrote $OUT/webllm_$name.json" >&2
  else
    echo "== $name: FAILED (see $OUT/webllm_$name.log)" >&2
    status=1
  fi
  rm -rf "$deno_dir"
done
exit $status
