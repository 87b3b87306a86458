// The page's small entry (webllm_build-page-<hash>.js): what a chat page needs to start the
// engine in a worker, without downloading and parsing the engine itself on the page's thread.
// The full bundle (tvmjs, the tokenizer's wasm) is loaded by the worker, or by the page only
// where workers lack WebGPU.

export { EngineError } from "./errors";
export { probeWebGPU, type AdapterReport } from "./webgpu";
export { WorkerEngine, createWorkerEngine } from "./worker_engine";

// The engine in this page, for browsers that offer WebGPU to pages but not to workers.
export async function createPageEngine(engineUrl: string): Promise<unknown> {
  const engine = await import(/* @vite-ignore */ engineUrl);
  return engine.createEngine();
}
