// Whether the visitor's GPU can hold a model, decided from site.json before anything is
// downloaded: the build's estimate (webllm_build/memory.py) against the adapter's buffer limits
// (a hard stop: WebGPU refuses a larger buffer) and the device memory the browser reports
// (a warning the visitor may override: it is a rough figure, and a discrete GPU has its own).

import { EngineError } from "../errors";
import type { AdapterReport } from "../webgpu";
import { bufferLimit, fittingContext, runnableVariant, runsOn, type MemoryNeeds, type Site, type SiteModel } from "./site";

export interface MemoryRefusal {
  error: EngineError;
  variant?: SiteModel; // a build of the same model that fits, to offer instead
  overridable: boolean; // only the device-memory estimate says no: "Load anyway" is offered
}

export function formatBytes(bytes: number): string {
  if (!(bytes > 0)) return "0 MB";
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(2)} GB` : `${(bytes / (1 << 20)).toFixed(1)} MB`;
}

function breakdown(needs: MemoryNeeds): string {
  return (
    `weights ${formatBytes(needs.weights_bytes)}, KV cache ${formatBytes(needs.kv_cache_bytes)} for ` +
    `${needs.context_window} tokens, workspace ${formatBytes(needs.workspace_bytes)}`
  );
}

// Why `entry` should not be loaded on this GPU, or null. `deviceMemoryGiB` is
// navigator.deviceMemory (Chromium only, rounded and capped by the browser).
export function memoryRefusal(
  site: Site,
  entry: SiteModel,
  adapter: AdapterReport | null,
  deviceMemoryGiB: number | undefined,
): MemoryRefusal | null {
  const needs = entry.memory;
  if (!needs) return null;
  const limit = bufferLimit(adapter);
  if (needs.largest_buffer_bytes > limit) {
    const what = needs.largest_buffer.startsWith("KV cache")
      ? `one layer's KV cache for ${needs.context_window} tokens`
      : `the weight ${needs.largest_buffer}`;
    const context = fittingContext(needs, limit);
    const rebuild = context
      ? ` With a ${context}-token context it would fit: the site's owner can rebuild it with --context-window ${context}.`
      : "";
    const variant = runnableVariant(site, entry, adapter);
    const instead = variant ? ` ${variant.title} fits: load it instead.` : "";
    const error = new EngineError(
      "buffer-limit",
      `${entry.title} needs ${formatBytes(needs.largest_buffer_bytes)} in one GPU buffer (${what}); this GPU ` +
        `allows at most ${formatBytes(limit)} in one buffer.${instead}${rebuild}`,
    );
    return { error, variant, overridable: false };
  }
  const room = (deviceMemoryGiB ?? Infinity) * 2 ** 30;
  if (needs.total_bytes > room) {
    const error = new EngineError(
      "device-memory",
      `${entry.title} needs about ${formatBytes(needs.total_bytes)} of GPU memory (${breakdown(needs)}); this ` +
        `device reports ${deviceMemoryGiB} GB of memory, so loading may fail or stall it.`,
    );
    const smaller = site.models.find(
      (m) => m.family === entry.family && m !== entry && runsOn(m, adapter) && (m.memory?.total_bytes ?? Infinity) <= room,
    );
    return { error, variant: smaller, overridable: true };
  }
  return null;
}
