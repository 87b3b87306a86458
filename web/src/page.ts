// The page's small entry (webllm_build-page-<hash>.js): the chat page itself (startChatApp), and
// what any page needs to start the engine in a worker, without downloading and parsing the
// engine itself on the page's thread. The full bundle (tvmjs, the tokenizer's wasm) is loaded by
// the worker, or by the page only where workers lack WebGPU.

export type { ChatEngine } from "./engine_api";
export { EngineError, type EngineErrorCode } from "./errors";
export { startChatApp, type ChatAppApi, type ChatAppOptions } from "./page/app";
export { createPageEngine } from "./page/engines";
export { probeWebGPU, type AdapterReport } from "./webgpu";
export { WorkerEngine, createWorkerEngine } from "./worker_engine";
