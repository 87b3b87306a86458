// Picks the next token from a logits vector: logit bias, repetition penalty, then greedy at
// temperature 0, otherwise temperature, top-p (nucleus) and a seeded draw, so a seed makes
// replies reproducible.

export interface SamplingParams {
  temperature: number;
  topP: number;
  repetitionPenalty: number;
  // OpenAI's logit_bias: added to the token's logit before anything else.
  logitBias?: Map<number, number>;
}

// mulberry32: tiny, fast and good enough to draw tokens; Math.random cannot be seeded.
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

// The CTRL-paper penalty, as transformers applies it: divide positive logits, multiply negative.
function penalize(logits: Float32Array, seen: Iterable<number>, penalty: number): void {
  for (const id of new Set(seen)) {
    logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
  }
}

export function sampleToken(
  logits: Float32Array,
  params: SamplingParams,
  seen: Iterable<number>,
  random: () => number,
): number {
  const scores = Float32Array.from(logits);
  for (const [id, bias] of params.logitBias ?? []) scores[id] += bias;
  if (params.repetitionPenalty !== 1) penalize(scores, seen, params.repetitionPenalty);
  if (params.temperature <= 0) return argmax(scores);

  let max = -Infinity;
  for (const v of scores) if (v > max) max = v;
  const order = Array.from(scores.keys());
  const probs = new Float64Array(scores.length);
  let total = 0;
  for (let i = 0; i < scores.length; i++) {
    probs[i] = Math.exp((scores[i] - max) / params.temperature);
    total += probs[i];
  }
  order.sort((a, b) => probs[b] - probs[a]);
  // Keep the smallest set of most likely tokens whose mass reaches top_p.
  let kept = 0;
  let mass = 0;
  while (kept < order.length && (kept === 0 || mass < params.topP * total)) mass += probs[order[kept++]];
  let draw = random() * mass;
  for (let i = 0; i < kept; i++) {
    draw -= probs[order[i]];
    if (draw <= 0) return order[i];
  }
  return order[kept - 1];
}
