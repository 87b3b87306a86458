"""Count and time the WebGPU dispatches of a page, for benchmarks (never for tests).

`install(page)` patches the page's WebGPU prototypes before a model is loaded: every compute
pipeline remembers its entry point (tvmjs names it after the TIR kernel), every dispatch is
counted by kernel, and while timing is on each compute pass writes begin/end timestamps when the
adapter has `timestamp-query`. The engine shares one pass among many dispatches, except while
`__gpuProfile.timing` is set (web/src/gpu_commands.ts): then each dispatch gets its own pass, so
each kernel is timed. Patching the browser API
rather than tvmjs keeps the engine bundle free of debug code and sees every dispatch whoever
issues it.
"""

from __future__ import annotations

from typing import Any

from webllm_build.verify.browser import evaluate

# One query set holds 4096 timestamps (WebGPU's limit): 2048 passes, more than a forward call has
# for the models we benchmark; passes beyond it are counted but not timed.
INSTALL_SCRIPT = """() => {
  if (globalThis.__gpuProfile) return;
  const SLOTS = 2048;
  const P = {
    timing: false, dispatches: 0, counts: {}, device: null, querySet: null, used: 0, slotNames: [],
    untimed: 0, recording: false, records: [],
  };
  const names = new WeakMap(), passSlot = new WeakMap();
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (desc = {}) {
    const features = [...(desc.requiredFeatures || [])];
    if (this.features.has("timestamp-query") && !features.includes("timestamp-query")) {
      features.push("timestamp-query");
    }
    const device = await requestDevice.call(this, { ...desc, requiredFeatures: features });
    if (device.features.has("timestamp-query")) {
      P.device = device;
      P.querySet = device.createQuerySet({ type: "timestamp", count: 2 * SLOTS });
    }
    return device;
  };
  const createSync = GPUDevice.prototype.createComputePipeline;
  GPUDevice.prototype.createComputePipeline = function (desc) {
    const pipeline = createSync.call(this, desc);
    names.set(pipeline, desc.compute.entryPoint);
    return pipeline;
  };
  const createAsync = GPUDevice.prototype.createComputePipelineAsync;
  GPUDevice.prototype.createComputePipelineAsync = async function (desc) {
    const pipeline = await createAsync.call(this, desc);
    names.set(pipeline, desc.compute.entryPoint);
    return pipeline;
  };
  const beginPass = GPUCommandEncoder.prototype.beginComputePass;
  GPUCommandEncoder.prototype.beginComputePass = function (desc = {}) {
    if (!P.timing || !P.querySet || desc.timestampWrites) return beginPass.call(this, desc);
    if (P.used >= SLOTS) {
      P.untimed += 1;
      return beginPass.call(this, desc);
    }
    const slot = P.used++;
    const pass = beginPass.call(this, {
      ...desc,
      timestampWrites: {
        querySet: P.querySet, beginningOfPassWriteIndex: 2 * slot, endOfPassWriteIndex: 2 * slot + 1,
      },
    });
    passSlot.set(pass, slot);
    return pass;
  };
  const setPipeline = GPUComputePassEncoder.prototype.setPipeline;
  GPUComputePassEncoder.prototype.setPipeline = function (pipeline) {
    const name = names.get(pipeline) || "?";
    P.dispatches += 1;
    P.counts[name] = (P.counts[name] || 0) + 1;
    const slot = passSlot.get(this);
    if (slot !== undefined) P.slotNames[slot] = name;
    passState(this).pipeline = pipeline;
    return setPipeline.call(this, pipeline);
  };

  // Recording, for `replay`: every dispatch with its pipeline, bind group, dynamic offsets and
  // grid, and the bytes its uniform slice held when it was submitted (the engine rewrites one
  // uniform buffer every flush, so the bytes are copied at submit time from a shadow copy).
  const layouts = new WeakMap(), groups = new WeakMap(), shadows = new WeakMap(), states = new WeakMap();
  const passState = (pass) => states.get(pass) || (states.set(pass, {}), states.get(pass));
  const createLayout = GPUDevice.prototype.createBindGroupLayout;
  GPUDevice.prototype.createBindGroupLayout = function (desc) {
    const layout = createLayout.call(this, desc);
    layouts.set(layout, desc.entries);
    return layout;
  };
  const createGroup = GPUDevice.prototype.createBindGroup;
  GPUDevice.prototype.createBindGroup = function (desc) {
    const group = createGroup.call(this, desc);
    groups.set(group, desc);
    return group;
  };
  const createBuffer = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function (desc) {
    const buffer = createBuffer.call(this, desc);
    if (desc.usage & GPUBufferUsage.UNIFORM) shadows.set(buffer, new Uint8Array(desc.size));
    return buffer;
  };
  const writeBuffer = GPUQueue.prototype.writeBuffer;
  GPUQueue.prototype.writeBuffer = function (buffer, offset, data, dataOffset = 0, size) {
    const shadow = shadows.get(buffer);
    if (shadow) {
      const unit = ArrayBuffer.isView(data) ? data.BYTES_PER_ELEMENT || 1 : 1;
      const bytes = ArrayBuffer.isView(data)
        ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
        : new Uint8Array(data);
      const start = dataOffset * unit;
      const length = size === undefined ? bytes.byteLength - start : size * unit;
      shadow.set(bytes.subarray(start, start + length), offset);
    }
    return writeBuffer.call(this, buffer, offset, data, dataOffset, size);
  };
  const setBindGroup = GPUComputePassEncoder.prototype.setBindGroup;
  GPUComputePassEncoder.prototype.setBindGroup = function (index, group, offsets = []) {
    if (index === 0) Object.assign(passState(this), { group, offsets: [...offsets] });
    return setBindGroup.call(this, index, group, offsets);
  };
  let unsnapped = [];
  const dispatch = GPUComputePassEncoder.prototype.dispatchWorkgroups;
  GPUComputePassEncoder.prototype.dispatchWorkgroups = function (x, y = 1, z = 1) {
    if (P.recording) {
      const { pipeline, group, offsets } = passState(this);
      const name = names.get(pipeline) || "?";
      const record = { name, pipeline, group, offsets, grid: [x, y, z], uniform: null };
      P.records.push(record);
      unsnapped.push(record);
    }
    return dispatch.call(this, x, y, z);
  };
  const submit = GPUQueue.prototype.submit;
  GPUQueue.prototype.submit = function (buffers) {
    for (const record of unsnapped) {
      const entry = (groups.get(record.group)?.entries || []).find((e) => shadows.has(e.resource?.buffer));
      if (!entry || !record.offsets.length) continue;
      const start = record.offsets[0] + (entry.resource.offset || 0);
      const size = entry.resource.size ?? 256;
      const bytes = shadows.get(entry.resource.buffer).slice(start, start + size);
      record.uniform = { binding: entry.binding, size, bytes };
    }
    unsnapped = [];
    return submit.call(this, buffers);
  };

  // Times the recorded dispatches whose kernel name matches `pattern` again, after the work that
  // recorded them: per kernel, its dispatches back to back in one compute pass, as the engine
  // runs a step (one pass, no per-dispatch pass), timestamps at that pass's ends.
  // - A dispatch whose weights (inputs no recorded dispatch writes) an earlier one already read
  //   (a later decode step's same layer) is left out: each pass reads every weight once.
  // - Every dispatch of a kernel writes one scratch output, so that each waits for the one
  //   before it (the runtime puts a barrier between two writes of a buffer), as a model's
  //   dispatches, each reading the last one's output, do; none overlaps the next.
  P.replay = async (pattern) => {
    const device = P.device, regex = new RegExp(pattern);
    const bound = (e) => e.resource.size ?? e.resource.buffer.size - (e.resource.offset || 0);
    // A weight: an input no recorded dispatch writes (activations and caches are written).
    const kindOf = (desc, e) => layouts.get(desc?.layout)?.find((l) => l.binding === e.binding)?.buffer?.type;
    const computed = new Set();
    for (const record of P.records) {
      const desc = groups.get(record.group);
      for (const e of desc?.entries || []) if (kindOf(desc, e) === "storage") computed.add(e.resource.buffer);
    }
    const byName = new Map();
    for (const record of P.records) {
      if (!regex.test(record.name)) continue;
      const desc = groups.get(record.group);
      if (!desc || !layouts.has(desc.layout)) continue;
      const bindings = desc.entries.filter((e) => !shadows.has(e.resource?.buffer));
      const inputs = bindings.filter((e) => kindOf(desc, e) === "read-only-storage");
      if (!inputs.length) continue;
      const weights = inputs.map((e) => e.resource.buffer).filter((b) => !computed.has(b));
      const weight = weights.map(bufferKey).sort((a, b) => a - b).join(",");
      const kernel = byName.get(record.name) || { weights: new Set(), records: [], readBytes: 0 };
      byName.set(record.name, kernel);
      if (kernel.weights.has(weight)) continue;
      kernel.weights.add(weight);
      kernel.records.push(record);
      kernel.readBytes += inputs.reduce((n, e) => n + bound(e), 0);
      record.outputs = bindings.filter((e) => kindOf(desc, e) === "storage");
    }
    const kernels = [...byName.entries()];
    if (!kernels.length) return {};
    const stride = Math.max(256, device.limits.minUniformBufferOffsetAlignment);
    const all = kernels.flatMap(([, k]) => k.records);
    const usage = GPUBufferUsage, uniformBytes = all.length * stride;
    const uniforms = device.createBuffer({ size: uniformBytes, usage: usage.UNIFORM | usage.COPY_DST });
    const replayed = new Map();
    const scratch = [];
    for (const [, kernel] of kernels) {
      // One output buffer per binding for all of the kernel's dispatches, never an input.
      const shared = new Map();
      for (const record of kernel.records) {
        for (const out of record.outputs) {
          shared.set(out.binding, Math.max(shared.get(out.binding) || 0, bound(out)));
        }
      }
      for (const [binding, bytes] of shared) {
        const buffer = device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: usage.STORAGE });
        scratch.push(buffer);
        shared.set(binding, buffer);
      }
      for (const record of kernel.records) {
        const i = replayed.size; // the record's slot in `uniforms`, in the order of `all`
        const outputs = new Map();
        for (const out of record.outputs) {
          const resource = { buffer: shared.get(out.binding), size: bound(out) };
          outputs.set(out.binding, { binding: out.binding, resource });
        }
        const entries = groups.get(record.group).entries.map((e) => {
          if (record.uniform && e.binding === record.uniform.binding) {
            return { binding: e.binding, resource: { buffer: uniforms, size: record.uniform.size } };
          }
          return outputs.get(e.binding) ?? e;
        });
        if (record.uniform) writeBuffer.call(device.queue, uniforms, i * stride, record.uniform.bytes);
        const group = createGroup.call(device, { layout: groups.get(record.group).layout, entries });
        const written = [...outputs.values()].map((e) => e.resource.buffer);
        replayed.set(record, { group, offsets: record.uniform ? [i * stride] : record.offsets, written });
      }
    }
    const querySet = device.createQuerySet({ type: "timestamp", count: 2 * kernels.length });
    const bytes = 16 * kernels.length;
    const resolved = device.createBuffer({ size: bytes, usage: usage.QUERY_RESOLVE | usage.COPY_SRC });
    const read = device.createBuffer({ size: bytes, usage: usage.MAP_READ | usage.COPY_DST });
    const encoder = device.createCommandEncoder();
    const run = (pass, records) => {
      for (const record of records) {
        const { group, offsets } = replayed.get(record);
        setPipeline.call(pass, record.pipeline);
        setBindGroup.call(pass, 0, group, offsets);
        dispatch.call(pass, ...record.grid);
      }
    };
    // Untimed first: the same work once, so clocks, caches of code and first-use costs settle.
    const warm = beginPass.call(encoder, {});
    run(warm, all);
    warm.end();
    kernels.forEach(([, kernel], i) => {
      const stamps = { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
      const pass = beginPass.call(encoder, { timestampWrites: stamps });
      run(pass, kernel.records);
      pass.end();
    });
    encoder.resolveQuerySet(querySet, 0, 2 * kernels.length, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, read, 0, bytes);
    device.pushErrorScope("validation");
    submit.call(device.queue, [encoder.finish()]);
    const error = await device.popErrorScope();
    if (error) throw new Error(`Replaying the recorded dispatches failed: ${error.message}`);
    await read.mapAsync(GPUMapMode.READ);
    const stamps = new BigUint64Array(read.getMappedRange().slice(0));
    read.unmap(); read.destroy(); resolved.destroy(); uniforms.destroy(); querySet.destroy();
    for (const buffer of scratch) buffer.destroy();
    const result = {};
    kernels.forEach(([name, kernel], i) => {
      const written = kernel.records.map((record) => replayed.get(record).written);
      const consecutive = written.slice(1).map((out, j) => out.some((b) => written[j].includes(b)));
      result[name] = {
        dispatches: kernel.records.length,
        ns: Number(stamps[2 * i + 1] - stamps[2 * i]),
        read_bytes: kernel.readBytes,
        // Whether each dispatch writes a buffer the one before it wrote: then the runtime orders
        // them with a barrier, as in the model, rather than letting them overlap.
        each_waits_for_the_last: consecutive.every(Boolean),
      };
    });
    return result;
  };
  const bufferIds = new WeakMap();
  let nextBufferId = 1;
  const bufferKey = (buffer) => {
    if (!bufferIds.has(buffer)) bufferIds.set(buffer, nextBufferId++);
    return bufferIds.get(buffer);
  };
  P.record = (on) => {
    if (on) P.records = [];
    P.recording = Boolean(on);
  };
  P.reset = (timing) => {
    P.timing = Boolean(timing) && P.querySet !== null;
    P.dispatches = 0; P.counts = {}; P.used = 0; P.slotNames = []; P.untimed = 0;
  };
  // Reads the timestamps written since the last reset; call it after the GPU work is awaited.
  P.collect = async () => {
    const result = { dispatches: P.dispatches, counts: P.counts, untimed: P.untimed, timed_ns: null };
    if (P.timing && P.used > 0) {
      const n = 2 * P.used, bytes = 8 * n;
      const usage = GPUBufferUsage;
      const resolved = P.device.createBuffer({ size: bytes, usage: usage.QUERY_RESOLVE | usage.COPY_SRC });
      const read = P.device.createBuffer({ size: bytes, usage: usage.MAP_READ | usage.COPY_DST });
      const encoder = P.device.createCommandEncoder();
      encoder.resolveQuerySet(P.querySet, 0, n, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, read, 0, bytes);
      P.device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const stamps = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap(); read.destroy(); resolved.destroy();
      const timed = {};
      for (let i = 0; i < P.used; i++) {
        const name = P.slotNames[i] || "?";
        timed[name] = (timed[name] || 0) + Number(stamps[2 * i + 1] - stamps[2 * i]);
      }
      result.timed_ns = timed;
    }
    P.reset(P.timing);
    return result;
  };
  globalThis.__gpuProfile = P;
}"""


def install(page: Any, log: Any) -> None:
    """Patch the page's WebGPU API; must run before the model (and its GPU device) is created."""
    evaluate(page, log, INSTALL_SCRIPT)


def reset(page: Any, log: Any, *, timing: bool) -> None:
    evaluate(page, log, "(timing) => globalThis.__gpuProfile.reset(timing)", timing)


def record(page: Any, log: Any, *, on: bool) -> None:
    """Start (clearing earlier ones) or stop recording dispatches for `replay`."""
    evaluate(page, log, "(on) => globalThis.__gpuProfile.record(on)", on)


def replay(page: Any, log: Any, pattern: str) -> dict[str, Any]:
    """The recorded dispatches of kernels matching `pattern`, timed again in one pass a kernel:
    {kernel: {dispatches, ns, read_bytes, each_waits_for_the_last}}."""
    return evaluate(page, log, "(pattern) => globalThis.__gpuProfile.replay(pattern)", pattern)


def collect(page: Any, log: Any) -> dict[str, Any]:
    """{dispatches, counts per kernel, untimed, timed_ns per kernel or None} since the last reset."""
    return evaluate(page, log, "() => globalThis.__gpuProfile.collect()")
