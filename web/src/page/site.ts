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

// Another build of the same model that `adapter` can run (e.g. q4f32_1 for q4f16_1).
export function runnableVariant(site: Site, entry: SiteModel, adapter: AdapterReport | null): SiteModel | undefined {
  return site.models.find(
    (m) => m !== entry && m.family === entry.family && missingFeatures(m, adapter).length === 0,
  );
}

// The model to offer first: the site's default, or a build of it `adapter` can run.
export function preferredModel(site: Site, adapter: AdapterReport | null): SiteModel | undefined {
  const fallback = site.models.find((m) => m.default) || site.models[0];
  if (!fallback || missingFeatures(fallback, adapter).length === 0) return fallback;
  return runnableVariant(site, fallback, adapter) || fallback;
}
