// site.json, written by `webllm_build site` (webllm_build/site.py; snake_case on purpose), and
// what this adapter can run of it.

import type { AdapterReport } from "../webgpu";

export interface SiteModel {
  id: string;
  title: string;
  family: string; // builds of one model (e.g. its q4f16_1 and q4f32_1) share it
  base_url: string; // the model directory, relative to site.json
  quantization: string;
  required_features: string[];
  download_bytes: number;
  default: boolean;
  random_weights: boolean;
  memory?: MemoryNeeds | null; // null or absent: a model built before the estimate existed
}

// The GPU memory a model needs (webllm_build/memory.py), in bytes.
export interface MemoryNeeds {
  weights_bytes: number;
  kv_cache_bytes: number;
  workspace_bytes: number;
  total_bytes: number;
  largest_buffer_bytes: number;
  largest_buffer: string; // a parameter's name, or "KV cache (one layer)"
  context_window: number;
}

export interface Site {
  format: number;
  title: string;
  engine: string;
  models: SiteModel[];
}

export async function fetchSite(url: string): Promise<Site> {
  const response = await fetch(url, { cache: "no-cache" });
  if (!response.ok) throw new Error(`Could not read site.json: HTTP ${response.status}.`);
  return (await response.json()) as Site;
}

// The WebGPU features `entry` needs that `adapter` lacks (none when the adapter is unknown).
export function missingFeatures(entry: SiteModel, adapter: AdapterReport | null): string[] {
  const features = adapter?.features;
  if (!features) return [];
  return (entry.required_features || []).filter((f) => !features.includes(f));
}

// The most `adapter` takes in one buffer: WebGPU refuses a larger buffer, or a larger binding of
// one to a shader, whatever the GPU's memory (Infinity when the adapter is unknown).
export function bufferLimit(adapter: AdapterReport | null): number {
  const limits = adapter?.limits ?? {};
  return Math.min(limits.maxBufferSize ?? Infinity, limits.maxStorageBufferBindingSize ?? Infinity);
}

// Whether `entry`'s largest buffer fits `adapter` (true when either is unknown).
export function fitsBuffers(entry: SiteModel, adapter: AdapterReport | null): boolean {
  return !entry.memory || entry.memory.largest_buffer_bytes <= bufferLimit(adapter);
}

// The longest context whose KV cache layer fits in `limit` bytes, where that layer is what
// does not fit; else null. A multiple of 1024 tokens, as people pick them.
export function fittingContext(needs: MemoryNeeds, limit: number): number | null {
  if (!needs.largest_buffer.startsWith("KV cache") || !(limit < needs.largest_buffer_bytes)) return null;
  const perToken = needs.largest_buffer_bytes / needs.context_window;
  const tokens = Math.floor(limit / perToken / 1024) * 1024;
  return tokens > 0 ? tokens : null;
}

// Whether `adapter` can run `entry`: it has the features and the buffers are large enough.
export function runsOn(entry: SiteModel, adapter: AdapterReport | null): boolean {
  return missingFeatures(entry, adapter).length === 0 && fitsBuffers(entry, adapter);
}

// Another build of the same model that `adapter` can run (e.g. q4f32_1 for q4f16_1).
export function runnableVariant(site: Site, entry: SiteModel, adapter: AdapterReport | null): SiteModel | undefined {
  return site.models.find((m) => m !== entry && m.family === entry.family && runsOn(m, adapter));
}

// The model to offer first: the site's default, or a build of it `adapter` can run.
export function preferredModel(site: Site, adapter: AdapterReport | null): SiteModel | undefined {
  const fallback = site.models.find((m) => m.default) || site.models[0];
  if (!fallback || runsOn(fallback, adapter)) return fallback;
  return runnableVariant(site, fallback, adapter) || fallback;
}
