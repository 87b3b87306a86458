// Downloads, verifies, caches and uploads a model's weight shards.
//
// Shards are content-addressed (params-<sha256 prefix>.bin), so a stored shard never goes stale:
// a new build changes the names of exactly the shards whose bytes changed. Each shard flows
// download -> sha256 check -> store -> GPU upload on its own, so at most `concurrency` shards
// sit in JS memory at once and an interrupted load keeps every shard it finished.
//
// A model built with --random-weights has no shards: its manifest's `random` section says how
// to generate each tensor (random_weights.ts), and nothing is downloaded or stored.

import type * as tvmjs from "@mlc-ai/web-runtime";
import { EngineError } from "./errors";
import { randomTensorBytes, type RandomWeights } from "./random_weights";

export interface TensorRecord {
  name: string;
  shape: number[];
  dtype: string;
  format: "raw" | "f32-to-bf16";
  nbytes: number;
  byteOffset: number;
}

export interface ShardRecord {
  dataPath: string;
  format: string;
  nbytes: number;
  sha256?: string;
  records: TensorRecord[];
}

export interface TensorManifest {
  metadata: Record<string, unknown>;
  records: ShardRecord[];
  random?: RandomWeights;
}

export type StoreKind = "cache" | "indexeddb" | "none";

export interface LoadProgress {
  phase: "download" | "verify" | "upload" | "done";
  loadedBytes: number; // bytes of shards fully uploaded to the GPU; only grows
  totalBytes: number;
  percent: number;
  fromCache: number; // shards served by the local store
  fromNetwork: number;
  // Milliseconds spent per activity, summed over shards (workers overlap, so the sum can
  // exceed the wall time); `wallMs` is the whole load.
  timings: { downloadMs: number; verifyMs: number; storeMs: number; uploadMs: number; wallMs: number };
}

export interface LoadWeightsOptions {
  store?: StoreKind;
  // Cache name; one per site so two sites on one origin do not evict each other.
  scope?: string;
  concurrency?: number;
  onProgress?: (progress: LoadProgress) => void;
  // Problems that do not stop loading (storage unavailable, quota exceeded).
  onWarning?: (warning: EngineError) => void;
}

interface ShardStore {
  get(url: string): Promise<ArrayBuffer | undefined>;
  put(url: string, bytes: ArrayBuffer): Promise<void>;
  delete(url: string): Promise<number>; // bytes freed
}

class CacheApiStore implements ShardStore {
  constructor(private readonly cache: Cache) {}
  static async open(scope: string): Promise<CacheApiStore> {
    return new CacheApiStore(await caches.open(scope));
  }
  async get(url: string) {
    const hit = await this.cache.match(url);
    return hit ? hit.arrayBuffer() : undefined;
  }
  async put(url: string, bytes: ArrayBuffer) {
    await this.cache.put(url, new Response(bytes, { headers: { "Content-Length": String(bytes.byteLength) } }));
  }
  async delete(url: string) {
    const hit = await this.cache.match(url);
    const size = hit ? (await hit.arrayBuffer()).byteLength : 0;
    await this.cache.delete(url);
    return size;
  }
}

class IndexedDbStore implements ShardStore {
  private static readonly STORE = "shards";
  constructor(private readonly db: IDBDatabase) {}
  static open(scope: string): Promise<IndexedDbStore> {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(scope, 1);
      request.onupgradeneeded = () => request.result.createObjectStore(IndexedDbStore.STORE);
      request.onsuccess = () => resolve(new IndexedDbStore(request.result));
      request.onerror = () => reject(request.error);
    });
  }
  private run<T>(mode: IDBTransactionMode, action: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction(IndexedDbStore.STORE, mode);
      const request = action(tx.objectStore(IndexedDbStore.STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = tx.onabort = () => reject(tx.error ?? request.error);
    });
  }
  get(url: string) {
    return this.run("readonly", (s) => s.get(url) as IDBRequest<ArrayBuffer | undefined>);
  }
  async put(url: string, bytes: ArrayBuffer) {
    await this.run("readwrite", (s) => s.put(bytes, url));
  }
  async delete(url: string) {
    const size = (await this.get(url))?.byteLength ?? 0;
    await this.run("readwrite", (s) => s.delete(url));
    return size;
  }
}

// Stands in when nothing can be stored (private mode, no Cache API): load from the network only.
class NoStore implements ShardStore {
  async get() {
    return undefined;
  }
  async put() {}
  async delete() {
    return 0;
  }
}

export function defaultScope(): string {
  // A page or worker has a location; Deno has one only when started with --location.
  let here: URL;
  try {
    here = new URL(globalThis.location.href);
    // A worker started from a blob: URL (an engine imported from another origin:
    // worker_engine.ts) is at "blob:<origin>/<uuid>": its scope is that origin's root.
    if (here.protocol === "blob:") here = new URL("/", here.pathname);
  } catch {
    here = new URL(import.meta.url);
  }
  return `webllm_build:${here.origin}${here.pathname.replace(/[^/]*$/, "")}`;
}

async function openStore(kind: StoreKind, scope: string, warn: (w: EngineError) => void): Promise<ShardStore> {
  if (kind === "none") return new NoStore();
  try {
    if (kind === "indexeddb") return await IndexedDbStore.open(scope);
    return await CacheApiStore.open(scope);
  } catch (err) {
    warn(
      new EngineError(
        "storage-unavailable",
        `Browser storage (${kind}) is unavailable (${String(err)}); the model loads from the network ` +
          "and will be downloaded again on the next visit. Private browsing often causes this.",
      ),
    );
    return new NoStore();
  }
}

async function sha256Hex(bytes: ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function quotaWarning(needed: number, err: unknown): Promise<EngineError> {
  const estimate = await navigator.storage?.estimate?.().catch(() => undefined);
  const available = estimate?.quota !== undefined ? estimate.quota - (estimate.usage ?? 0) : undefined;
  const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
  // estimate() can report more than the browser then grants (it is an estimate, and policies
  // such as per-site limits apply on write), so report both numbers rather than a verdict.
  const reported =
    available === undefined
      ? ""
      : available >= needed
        ? `; the browser reports ${mb(available)} available but refused the write`
        : `; ${mb(available)} are available`;
  return new EngineError(
    "quota-exceeded",
    `Not enough browser storage to cache the model: it needs ${mb(needed)}${reported}. The model ` +
      `still loads from the network; free space (or delete other cached models) to cache it. (${String(err)})`,
  );
}

function decodeBf16(bytes: Uint8Array): Float32Array {
  const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const words = new Uint32Array(halves.length);
  for (let i = 0; i < halves.length; i++) words[i] = halves[i] << 16;
  return new Float32Array(words.buffer);
}

// `data` holds the tensor as stored (bf16 halves for "f32-to-bf16"), starting at offset 0.
function uploadTensor(
  tvm: tvmjs.Instance,
  device: tvmjs.DLDevice,
  rec: Pick<TensorRecord, "name" | "shape" | "dtype" | "format">,
  data: Uint8Array,
) {
  tvm.withNewScope(() => {
    const gpu = tvm.detachFromCurrentScope(tvm.empty(rec.shape, rec.dtype, device));
    if (rec.format === "f32-to-bf16") {
      gpu.copyFrom(decodeBf16(data));
    } else if (data.byteLength % 4 === 0) {
      gpu.copyFromRawBytes(data);
    } else {
      // WebGPU writes whole 4-byte words: odd-sized tensors go through a CPU tensor.
      gpu.copyFrom(tvm.empty(rec.shape, rec.dtype, tvm.cpu()).copyFromRawBytes(data));
    }
    tvm.tensorCacheUpdate(rec.name, gpu, true);
    // The cache holds its own reference; drop ours.
    gpu.dispose();
  });
}

function uploadShard(tvm: tvmjs.Instance, device: tvmjs.DLDevice, shard: ShardRecord, bytes: ArrayBuffer) {
  for (const rec of shard.records) {
    // slice(): a copy at offset 0, so typed views of it are aligned whatever byteOffset was.
    uploadTensor(tvm, device, rec, new Uint8Array(bytes, rec.byteOffset, rec.nbytes).slice());
  }
}

// Generates and uploads every tensor of a random-weights manifest, reporting progress by bytes
// as a download would (phases "download", then "upload" per tensor, then "done").
async function generateWeights(
  tvm: tvmjs.Instance,
  device: tvmjs.DLDevice,
  random: RandomWeights,
  onProgress?: (progress: LoadProgress) => void,
): Promise<LoadProgress> {
  const started = performance.now();
  const progress: LoadProgress = {
    phase: "download",
    loadedBytes: 0,
    totalBytes: random.records.reduce((sum, r) => sum + r.nbytes, 0),
    percent: 0,
    fromCache: 0,
    fromNetwork: 0,
    timings: { downloadMs: 0, verifyMs: 0, storeMs: 0, uploadMs: 0, wallMs: 0 },
  };
  const report = (phase: LoadProgress["phase"]) => {
    progress.phase = phase;
    progress.percent = progress.totalBytes ? (100 * progress.loadedBytes) / progress.totalBytes : 100;
    onProgress?.({ ...progress, timings: { ...progress.timings } });
  };
  report("download");
  for (const rec of random.records) {
    const t0 = performance.now();
    // Values are already what a bf16 shard would give; they upload as plain float32.
    uploadTensor(tvm, device, { ...rec, format: "raw" }, randomTensorBytes(random, rec));
    await device.sync();
    progress.timings.uploadMs += performance.now() - t0;
    progress.loadedBytes += rec.nbytes;
    report("upload");
  }
  progress.timings.wallMs = performance.now() - started;
  report("done");
  return progress;
}

// Loads every tensor of `manifest` into tvm's tensor cache on `device`.
export async function loadWeights(
  tvm: tvmjs.Instance,
  device: tvmjs.DLDevice,
  baseUrl: string,
  manifest: TensorManifest,
  options: LoadWeightsOptions = {},
): Promise<LoadProgress> {
  if (manifest.random) return generateWeights(tvm, device, manifest.random, options.onProgress);
  const warn = options.onWarning ?? (() => {});
  const store = await openStore(options.store ?? "cache", options.scope ?? defaultScope(), warn);
  const shards = manifest.records;
  const progress: LoadProgress = {
    phase: "download",
    loadedBytes: 0,
    totalBytes: shards.reduce((sum, s) => sum + s.nbytes, 0),
    percent: 0,
    fromCache: 0,
    fromNetwork: 0,
    timings: { downloadMs: 0, verifyMs: 0, storeMs: 0, uploadMs: 0, wallMs: 0 },
  };
  const started = performance.now();
  const timed = async <T>(key: Exclude<keyof LoadProgress["timings"], "wallMs">, work: () => Promise<T>) => {
    const t0 = performance.now();
    try {
      return await work();
    } finally {
      progress.timings[key] += performance.now() - t0;
    }
  };
  const report = (phase: LoadProgress["phase"]) => {
    progress.phase = phase;
    progress.percent = progress.totalBytes ? (100 * progress.loadedBytes) / progress.totalBytes : 100;
    options.onProgress?.({ ...progress, timings: { ...progress.timings } });
  };
  let storing = true;

  const fetchShard = async (url: string, shard: ShardRecord): Promise<ArrayBuffer> => {
    const failed = (why: string) =>
      new EngineError(
        "fetch-failed",
        `Downloading ${shard.dataPath} failed: ${why}. Reload to resume; shards already stored are kept.`,
      );
    // The HTTP cache would only duplicate the shard store; the store is the cache here.
    const response = await fetch(url, { cache: "no-store" }).catch((err) => {
      throw failed(String(err));
    });
    if (!response.ok) throw failed(`HTTP ${response.status}`);
    // The body can still break off midway (a dropped connection).
    return response.arrayBuffer().catch((err) => {
      throw failed(String(err));
    });
  };

  // Why `bytes` is not the shard the manifest describes, or null when it is.
  const mismatch = async (shard: ShardRecord, bytes: ArrayBuffer): Promise<string | null> => {
    if (bytes.byteLength !== shard.nbytes) return `received ${bytes.byteLength} bytes, expected ${shard.nbytes}`;
    const digest = shard.sha256 ? await sha256Hex(bytes) : undefined;
    return digest !== shard.sha256 ? `sha256 ${digest?.slice(0, 16)}..., expected ${shard.sha256?.slice(0, 16)}...` : null;
  };

  const obtain = async (shard: ShardRecord): Promise<ArrayBuffer> => {
    const url = new URL(shard.dataPath, baseUrl).href;
    const cached = await timed("storeMs", () => store.get(url));
    if (cached !== undefined) {
      report("verify");
      if ((await timed("verifyMs", () => mismatch(shard, cached))) === null) {
        progress.fromCache++;
        return cached;
      }
      await store.delete(url); // damaged in storage: fetch a fresh copy below
    }
    let problem = "";
    for (let attempt = 0; attempt < 2; attempt++) {
      report("download");
      const bytes = await timed("downloadMs", () => fetchShard(url, shard));
      report("verify");
      problem = (await timed("verifyMs", () => mismatch(shard, bytes))) ?? "";
      if (!problem) {
        progress.fromNetwork++;
        if (storing) {
          await timed("storeMs", () => store.put(url, bytes)).catch(async (err) => {
            // Concurrent workers fail together; one warning is enough.
            if (!storing) return;
            storing = false;
            const isQuota = err instanceof DOMException && err.name === "QuotaExceededError";
            warn(
              isQuota
                ? await quotaWarning(progress.totalBytes, err)
                : new EngineError("storage-unavailable", `Caching ${shard.dataPath} failed: ${String(err)}.`),
            );
          });
        }
        return bytes;
      }
    }
    throw new EngineError(
      "corrupt-shard",
      `The weight shard ${shard.dataPath} failed its integrity check twice (${problem}, per ` +
        "tensor-cache.json). The server has a damaged or mismatched copy: redeploy the model files.",
    );
  };

  report("download");
  let next = 0;
  const worker = async () => {
    while (next < shards.length) {
      const shard = shards[next++];
      const bytes = await obtain(shard);
      report("upload");
      await timed("uploadMs", async () => {
        uploadShard(tvm, device, shard, bytes);
        await device.sync();
      });
      progress.loadedBytes += shard.nbytes;
      report("upload");
    }
  };
  const workers = Math.max(1, Math.min(options.concurrency ?? 4, shards.length));
  // Let every worker finish (and store) what it can before reporting the first failure, so a
  // reload resumes from as far as this attempt got.
  const outcomes = await Promise.allSettled(Array.from({ length: workers }, worker));
  const failure = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
  if (failure) throw failure.reason;
  progress.timings.wallMs = performance.now() - started;
  report("done");
  return progress;
}

// Removes this model's shards from the store; returns the bytes freed.
export async function deleteCachedWeights(
  baseUrl: string,
  manifest: TensorManifest,
  options: Pick<LoadWeightsOptions, "store" | "scope"> = {},
): Promise<number> {
  const store = await openStore(options.store ?? "cache", options.scope ?? defaultScope(), () => {});
  let freed = 0;
  for (const shard of manifest.records) freed += await store.delete(new URL(shard.dataPath, baseUrl).href);
  return freed;
}
