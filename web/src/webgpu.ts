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
  const limits: Record<string, number> = {};
  for (const name of REPORTED_LIMITS) {
    limits[name] = Number((adapter.limits as unknown as Record<string, number>)[name]);
  }
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
