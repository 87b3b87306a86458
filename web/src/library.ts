// Loads a model library (.wasm linked by webllm_build) into tvmjs on the WebGPU device.

import * as tvmjs from "@mlc-ai/web-runtime";

import { EngineError } from "./errors";
import { batchDispatches, webgpuContext } from "./gpu_commands";
import { reportedLimits, requestModelDevice } from "./webgpu";

export interface LoadedLibrary {
  tvm: tvmjs.Instance;
  device: tvmjs.DLDevice;
  vm: tvmjs.VirtualMachine;
  features: Set<string>; // WebGPU features the device was created with
  limits: Record<string, number>; // and its limits (reportedLimits)
  gpuDevice: GPUDevice;
  // Settles when the device is lost: a driver reset, the browser taking the GPU back, dispose(),
  // or GPUDevice.destroy() on purpose. Nothing made on it works afterwards: load a new library.
  lost: Promise<GPUDeviceLostInfo>;
  // Frees what it can; never throws, as a lost device's instance may be half freed already.
  dispose(): void;
}

// The error calls on a lost device end with, and every call after until the model is reloaded.
export function deviceLostError(info: Pick<GPUDeviceLostInfo, "reason" | "message">): EngineError {
  const detail = [info.reason, info.message].filter(Boolean).join(": ");
  return new EngineError(
    "gpu-lost",
    `The GPU device was lost (${detail || "no reason given"}): the GPU driver was reset, or the browser ` +
      "took the GPU back (to save power, or after an error). Everything on it is gone: reload the model to " +
      "go on. Its weights stay in the browser's storage, and a conversation continues from its messages.",
  );
}

// What a model needs from the adapter; checked before the library and weights are downloaded.
export interface AdapterRequirements {
  features: string[];
  largestBufferBytes: number; // the biggest single tensor the model binds
  quantization: string;
}

export async function loadLibrary(
  wasmUrl: string,
  log: (msg: string) => void = () => {},
  requirements?: AdapterRequirements,
): Promise<LoadedLibrary> {
  let requestFailure: string | undefined;
  const gpuDevice = await requestModelDevice().catch((error: unknown) => {
    requestFailure = error instanceof Error ? error.message : String(error);
    return undefined;
  });
  if (!gpuDevice) {
    throw new EngineError(
      "no-webgpu",
      requestFailure ??
        "This browser exposes no WebGPU adapter. Use a recent Chrome or Edge, or start Chromium " +
          "with --enable-unsafe-webgpu.",
    );
  }
  if (requirements) checkAdapter(gpuDevice, requirements);
  const response = await fetch(wasmUrl);
  if (!response.ok) {
    throw new EngineError(
      "fetch-failed",
      `Could not download the model library ${wasmUrl}: HTTP ${response.status}.`,
    );
  }
  const wasm = await response.arrayBuffer();
  const tvm = await tvmjs.instantiate(wasm, tvmjs.createPolyfillWASI(), log);
  tvm.initWebGPU(gpuDevice);
  batchDispatches(webgpuContext(tvm));
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
    features: new Set([...gpuDevice.features].map(String)),
    limits: reportedLimits(gpuDevice.limits),
    gpuDevice,
    lost: gpuDevice.lost,
    dispose() {
      // On a lost device tvmjs has disposed the instance itself (its own device.lost handler),
      // so freeing the VM or the instance again may throw: there is nothing left to free then.
      for (const free of [() => vm.dispose(), () => tvm.dispose()]) {
        try {
          free();
        } catch (error) {
          console.warn("webllm_build: freeing the model library failed", error);
        }
      }
    },
  };
}

function checkAdapter(device: GPUDevice, needs: AdapterRequirements): void {
  const missing = needs.features.filter((f) => !device.features.has(f));
  if (missing.length > 0) {
    throw new EngineError(
      "missing-feature",
      `This model (${needs.quantization}) needs the WebGPU feature(s) ${missing.join(", ")}, which this ` +
        "GPU or browser does not offer. Use an f32 variant of the model (q4f32_1 or q0f32).",
    );
  }
  // The device has the adapter's own limits (requestModelDevice): the most this GPU allows.
  const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  if (needs.largestBufferBytes > limit) {
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
    throw new EngineError(
      "buffer-limit",
      `This model binds a ${mib(needs.largestBufferBytes)} tensor, but this GPU allows storage buffers of at ` +
        `most ${mib(limit)}. Use a smaller or more strongly quantized model (e.g. q4f32_1 instead of q0f32).`,
    );
  }
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
