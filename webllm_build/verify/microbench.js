// The adapter's roofline, measured in the page by `webllm_build bench` (evaluated as one async
// function): a streaming read (memory bandwidth) and a register-tiled f32 matmul (compute).
// Each kernel is repeated until a submission takes at least `minMs`, so slow emulators and fast
// GPUs are both timed well above the cost of one submission; the best of `repeats` counts.
async ({ bandwidthBytes = 64 << 20, minMs = 200, repeats = 3, maxMatmul = 2048 } = {}) => {
  const adapter = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error("No WebGPU adapter for the microbenchmark.");
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxBufferSize: adapter.limits.maxBufferSize,
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
    },
  });
  const storage = GPUBufferUsage.STORAGE;

  // Seconds for one run of `dispatches` dispatches of `pipeline` in one submission.
  async function timeDispatches(pipeline, bindGroup, workgroups, dispatches) {
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let i = 0; i < dispatches; i++) pass.dispatchWorkgroups(...workgroups);
    pass.end();
    const started = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    return (performance.now() - started) / 1000;
  }

  // The best seconds per dispatch, with the dispatch count grown until a run lasts minMs.
  async function best(pipeline, bindGroup, workgroups) {
    await timeDispatches(pipeline, bindGroup, workgroups, 1); // warm-up: pipeline and buffer setup
    let dispatches = 1;
    let seconds = await timeDispatches(pipeline, bindGroup, workgroups, dispatches);
    while (seconds * 1000 < minMs && dispatches < 1 << 16) {
      dispatches *= Math.min(64, Math.max(2, Math.ceil(minMs / 1000 / Math.max(seconds, 1e-6))));
      seconds = await timeDispatches(pipeline, bindGroup, workgroups, dispatches);
    }
    let result = seconds / dispatches;
    for (let i = 1; i < repeats; i++) {
      result = Math.min(result, (await timeDispatches(pipeline, bindGroup, workgroups, dispatches)) / dispatches);
    }
    return { seconds: result, dispatches };
  }

  function pipelineFor(code) {
    return device.createComputePipeline({
      layout: "auto",
      compute: { module: device.createShaderModule({ code }), entryPoint: "main" },
    });
  }

  // --- bandwidth: every thread sums a strided slice of vec4s; one float out per thread.
  const bytes = Math.min(bandwidthBytes, adapter.limits.maxStorageBufferBindingSize) & ~15;
  const threads = 256 * 1024;
  const source = device.createBuffer({ size: bytes, usage: storage });
  const sink = device.createBuffer({ size: threads * 4, usage: storage });
  const read = pipelineFor(`
    @group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
    @group(0) @binding(1) var<storage, read_write> dst: array<f32>;
    @compute @workgroup_size(256)
    fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
      let total = arrayLength(&src);
      var acc = vec4<f32>(0.0);
      for (var i = gid.x; i < total; i += ${threads}u) { acc += src[i]; }
      dst[gid.x] = acc.x + acc.y + acc.z + acc.w;
    }`);
  const readGroup = device.createBindGroup({
    layout: read.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: source } }, { binding: 1, resource: { buffer: sink } }],
  });
  const streamed = await best(read, readGroup, [threads / 256]);
  source.destroy();
  sink.destroy();

  // --- matmul: C = A B, n x n f32; a 16x16 workgroup, each thread a 4x4 block of C in registers.
  async function matmul(n) {
    const a = device.createBuffer({ size: n * n * 4, usage: storage });
    const b = device.createBuffer({ size: n * n * 4, usage: storage });
    const c = device.createBuffer({ size: n * n * 4, usage: storage });
    const q = n / 4;
    const pipeline = pipelineFor(`
      @group(0) @binding(0) var<storage, read> A: array<f32>;
      @group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
      @group(0) @binding(2) var<storage, read_write> C: array<vec4<f32>>;
      @compute @workgroup_size(16, 16)
      fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
        let col = gid.x;
        let row = gid.y * 4u;
        var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
        for (var k = 0u; k < ${n}u; k++) {
          let bk = B[k * ${q}u + col];
          c0 += A[row * ${n}u + k] * bk;
          c1 += A[(row + 1u) * ${n}u + k] * bk;
          c2 += A[(row + 2u) * ${n}u + k] * bk;
          c3 += A[(row + 3u) * ${n}u + k] * bk;
        }
        C[row * ${q}u + col] = c0;
        C[(row + 1u) * ${q}u + col] = c1;
        C[(row + 2u) * ${q}u + col] = c2;
        C[(row + 3u) * ${q}u + col] = c3;
      }`);
    const group = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [a, b, c].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const timed = await best(pipeline, group, [q / 16, q / 16]);
    [a, b, c].forEach((buffer) => buffer.destroy());
    return { n, ...timed, gflop_per_s: (2 * n ** 3) / timed.seconds / 1e9 };
  }

  // Grow the matrix while one product is quick: small ones under-fill a large GPU.
  let product = await matmul(256);
  while (product.n < maxMatmul && product.seconds < 0.05 && (product.n * 2) ** 2 * 4 <= bytes) {
    const larger = await matmul(product.n * 2);
    if (larger.gflop_per_s < product.gflop_per_s) break;
    product = larger;
  }
  device.destroy();
  return {
    bandwidth: {
      bytes,
      seconds: streamed.seconds,
      dispatches: streamed.dispatches,
      gb_per_s: bytes / streamed.seconds / 1e9,
    },
    matmul: product,
  };
};
