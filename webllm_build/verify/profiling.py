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
    untimed: 0,
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
    return setPipeline.call(this, pipeline);
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


def collect(page: Any, log: Any) -> dict[str, Any]:
    """{dispatches, counts per kernel, untimed, timed_ns per kernel or None} since the last reset."""
    return evaluate(page, log, "() => globalThis.__gpuProfile.collect()")
