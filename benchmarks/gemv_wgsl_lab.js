// What a 4-bit GEMV can reach on this runtime's WebGPU, written straight in WGSL (no TVM), beside
// a streaming read of the same bytes: which kernel shape the compiler's GEMV should take, and how
// much of a launch is the launch. Phi-3.5-mini's decode layers in `q4f16_1`'s layout (u32 words
// of 8 nibbles, one f16 scale per 32 weights, symmetric, value = (q - 7) * scale).
// Launches cycle through copies of the weights (COPY_BYTES in all) so none finds them in the
// GPU's cache. Each timing is GPU timestamps around `LAUNCHES` launches in one pass (the median of
// five passes, queued after a streaming warm-up), and, for the floor, single launches each in its
// own pass. Appends one JSON line per measurement to OUT.
//   deno run -A benchmarks/gemv_wgsl_lab.js OUT.jsonl [variants: L,R,U;L,R,U;...]
const [output, variantArg] = Deno.args;
const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
const limits = {};
for (const key of ["maxBufferSize", "maxStorageBufferBindingSize", "maxComputeWorkgroupStorageSize"]) {
  limits[key] = adapter.limits[key];
}
const device = await adapter.requestDevice({ requiredFeatures: ["shader-f16", "timestamp-query"], requiredLimits: limits });
const info = adapter.info ?? {};
const header = { runtime: `Deno/${Deno.version.deno}`, adapter: info.description || info.device || "" };
const emit = async (row) => {
  console.log(JSON.stringify(row));
  await Deno.writeTextFile(output, JSON.stringify({ ...header, ...row }) + "\n", { append: true });
};

const COPY_BYTES = Number(Deno.env.get("COPY_MIB") ?? 768) << 20;
const LAUNCHES = Number(Deno.env.get("LAUNCHES") ?? 64);
const LAYERS = { qkv: [9216, 3072], o_proj: [3072, 3072], gate_up: [16384, 3072], down: [3072, 8192] };
// lanes along K per row, rows per workgroup, groups of 32 weights a lane loads before using them
const VARIANTS = (variantArg ?? "32,4,1;32,8,1;16,8,1;16,16,1;8,16,1;8,32,1;4,32,1;4,64,1;32,4,2;16,8,2;8,16,2;8,32,2;4,64,2;16,16,3;8,32,3")
  .split(";").map((v) => v.split(",").map((f) => (/^\d+$/.test(f) ? Number(f) : f)));
// (a variant's dispatch: n / R workgroups)

const hashWgsl = `fn hash(i: u32) -> u32 {
  var h = i * 0x9E3779B1u; h ^= h >> 15u; h *= 0x85EBCA77u; h ^= h >> 13u; return h;
}`;
function hash(i) {
  let h = Math.imul(i, 0x9E3779B1) >>> 0;
  h = (h ^ (h >>> 15)) >>> 0;
  h = Math.imul(h, 0x85EBCA77) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}
// A scale from a hash, the same on both sides: 0.01 .. 0.03 in f16.
const scaleWgsl = `fn scale_of(i: u32) -> f32 { return 0.01 + f32(hash(i ^ 0x5bd1e995u) & 1023u) * (0.02 / 1024.0); }`;
const scaleOf = (i) => Math.fround(0.01 + ((hash((i ^ 0x5bd1e995) >>> 0) & 1023) * 0.02) / 1024);

function pipeline(code, entryPoint = "main") {
  return device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code }), entryPoint } });
}
function storage(size) {
  return device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
}

// Fills a u32 buffer with hash(base + i) and an f16 buffer with scale_of(base + i), on the GPU.
const fillWords = pipeline(`${hashWgsl}
  @group(0) @binding(0) var<storage, read_write> out: array<u32>;
  @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = id.x + id.y * n.x * 256u;
    if (i < arrayLength(&out)) { out[i] = hash(i); }
  }`);
const fillScales = pipeline(`${hashWgsl} ${scaleWgsl}
  @group(0) @binding(0) var<storage, read_write> out: array<u32>;
  @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = id.x + id.y * n.x * 256u;
    if (i < arrayLength(&out)) { out[i] = pack2x16float(vec2<f32>(scale_of(2u * i), scale_of(2u * i + 1u))); }
  }`);
function fill(p, buffer) {
  const words = buffer.size / 4, groups = Math.ceil(words / 256);
  const x = Math.min(groups, 65535), y = Math.ceil(groups / x);
  const encoder = device.createCommandEncoder();
  const pass = encoder.beginComputePass();
  pass.setPipeline(p);
  pass.setBindGroup(0, device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer } }] }));
  pass.dispatchWorkgroups(x, y);
  pass.end();
  device.queue.submit([encoder.finish()]);
}

function f16Bits(value) {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000, exp = ((x >>> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return sign;
  return (sign | (exp << 10) | ((x >>> 13) & 0x3ff)) + ((x >>> 12) & 1); // rounded to nearest
}
function f16Value(bits) {
  const exp = (bits >>> 10) & 0x1f, frac = bits & 0x3ff, sign = bits & 0x8000 ? -1 : 1;
  return exp === 0 ? sign * frac * 2 ** -24 : sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// The GEMV: workgroup of L*R threads, R rows; a row's L lanes take groups lane, lane+L, ...,
// U groups (16-byte loads) issued before any is used; f32 sums, a tree through workgroup memory.
// A nibble becomes a float without an int-to-float conversion: OR-ed into 2^23's mantissa.
// Modes: "g" reads x (f16) from the storage buffer and shifts each nibble down; "s" stages x once
// a workgroup as f32, element j pre-multiplied by 16^-(j % 4), so a nibble is masked in place
// (the word's high half shifted once) and made a float by one OR and one subtraction; "l" only
// loads the weights (the ceiling of the kernel's memory side).
function gemvWgsl(n, k, variant) {
  if (["m", "J"].includes(variant[3])) return gemvRowsAThread(n, k, variant);
  const [L, R, U, mode = "g"] = variant;
  const groups = k / 32, iters = groups / (L * U);
  if (!Number.isInteger(iters)) return null;
  const dotGlobal = (u) => [0, 1, 2, 3].map((w) => {
    const xs = `x[(g${u} * 32u + ${w * 8}u) / 4u]`, xs2 = `x[(g${u} * 32u + ${w * 8 + 4}u) / 4u]`;
    const lines = [`{ let word = q${u}[${w}]; let a = vec4<f32>(${xs}); let b = vec4<f32>(${xs2});`];
    for (let j = 0; j < 8; j++) {
      const xv = j < 4 ? `a[${j}]` : `b[${j - 4}]`;
      lines.push(`d${u} = fma(bitcast<f32>(((word >> ${4 * j}u) & 15u) | 0x4B000000u) - 8388615.0, ${xv}, d${u});`);
    }
    return lines.join(" ") + " }";
  }).join("\n        ");
  const dotStaged = (u) => [0, 1, 2, 3].map((w) => {
    const lines = [`{ let lo = q${u}[${w}]; let hi = lo >> 16u; let a = xs[g${u} * 8u + ${2 * w}u]; let b = xs[g${u} * 8u + ${2 * w + 1}u];`];
    for (let j = 0; j < 8; j++) {
      const c = j % 4, word = j < 4 ? "lo" : "hi", xv = `${j < 4 ? "a" : "b"}[${c}]`;
      lines.push(`d${u} = fma(bitcast<f32>((${word} & ${15 * 16 ** c}u) | 0x4B000000u) - ${8388608 + 7 * 16 ** c}.0, ${xv}, d${u});`);
    }
    return lines.join(" ") + " }";
  }).join("\n        ");
  // (x is read once, so that its binding stays in the layout.)
  const dotLoads = (u) => `d${u} = f32((q${u}.x ^ q${u}.y ^ q${u}.z ^ q${u}.w) & 1u) + f32(x[${u}u].x);`;
  // "f": x as f32 in the storage buffer (no conversions); "p": x as f32 pre-multiplied by
  // 16^-(j % 4) in the storage buffer, each nibble masked in place (three operations a weight).
  const dotF32 = (u, pre) => [0, 1, 2, 3].map((w) => {
    const lines = [`{ let lo = q${u}[${w}]; let hi = lo >> 16u; let a = x[g${u} * 8u + ${2 * w}u]; let b = x[g${u} * 8u + ${2 * w + 1}u];`];
    for (let j = 0; j < 8; j++) {
      const c = j % 4, xv = `${j < 4 ? "a" : "b"}[${c}]`;
      const v = pre
        ? `bitcast<f32>((${j < 4 ? "lo" : "hi"} & ${15 * 16 ** c}u) | 0x4B000000u) - ${8388608 + 7 * 16 ** c}.0`
        : `bitcast<f32>(((lo >> ${4 * j}u) & 15u) | 0x4B000000u) - 8388615.0`;
      lines.push(`d${u} = fma(${v}, ${xv}, d${u});`);
    }
    return lines.join(" ") + " }";
  }).join("\n        ");
  // "i": x quantized to int8 a group of 32 (scale, sum of the int8s), two dot4I8Packed a word:
  // the even nibbles against the even elements, the odd against the odd.
  const dotInt = (u) => {
    const lines = [`{ let xa = x[g${u} * 2u]; let xb = x[g${u} * 2u + 1u]; var t = 0;`];
    for (let w = 0; w < 4; w++) {
      const xv = w < 2 ? "xa" : "xb", c = (w % 2) * 2;
      lines.push(`t += dot4I8Packed(q${u}[${w}] & 0x0F0F0F0Fu, ${xv}[${c}]) + dot4I8Packed((q${u}[${w}] >> 4u) & 0x0F0F0F0Fu, ${xv}[${c + 1}]);`);
    }
    lines.push(`let xg${u} = xq[g${u}]; d${u} = xg${u}.x * (f32(t) - 7.0 * xg${u}.y); }`);
    return lines.join(" ");
  };
  // "j": x as 15-bit integers a group, in two int8 planes (q = 256 * high + low): four
  // dot4I8Packed a word, activations as precise as f16's near a group's largest value.
  const dotInt2 = (u) => {
    const lines = [`{ let xa = x[g${u} * 4u]; let xb = x[g${u} * 4u + 1u]; let xc = x[g${u} * 4u + 2u]; let xd = x[g${u} * 4u + 3u]; var th = 0; var tl = 0;`];
    for (let w = 0; w < 4; w++) {
      const [hi, lo] = w < 2 ? ["xa", "xc"] : ["xb", "xd"], c = (w % 2) * 2;
      lines.push(`{ let e = q${u}[${w}] & 0x0F0F0F0Fu; let o = (q${u}[${w}] >> 4u) & 0x0F0F0F0Fu;`);
      lines.push(`th += dot4I8Packed(e, ${hi}[${c}]) + dot4I8Packed(o, ${hi}[${c + 1}]); tl += dot4I8Packed(e, ${lo}[${c}]) + dot4I8Packed(o, ${lo}[${c + 1}]); }`);
    }
    lines.push(`let xg${u} = xq[g${u}]; d${u} = xg${u}.x * (f32(th * 256 + tl) - 7.0 * xg${u}.y); }`);
    return lines.join(" ");
  };
  const dot = { j: dotInt2, g: dotGlobal, s: dotStaged, l: dotLoads, f: (u) => dotF32(u, false), p: (u) => dotF32(u, true), i: dotInt }[mode];
  const body = [];
  for (let u = 0; u < U; u++) body.push(`let g${u} = lane + (i * ${U}u + ${u}u) * ${L}u; let q${u} = w[base + g${u}]; let s${u} = f32(s[base + g${u}]);`);
  for (let u = 0; u < U; u++) body.push(`var d${u} = 0.0;\n        ${dot(u)}\n        acc = fma(s${u}, d${u}, acc);`);
  const tree = [];
  for (let half = L / 2; half >= 1; half /= 2) {
    tree.push(`workgroupBarrier(); if (lane < ${half}u) { part[lid] += part[lid + ${half}u]; }`);
  }
  const stage = mode !== "s" ? "" : `
    for (var t = lid; t < ${k / 4}u; t += ${L * R}u) {
      xs[t] = vec4<f32>(x[t]) * vec4<f32>(1.0, 1.0 / 16.0, 1.0 / 256.0, 1.0 / 4096.0);
    }
    workgroupBarrier();`;
  return `enable f16;
  @group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
  @group(0) @binding(1) var<storage, read> s: array<f16>;
  @group(0) @binding(2) var<storage, read> x: array<${{ f: "vec4<f32>", p: "vec4<f32>", i: "vec4<u32>", j: "vec4<u32>" }[mode] ?? "vec4<f16>"}>;
  @group(0) @binding(3) var<storage, read_write> y: array<f16>;
  ${mode === "i" || mode === "j" ? "@group(0) @binding(4) var<storage, read> xq: array<vec2<f32>>;" : ""}
  var<workgroup> part: array<f32, ${L * R}>;
  ${mode === "s" ? `var<workgroup> xs: array<vec4<f32>, ${k / 4}>;` : ""}
  @compute @workgroup_size(${L * R})
  fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % ${L}u;
    let row = wg.x * ${R}u + lid / ${L}u;
    let base = row * ${groups}u;
    var acc = 0.0;${stage}
    for (var i = 0u; i < ${iters}u; i++) {
        ${body.join("\n        ")}
    }
    part[lid] = acc;
    ${tree.join("\n    ")}
    if (lane == 0u) { y[row] = f16(part[lid]); }
  }`;
}

// Mode "m": as "g", but a thread takes T rows, so the activations it loads and converts for a
// group serve T rows' weights (L1 traffic for x falls T times). A workgroup has L * R / T threads.
// Mode "J": "j"'s two int8 planes, T rows a thread.
function gemvRowsAThread(n, k, [L, R, U, mode, T]) {
  const groups = k / 32, iters = groups / (L * U), threads = (L * R) / T;
  if (!Number.isInteger(iters) || !Number.isInteger(threads)) return null;
  const body = [];
  for (let u = 0; u < U; u++) {
    body.push(`let g${u} = lane + (i * ${U}u + ${u}u) * ${L}u;`);
    for (let t = 0; t < T; t++) body.push(`let q${u}_${t} = w[base + ${t * groups}u + g${u}]; let s${u}_${t} = f32(s[base + ${t * groups}u + g${u}]);`);
  }
  for (let u = 0; u < U && mode === "J"; u++) {
    body.push(`{ let xa = x[g${u} * 4u]; let xb = x[g${u} * 4u + 1u]; let xc = x[g${u} * 4u + 2u]; let xd = x[g${u} * 4u + 3u]; let xg = xq[g${u}];`);
    for (let t = 0; t < T; t++) {
      const lines = ["var th = 0; var tl = 0;"];
      for (let w = 0; w < 4; w++) {
        const [hi, lo] = w < 2 ? ["xa", "xc"] : ["xb", "xd"], c = (w % 2) * 2;
        lines.push(`{ let e = q${u}_${t}[${w}] & 0x0F0F0F0Fu; let o = (q${u}_${t}[${w}] >> 4u) & 0x0F0F0F0Fu;`);
        lines.push(`th += dot4I8Packed(e, ${hi}[${c}]) + dot4I8Packed(o, ${hi}[${c + 1}]); tl += dot4I8Packed(e, ${lo}[${c}]) + dot4I8Packed(o, ${lo}[${c + 1}]); }`);
      }
      lines.push(`acc${t} = fma(s${u}_${t} * xg.x, f32(th * 256 + tl) - 7.0 * xg.y, acc${t});`);
      body.push(`{ ${lines.join(" ")} }`);
    }
    body.push("}");
  }
  for (let u = 0; u < U && mode === "m"; u++) {
    for (let w = 0; w < 4; w++) {
      const lines = [`{ let a = vec4<f32>(x[g${u} * 8u + ${2 * w}u]); let b = vec4<f32>(x[g${u} * 8u + ${2 * w + 1}u]);`];
      for (let t = 0; t < T; t++) {
        lines.push(`let word${t} = q${u}_${t}[${w}];`);
        for (let j = 0; j < 8; j++) {
          const xv = j < 4 ? `a[${j}]` : `b[${j - 4}]`;
          lines.push(`d${u}_${t} = fma(bitcast<f32>(((word${t} >> ${4 * j}u) & 15u) | 0x4B000000u) - 8388615.0, ${xv}, d${u}_${t});`);
        }
      }
      body.push(lines.join(" ") + " }");
    }
    for (let t = 0; t < T; t++) body.push(`acc${t} = fma(s${u}_${t}, d${u}_${t}, acc${t});`);
  }
  const decl = [];
  for (let u = 0; u < U && mode === "m"; u++) for (let t = 0; t < T; t++) decl.push(`var d${u}_${t} = 0.0;`);
  const tree = [];
  for (let half = L / 2; half >= 1; half /= 2) {
    const adds = Array.from({ length: T }, (_, t) => `part[${t * L}u + slot] += part[${t * L}u + slot + ${half}u];`).join(" ");
    tree.push(`workgroupBarrier(); if (lane < ${half}u) { ${adds} }`);
  }
  return `enable f16;
  @group(0) @binding(0) var<storage, read> w: array<vec4<u32>>;
  @group(0) @binding(1) var<storage, read> s: array<f16>;
  @group(0) @binding(2) var<storage, read> x: array<${mode === "J" ? "vec4<u32>" : "vec4<f16>"}>;
  @group(0) @binding(3) var<storage, read_write> y: array<f16>;
  ${mode === "J" ? "@group(0) @binding(4) var<storage, read> xq: array<vec2<f32>>;" : ""}
  var<workgroup> part: array<f32, ${L * R}>;
  @compute @workgroup_size(${threads})
  fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % ${L}u;
    let row = wg.x * ${R}u + (lid / ${L}u) * ${T}u;
    let base = row * ${groups}u;
    let slot = (lid / ${L}u) * ${T * L}u + lane;
    ${Array.from({ length: T }, (_, t) => `var acc${t} = 0.0;`).join(" ")}
    for (var i = 0u; i < ${iters}u; i++) {
        ${decl.join(" ")}
        ${body.join("\n        ")}
    }
    ${Array.from({ length: T }, (_, t) => `part[slot + ${t * L}u] = acc${t};`).join(" ")}
    ${tree.join("\n    ")}
    if (lane == 0u) { ${Array.from({ length: T }, (_, t) => `y[row + ${t}u] = f16(part[slot + ${t * L}u]);`).join(" ")} }
  }`;
}

// The streaming read of the same bytes: each thread sums vec4<u32> words grid-stride.
const streamWgsl = (threads) => `
  @group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
  @group(0) @binding(1) var<storage, read_write> dst: array<u32>;
  @compute @workgroup_size(256)
  fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let total = arrayLength(&src);
    var acc = vec4<u32>(0u);
    for (var i = gid.x; i < total; i += ${threads}u) { acc ^= src[i]; }
    dst[gid.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
  }`;

// Timestamps: TIMINGS passes of `count` launches each; also `SINGLES` passes of one launch.
const TIMINGS = 5, SINGLES = 32;
const querySet = device.createQuerySet({ type: "timestamp", count: 2 * (TIMINGS + SINGLES) });
const resolveBuffer = device.createBuffer({ size: 16 * (TIMINGS + SINGLES), usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
const readBuffer = device.createBuffer({ size: 16 * (TIMINGS + SINGLES), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
const warm = { pipeline: pipeline(streamWgsl(256 * 1024)) };
{
  const src = storage(64 << 20), dst = storage(256 * 1024 * 4);
  warm.group = device.createBindGroup({ layout: warm.pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }] });
}
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
// launch(pass, i) dispatches launch i (its own bind group). Returns {in_pass_us, own_pass_us}.
async function timed(launch) {
  const encoder = device.createCommandEncoder();
  const w = encoder.beginComputePass();
  w.setPipeline(warm.pipeline);
  w.setBindGroup(0, warm.group);
  for (let i = 0; i < 3000; i++) w.dispatchWorkgroups(1024);
  for (let i = 0; i < 3; i++) launch(w, i);
  w.end();
  for (let t = 0; t < TIMINGS + SINGLES; t++) {
    const pass = encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * t, endOfPassWriteIndex: 2 * t + 1 } });
    if (t < TIMINGS) for (let i = 0; i < LAUNCHES; i++) launch(pass, i + t * LAUNCHES);
    else launch(pass, t);
    pass.end();
  }
  encoder.resolveQuerySet(querySet, 0, 2 * (TIMINGS + SINGLES), resolveBuffer, 0);
  encoder.copyBufferToBuffer(resolveBuffer, 0, readBuffer, 0, 16 * (TIMINGS + SINGLES));
  device.queue.submit([encoder.finish()]);
  await readBuffer.mapAsync(GPUMapMode.READ);
  const ticks = new BigUint64Array(readBuffer.getMappedRange());
  const ns = (t) => Number(ticks[2 * t + 1] - ticks[2 * t]);
  const inPass = [], own = [];
  for (let t = 0; t < TIMINGS; t++) inPass.push(ns(t) / LAUNCHES / 1e3);
  for (let t = TIMINGS; t < TIMINGS + SINGLES; t++) own.push(ns(t) / 1e3);
  readBuffer.unmap();
  return { in_pass_us: median(inPass), own_pass_us: median(own) };
}

// The floor: a one-workgroup kernel.
{
  const p = pipeline(`@group(0) @binding(0) var<storage, read_write> o: array<u32>;
    @compute @workgroup_size(64) fn main(@builtin(local_invocation_index) i: u32) { o[i] += 1u; }`);
  const group = device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: storage(256) } }] });
  const r = await timed((pass) => { pass.setPipeline(p); pass.setBindGroup(0, group); pass.dispatchWorkgroups(1); });
  await emit({ layer: "-", variant: "one workgroup", ...r });
}

const x = storage(8192 * 2);
{
  const bits = new Uint16Array(8192);
  for (let i = 0; i < bits.length; i++) bits[i] = f16Bits(((hash(i + 777) & 0xffff) / 65536) * 2 - 1);
  device.queue.writeBuffer(x, 0, bits);
  var xValues = Float64Array.from(bits, f16Value);
}
// The same x as f32, as f32 pre-multiplied by 16^-(j % 4), and as int8 a group of 32: the
// values (even elements of a word, then odd) and per group (scale, sum of the int8 values).
const xByMode = { g: x };
{
  const plain = Float32Array.from(xValues), pre = plain.map((v, j) => v / 16 ** (j % 4));
  const packed = new Uint32Array(8192 / 4), groups = new Float32Array((8192 / 32) * 2);
  var xQuantized = new Float64Array(8192);
  for (let g = 0; g < 8192 / 32; g++) {
    let peak = 0;
    for (let j = 0; j < 32; j++) peak = Math.max(peak, Math.abs(plain[g * 32 + j]));
    const scale = peak / 127 || 1;
    let sum = 0;
    const q = [];
    for (let j = 0; j < 32; j++) {
      q.push(Math.round(plain[g * 32 + j] / scale));
      sum += q[j];
      xQuantized[g * 32 + j] = q[j] * Math.fround(scale);
    }
    for (let w = 0; w < 4; w++) {
      for (let half = 0; half < 2; half++) {
        let word = 0;
        for (let b = 0; b < 4; b++) word |= (q[w * 8 + 2 * b + half] & 0xff) << (8 * b);
        packed[g * 8 + w * 2 + half] = word >>> 0;
      }
    }
    groups[2 * g] = scale;
    groups[2 * g + 1] = sum;
  }
  // Two int8 planes: q = 256 * high + low, |q| <= 127 * 256, low in -128..127; per group the
  // high plane's 8 words (even, odd elements as above), then the low plane's.
  const planes = new Uint32Array(8192 / 2), groups2 = new Float32Array((8192 / 32) * 2);
  for (let g = 0; g < 8192 / 32; g++) {
    let peak = 0;
    for (let j = 0; j < 32; j++) peak = Math.max(peak, Math.abs(plain[g * 32 + j]));
    const scale = Math.fround(peak / (127 * 256) || 1);
    const q = [], high = [], low = [];
    let sum = 0;
    for (let j = 0; j < 32; j++) {
      q.push(Math.round(plain[g * 32 + j] / scale));
      high.push(Math.floor((q[j] + 128) / 256));
      low.push(q[j] - 256 * high[j]);
      sum += q[j];
    }
    for (const [plane, values] of [[0, high], [1, low]]) {
      for (let w = 0; w < 4; w++) {
        for (let half = 0; half < 2; half++) {
          let word = 0;
          for (let b = 0; b < 4; b++) word |= (values[w * 8 + 2 * b + half] & 0xff) << (8 * b);
          planes[g * 16 + plane * 8 + w * 2 + half] = word >>> 0;
        }
      }
    }
    groups2[2 * g] = scale;
    groups2[2 * g + 1] = sum;
  }
  for (const [mode, data] of [["f", plain], ["p", pre], ["i", packed], ["iq", groups], ["j", planes], ["jq", groups2]]) {
    xByMode[mode] = storage(data.byteLength);
    device.queue.writeBuffer(xByMode[mode], 0, data);
  }
}

for (const [layer, [n, k]] of Object.entries(LAYERS)) {
  const weightBytes = (n * k) / 2, scaleBytes = (n * k) / 16;
  const copies = Math.ceil(COPY_BYTES / weightBytes);
  const weights = storage(weightBytes * copies), scales = storage(scaleBytes * copies);
  fill(fillWords, weights);
  fill(fillScales, scales);
  const y = storage(n * 2);
  const bytes = weightBytes + scaleBytes;

  // Streaming read of the same number of bytes (the weights, one copy a launch), 4 vec4 a thread.
  for (const perThread of [4, 16]) {
    const threads = Math.ceil(weightBytes / 16 / perThread / 256) * 256;
    const p = pipeline(streamWgsl(threads));
    const dst = storage(threads * 4);
    const groups = Array.from({ length: copies }, (_, c) => device.createBindGroup({
      layout: p.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: weights, offset: c * weightBytes, size: weightBytes } }, { binding: 1, resource: { buffer: dst } }],
    }));
    const r = await timed((pass, i) => { pass.setPipeline(p); pass.setBindGroup(0, groups[i % copies]); pass.dispatchWorkgroups(threads / 256); });
    await emit({ layer, variant: `stream ${perThread} vec4/thread`, bytes: weightBytes, ...r, gb_per_s: weightBytes / r.in_pass_us / 1e3 });
  }

  for (const variant of VARIANTS) {
    const code = gemvWgsl(n, k, variant);
    if (!code) continue;
    const [L, R] = variant;
    let p;
    try {
      device.pushErrorScope("validation");
      p = pipeline(code);
      const error = await device.popErrorScope();
      if (error) throw new Error(error.message);
    } catch (e) {
      await emit({ layer, variant: `gemv ${variant}`, error: String(e).slice(0, 300) });
      continue;
    }
    const groups = Array.from({ length: copies }, (_, c) => device.createBindGroup({
      layout: p.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: weights, offset: c * weightBytes, size: weightBytes } },
        { binding: 1, resource: { buffer: scales, offset: c * scaleBytes, size: scaleBytes } },
        { binding: 2, resource: { buffer: xByMode[variant[3].toLowerCase()] ?? x, size: variant[3] === "i" ? k : ["f", "p"].includes(variant[3]) ? k * 4 : k * 2 } },
        { binding: 3, resource: { buffer: y } },
        ...(["i", "j", "J"].includes(variant[3]) ? [{ binding: 4, resource: { buffer: xByMode[variant[3].toLowerCase() + "q"], size: (k / 32) * 8 } }] : []),
      ],
    }));
    const launch = (pass, i) => { pass.setPipeline(p); pass.setBindGroup(0, groups[i % copies]); pass.dispatchWorkgroups(n / R); };
    device.pushErrorScope("validation");
    const r = await timed(launch);
    const error = await device.popErrorScope();
    if (error) {
      await emit({ layer, variant: `gemv ${variant.join(",")}`, error: error.message.slice(0, 300) });
      continue;
    }
    // Check copy 0's sampled rows against a float64 sum on the CPU.
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    launch(pass, 0);
    pass.end();
    const read = device.createBuffer({ size: n * 2, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.copyBufferToBuffer(y, 0, read, 0, n * 2);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const out = new Uint16Array(read.getMappedRange().slice(0));
    read.destroy();
    let worst = 0, peak = 0;
    for (let sample = 0; sample < 16; sample++) {
      const row = (hash(sample + 99) % n) >>> 0;
      let sum = 0;
      for (let j = 0; j < k; j++) {
        const word = hash(row * (k / 8) + (j >> 3));
        const q = (word >>> ((j & 7) * 4)) & 15;
        const si = row * (k / 32) + (j >> 5);
        sum += (q - 7) * f16Value(f16Bits(scaleOf(si))) * xValues[j]; // (the float x, also for "i")
      }
      worst = Math.max(worst, Math.abs(sum - f16Value(out[row])));
      peak = Math.max(peak, Math.abs(sum));
    }
    await emit({
      layer, variant: `gemv ${variant.join(",")}`, bytes, ...r, gb_per_s: bytes / r.in_pass_us / 1e3,
      relative_error: variant[3] === "l" ? null : worst / peak,
    });
  }
  weights.destroy();
  scales.destroy();
}
