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

// How long an adapter request may take. A browser's GPU process answers in well under a second
// (a few seconds while it starts); a stuck driver, or headless Chromium told to use a Vulkan GPU
// on a machine that has no GPU driver, never answers, and the page would wait forever.
export const ADAPTER_TIMEOUT_MS = 15_000;

function noAnswer(call: string): string {
  return (
    `${call} did not answer within ${ADAPTER_TIMEOUT_MS / 1000} s: the browser's GPU process or ` +
    "driver is stuck. Restart the browser or update the GPU driver; in headless Chromium, the " +
    "hardware-GPU flags (webllm_build's --runtime chromium-gpu) need a Vulkan GPU driver."
  );
}

// `request`'s answer, or "timeout" if it has none after ADAPTER_TIMEOUT_MS.
async function answerInTime<T>(request: Promise<T>): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), ADAPTER_TIMEOUT_MS);
  });
  try {
    return await Promise.race([request, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// A request for an adapter that timed out and has still not answered: the GPU process is hung,
// and asking again would only wait as long again.
let hungRequest = false;

// The high-performance adapter, null where there is none, "timeout" where the request hangs.
async function requestAdapter(gpu: GPU): Promise<GPUAdapter | null | "timeout"> {
  if (hungRequest) return "timeout";
  const request = gpu.requestAdapter({ powerPreference: "high-performance" });
  const answer = await answerInTime(request);
  if (answer === "timeout") {
    hungRequest = true;
    const answered = () => (hungRequest = false);
    request.then(answered, answered);
  }
  return answer;
}

export async function probeWebGPU(): Promise<AdapterReport> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    return { available: false, reason: "navigator.gpu is missing: this browser has no WebGPU." };
  }
  const adapter = await requestAdapter(gpu);
  if (adapter === "timeout") return { available: false, reason: noAnswer("navigator.gpu.requestAdapter()") };
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

// A shader per WGSL language feature that some kernels use (webllm_build/compiler/schedules.py,
// `wgsl_features`). navigator.gpu.wgslLanguageFeatures is asked first, but it can leave out what
// the compiler accepts (Deno 2.9's wgpu compiles dot4I8Packed and lists only
// pointer_composite_access), so a feature it does not list is tried on a throwaway device.
const WGSL_FEATURE_PROBES: Record<string, string> = {
  packed_4x8_integer_dot_product: "fn probe(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }",
};
const wgslAnswers = new Map<string, Promise<boolean>>();

// Whether this browser's WebGPU compiles shaders that use WGSL language `feature`.
export function wgslFeatureAvailable(feature: string): Promise<boolean> {
  let answer = wgslAnswers.get(feature);
  if (!answer) {
    answer = probeWgslFeature(feature);
    wgslAnswers.set(feature, answer);
  }
  return answer;
}

async function probeWgslFeature(feature: string): Promise<boolean> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) return false;
  if (gpu.wgslLanguageFeatures?.has(feature)) return true;
  const code = WGSL_FEATURE_PROBES[feature];
  const adapter = code === undefined ? null : await requestAdapter(gpu);
  if (!adapter || adapter === "timeout") return false;
  const device = await adapter.requestDevice();
  try {
    device.pushErrorScope("validation");
    device.createShaderModule({ code });
    return (await device.popErrorScope()) === null;
  } finally {
    device.destroy();
  }
}

// Features the model libraries use where the adapter has them.
const WANTED_FEATURES: GPUFeatureName[] = ["shader-f16", "subgroups"];

// The device models run on, with the adapter's own values of the limits above. tvmjs's
// detectGPUDevice asks for at most 1 GiB buffers and bindings and 32 KiB of workgroup storage,
// so a tensor over 1 GiB (a large vocabulary's embedding) could not load even on a GPU that
// allows 2-4 GiB. Undefined when there is no WebGPU or no adapter.
export async function requestModelDevice(): Promise<GPUDevice | undefined> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  const adapter = gpu ? await requestAdapter(gpu) : null;
  if (adapter === "timeout") throw new Error(noAnswer("navigator.gpu.requestAdapter()"));
  if (!adapter) return undefined;
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const device = await answerInTime(
    adapter.requestDevice({ requiredLimits: reportedLimits(adapter.limits), requiredFeatures }),
  );
  if (device === "timeout") throw new Error(noAnswer("GPUAdapter.requestDevice()"));
  // One line in the console says which GPU a report or a bug is about.
  const { vendor, description } = adapter.info;
  console.info(
    `webllm_build: WebGPU device on ${[vendor, description].filter(Boolean).join(" ") || "an unnamed adapter"}` +
      ` (features: ${requiredFeatures.join(", ") || "none extra"})`,
  );
  return device;
}
