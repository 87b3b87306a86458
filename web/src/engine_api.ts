// The engine's public contract: OpenAI-style chat completions over one loaded model, the same
// whether the engine runs in the calling thread (Engine, engine.ts) or in a Web Worker
// (WorkerEngine, worker_engine.ts). The chat page is written against ChatEngine only.
// Types only: the page bundle imports this without pulling in the engine.

import type { ChatMessage } from "./chat_template";
import type { ResponseFormat } from "./grammar";
import type { Tool, ToolCall, ToolChoice } from "./tools";
import type { AdapterReport } from "./webgpu";
import type { LoadWeightsOptions } from "./weights";

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  temperature?: number; // default 0: greedy
  top_p?: number;
  max_tokens?: number;
  stop?: string | string[] | null;
  seed?: number;
  repetition_penalty?: number;
  // OpenAI's: token id (as a string key) -> a bias in [-100, 100] added to its logit.
  logit_bias?: Record<string, number> | null;
  // OpenAI-style: the log-probability of every completion token and of the `top_logprobs`
  // most likely ones at each step, from the model's own distribution (raw logits, before
  // repetition penalty, temperature and top-p).
  logprobs?: boolean;
  top_logprobs?: number;
  // Not OpenAI: keep generating through end-of-sequence tokens (benchmarks need a fixed length).
  ignore_eos?: boolean;
  // Not OpenAI (vLLM's name): variables for the model's chat template, e.g. Qwen3's and
  // SmolLM3's `{enable_thinking: false}` or Llama 3.x's `{date_string: "01 Jan 2025"}`.
  chat_template_kwargs?: Record<string, unknown>;
  // Structured output, enforced token by token (grammar.ts): {type: "json_object"},
  // {type: "json_schema", json_schema: {name, schema, strict}}, or, not OpenAI,
  // {type: "grammar", grammar: "<EBNF, start rule root>"}.
  response_format?: ResponseFormat | null;
  // Functions the model may call (tools.ts), and whether it must: "auto" (the default with
  // tools), "none", "required", or {type: "function", function: {name}}.
  tools?: Tool[] | null;
  tool_choice?: ToolChoice | null;
}

// `token_id` is not in OpenAI's schema: golden-output checks compare ids, not strings.
// `bytes` are the UTF-8 bytes of `token`, the token decoded on its own.
export interface TopLogprob {
  token: string;
  token_id: number;
  logprob: number;
  bytes: number[];
}

export interface TokenLogprob extends TopLogprob {
  top_logprobs: TopLogprob[];
}

export interface ChoiceLogprobs {
  content: TokenLogprob[];
}

export type FinishReason = "stop" | "length" | "abort" | "tool_calls";

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  // Tokens actually prefilled: fewer than prompt_tokens when earlier turns were reused.
  prefill_tokens: number;
  prefill_tokens_per_s: number;
  decode_tokens_per_s: number;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    index: 0;
    // content is null when the reply is a tool call.
    message: { role: "assistant"; content: string | null; tool_calls?: ToolCall[] };
    finish_reason: FinishReason;
    logprobs?: ChoiceLogprobs | null;
  }[];
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: {
    index: 0;
    delta: { role?: "assistant"; content?: string; tool_calls?: (ToolCall & { index: number })[] };
    finish_reason: FinishReason | null;
    logprobs?: ChoiceLogprobs | null;
  }[];
  usage?: CompletionUsage;
}

export interface RuntimeStats {
  model: string;
  // Bytes of GPU buffers the model holds now (weights, KV cache, workspace) and at most so far.
  gpu_allocated_bytes: number;
  gpu_peak_bytes: number;
  adapter: AdapterReport;
  device_limits: Record<string, number>; // what the model's device was created with
  // The kernel schedule class whose library runs the model (webllm_build/compiler/schedules.py).
  schedule: string;
}

// A loss of the engine's GPU device (engine.deviceLost). Losses are numbered from 1 per engine.
export interface GpuLoss {
  count: number;
  reason: string; // GPUDeviceLostInfo's: "destroyed" or "unknown"
  message: string; // what happened and what to do, as the "gpu-lost" error says it
}

// chat.completions.create: a stream of chunks when `stream` is true, else one completion.
export interface CreateCompletion {
  (request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  (request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  (request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

export interface ChatEngine {
  // Where the engine runs: in the thread that made it ("page") or in its own Web Worker.
  readonly kind: "page" | "worker";
  readonly chat: { readonly completions: { readonly create: CreateCompletion } };
  // Loads the compiled model directory at `baseUrl` (ending in "/"), replacing any loaded one.
  reload(baseUrl: string, options?: LoadWeightsOptions): Promise<void>;
  unload(): Promise<void>;
  // Forgets the conversation; the model stays loaded.
  resetChat(): Promise<void>;
  // Ends the running completion after its current token (finish_reason "abort").
  interruptGenerate(): void;
  runtimeStats(): Promise<RuntimeStats>;
  // Resolves at the first loss of the GPU device numbered above `after` (default 0: the first
  // ever, at once if it happened). The model is then freed: a running completion ends with an
  // EngineError "gpu-lost", and so does every call until `reload`.
  deviceLost(after?: number): Promise<GpuLoss>;
  // A testing aid: destroys the loaded model's GPU device, as a driver reset would lose it.
  destroyDeviceForTesting(): Promise<void>;
}
