// The messages between the page's handle on the engine (worker_engine.ts) and the engine in its
// Web Worker (worker.ts). Everything in them must survive structured cloning.

import type { ChatCompletionRequest } from "./engine_api";
import type { EngineErrorCode } from "./errors";

// createWorkerEngine names its worker so; any other worker that imports the engine bundle (a
// user's own) keeps its messages to itself.
export const ENGINE_WORKER_NAME = "webllm_build engine";

// The engine methods the page may call besides chat.completions.create.
export const FORWARDED_METHODS = [
  "reload",
  "unload",
  "resetChat",
  "probe",
  "runtimeStats",
  "deviceLost", // answered only when the GPU device is lost
  "destroyDeviceForTesting",
] as const;
export type ForwardedMethod = (typeof FORWARDED_METHODS)[number];

// Page -> worker.
export type Request =
  | { kind: "call"; id: number; method: ForwardedMethod; args: unknown[] }
  | { kind: "create"; id: number; request: ChatCompletionRequest }
  | { kind: "interrupt" };

// Worker -> page.
export type Reply =
  | { id: number; kind: "result"; value: unknown }
  | { id: number; kind: "chunk"; value: unknown }
  | { id: number; kind: "end" }
  | { id: number; kind: "event"; name: "progress" | "warning"; value: unknown }
  | { id: number; kind: "error"; code: EngineErrorCode | null; message: string };
