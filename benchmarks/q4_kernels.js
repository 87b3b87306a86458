// Times the kernels benchmarks/q4_kernels.py wrote, on this runtime's WebGPU adapter, and checks
// sampled outputs of each against a float64 CPU sum and against dlight's kernel for the layer.
// Appends one JSON line per kernel to OUT as it goes (a run cut short keeps what it measured),
// after a first line with the streaming read bandwidth measured the way `bench`'s
// microbenchmark does (webllm_build/verify/microbench.js), which the kernels' GB/s compare with.
// Launches cycle through copies of the weights (COPY_BYTES in all) so that, as in a model's
// forward pass, no launch finds its weights in the GPU's cache.
//   deno run -A benchmarks/q4_kernels.js KERNELS.json OUT.jsonl [LAUNCHES per timing, default 200]
//     [WARM_UP streaming launches before each timing, default 3000]
const [input, output, launches = "200", warmUp = "3000"] = Deno.args;
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
const COPY_BYTES = 512 << 20;

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

// The streaming read of microbench.js: 64 MiB of vec4s summed by 256 Ki threads. Also the
// warm-up before every timing: an idle GPU lowers its clocks between kernels, and a few
// milliseconds of launches are too short to raise them again.
const STREAM_BYTES = 64 << 20, STREAM_THREADS = 256 * 1024;
const streamPipeline = device.createComputePipeline({
  layout: "auto",
  compute: {
    entryPoint: "main",
    module: device.createShaderModule({ code: `
      @group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
      @group(0) @binding(1) var<storage, read_write> dst: array<f32>;
      @compute @workgroup_size(256)
      fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
        let total = arrayLength(&src);
        var acc = vec4<f32>(0.0);
        for (var i = gid.x; i < total; i += ${STREAM_THREADS}u) { acc += src[i]; }
        dst[gid.x] = acc.x + acc.y + acc.z + acc.w;
      }` }),
  },
});
const streamGroup = device.createBindGroup({
  layout: streamPipeline.getBindGroupLayout(0),
  entries: [
    { binding: 0, resource: { buffer: device.createBuffer({ size: STREAM_BYTES, usage: GPUBufferUsage.STORAGE }) } },
    { binding: 1, resource: { buffer: device.createBuffer({ size: STREAM_THREADS * 4, usage: GPUBufferUsage.STORAGE }) } },
  ],
});
const streamSetup = (pass) => { pass.setPipeline(streamPipeline); pass.setBindGroup(0, streamGroup); };
const streamLaunch = (pass) => pass.dispatchWorkgroups(STREAM_THREADS / 256);
const WARM_UP_LAUNCHES = Number(warmUp); // 3000: ~60 ms of streaming on an H200

// Seconds per launch of `launch(pass, i)`: GPU timestamps around `count` launches in one pass,
// five such passes queued right after a warm-up in one submission; the median.
const TIMINGS = 5;
const querySet = device.createQuerySet({ type: "timestamp", count: 2 * TIMINGS });
const resolve = device.createBuffer({ size: 16 * TIMINGS, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
const stamps = device.createBuffer({ size: 16 * TIMINGS, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
async function timed(setup, launch, count) {
  const encoder = device.createCommandEncoder();
  const warm = encoder.beginComputePass();
  streamSetup(warm);
  for (let i = 0; i < WARM_UP_LAUNCHES; i++) streamLaunch(warm);
  setup(warm);
  for (let i = 0; i < 3; i++) launch(warm, i);
  warm.end();
  for (let t = 0; t < TIMINGS; t++) {
    const pass = encoder.beginComputePass({
      timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * t, endOfPassWriteIndex: 2 * t + 1 },
    });
    setup(pass);
    for (let i = 0; i < count; i++) launch(pass, i);
    pass.end();
  }
  encoder.resolveQuerySet(querySet, 0, 2 * TIMINGS, resolve, 0);
  encoder.copyBufferToBuffer(resolve, 0, stamps, 0, 16 * TIMINGS);
  device.queue.submit([encoder.finish()]);
  await stamps.mapAsync(GPUMapMode.READ);
  const ticks = new BigUint64Array(stamps.getMappedRange());
  const times = [];
  for (let t = 0; t < TIMINGS; t++) times.push(Number(ticks[2 * t + 1] - ticks[2 * t]) / count / 1e9);
  stamps.unmap();
  times.sort((a, b) => a - b);
  return times[Math.floor(TIMINGS / 2)];
}

{
  const seconds = await timed(streamSetup, streamLaunch, 500);
  const row = {
    layer: "bandwidth", variant: "streaming read", bytes: STREAM_BYTES, us_per_launch: seconds * 1e6,
    gb_per_s: STREAM_BYTES / seconds / 1e9,
  };
  console.log(JSON.stringify(row));
  await Deno.writeTextFile(output, JSON.stringify({ ...header, ...row }) + "\n", { append: true });
}

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
  const constant = buffers.filter((b) => b.access === "read" && b.spec.role !== "activation");
  const constantBytes = constant.reduce((sum, b) => sum + b.data.byteLength, 0);
  const copies = Math.max(1, Math.min(64, Math.ceil(COPY_BYTES / constantBytes)));
  const extra = [];
  const groups = [];
  for (let c = 0; c < copies; c++) {
    const entries = buffers.map((b, i) => {
      let buffer = b.buffer;
      if (c > 0 && constant.includes(b)) {
        buffer = device.createBuffer({ size: b.data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
        device.queue.writeBuffer(buffer, 0, b.data);
        extra.push(buffer);
      }
      return { binding: i, resource: { buffer } };
    });
    entries.push({ binding: buffers.length, resource: { buffer: uniform } });
    groups.push(device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries }));
  }
  const [gx, gy] = kernel.grid;
  const us = 1e6 * await timed((pass) => pass.setPipeline(pipeline), (pass, i) => {
    pass.setBindGroup(0, groups[i % copies]);
    pass.dispatchWorkgroups(gx, gy, 1);
  }, LAUNCHES);
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
  if (kernel.variant === "dlight" || kernel.variant === "multirow") reference.set(key, values);
  else if (reference.has(key)) {
    const ref = reference.get(key);
    let worst = 0, peak = 0;
    for (let i = 0; i < ref.length; i++) {
      worst = Math.max(worst, Math.abs(ref[i] - values[i]));
      peak = Math.max(peak, Math.abs(ref[i]));
    }
    error = worst / peak;
  }
  const weightBytes = Object.values(kernel.buffers)
    .filter((b) => b.role !== "activation")
    .reduce((sum, b) => sum + b.count * (b.dtype === "float16" ? 2 : 4), 0);
  const k = kernel.buffers[Object.keys(kernel.buffers).find((n) => kernel.buffers[n].role === "weight")].count * 8;
  const flops = 2 * kernel.tokens * k;
  const row = {
    layer: kernel.layer, variant: kernel.variant, tokens: kernel.tokens, us_per_launch: us,
    weight_copies: copies, gb_per_s: weightBytes / us / 1e3, tflop_per_s: flops / us / 1e6, relative_error_vs_dlight: error, relative_error_vs_cpu: cpuError,
  };
  console.log(JSON.stringify(row));
  await Deno.writeTextFile(output, JSON.stringify({ ...header, ...row }) + "\n", { append: true });
  for (const b of [...buffers.map((b) => b.buffer), ...extra]) b.destroy();
  uniform.destroy();
  read.destroy();
}
