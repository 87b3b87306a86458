// Starts the page's engine. It runs in a Web Worker so the page stays responsive while it works;
// a browser that offers WebGPU to pages but not to workers gets the engine in the page instead.
// Either way the engine's code is the engine bundle at `engineUrl`, never this small one.

import type { ChatEngine } from "../engine_api";
import { probeWebGPU, type AdapterReport } from "../webgpu";
import { createWorkerEngine } from "../worker_engine";

// The engine in this page, for browsers that offer WebGPU to pages but not to workers.
export async function createPageEngine(engineUrl: string): Promise<ChatEngine> {
  const bundle = (await import(/* @vite-ignore */ engineUrl)) as { createEngine(): Promise<ChatEngine> };
  return bundle.createEngine();
}

// The engine, and the WebGPU adapter as the engine sees it.
export async function startEngine(engineUrl: string): Promise<{ engine: ChatEngine; report: AdapterReport }> {
  if (typeof Worker !== "undefined") {
    const worker = createWorkerEngine(engineUrl);
    try {
      const report = await worker.probe();
      if (report.available) return { engine: worker, report };
    } catch (error) {
      console.warn("The engine's worker could not start; running it in the page.", error);
    }
    worker.terminate();
  }
  return { engine: await createPageEngine(engineUrl), report: await probeWebGPU() };
}
