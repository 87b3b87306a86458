// Loads a model library (.wasm linked by webllm_build) into tvmjs on the WebGPU device.

import * as tvmjs from "@mlc-ai/web-runtime";

export class EngineError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "EngineError";
  }
}

export interface LoadedLibrary {
  tvm: tvmjs.Instance;
  device: tvmjs.DLDevice;
  vm: tvmjs.VirtualMachine;
  features: Set<string>; // WebGPU features the device was created with
  dispose(): void;
}

export async function loadLibrary(
  wasmUrl: string,
  log: (msg: string) => void = () => {},
): Promise<LoadedLibrary> {
  // tvmjs returns undefined without navigator.gpu but throws when no adapter is found.
  const gpu = await tvmjs.detectGPUDevice().catch(() => undefined);
  if (!gpu) {
    throw new EngineError(
      "no-webgpu",
      "This browser exposes no WebGPU adapter. Use a recent Chrome or Edge, or start Chromium " +
        "with --enable-unsafe-webgpu.",
    );
  }
  const response = await fetch(wasmUrl);
  if (!response.ok) {
    throw new EngineError(
      "fetch-failed",
      `Could not download the model library ${wasmUrl}: HTTP ${response.status}.`,
    );
  }
  const wasm = await response.arrayBuffer();
  const tvm = await tvmjs.instantiate(wasm, tvmjs.createPolyfillWASI(), log);
  tvm.initWebGPU(gpu.device);
  const device = tvm.webgpu();
  // tvmjs frees objects created in a scope when it ends; the VM must outlive this call.
  tvm.beginScope();
  const vm = tvm.detachFromCurrentScope(tvm.createVirtualMachine(device));
  tvm.endScope();
  // Compile every shader pipeline up front so the first call does not stall on it.
  await tvm.asyncLoadWebGPUPipelines(vm.getInternalModule());
  return {
    tvm,
    device,
    vm,
    features: new Set([...gpu.device.features].map(String)),
    dispose() {
      vm.dispose();
      tvm.dispose();
    },
  };
}

type Floats = number[];

// Runs `fn(...inputs)` on the GPU for float32 tensors and returns the output read back.
export async function runFloat32(
  lib: LoadedLibrary,
  fnName: string,
  inputs: { shape: number[]; data: Floats }[],
): Promise<{ shape: number[]; data: Floats }> {
  const { tvm, device, vm } = lib;
  tvm.beginScope();
  try {
    const args = inputs.map(({ shape, data }) =>
      tvm.empty(shape, "float32", device).copyFrom(new Float32Array(data)),
    );
    const out = vm.getFunction(fnName)(...args) as tvmjs.Tensor;
    const host = tvm.empty(out.shape, "float32", tvm.cpu()).copyFrom(out);
    await device.sync();
    return { shape: [...out.shape], data: Array.from(host.toArray()) };
  } finally {
    tvm.endScope();
  }
}
