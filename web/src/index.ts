// Public entry of the webllm_build browser engine (webllm_build.js), also its worker script.
//
// The library's API comes first: the OpenAI-style engine, in the page or in a Web Worker, its
// load options and progress, and its one error type. webllm_build.d.ts declares exactly this.
// The building blocks after it serve the test harness and `webllm_build check`; they are marked
// @internal, which leaves them out of the declarations (build.mjs), as they may change freely.

import { isEngineWorker, serveEngine } from "./worker";
import { createWorkerEngine as startWorkerEngine, WorkerEngine } from "./worker_engine";

export type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatEngine,
  ChoiceLogprobs,
  CompletionUsage,
  CreateCompletion,
  FinishReason,
  GpuLoss,
  RuntimeStats,
  TokenLogprob,
  TopLogprob,
} from "./engine_api";
export type { ChatMessage } from "./chat_template";
export type { ResponseFormat } from "./grammar";
export type { Tool, ToolCall, ToolChoice } from "./tools";
export { Engine, createEngine } from "./engine";
export { WorkerEngine };
export { ENGINE_WORKER_NAME } from "./protocol";
export { EngineError, type EngineErrorCode } from "./errors";
export type { LoadProgress, LoadWeightsOptions, StoreKind } from "./weights";
export { probeWebGPU, type AdapterReport } from "./webgpu";

// Starts the engine in a Web Worker running `scriptUrl`, by default this very bundle: a page that
// imports the engine (from its own site or another origin) gets its worker with no URL to pass.
export function createWorkerEngine(scriptUrl: string | URL = import.meta.url): WorkerEngine {
  return startWorkerEngine(scriptUrl);
}

/** @internal */
export { loadLibrary, runFloat32, type LoadedLibrary } from "./library";
/** @internal */
export { Model, type ModelConfig } from "./model";
/** @internal */
export { argmax, sampleToken, seededRandom, type SamplingParams } from "./sampling";
/** @internal */
export { defaultScope, deleteCachedWeights, loadWeights, type TensorManifest } from "./weights";
/** @internal */
export { randomTensorBytes, type RandomRecord, type RandomWeights } from "./random_weights";
/** @internal */
export { StreamingDecoder, Tokenizer, type DecodeOptions } from "./tokenizer";
/** @internal */
export {
  ChatTemplate,
  renderChatTemplate,
  strftime,
  type RenderOptions,
  type SpecialTokens,
} from "./chat_template";
/** @internal */
export { Constraint, Grammars, applyMask, type TokenizerKind } from "./grammar";
/** @internal */
export { planTools, readToolCall } from "./tools";
/** @internal */
export { FORWARDED_METHODS } from "./protocol";
/** @internal */
export { isEngineWorker, serveEngine } from "./worker";

// Started as the engine's worker (createWorkerEngine), this bundle serves the engine.
if (isEngineWorker()) serveEngine(self as never);
