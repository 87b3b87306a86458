// Public entry of the webllm_build browser engine.

export { probeWebGPU, type AdapterReport } from "./webgpu";
export { loadLibrary, runFloat32, type LoadedLibrary } from "./library";
export { Model, type ModelConfig } from "./model";
export { argmax, sampleToken, seededRandom, type SamplingParams } from "./sampling";
export {
  defaultScope,
  deleteCachedWeights,
  loadWeights,
  type LoadProgress,
  type LoadWeightsOptions,
  type StoreKind,
  type TensorManifest,
} from "./weights";
export { randomTensorBytes, type RandomRecord, type RandomWeights } from "./random_weights";
export { StreamingDecoder, Tokenizer, type DecodeOptions } from "./tokenizer";
export {
  ChatTemplate,
  renderChatTemplate,
  strftime,
  type ChatMessage,
  type RenderOptions,
  type SpecialTokens,
} from "./chat_template";
export { Engine, createEngine } from "./engine";
export { Constraint, Grammars, applyMask, type ResponseFormat, type TokenizerKind } from "./grammar";
export { planTools, readToolCall, type Tool, type ToolCall, type ToolChoice } from "./tools";
export type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatEngine,
  CompletionUsage,
  FinishReason,
  RuntimeStats,
} from "./engine_api";
export { EngineError, type EngineErrorCode } from "./errors";
export { ENGINE_WORKER_NAME, FORWARDED_METHODS } from "./protocol";
export { WorkerEngine, createWorkerEngine } from "./worker_engine";
export { isEngineWorker, serveEngine } from "./worker";

import { isEngineWorker, serveEngine } from "./worker";

// Started as a module worker (see createWorkerEngine), this bundle serves the engine.
if (isEngineWorker()) serveEngine(self as never);
