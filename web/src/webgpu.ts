// What the browser's WebGPU adapter offers, reported before anything large is downloaded.

export interface AdapterReport {
  available: boolean;
  reason?: string;
  vendor?: string;
  architecture?: string;
  description?: string;
  isFallbackAdapter?: boolean;
  features?: string[];
  limits?: Record<string, number>;
  shaderF16?: boolean;
}

const REPORTED_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxStorageBuffersPerShaderStage",
];

// The limits that bound a model (tensor and binding sizes, kernel shapes), as plain numbers.
export function reportedLimits(limits: GPUSupportedLimits): Record<string, number> {
  const values: Record<string, number> = {};
  for (const name of REPORTED_LIMITS) values[name] = Number((limits as unknown as Record<string, number>)[name]);
  return values;
}

export async function probeWebGPU(): Promise<AdapterReport> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    return { available: false, reason: "navigator.gpu is missing: this browser has no WebGPU." };
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    return { available: false, reason: "navigator.gpu.requestAdapter() returned no adapter." };
  }
  const info = adapter.info;
  const limits = reportedLimits(adapter.limits);
  const features = [...adapter.features].map(String).sort();
  return {
    available: true,
    vendor: info.vendor,
    architecture: info.architecture,
    description: info.description,
    // isFallbackAdapter moved from the adapter to its info; read whichever this browser has.
    isFallbackAdapter: Boolean(
      (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
        (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter,
    ),
    features,
    limits,
    shaderF16: features.includes("shader-f16"),
  };
}

// Features the model libraries use where the adapter has them.
const WANTED_FEATURES: GPUFeatureName[] = ["shader-f16", "subgroups"];

// The device models run on, with the adapter's own values of the limits above. tvmjs's
// detectGPUDevice asks for at most 1 GiB buffers and bindings and 32 KiB of workgroup storage,
// so a tensor over 1 GiB (a large vocabulary's embedding) could not load even on a GPU that
// allows 2-4 GiB. Undefined when there is no WebGPU or no adapter.
export async function requestModelDevice(): Promise<GPUDevice | undefined> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  const adapter = await gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return undefined;
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits: reportedLimits(adapter.limits), requiredFeatures });
  // One line in the console says which GPU a report or a bug is about.
  const { vendor, description } = adapter.info;
  console.info(
    `webllm_build: WebGPU device on ${[vendor, description].filter(Boolean).join(" ") || "an unnamed adapter"}` +
      ` (features: ${requiredFeatures.join(", ") || "none extra"})`,
  );
  return device;
}
