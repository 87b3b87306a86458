// The engine in the calling thread (ChatEngine, engine_api.ts): OpenAI-style chat completions
// over one loaded model. The page talks to one in a Web Worker (worker.ts) or in the page itself.
//
// This file validates requests and shapes responses; the token loop is in generation.ts, the
// model and its KV cache in model.ts, sampling in sampling.ts.

import { ChatTemplate, type ChatMessage } from "./chat_template";
import type { ToolCall } from "./tools";
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatEngine,
  CreateCompletion,
  GpuLoss,
  RuntimeStats,
  TokenLogprob,
} from "./engine_api";
import { EngineError } from "./errors";
import { generate, type GenerationEvent, type GenerationOptions, type LoadedChat } from "./generation";
import { Grammars } from "./grammar";
import { mayBeToolCall, planTools, readToolCall, templateMessages, type ToolPlan } from "./tools";
import { deviceLostError } from "./library";
import { Model } from "./model";
import type { SamplingParams } from "./sampling";
import { Tokenizer } from "./tokenizer";
import { probeWebGPU } from "./webgpu";
import type { LoadWeightsOptions } from "./weights";

const DEFAULT_MAX_TOKENS = 512;
const MAX_TOP_LOGPROBS = 20; // OpenAI's limit
// How long a failed GPU call waits for device.lost to settle before its error counts as its own:
// a destroyed device's readbacks fail a moment before the browser reports the loss.
const LOSS_SETTLE_MS = 1000;

function invalid(message: string): EngineError {
  return new EngineError("invalid-request", message);
}

function samplingParams(request: ChatCompletionRequest, vocabSize: number): SamplingParams {
  const temperature = request.temperature ?? 0;
  const topP = request.top_p ?? 1;
  const repetitionPenalty = request.repetition_penalty ?? 1;
  if (!(temperature >= 0)) throw invalid(`temperature must be >= 0, got ${temperature}.`);
  if (!(topP > 0 && topP <= 1)) throw invalid(`top_p must be in (0, 1], got ${topP}.`);
  if (!(repetitionPenalty > 0)) throw invalid(`repetition_penalty must be > 0, got ${repetitionPenalty}.`);
  return { temperature, topP, repetitionPenalty, logitBias: logitBias(request.logit_bias, vocabSize) };
}

// OpenAI's shape: {"<token id>": bias in [-100, 100]}.
function logitBias(biases: Record<string, number> | null | undefined, vocabSize: number): Map<number, number> {
  const out = new Map<number, number>();
  if (biases == null) return out;
  if (typeof biases !== "object" || Array.isArray(biases)) {
    throw invalid('logit_bias must be an object of token id to bias, e.g. {"50256": -100}.');
  }
  for (const [key, bias] of Object.entries(biases)) {
    const id = Number(key);
    if (!(Number.isInteger(id) && id >= 0 && id < vocabSize)) {
      throw invalid(`logit_bias: "${key}" is not a token id of this model (0 to ${vocabSize - 1}).`);
    }
    if (!(typeof bias === "number" && bias >= -100 && bias <= 100)) {
      throw invalid(`logit_bias: the bias of token ${key} must be a number in [-100, 100], got ${bias}.`);
    }
    out.set(id, bias);
  }
  return out;
}

function validateMessages(messages: ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0) throw invalid("messages must be a non-empty array.");
  for (const m of messages) {
    if (!["system", "user", "assistant", "tool"].includes(m.role)) {
      throw invalid(`Unknown message role "${m.role}": use system, user, assistant or tool.`);
    }
    // An assistant's tool call may come with no text, as OpenAI returns it.
    const callsOnly = m.role === "assistant" && Array.isArray(m.tool_calls) && m.content == null;
    if (typeof m.content !== "string" && !callsOnly) throw invalid("Every message needs a string content.");
  }
}

function validateLogprobs(request: ChatCompletionRequest): number {
  const k = request.top_logprobs ?? 0;
  if (!(Number.isInteger(k) && k >= 0 && k <= MAX_TOP_LOGPROBS)) {
    throw invalid(`top_logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${k}.`);
  }
  if (k > 0 && !request.logprobs) throw invalid("top_logprobs needs logprobs: true.");
  return k;
}

export class Engine implements ChatEngine {
  readonly kind = "page";
  private loaded?: LoadedChat;
  private interruptRequested = false;
  private busy = false;
  private lastLoss?: GpuLoss;
  private lostModel = false; // the loaded model's device was lost; calls fail until a reload
  private readonly lossWaiters: { after: number; resolve(loss: GpuLoss): void }[] = [];

  readonly chat = {
    completions: {
      create: ((request: ChatCompletionRequest) => this.create(request)) as CreateCompletion,
    },
  };

  async reload(baseUrl: string, options: LoadWeightsOptions = {}): Promise<void> {
    await this.unload();
    this.lostModel = false;
    // The tokenizer (a few MB of JSON, parsed in wasm) loads while the weights download.
    const tokenizerLoad = Tokenizer.fromModelDirectory(baseUrl);
    tokenizerLoad.catch(() => {}); // its error is thrown below, once the model's is known
    let model: Model | undefined;
    let tokenizer: Tokenizer | undefined;
    try {
      model = await Model.load(baseUrl, options);
      tokenizer = await tokenizerLoad;
      if (!model.config.chat_template) {
        throw new EngineError("no-chat-template", `The model at ${baseUrl} has no chat template to format messages.`);
      }
    } catch (error) {
      model?.dispose();
      tokenizerLoad.then((t) => t.dispose(), () => {});
      throw error;
    }
    this.loaded = {
      model,
      tokenizer,
      template: new ChatTemplate(model.config.chat_template),
      cached: [],
      grammars: new Grammars(tokenizer, model.config),
    };
    this.watchDevice(this.loaded);
  }

  async unload(): Promise<void> {
    this.loaded?.grammars.dispose();
    this.loaded?.model.dispose();
    this.loaded?.tokenizer.dispose();
    this.loaded = undefined;
  }

  interruptGenerate(): void {
    this.interruptRequested = true;
  }

  async resetChat(): Promise<void> {
    if (this.lostModel) throw this.lostError();
    if (!this.loaded) return;
    this.loaded.model.reset();
    this.loaded.cached = [];
  }

  async runtimeStats(): Promise<RuntimeStats> {
    const { model } = this.loadedChat();
    const memory = model.gpuMemory();
    return {
      model: model.config.model,
      gpu_allocated_bytes: memory.allocated,
      gpu_peak_bytes: memory.peak,
      adapter: await probeWebGPU(),
      device_limits: model.deviceLimits(),
      schedule: model.schedule,
    };
  }

  deviceLost(after = 0): Promise<GpuLoss> {
    if (this.lastLoss && this.lastLoss.count > after) return Promise.resolve(this.lastLoss);
    return new Promise((resolve) => this.lossWaiters.push({ after, resolve }));
  }

  async destroyDeviceForTesting(): Promise<void> {
    this.loadedChat().model.destroyDeviceForTesting();
  }

  // A loss of `chat`'s device while it is the loaded model (unload and reload destroy the
  // device too, after replacing it) frees the model and tells whoever waits for losses.
  private watchDevice(chat: LoadedChat): void {
    void chat.model.lost.then(async (info) => {
      if (this.loaded !== chat) return;
      const count = (this.lastLoss?.count ?? 0) + 1;
      const loss = { count, reason: info.reason, message: deviceLostError(info).message };
      this.lastLoss = loss;
      this.lostModel = true;
      console.warn(`webllm_build: ${loss.message}`);
      await this.unload();
      for (const waiter of this.lossWaiters.filter((w) => w.after < loss.count)) {
        this.lossWaiters.splice(this.lossWaiters.indexOf(waiter), 1);
        waiter.resolve(loss);
      }
    });
  }

  private lostError(): EngineError {
    return new EngineError("gpu-lost", this.lastLoss?.message ?? "The GPU device was lost: reload the model.");
  }

  private loadedChat(): LoadedChat {
    if (this.lostModel) throw this.lostError();
    if (!this.loaded) throw new EngineError("no-model", "No model is loaded: call engine.reload(url) first.");
    return this.loaded;
  }

  private async create(request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const chat = this.loadedChat();
    validateMessages(request.messages);
    const sampling = samplingParams(request, chat.model.config.vocab_size);
    const maxTokens = request.max_tokens ?? DEFAULT_MAX_TOKENS;
    if (!(Number.isInteger(maxTokens) && maxTokens > 0)) throw invalid(`max_tokens must be a positive integer.`);
    const topLogprobs = validateLogprobs(request);
    const templateVariables = request.chat_template_kwargs ?? {};
    if (typeof templateVariables !== "object" || Array.isArray(templateVariables)) {
      throw invalid("chat_template_kwargs must be an object of template variables, e.g. {enable_thinking: false}.");
    }
    if (this.busy) throw new EngineError("busy", "A completion is already running; wait for it or interrupt it.");
    const tools = planTools(request.tools, request.tool_choice);
    if (tools?.format && request.response_format != null && request.response_format.type !== "text") {
      throw invalid("response_format cannot be combined with a required or named tool_choice, which sets the format.");
    }
    // Compiled (or taken from the cache) before any token: a bad schema or grammar fails here.
    const constraint = await chat.grammars.constraint(tools?.format ?? request.response_format);
    const templateHasTools = chat.template.source.includes("tools");
    const chunks = this.stream(chat, request, tools, {
      messages: templateMessages(request.messages, tools, templateHasTools),
      tools: templateHasTools ? tools?.tools : undefined,
      templateVariables,
      sampling,
      maxTokens,
      stop: request.stop == null ? [] : Array.isArray(request.stop) ? request.stop : [request.stop],
      seed: request.seed ?? Math.floor(Math.random() * 2 ** 32),
      logprobs: Boolean(request.logprobs),
      topLogprobs,
      ignoreEos: Boolean(request.ignore_eos),
      constraint,
      interrupted: () => this.interruptRequested,
    });
    return request.stream ? chunks : collect(chunks, Boolean(request.logprobs));
  }

  // The generation's events as chunks: the first carries the role, the last the finish reason
  // and usage; logprobs ride on the chunk after the token they describe.
  //
  // Where the reply may be a tool call, its text is held back while it still could be one (it
  // starts with "{" or "<tool_call>"); a call is sent whole in the last chunk's delta.
  private async *stream(
    chat: LoadedChat,
    request: ChatCompletionRequest,
    tools: ToolPlan | undefined,
    options: GenerationOptions,
  ): AsyncGenerator<ChatCompletionChunk> {
    this.busy = true;
    this.interruptRequested = false;
    const id = `chatcmpl-${Date.now().toString(36)}`;
    const created = Math.floor(Date.now() / 1000);
    let held = tools?.readCalls ? "" : undefined;
    const events = generate(chat, options);
    // A lost device may leave a GPU wait pending forever: the loss ends the reply instead.
    let lost = false;
    const loss = chat.model.lost.then((info) => {
      lost = true;
      throw deviceLostError(info);
    });
    loss.catch(() => {});
    try {
      for (;;) {
        const next = events.next();
        next.catch(() => {});
        const step = await Promise.race([next, loss]).catch((error) => this.explainFailure(chat, error));
        if (step.done) break;
        const event = step.value;
        let finish = event.kind === "done" ? event.finish : null;
        let change = delta(event);
        if (held !== undefined && change.content) {
          held += change.content;
          change = mayBeToolCall(held) ? {} : { content: held };
          if (change.content !== undefined) held = undefined;
        }
        if (held !== undefined && event.kind === "done") {
          const call = readToolCall(held, tools!.tools);
          if (call) {
            change = { tool_calls: [{ index: 0, ...call }] };
            if (finish === "stop") finish = "tool_calls";
          } else if (held) {
            change = { content: held };
          }
        }
        const choice = { index: 0 as const, delta: change, finish_reason: finish };
        const chunk: ChatCompletionChunk = {
          id,
          object: "chat.completion.chunk",
          created,
          model: chat.model.config.model,
          choices: [request.logprobs ? { ...choice, logprobs: { content: event.logprobs } } : choice],
        };
        yield event.kind === "done" ? { ...chunk, usage: event.usage } : chunk;
      }
    } finally {
      this.busy = false;
      // The reader stopped early: end the token loop (a lost device's may never resume).
      if (!lost) await events.return(undefined);
    }
  }

  // A GPU call that fails because the device was just lost reports the loss, not its own error.
  private async explainFailure(chat: LoadedChat, error: unknown): Promise<never> {
    if (error instanceof EngineError) throw error;
    const settled = new Promise<undefined>((resolve) => setTimeout(resolve, LOSS_SETTLE_MS));
    const info = await Promise.race([chat.model.lost, settled]);
    throw info ? deviceLostError(info) : error;
  }
}

function delta(event: GenerationEvent): ChatCompletionChunk["choices"][0]["delta"] {
  if (event.kind === "prefilled") return { role: "assistant", content: "" };
  return event.kind === "text" ? { content: event.text } : {};
}

// A whole completion from its stream of chunks.
async function collect(chunks: AsyncIterable<ChatCompletionChunk>, withLogprobs: boolean): Promise<ChatCompletion> {
  let content = "";
  let last: ChatCompletionChunk | undefined;
  const logprobs: TokenLogprob[] = [];
  const calls: ToolCall[] = [];
  for await (const chunk of chunks) {
    content += chunk.choices[0].delta.content ?? "";
    for (const { index: _index, ...call } of chunk.choices[0].delta.tool_calls ?? []) calls.push(call);
    logprobs.push(...(chunk.choices[0].logprobs?.content ?? []));
    last = chunk;
  }
  return {
    id: last!.id,
    object: "chat.completion",
    created: last!.created,
    model: last!.model,
    choices: [
      {
        index: 0,
        message: calls.length > 0 ? { role: "assistant", content: null, tool_calls: calls } : { role: "assistant", content },
        finish_reason: last!.choices[0].finish_reason!,
        ...(withLogprobs ? { logprobs: { content: logprobs } } : {}),
      },
    ],
    usage: last!.usage!,
  };
}

export async function createEngine(): Promise<Engine> {
  return new Engine();
}
