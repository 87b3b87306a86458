// Times the kernels benchmarks/q4_kernels.py wrote, on this runtime's WebGPU adapter, and checks
// sampled outputs of each against a float64 CPU sum and against dlight's kernel for the layer.
// Appends one JSON line per kernel to OUT as it goes (a run cut short keeps what it measured).
//   deno run -A benchmarks/q4_kernels.js KERNELS.json OUT.jsonl [LAUNCHES per timing, default 200]
const [input, output, launches = "200"] = Deno.args;
const { quantization, kernels } = JSON.parse(await Deno.readTextFile(input));
const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
const limits = {};
for (const key of ["maxBufferSize", "maxStorageBufferBindingSize", "maxComputeWorkgroupStorageSize"]) {
  limits[key] = adapter.limits[key];
}
const device = await adapter.requestDevice({
  requiredFeatures: ["shader-f16", "timestamp-query"].filter((f) => adapter.features.has(f)),
  requiredLimits: limits,
});
const LAUNCHES = Number(launches);

// Deterministic inputs: the same layer gets the same bytes in every variant.
function random(seed) {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}
function f16Bits(value) {
  const f = new Float32Array([value]);
  const x = new Uint32Array(f.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  if (exp <= 0) return sign;
  return sign | (exp << 10) | ((x >>> 13) & 0x3ff);
}
function f16Value(bits) {
  const exp = (bits >>> 10) & 0x1f;
  const frac = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * frac * 2 ** -24;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}
function fill(name, spec, seed) {
  const next = random(seed);
  const bytesPer = spec.dtype === "float16" ? 2 : 4;
  const bytes = new ArrayBuffer(Math.ceil((spec.count * bytesPer) / 4) * 4);
  if (spec.dtype === "uint32") {
    const view = new Uint32Array(bytes);
    for (let i = 0; i < spec.count; i++) view[i] = (next() * 2 ** 32) >>> 0;
  } else {
    const scale = spec.role === "scale" ? 0.02 : 1;
    const values = (i) => (spec.role === "scale" ? scale * (0.5 + next()) : next() * 2 - 1);
    if (bytesPer === 2) {
      const view = new Uint16Array(bytes);
      for (let i = 0; i < spec.count; i++) view[i] = f16Bits(values(i));
    } else {
      const view = new Float32Array(bytes);
      for (let i = 0; i < spec.count; i++) view[i] = values(i);
    }
  }
  return bytes;
}

// Sampled outputs recomputed on the CPU in float64 from the same bytes: an independent check of
// every variant, dlight's included. Error relative to the largest sampled magnitude.
function checkAgainstCpu(kernel, buffers, values) {
  const view = (role) => buffers.find((b) => b.spec.role === role && b.access === "read" && (role !== "activation" || b.name === "x"));
  const asFloats = (b) => b.spec.dtype === "float16"
    ? Float64Array.from(new Uint16Array(b.data).slice(0, b.spec.count), f16Value)
    : Float64Array.from(new Float32Array(b.data).slice(0, b.spec.count));
  const weight = new Uint32Array(view("weight").data);
  const scale = asFloats(view("scale"));
  const x = asFloats(view("activation"));
  const residual = buffers.find((b) => b.name === "r");
  const r = residual && kernel.residual ? asFloats(residual) : null;
  const k = x.length / kernel.tokens;
  const n = weight.length / (k / 8);
  const groupSize = k / (scale.length / n);
  const next = random(12345);
  let worst = 0, peak = 0;
  for (let sample = 0; sample < 64; sample++) {
    const t = Math.floor(next() * kernel.tokens), row = Math.floor(next() * n);
    let sum = 0;
    for (let j = 0; j < k; j++) {
      const q = (weight[row * (k / 8) + (j >> 3)] >>> ((j & 7) * 4)) & 15;
      sum += (q - 7) * scale[row * (k / groupSize) + Math.floor(j / groupSize)] * x[t * k + j];
    }
    if (r) sum += r[t * n + row];
    worst = Math.max(worst, Math.abs(sum - values[t * n + row]));
    peak = Math.max(peak, Math.abs(sum));
  }
  return worst / peak;
}

const info = adapter.info ?? {};
const header = { runtime: `Deno/${Deno.version.deno}`, adapter: info.description || info.device || "", quantization };
const reference = new Map(); // layer/tokens -> dlight's output
const querySet = device.createQuerySet({ type: "timestamp", count: 2 });
const resolve = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
const stamps = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });

for (const kernel of kernels) {
  const bindings = [...kernel.wgsl.matchAll(/@binding\((\d+)\) var<storage, (read|read_write)> (\w+)_ptr/g)];
  const podFields = (kernel.wgsl.match(/struct PODArgs \{([^}]*)\}/) ?? ["", ""])[1]
    .split(",").map((f) => f.trim()).filter(Boolean).map((f) => f.split(":")[0].trim());
  const buffers = [];
  let outName = null;
  bindings.forEach(([, , access, name], index) => {
    const spec = kernel.buffers[name];
    if (!spec) throw new Error(`${kernel.layer}/${kernel.variant}: no buffer ${name}`);
    const data = fill(name, spec, index + 7 * name.length);
    const buffer = device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    if (access === "read") device.queue.writeBuffer(buffer, 0, data);
    else outName = name;
    buffers.push({ buffer, access, name, spec, data });
  });
  const pods = new Uint32Array(Math.max(4, podFields.length));
  podFields.forEach((field, i) => (pods[i] = field === "packGridDimX" ? kernel.grid[0] : kernel.seq_len));
  const uniform = device.createBuffer({ size: pods.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(uniform, 0, pods);
  const module = device.createShaderModule({ code: kernel.wgsl });
  const entryPoint = kernel.wgsl.match(/fn (\w+)\(/)[1];
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint } });
  const group = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [...buffers.map((b, i) => ({ binding: i, resource: { buffer: b.buffer } })),
      { binding: buffers.length, resource: { buffer: uniform } }],
  });
  const [gx, gy] = kernel.grid;
  const run = (launches, timed) => {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass(
      timed ? { timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : undefined,
    );
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    for (let i = 0; i < launches; i++) pass.dispatchWorkgroups(gx, gy, 1);
    pass.end();
    if (timed) {
      encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
      encoder.copyBufferToBuffer(resolve, 0, stamps, 0, 16);
    }
    device.queue.submit([encoder.finish()]);
  };
  run(3, false);
  const times = [];
  for (let r = 0; r < 5; r++) {
    run(LAUNCHES, true);
    await stamps.mapAsync(GPUMapMode.READ);
    const [t0, t1] = new BigUint64Array(stamps.getMappedRange());
    times.push(Number(t1 - t0) / LAUNCHES / 1e3);
    stamps.unmap();
  }
  // Output, compared with dlight's.
  const out = buffers.find((b) => b.name === outName);
  const read = device.createBuffer({ size: out.buffer.size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = device.createCommandEncoder();
  encoder.copyBufferToBuffer(out.buffer, 0, read, 0, out.buffer.size);
  device.queue.submit([encoder.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const raw = read.getMappedRange();
  const values = out.spec.dtype === "float16"
    ? Float32Array.from(new Uint16Array(raw).slice(0, out.spec.count), f16Value)
    : new Float32Array(raw.slice(0, out.spec.count * 4));
  read.unmap();
  const key = `${kernel.layer}/${kernel.tokens}`;
  const cpuError = checkAgainstCpu(kernel, buffers, values);
  let error = null;
  if (kernel.variant === "dlight") reference.set(key, values);
  else if (reference.has(key)) {
    const ref = reference.get(key);
    let worst = 0, peak = 0;
    for (let i = 0; i < ref.length; i++) {
      worst = Math.max(worst, Math.abs(ref[i] - values[i]));
      peak = Math.max(peak, Math.abs(ref[i]));
    }
    error = worst / peak;
  }
  times.sort((a, b) => a - b);
  const us = times[2];
  const weightBytes = Object.values(kernel.buffers)
    .filter((b) => b.role !== "activation")
    .reduce((sum, b) => sum + b.count * (b.dtype === "float16" ? 2 : 4), 0);
  const k = kernel.buffers[Object.keys(kernel.buffers).find((n) => kernel.buffers[n].role === "weight")].count * 8;
  const flops = 2 * kernel.tokens * k;
  const row = {
    layer: kernel.layer, variant: kernel.variant, tokens: kernel.tokens, us_per_launch: us,
    gb_per_s: weightBytes / us / 1e3, tflop_per_s: flops / us / 1e6, relative_error_vs_dlight: error, relative_error_vs_cpu: cpuError,
  };
  console.log(JSON.stringify(row));
  await Deno.writeTextFile(output, JSON.stringify({ ...header, ...row }) + "\n", { append: true });
  for (const b of buffers) b.buffer.destroy();
  uniform.destroy();
  read.destroy();
}
