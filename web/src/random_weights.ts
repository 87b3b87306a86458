// Seeded random weights, generated from the manifest instead of downloaded. The same algorithm
// as webllm_build/random_weights.py, bit for bit (see its docstring): element i of a tensor is
// lowbias32(i * GOLDEN + key), key = lowbias32(seed ^ fnv1a32(name)); packed 4-bit words take
// those bits as they are, floats are low + (high - low) * u in float32 arithmetic (u = top 24
// bits / 2^24), rounded to nearest even to f16, or through bf16 for a bf16-stored tensor.

export const RANDOM_GENERATOR = "lowbias32-v1";
const GOLDEN = 0x9e3779b9;

export interface RandomRecord {
  name: string;
  shape: number[];
  dtype: string;
  format: "raw" | "f32-to-bf16";
  nbytes: number; // in GPU memory
  init: { kind: "bits" } | { kind: "uniform"; low: number; high: number };
}

export interface RandomWeights {
  generator: string;
  seed: number;
  records: RandomRecord[];
}

function lowbias32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  return (x ^ (x >>> 16)) >>> 0;
}

function fnv1a32(text: string): number {
  let value = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) value = Math.imul(value ^ byte, 0x01000193) >>> 0;
  return value;
}

// Round-to-nearest-even float32 -> float16 bit pattern (as numpy's astype(float16)).
function f32BitsToF16(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  let shift = 13;
  let base = e << 10;
  if (e <= 0) {
    // Subnormal in f16: shift the implicit leading one in with the rest.
    if (e < -10) return sign;
    mantissa |= 0x800000;
    shift = 14 - e;
    base = 0;
  }
  const half = base + (mantissa >>> shift);
  const rest = mantissa & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return sign | (rest > halfway || (rest === halfway && half & 1) ? half + 1 : half);
}

// Round-to-nearest-even float32 -> bf16 -> float32 bits, as a bf16 shard would give them.
function throughBf16(bits: number): number {
  return (((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) << 16) >>> 0;
}

// The tensor's bytes as they go to the GPU.
export function randomTensorBytes(random: RandomWeights, rec: RandomRecord): Uint8Array {
  if (random.generator !== RANDOM_GENERATOR) {
    throw new Error(`Unknown random weights generator ${random.generator}; rebuild the model or update the engine.`);
  }
  const count = rec.shape.reduce((a, b) => a * b, 1);
  const key = lowbias32((random.seed ^ fnv1a32(rec.name)) >>> 0);
  const word = (i: number) => lowbias32((Math.imul(i, GOLDEN) + key) >>> 0);
  if (rec.init.kind === "bits") {
    const words = new Uint32Array(count);
    for (let i = 0; i < count; i++) words[i] = word(i);
    return new Uint8Array(words.buffer);
  }
  const low = Math.fround(rec.init.low);
  const width = Math.fround(Math.fround(rec.init.high) - low);
  const scratch = new Float32Array(1);
  const scratchBits = new Uint32Array(scratch.buffer);
  const bitsOf = (i: number) => {
    // Each step rounded to float32, as numpy computes it: the results agree bit for bit.
    scratch[0] = Math.fround(low + Math.fround(width * ((word(i) >>> 8) * 2 ** -24)));
    return scratchBits[0];
  };
  if (rec.dtype === "float16") {
    const halves = new Uint16Array(count);
    for (let i = 0; i < count; i++) halves[i] = f32BitsToF16(bitsOf(i));
    return new Uint8Array(halves.buffer);
  }
  if (rec.dtype !== "float32") throw new Error(`Random weights of dtype ${rec.dtype} are not supported.`);
  const out = new Uint32Array(count);
  const bf16 = rec.format === "f32-to-bf16";
  for (let i = 0; i < count; i++) out[i] = bf16 ? throughBf16(bitsOf(i)) : bitsOf(i);
  return new Uint8Array(out.buffer);
}
