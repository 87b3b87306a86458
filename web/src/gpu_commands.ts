// How work reaches the GPU beyond what tvmjs's public API offers: small reads that do not wait
// for the whole queue (tvmjs's `sync()` does).

import type * as tvmjs from "@mlc-ai/web-runtime";

// The parts of tvmjs's WebGPU context used here. tvmjs keeps them private in its typings, so
// they are declared once, here, and checked at run time.
export interface TvmWebGPUContext {
  device: GPUDevice;
  flushCommands(): void;
  gpuBufferFromPtr(ptr: number): GPUBuffer;
}

export function webgpuContext(tvm: tvmjs.Instance): TvmWebGPUContext {
  const context = (tvm as unknown as { lib: { webGPUContext?: TvmWebGPUContext } }).lib.webGPUContext;
  if (!context || typeof context.gpuBufferFromPtr !== "function" || typeof context.flushCommands !== "function") {
    throw new Error("This tvmjs has no WebGPU context of the expected shape (initWebGPU not called?).");
  }
  return context;
}

// Reads int32 scalars (token ids) back from GPU tensors, each read resolving on its own as soon
// as the GPU has produced its value, while later work keeps running.
export class ScalarReader {
  private readonly free: GPUBuffer[] = [];

  constructor(private readonly context: TvmWebGPUContext) {}

  read(tensor: tvmjs.Tensor): Promise<number> {
    const { device } = this.context;
    // The dispatches that produce `tensor` must be submitted before the copy that reads it.
    this.context.flushCommands();
    const staging =
      this.free.pop() ?? device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const source = this.context.gpuBufferFromPtr(tensor.getDataPtr());
    const offset = (tensor as unknown as { byteOffset: number }).byteOffset ?? 0;
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(source, offset, staging, 0, 4);
    device.queue.submit([encoder.finish()]);
    return staging.mapAsync(GPUMapMode.READ).then(() => {
      const value = new Int32Array(staging.getMappedRange(0, 4))[0];
      staging.unmap();
      this.free.push(staging);
      return value;
    });
  }

  dispose(): void {
    for (const buffer of this.free) buffer.destroy();
    this.free.length = 0;
  }
}

// What tvmjs passes to its shader factory for each kernel of a library.
interface KernelInfo {
  name: string;
  arg_types: string[];
  launch_param_tags: string[];
}

interface BatchingContext extends TvmWebGPUContext {
  pendingEncoder: GPUCommandEncoder | null;
  shaderSubmitCounter: number;
  createShadeInternal(info: KernelInfo, code: string, asyncMode: boolean): unknown;
  deviceCopyWithinGPU(from: number, fromOffset: number, to: number, toOffset: number, nbytes: number): void;
}

// Dispatches whose scalar arguments share one uniform buffer between two flushes; a batch that
// grows past it is flushed early (the buffer is then rewritten, in queue order).
const UNIFORM_SLOTS = 2048;
// Bind groups remembered per kernel; past this (buffers freed and reallocated) the cache restarts.
const BIND_GROUPS_PER_KERNEL = 256;

// Replaces tvmjs's kernel launch with one that costs the CPU far less per dispatch, since a
// decode step is hundreds of small dispatches and each WebGPU call crosses into the browser's
// (or Deno's) native side. tvmjs opens a compute pass, creates a bind group and writes a uniform
// buffer for every dispatch; here
// - dispatches share one compute pass until the next flush or copy (a pass orders its
//   dispatches' storage accesses, as separate passes do);
// - the scalar arguments of all dispatches of a flush go to one uniform buffer in one write,
//   each bound at its own dynamic offset;
// - a kernel's bind group is reused whenever it is launched on the same buffers again, as every
//   decode step does.
// The kernels, their arguments and their order are unchanged. While a profiler times kernels
// (webllm_build/profiling.py sets `__gpuProfile.timing`), every dispatch gets its own pass,
// since timestamps can only be written at pass boundaries.
export function batchDispatches(tvmContext: TvmWebGPUContext): void {
  const context = tvmContext as BatchingContext;
  for (const method of ["createShadeInternal", "deviceCopyWithinGPU", "flushCommands"] as const) {
    if (typeof context[method] !== "function") throw new Error(`tvmjs's WebGPU context has no ${method}()`);
  }
  const { device } = context;
  const stride = Math.max(256, device.limits.minUniformBufferOffsetAlignment);
  const uniforms = device.createBuffer({
    size: UNIFORM_SLOTS * stride,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  const staged = new ArrayBuffer(UNIFORM_SLOTS * stride);
  const [stagedI32, stagedU32, stagedF32] = [new Int32Array(staged), new Uint32Array(staged), new Float32Array(staged)];
  let slots = 0; // uniform slots filled since the last flush
  let pass: GPUComputePassEncoder | null = null;
  const bufferIds = new WeakMap<GPUBuffer, number>();
  let nextBufferId = 1;
  const bufferId = (buffer: GPUBuffer) => {
    let id = bufferIds.get(buffer);
    if (id === undefined) bufferIds.set(buffer, (id = nextBufferId++));
    return id;
  };
  const endPass = () => {
    pass?.end();
    pass = null;
  };

  const flush = context.flushCommands.bind(context);
  context.flushCommands = () => {
    endPass();
    if (slots > 0) device.queue.writeBuffer(uniforms, 0, staged, 0, slots * stride);
    slots = 0;
    flush();
  };
  const copyWithin = context.deviceCopyWithinGPU.bind(context);
  context.deviceCopyWithinGPU = (...args) => {
    endPass();
    copyWithin(...args);
  };

  context.createShadeInternal = (info: KernelInfo, code: string, asyncMode: boolean) => {
    const kernel = describeKernel(info);
    const layout = device.createBindGroupLayout({
      entries: [
        ...kernel.bufferArgs.map((_, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kernel.writable[binding] ? ("storage" as const) : ("read-only-storage" as const) },
        })),
        {
          binding: kernel.bufferArgs.length,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: "uniform" as const, hasDynamicOffset: true },
        },
      ],
    });
    const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [layout] });
    const uniformBytes = 4 * (kernel.podArgs.length + 1);
    const bindGroups = new Map<string, GPUBindGroup>();

    const launcher = (pipeline: GPUComputePipeline) => (...args: number[]) => {
      const work = workgroups(kernel, args);
      if (slots === UNIFORM_SLOTS) context.flushCommands();
      // Scalars, then the grid's true x extent (kernels re-derive blockIdx.x from z when split).
      const slot = slots++;
      const base = (slot * stride) / 4;
      kernel.podArgs.forEach((arg, i) => {
        const type = info.arg_types[arg];
        const view = type.startsWith("float") ? stagedF32 : type.startsWith("uint") ? stagedU32 : stagedI32;
        view[base + i] = args[arg];
      });
      stagedU32[base + kernel.podArgs.length] = work.packedX;

      const buffers = kernel.bufferArgs.map((arg) => context.gpuBufferFromPtr(args[arg]));
      const key = buffers.map(bufferId).join(",");
      let group = bindGroups.get(key);
      if (group === undefined) {
        if (bindGroups.size >= BIND_GROUPS_PER_KERNEL) bindGroups.clear();
        group = device.createBindGroup({
          layout,
          entries: [
            ...buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
            { binding: buffers.length, resource: { buffer: uniforms, size: uniformBytes } },
          ],
        });
        bindGroups.set(key, group);
      }
      context.pendingEncoder ??= device.createCommandEncoder();
      pass ??= context.pendingEncoder.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group, [slot * stride]);
      pass.dispatchWorkgroups(work.x, work.y, work.z);
      context.shaderSubmitCounter += 1;
      const profiler = (globalThis as { __gpuProfile?: { timing?: boolean } }).__gpuProfile;
      if (profiler?.timing) endPass();
    };

    const module = device.createShaderModule({ code, compilationHints: [{ entryPoint: "main", layout: pipelineLayout }] });
    const descriptor = { layout: pipelineLayout, compute: { module, entryPoint: info.name } };
    return asyncMode
      ? device.createComputePipelineAsync(descriptor).then(launcher)
      : launcher(device.createComputePipeline(descriptor));
  };
}

interface KernelShape {
  bufferArgs: number[]; // argument positions bound as storage buffers, in binding order
  writable: boolean[]; // per buffer binding
  podArgs: number[]; // argument positions passed as scalars
  gridDims: number[]; // per trailing launch argument: 0-2 blockIdx.x-z, 3-5 threadIdx.x-z
}

// tvmjs's calling convention for a kernel: buffers, then scalars, then one launch extent per tag.
function describeKernel(info: KernelInfo): KernelShape {
  const gridDims: number[] = [];
  let writable: boolean[] = [];
  for (const tag of info.launch_param_tags) {
    const axis = tag.charCodeAt(tag.length - 1) - "x".charCodeAt(0);
    if (tag.startsWith("blockIdx.")) gridDims.push(axis);
    else if (tag.startsWith("threadIdx.")) gridDims.push(axis + 3);
    else if (tag.startsWith("paramWriteAccess:")) writable = JSON.parse(tag.slice("paramWriteAccess:".length));
    else throw new Error(`Cannot handle the launch tag ${tag} of kernel ${info.name}`);
  }
  const bufferArgs: number[] = [];
  const podArgs: number[] = [];
  info.arg_types.forEach((type, i) => {
    if (type === "handle") bufferArgs.push(i);
    else if (/^(u?int|float)/.test(type)) podArgs.push(i);
    else throw new Error(`Cannot pass an argument of type ${type} to WebGPU kernel ${info.name}`);
  });
  if (writable.length !== bufferArgs.length) throw new Error(`Kernel ${info.name}: write access tags do not match`);
  return { bufferArgs, writable, podArgs, gridDims };
}

// The workgroup grid of one launch. WebGPU caps each dimension at 65535 workgroups, so a long x
// extent is folded into z, as tvmjs's codegen expects (blockIdx.z is reserved for it).
function workgroups(kernel: KernelShape, args: number[]): { x: number; y: number; z: number; packedX: number } {
  const extent = [1, 1, 1, 1, 1, 1];
  const first = kernel.bufferArgs.length + kernel.podArgs.length;
  if (args.length !== first + kernel.gridDims.length) throw new Error("Wrong number of kernel arguments");
  kernel.gridDims.forEach((dim, i) => (extent[dim] = args[first + i]));
  if (extent[2] !== 1) throw new Error("WebGPU: blockIdx.z is reserved for internal use");
  let [x, , z] = extent;
  while (x >= 1 << 16) {
    x = Math.ceil(x / 2);
    z *= 2;
  }
  return { x, y: extent[1], z, packedX: extent[0] };
}
