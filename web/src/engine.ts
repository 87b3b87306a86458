// The public API: OpenAI-style chat completions over one loaded model.
//
// This file validates requests and shapes responses; the token loop lives in `generate`, the
// model and its KV cache in model.ts, sampling in sampling.ts.
//
// Multi-turn: the KV cache keeps the tokens of the conversation so far. A new request's prompt
// is compared with them; only the tokens after their longest common prefix are prefilled (the
// cache is rewound to that prefix first). Context overflow is reported as an error that says
// how many tokens were needed; nothing is dropped silently.

import { ChatTemplate, type ChatMessage } from "./chat_template";
import { EngineError } from "./library";
import type { GreedyRun } from "./greedy_run";
import { Model } from "./model";
import { sampleToken, seededRandom, type SamplingParams } from "./sampling";
import { Tokenizer } from "./tokenizer";
import { probeWebGPU, type AdapterReport } from "./webgpu";
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
  // OpenAI-style: the log-probability of every completion token and of the `top_logprobs`
  // most likely ones at each step, from the model's own distribution (raw logits, before
  // repetition penalty, temperature and top-p).
  logprobs?: boolean;
  top_logprobs?: number;
  // Not OpenAI: keep generating through end-of-sequence tokens (benchmarks need a fixed length).
  ignore_eos?: boolean;
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

export interface RuntimeStats {
  model: string;
  // Bytes of GPU buffers the model holds now (weights, KV cache, workspace) and at most so far.
  gpu_allocated_bytes: number;
  gpu_peak_bytes: number;
  adapter: AdapterReport;
  device_limits: Record<string, number>; // what the model's device was created with
}

export type FinishReason = "stop" | "length" | "abort";

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
    message: { role: "assistant"; content: string };
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
    delta: { role?: "assistant"; content?: string };
    finish_reason: FinishReason | null;
    logprobs?: ChoiceLogprobs | null;
  }[];
  usage?: CompletionUsage;
}

const DEFAULT_MAX_TOKENS = 512;
const MAX_TOP_LOGPROBS = 20; // OpenAI's limit

function invalid(message: string): EngineError {
  return new EngineError("invalid-request", message);
}

function samplingParams(request: ChatCompletionRequest): SamplingParams {
  const temperature = request.temperature ?? 0;
  const topP = request.top_p ?? 1;
  const repetitionPenalty = request.repetition_penalty ?? 1;
  if (!(temperature >= 0)) throw invalid(`temperature must be >= 0, got ${temperature}.`);
  if (!(topP > 0 && topP <= 1)) throw invalid(`top_p must be in (0, 1], got ${topP}.`);
  if (!(repetitionPenalty > 0)) throw invalid(`repetition_penalty must be > 0, got ${repetitionPenalty}.`);
  return { temperature, topP, repetitionPenalty };
}

function validateMessages(messages: ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0) throw invalid("messages must be a non-empty array.");
  for (const m of messages) {
    if (!["system", "user", "assistant"].includes(m.role)) throw invalid(`Unknown message role "${m.role}".`);
    if (typeof m.content !== "string") throw invalid("Every message needs a string content.");
  }
}

function commonPrefix(a: number[], b: number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

function validateLogprobs(request: ChatCompletionRequest): number {
  const k = request.top_logprobs ?? 0;
  if (!(Number.isInteger(k) && k >= 0 && k <= MAX_TOP_LOGPROBS)) {
    throw invalid(`top_logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${k}.`);
  }
  if (k > 0 && !request.logprobs) throw invalid("top_logprobs needs logprobs: true.");
  return k;
}

// log-softmax of `logits` at `token` and at the `k` largest entries, in float64.
function tokenLogprobs(
  logits: Float32Array,
  token: number,
  k: number,
  describe: (id: number) => { token: string; bytes: number[] },
): TokenLogprob {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let total = 0;
  for (const v of logits) total += Math.exp(v - max);
  const logZ = max + Math.log(total);
  const top: number[] = [];
  for (let i = 0; i < logits.length && k > 0; i++) {
    if (top.length < k || logits[i] > logits[top[top.length - 1]]) {
      let at = Math.min(top.length, k - 1);
      top[at] = i;
      while (at > 0 && logits[top[at - 1]] < logits[i]) {
        [top[at - 1], top[at]] = [top[at], top[at - 1]];
        at--;
      }
    }
  }
  const entry = (id: number): TopLogprob => ({ ...describe(id), token_id: id, logprob: logits[id] - logZ });
  return { ...entry(token), top_logprobs: top.map(entry) };
}

// chat.completions.create: a stream of chunks when `stream` is true, else one completion.
export interface CreateCompletion {
  (request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
  (request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  (request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
}

export class Engine {
  private model?: Model;
  private tokenizer?: Tokenizer;
  private template?: ChatTemplate;
  private modelId = "";
  // Tokens whose keys and values are in the model's KV cache, in order.
  private cached: number[] = [];
  private interruptRequested = false;
  private busy = false;

  readonly chat = {
    completions: {
      create: ((request: ChatCompletionRequest) => this.create(request)) as CreateCompletion,
    },
  };

  // Loads the compiled model directory at `baseUrl` (ending in "/"), replacing any loaded one.
  async reload(baseUrl: string, options: LoadWeightsOptions = {}): Promise<void> {
    await this.unload();
    // The tokenizer (a few MB of JSON, parsed in wasm) loads while the weights download.
    const tokenizerLoad = Tokenizer.fromModelDirectory(baseUrl);
    tokenizerLoad.catch(() => {}); // its error is thrown below, once the model's is known
    let model: Model | undefined;
    try {
      model = await Model.load(baseUrl, options);
      const tokenizer = await tokenizerLoad;
      if (!model.config.chat_template) {
        tokenizer.dispose();
        throw new EngineError("no-chat-template", `The model at ${baseUrl} has no chat template to format messages.`);
      }
      this.model = model;
      this.tokenizer = tokenizer;
    } catch (error) {
      model?.dispose();
      tokenizerLoad.then((t) => t !== this.tokenizer && t.dispose(), () => {});
      throw error;
    }
    this.template = new ChatTemplate(model.config.chat_template);
    this.modelId = model.config.model;
    this.cached = [];
  }

  async unload(): Promise<void> {
    this.model?.dispose();
    this.tokenizer?.dispose();
    this.model = this.tokenizer = this.template = undefined;
    this.cached = [];
  }

  interruptGenerate(): void {
    this.interruptRequested = true;
  }

  async resetChat(): Promise<void> {
    this.model?.reset();
    this.cached = [];
  }

  async runtimeStats(): Promise<RuntimeStats> {
    if (!this.model) throw new EngineError("no-model", "No model is loaded: call engine.reload(url) first.");
    const memory = this.model.gpuMemory();
    return {
      model: this.modelId,
      gpu_allocated_bytes: memory.allocated,
      gpu_peak_bytes: memory.peak,
      adapter: await probeWebGPU(),
      device_limits: this.model.deviceLimits(),
    };
  }

  private async create(request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    if (!this.model) throw new EngineError("no-model", "No model is loaded: call engine.reload(url) first.");
    validateMessages(request.messages);
    const params = samplingParams(request);
    const maxTokens = request.max_tokens ?? DEFAULT_MAX_TOKENS;
    if (!(Number.isInteger(maxTokens) && maxTokens > 0)) throw invalid(`max_tokens must be a positive integer.`);
    validateLogprobs(request);
    if (this.busy) throw new EngineError("busy", "A completion is already running; wait for it or interrupt it.");
    const chunks = this.generate(request, params, maxTokens);
    if (request.stream) return chunks;
    let content = "";
    let last: ChatCompletionChunk | undefined;
    const logprobs: TokenLogprob[] = [];
    for await (const chunk of chunks) {
      content += chunk.choices[0].delta.content ?? "";
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
          message: { role: "assistant", content },
          finish_reason: last!.choices[0].finish_reason!,
          ...(request.logprobs ? { logprobs: { content: logprobs } } : {}),
        },
      ],
      usage: last!.usage!,
    };
  }

  private async *generate(
    request: ChatCompletionRequest,
    params: SamplingParams,
    maxTokens: number,
  ): AsyncGenerator<ChatCompletionChunk> {
    const model = this.model!;
    const tokenizer = this.tokenizer!;
    const config = model.config;
    this.busy = true;
    this.interruptRequested = false;
    // On the GPU path, decode steps run ahead of the loop below (greedy_run.ts); closing the run
    // drops the steps it ran beyond the last token taken.
    let run: GreedyRun | undefined;
    try {
      const specialTokens = {
        bos_token: config.bos_token_id !== null ? tokenizer.idToToken(config.bos_token_id) : undefined,
        eos_token: tokenizer.idToToken(config.eos_token_ids[0]),
      };
      const prompt = this.template!.render(request.messages, { addGenerationPrompt: true, specialTokens });
      const promptIds = tokenizer.encode(prompt);
      if (promptIds.length + 1 > config.context_window) {
        throw new EngineError(
          "context-overflow",
          `The conversation is ${promptIds.length} tokens; this model's context window is ` +
            `${config.context_window}. Start a new chat or shorten the messages.`,
        );
      }
      const budget = Math.min(maxTokens, config.context_window - promptIds.length);

      const reused = commonPrefix(this.cached, promptIds);
      // At least one token must be prefilled to get logits for the first reply token.
      const keep = reused === promptIds.length ? reused - 1 : reused;
      model.popTokens(this.cached.length - keep);
      this.cached = promptIds.slice(0, keep);

      const stops = request.stop == null ? [] : Array.isArray(request.stop) ? request.stop : [request.stop];
      const random = seededRandom(request.seed ?? Math.floor(Math.random() * 2 ** 32));
      const id = `chatcmpl-${Date.now().toString(36)}`;
      const created = Math.floor(Date.now() / 1000);
      const topK = validateLogprobs(request);
      // Logprobs of tokens sampled since the last chunk: they ride on the next chunk out.
      let logprobs: TokenLogprob[] = [];
      const describe = (tokenId: number) => {
        const token = tokenizer.decode([tokenId]);
        return { token, bytes: Array.from(new TextEncoder().encode(token)) };
      };
      const chunk = (delta: ChatCompletionChunk["choices"][0]["delta"], finish: FinishReason | null) => {
        const choice = { index: 0 as const, delta, finish_reason: finish };
        const withLogprobs = request.logprobs ? { ...choice, logprobs: { content: logprobs } } : choice;
        logprobs = [];
        return { id, object: "chat.completion.chunk" as const, created, model: this.modelId, choices: [withLogprobs] };
      };

      // Plain greedy replies never need the logits on the CPU: the GPU picks each token and
      // only its id comes back. Penalties, temperature and logprobs need the whole vector.
      const onGpu = params.temperature <= 0 && params.repetitionPenalty === 1 && !request.logprobs;
      let logits: Float32Array = new Float32Array();
      let gpuToken = -1;
      const t0 = performance.now();
      const newIds = promptIds.slice(keep);
      if (onGpu) gpuToken = await model.prefillGreedy(newIds);
      else logits = await model.prefill(newIds);
      this.cached.push(...newIds);
      const prefillSeconds = (performance.now() - t0) / 1000;

      const generated: number[] = [];
      const decoder = tokenizer.streamingDecoder({ skipSpecialTokens: true });
      let text = ""; // everything emitted so far
      let pending = ""; // decoded but held back: it may be the start of a stop string
      let finish: FinishReason = "length";
      const t1 = performance.now();
      yield chunk({ role: "assistant", content: "" }, null);
      while (generated.length < budget) {
        if (this.interruptRequested) {
          finish = "abort";
          break;
        }
        const token = onGpu ? gpuToken : sampleToken(logits, params, [...promptIds, ...generated], random);
        generated.push(token);
        if (request.logprobs) logprobs.push(tokenLogprobs(logits, token, topK, describe));
        if (!request.ignore_eos && config.eos_token_ids.includes(token)) {
          finish = "stop";
          break;
        }
        pending += decoder.push(token);
        const hit = stops.map((s) => pending.indexOf(s)).filter((i) => i >= 0);
        if (hit.length > 0) {
          pending = pending.slice(0, Math.min(...hit));
          finish = "stop";
          break;
        }
        // Emit all but the longest tail that could still grow into a stop string.
        const hold = Math.max(0, ...stops.map((s) => overlap(pending, s)));
        const ready = pending.slice(0, pending.length - hold);
        if (ready) {
          text += ready;
          pending = pending.slice(ready.length);
          yield chunk({ content: ready }, null);
        }
        if (generated.length < budget) {
          if (onGpu) {
            run ??= model.greedyRun(token, budget - generated.length);
            gpuToken = await run.next();
          } else {
            logits = await model.decode(token);
          }
          this.cached.push(token);
        }
      }
      run?.close();
      if (finish !== "stop" || stops.length === 0) pending += decoder.flush();
      if (pending) {
        text += pending;
        yield chunk({ content: pending }, null);
      }
      const decodeSeconds = (performance.now() - t1) / 1000;
      const usage: CompletionUsage = {
        prompt_tokens: promptIds.length,
        completion_tokens: generated.length,
        total_tokens: promptIds.length + generated.length,
        prefill_tokens: newIds.length,
        prefill_tokens_per_s: newIds.length / Math.max(prefillSeconds, 1e-9),
        decode_tokens_per_s: Math.max(generated.length - 1, 0) / Math.max(decodeSeconds, 1e-9),
      };
      yield { ...chunk({}, finish), usage };
    } finally {
      run?.close();
      this.busy = false;
    }
  }
}

// The length of the longest suffix of `text` that is a proper prefix of `stop`.
function overlap(text: string, stop: string): number {
  for (let n = Math.min(text.length, stop.length - 1); n > 0; n--) {
    if (text.endsWith(stop.slice(0, n))) return n;
  }
  return 0;
}

export async function createEngine(): Promise<Engine> {
  return new Engine();
}
