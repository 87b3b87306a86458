// Runs a compiled model directory on WebGPU: weights, paged KV cache, chunked prefill, decode.
// The generation protocol mirrors webllm_build/runner.py (the CPU reference) step for step.

import * as tvmjs from "@mlc-ai/web-runtime";
import { ScalarReader, webgpuContext } from "./gpu_commands";
import { GreedyRun, type GpuDecoder } from "./greedy_run";
import { EngineError } from "./errors";
import { deviceLostError, loadLibrary, type LoadedLibrary } from "./library";
import { loadWeights, type LoadProgress, type LoadWeightsOptions, type TensorManifest } from "./weights";
import { probeWebGPU, wgslFeatureAvailable } from "./webgpu";

// Mirrors webllm-model.json, the one fixed-name file of a model directory (webllm_build/artifacts.py).
export interface ModelIndex {
  format: number;
  model: string;
  quantization: string;
  required_features: string[];
  // The kernel schedule classes built, the default first; each has a file role `library:<class>`.
  schedules?: string[];
  // What each class's kernels are made for; absent in builds older than this key.
  schedule_classes?: Record<string, ScheduleClass>;
  files: Record<"library" | "tokenizer" | "config" | "tensor_cache", { path: string; nbytes: number; sha256: string }> &
    Record<string, { path: string; nbytes: number; sha256: string }>;
}

export interface ScheduleClass {
  // "fallback": an adapter that reports isFallbackAdapter (SwiftShader and other CPU emulations).
  adapter: "hardware" | "fallback";
  // WGSL language features its kernels use; a class the browser cannot compile is passed over.
  wgsl_features?: string[];
}

// The classes of builds whose index predates `schedule_classes`.
const OLDER_BUILDS_CLASSES: Record<string, ScheduleClass> = {
  gpu: { adapter: "hardware" },
  "cpu-emulated": { adapter: "fallback" },
};

// Which library of the index suits this browser (see webllm_build/compiler/schedules.py): the
// first class built for this kind of adapter whose WGSL the browser compiles; the default library
// where none is. `forced` picks a class whatever the adapter (tests run every class on one machine).
export async function libraryRole(index: ModelIndex, forced?: string): Promise<string> {
  const built = index.schedules ?? [];
  const classes = index.schedule_classes ?? OLDER_BUILDS_CLASSES;
  let wanted = forced;
  if (wanted === undefined && built.length > 1) {
    const adapter = (await probeWebGPU()).isFallbackAdapter ? "fallback" : "hardware";
    for (const name of built) {
      if (classes[name]?.adapter === adapter && (await missingWgsl(classes[name])) === undefined) {
        wanted = name;
        break;
      }
    }
  }
  if (wanted !== undefined && !built.includes(wanted)) {
    throw new EngineError(
      "missing-library",
      `This model has no "${wanted}" kernels (built: ${built.join(", ") || "the default only"}).`,
    );
  }
  const chosen = wanted ?? built[0];
  const missing = chosen === undefined ? undefined : await missingWgsl(classes[chosen]);
  if (missing !== undefined) {
    throw new EngineError(
      "missing-feature",
      `This browser's WebGPU does not compile WGSL's ${missing}, which the model's "${chosen}" kernels ` +
        `use. Rebuild the site with the default schedules (webllm_build site without --schedules), ` +
        `which add the "gpu" kernels, or use a browser that has it (Chrome 123 or later).`,
    );
  }
  return wanted === undefined ? "library" : `library:${wanted}`;
}

// The first WGSL language feature a class's kernels use that this browser does not compile.
async function missingWgsl(schedule: ScheduleClass | undefined): Promise<string | undefined> {
  for (const feature of schedule?.wgsl_features ?? []) {
    if (!(await wgslFeatureAvailable(feature))) return feature;
  }
  return undefined;
}

// Mirrors webllm-config-<hash>.json, written by webllm_build/compile.py (snake_case on purpose).
export interface ModelConfig {
  format: number;
  model: string;
  architecture: string;
  quantization: string;
  dtype: string;
  vocab_size: number;
  hidden_size: number;
  context_window: number;
  prefill_chunk: number;
  page_size: number;
  bos_token_id: number | null;
  eos_token_ids: number[];
  chat_template: string | null;
  required_features: string[];
  library: string;
  tokenizer: string;
  tensor_cache: string;
  param_names: string[];
  // How the tokenizer spells its vocabulary, for grammars (absent in older builds).
  tokenizer_kind?: TokenizerKind;
}

// How a tokenizer spells its vocabulary, for the grammar engine (grammar.ts;
// webllm_build/loaders/tokenizer_kind.py).
export interface TokenizerKind {
  vocab_type: "byte_level" | "byte_fallback" | "raw";
  prepend_space: boolean;
}

const SEQUENCE_ID = 0;

export class Model implements GpuDecoder {
  private kvCache?: tvmjs.TVMObject;
  private readonly tokenReader: ScalarReader;
  // The kernel schedule class of the library in use ("gpu" or "cpu-emulated").
  schedule = "gpu";
  private length = 0;

  private constructor(
    readonly config: ModelConfig,
    private readonly lib: LoadedLibrary,
    private readonly params: tvmjs.TVMObject,
    readonly manifest: TensorManifest,
    readonly loadReport: LoadProgress,
  ) {
    this.tokenReader = new ScalarReader(webgpuContext(lib.tvm));
    this.reset();
  }

  // `baseUrl` is the model directory, ending in "/".
  static async load(
    baseUrl: string,
    options: LoadWeightsOptions & { log?: (msg: string) => void; schedule?: string } = {},
  ) {
    const index = await fetchJson<ModelIndex>(new URL("webllm-model.json", baseUrl).href);
    const at = (role: string) => new URL(index.files[role].path, baseUrl).href;
    const [config, manifest] = await Promise.all([
      fetchJson<ModelConfig>(at("config")),
      fetchJson<TensorManifest>(at("tensor_cache")),
    ]);
    const tensors = manifest.records.flatMap((shard) => shard.records);
    const role = await libraryRole(index, options.schedule);
    const lib = await loadLibrary(at(role), options.log, {
      features: index.required_features,
      largestBufferBytes: Math.max(0, ...tensors.map((t) => t.nbytes)),
      quantization: index.quantization,
    });
    const { tvm, device, vm } = lib;
    // A device lost while the weights go up would leave a model that never answers: fail instead.
    const lost = lib.lost.then((info) => {
      throw deviceLostError(info);
    });
    lost.catch(() => {});
    try {
      const loaded = await Promise.race([loadWeights(tvm, device, baseUrl, manifest, options), lost]);
      // `prepare_params` gives the parameters the library's kernels read: the same tensors, or
      // (cpu-emulated) some 4-bit weights relaid on the GPU (compiler/weight_layout.py).
      const params = tvm.withNewScope(() => {
        const cached = tvm.getParamsFromCacheByName(config.param_names);
        return tvm.detachFromCurrentScope(vm.getFunction("prepare_params")(cached) as tvmjs.TVMObject);
      });
      // The VM holds the parameters now; the by-name cache would keep a second reference alive.
      tvm.tensorCacheClear();
      const model = new Model(config, lib, params, manifest, loaded);
      model.schedule = role === "library" ? (index.schedules?.[0] ?? "gpu") : role.slice("library:".length);
      return model;
    } catch (error) {
      lib.dispose();
      throw error;
    }
  }

  // Settles when the model's GPU device is lost (the model is then unusable), or disposed.
  get lost(): Promise<GPUDeviceLostInfo> {
    return this.lib.lost;
  }

  // A testing aid: loses the GPU device on purpose, as a driver reset would.
  destroyDeviceForTesting(): void {
    this.lib.gpuDevice.destroy();
  }

  get tokens(): number {
    return this.length;
  }

  reset(): void {
    const { tvm, vm } = this.lib;
    const c = this.config;
    this.kvCache?.dispose();
    this.kvCache = tvm.withNewScope(() => {
      const shape = (n: number) => tvm.makeShapeTuple([n]);
      const cache = vm.getFunction("create_paged_kv_cache")(
        shape(1), shape(c.context_window), shape(c.prefill_chunk), shape(c.page_size), shape(0),
      ) as tvmjs.TVMObject;
      tvm.getGlobalFunc("vm.builtin.kv_state_add_sequence")(cache, new tvmjs.Scalar(SEQUENCE_ID, "int64"));
      return tvm.detachFromCurrentScope(cache);
    });
    this.length = 0;
  }

  // Runs `fn` on `ids`; `read` turns the last position's logits, still on the GPU, into the result.
  private async forward<T>(
    fn: "prefill" | "decode",
    ids: number[],
    read: (logits: tvmjs.Tensor) => Promise<T>,
  ): Promise<T> {
    const { tvm, device } = this.lib;
    this.checkRoom(ids.length);
    tvm.beginScope();
    try {
      const logits = this.run(fn, tvm.empty([ids.length], "int32", device).copyFrom(Int32Array.from(ids)));
      const value = await read(logits);
      this.length += ids.length;
      return value;
    } finally {
      tvm.endScope();
    }
  }

  private checkRoom(tokens: number): void {
    if (this.length + tokens > this.config.context_window) {
      throw new EngineError(
        "context-overflow",
        `${this.length + tokens} tokens exceed the context window of ${this.config.context_window}.`,
      );
    }
  }

  // Queues `fn` on the token ids `input` ([n] int32 on the GPU) in the current scope and returns
  // the last position's logits; nothing waits for the GPU.
  private run(fn: "prefill" | "decode", input: tvmjs.Tensor): tvmjs.Tensor {
    const { tvm, vm } = this.lib;
    const n = input.shape[0];
    const embed = (vm.getFunction("embed")(input, this.params) as tvmjs.Tensor).view([1, n, this.config.hidden_size]);
    tvm.getGlobalFunc("vm.builtin.kv_state_begin_forward")(
      this.kvCache!, tvm.makeShapeTuple([SEQUENCE_ID]), tvm.makeShapeTuple([n]),
    );
    const result = vm.getFunction(fn)(embed, this.kvCache!, this.params) as tvmjs.TVMArray;
    tvm.getGlobalFunc("vm.builtin.kv_state_end_forward")(this.kvCache!);
    return result.get(0) as tvmjs.Tensor;
  }

  // GpuDecoder: one greedy decode step whose input and output token stay on the GPU.
  decodeOnGpu(token: tvmjs.Tensor): tvmjs.Tensor {
    const { tvm, vm } = this.lib;
    this.checkRoom(1);
    tvm.beginScope();
    try {
      const next = vm.getFunction("argmax")(this.run("decode", token)) as tvmjs.Tensor;
      this.length += 1;
      return tvm.detachFromCurrentScope(next);
    } finally {
      tvm.endScope();
    }
  }

  readToken(token: tvmjs.Tensor): Promise<number> {
    return this.tokenReader.read(token);
  }

  // Greedy decoding from `token` (already chosen, not yet fed), at most `maxSteps` steps, with
  // the GPU running ahead of the caller (greedy_run.ts). Close the run when done.
  greedyRun(token: number, maxSteps: number): GreedyRun {
    const { tvm, device } = this.lib;
    const first = tvm.withNewScope(() =>
      tvm.detachFromCurrentScope(tvm.empty([1], "int32", device).copyFrom(Int32Array.of(token))),
    );
    return new GreedyRun(this, first, maxSteps);
  }

  room(): number {
    return this.config.context_window - this.length;
  }

  // The whole logits vector, for sampling, penalties and logprobs on the CPU.
  private readonly readLogits = async (logits: tvmjs.Tensor): Promise<Float32Array> => {
    const { tvm, device } = this.lib;
    const host = tvm.empty(logits.shape, "float32", tvm.cpu()).copyFrom(logits);
    await device.sync();
    return host.toArray() as Float32Array;
  };

  // The greedy token, picked on the GPU (the library's `argmax`): 4 bytes come back, not the
  // vocabulary's logits. Ties go to the lowest id, as `argmax` in sampling.ts. With a grammar's
  // `mask` (grammar.ts), the mask goes up and `argmax_masked` picks among the allowed tokens.
  private readArgmax(mask?: Int32Array | Promise<Int32Array>): (logits: tvmjs.Tensor) => Promise<number> {
    return async (logits) => {
      const { tvm, device, vm } = this.lib;
      const allowed = await mask;
      const token = (
        allowed === undefined
          ? vm.getFunction("argmax")(logits)
          : vm.getFunction("argmax_masked")(logits, tvm.empty([allowed.length], "int32", device).copyFrom(allowed))
      ) as tvmjs.Tensor;
      const host = tvm.empty([1], "int32", tvm.cpu()).copyFrom(token);
      await device.sync();
      return (host.toArray() as Int32Array)[0];
    };
  }

  // Forgets the last `n` tokens, so a conversation can continue from an earlier point.
  popTokens(n: number): void {
    if (n <= 0) return;
    const { tvm } = this.lib;
    tvm.withNewScope(() =>
      tvm.getGlobalFunc("vm.builtin.kv_state_popn")(
        this.kvCache!, new tvmjs.Scalar(SEQUENCE_ID, "int64"), new tvmjs.Scalar(n, "int32"),
      ),
    );
    this.length -= n;
  }

  // Feeds `ids` in prefill-chunk pieces; `read` gets the last chunk's logits.
  private async prefillWith<T>(ids: number[], read: (logits: tvmjs.Tensor) => Promise<T>): Promise<T> {
    if (ids.length === 0) throw new EngineError("empty-input", "Prefill needs at least one token.");
    const chunk = this.config.prefill_chunk;
    // Earlier chunks only fill the KV cache: nothing is read back, so the GPU never waits.
    for (let start = 0; start + chunk < ids.length; start += chunk) {
      await this.forward("prefill", ids.slice(start, start + chunk), async () => undefined);
    }
    const last = Math.max(0, Math.ceil(ids.length / chunk) - 1) * chunk;
    return this.forward("prefill", ids.slice(last), read);
  }

  // The last position's logits after feeding `ids`.
  prefill(ids: number[]): Promise<Float32Array> {
    return this.prefillWith(ids, this.readLogits);
  }

  decode(token: number): Promise<Float32Array> {
    return this.forward("decode", [token], this.readLogits);
  }

  // The greedy next token after feeding `ids`, chosen on the GPU (among `mask`'s tokens).
  prefillGreedy(ids: number[], mask?: Int32Array): Promise<number> {
    return this.prefillWith(ids, this.readArgmax(mask));
  }

  // One greedy step that waits for its token (among `mask`'s, which may still be being
  // computed while the step is queued): constrained replies, and timing single steps.
  decodeGreedy(token: number, mask?: Int32Array | Promise<Int32Array>): Promise<number> {
    return this.forward("decode", [token], this.readArgmax(mask));
  }

  // `steps` greedy tokens after `ids` (fewer if one is an end of sequence), decoded as the engine
  // decodes them: the GPU running ahead.
  async greedy(ids: number[], steps: number): Promise<number[]> {
    const out: number[] = [];
    if (steps <= 0) return out;
    out.push(await this.prefillGreedy(ids));
    const eos = this.config.eos_token_ids;
    const run = this.greedyRun(out[0], steps - 1);
    try {
      while (out.length < steps && !eos.includes(out[out.length - 1])) out.push(await run.next());
    } finally {
      run.close();
    }
    return out;
  }

  // GPU buffers tvmjs has allocated for this model (weights, KV cache, workspace), in bytes.
  // tvmjs counts them in its WebGPU context but keeps the counters private, hence the casts.
  // The GPU device's limits (the adapter's own: requestModelDevice).
  deviceLimits(): Record<string, number> {
    return { ...this.lib.limits };
  }

  gpuMemory(): { allocated: number; peak: number } {
    const lib = (this.lib.tvm as unknown as { lib: { webGPUContext?: Record<string, number> } }).lib;
    const context = lib.webGPUContext ?? {};
    return { allocated: context.currAllocatedBytes ?? 0, peak: context.peakAllocatedBytes ?? 0 };
  }

  // Frees the GPU buffers; after a device loss, what tvmjs has freed already is skipped.
  dispose(): void {
    this.tokenReader.dispose();
    for (const object of [this.kvCache, this.params]) {
      try {
        object?.dispose();
      } catch (error) {
        console.warn("webllm_build: freeing a model object failed", error);
      }
    }
    this.lib.dispose();
  }
}

async function fetchJson<T>(url: string): Promise<T> {
  // The small top-level files change with every deploy: always revalidate them.
  const response = await fetch(url, { cache: "no-cache" }).catch((err) => {
    throw new EngineError("fetch-failed", `Could not download ${url}: ${String(err)}.`);
  });
  if (!response.ok) throw new EngineError("fetch-failed", `Could not download ${url}: HTTP ${response.status}.`);
  return (await response.json()) as T;
}
