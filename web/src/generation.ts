// One completion's token loop: the conversation through the chat template, the KV cache rewound
// to what it shares with the previous turns, prefill, then one token at a time until an
// end-of-sequence token, a stop string, the token budget or an interrupt. engine.ts validates
// the request and turns the events below into OpenAI-style chunks.
//
// Multi-turn: the KV cache keeps the tokens of the conversation so far. A new prompt is compared
// with them; only the tokens after their longest common prefix are prefilled (the cache is
// rewound to that prefix first). Context overflow is reported as an error that says how many
// tokens were needed; nothing is dropped silently.

import type { ChatMessage, ChatTemplate } from "./chat_template";
import type { CompletionUsage, FinishReason, TokenLogprob, TopLogprob } from "./engine_api";
import { EngineError } from "./errors";
import { applyMask, type Constraint, type Grammars } from "./grammar";
import type { GreedyRun } from "./greedy_run";
import type { Model } from "./model";
import { sampleToken, seededRandom, type SamplingParams } from "./sampling";
import type { Tokenizer } from "./tokenizer";

// A loaded model and its conversation: `cached` are the tokens whose keys and values are in the
// model's KV cache, in order.
export interface LoadedChat {
  model: Model;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  cached: number[];
  grammars: Grammars;
}

export interface GenerationOptions {
  messages: ChatMessage[];
  // OpenAI-style tools, for a chat template that lays them out itself (tools.ts).
  tools?: unknown[];
  templateVariables: Record<string, unknown>;
  sampling: SamplingParams;
  maxTokens: number;
  stop: string[];
  seed: number;
  logprobs: boolean;
  topLogprobs: number;
  ignoreEos: boolean;
  // Structured output (grammar.ts): only tokens the grammar allows are picked, and the reply
  // ends when the grammar is complete, end-of-sequence token included, ignoreEos or not.
  constraint?: Constraint;
  interrupted(): boolean;
}

// `logprobs` are those of the tokens taken since the previous event.
export type GenerationEvent = { logprobs: TokenLogprob[] } & (
  | { kind: "prefilled" }
  | { kind: "text"; text: string }
  | { kind: "done"; finish: FinishReason; usage: CompletionUsage }
);

export async function* generate(chat: LoadedChat, options: GenerationOptions): AsyncGenerator<GenerationEvent> {
  const { model, tokenizer } = chat;
  const config = model.config;
  const promptIds = promptTokens(chat, options);
  const budget = Math.min(options.maxTokens, config.context_window - promptIds.length);
  const newIds = promptIds.slice(rewind(chat, promptIds));
  const source = new TokenSource(model, options);
  try {
    const t0 = performance.now();
    await source.prefill(newIds);
    chat.cached.push(...newIds);
    const prefillSeconds = (performance.now() - t0) / 1000;

    const generated: number[] = [];
    const decoder = tokenizer.streamingDecoder({ skipSpecialTokens: true });
    const held = new StopStrings(options.stop);
    const logprobs: TokenLogprob[] = [];
    const taken = () => logprobs.splice(0);
    let finish: FinishReason = "length";
    const t1 = performance.now();
    yield { kind: "prefilled", logprobs: taken() };
    while (generated.length < budget) {
      if (options.interrupted()) {
        finish = "abort";
        break;
      }
      const token = source.next(promptIds, generated);
      generated.push(token);
      if (options.logprobs) logprobs.push(source.logprobs(token, tokenizer));
      options.constraint?.accept(token);
      if ((!options.ignoreEos || options.constraint) && config.eos_token_ids.includes(token)) {
        finish = "stop";
        break;
      }
      const { ready, stopped } = held.push(decoder.push(token));
      if (stopped) {
        finish = "stop";
        break;
      }
      if (ready) yield { kind: "text", text: ready, logprobs: taken() };
      if (generated.length < budget) {
        await source.feed(token, budget - generated.length);
        chat.cached.push(token);
      }
    }
    source.close();
    // What the decoder still holds would follow a stop string: flushed only where none cut the reply.
    const rest = held.rest() + (finish !== "stop" || options.stop.length === 0 ? decoder.flush() : "");
    if (rest) yield { kind: "text", text: rest, logprobs: taken() };
    const decodeSeconds = (performance.now() - t1) / 1000;
    const usage: CompletionUsage = {
      prompt_tokens: promptIds.length,
      completion_tokens: generated.length,
      total_tokens: promptIds.length + generated.length,
      prefill_tokens: newIds.length,
      prefill_tokens_per_s: newIds.length / Math.max(prefillSeconds, 1e-9),
      decode_tokens_per_s: Math.max(generated.length - 1, 0) / Math.max(decodeSeconds, 1e-9),
    };
    yield { kind: "done", finish, usage, logprobs: taken() };
  } finally {
    source.close();
  }
}

// The conversation as token ids, with the generation prompt; refused if no reply would fit.
function promptTokens({ model, tokenizer, template }: LoadedChat, options: GenerationOptions): number[] {
  const config = model.config;
  const specialTokens = {
    bos_token: config.bos_token_id !== null ? tokenizer.idToToken(config.bos_token_id) : undefined,
    eos_token: tokenizer.idToToken(config.eos_token_ids[0]),
  };
  const ids = tokenizer.encode(
    template.render(options.messages, {
      addGenerationPrompt: true,
      specialTokens,
      variables: options.templateVariables,
      tools: options.tools,
    }),
  );
  if (ids.length + 1 > config.context_window) {
    throw new EngineError(
      "context-overflow",
      `The conversation is ${ids.length} tokens; this model's context window is ` +
        `${config.context_window}. Start a new chat or shorten the messages.`,
    );
  }
  return ids;
}

// Drops from the KV cache what `promptIds` does not share with it; returns how many it keeps.
function rewind(chat: LoadedChat, promptIds: number[]): number {
  const reused = commonPrefix(chat.cached, promptIds);
  // At least one token must be prefilled to get logits for the first reply token.
  const keep = reused === promptIds.length ? reused - 1 : reused;
  chat.model.popTokens(chat.cached.length - keep);
  chat.cached = promptIds.slice(0, keep);
  return keep;
}

function commonPrefix(a: number[], b: number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

// Where each next token comes from. Plain greedy replies never need the logits on the CPU: the
// GPU picks each token and only its id comes back. Penalties, temperature and logprobs need the
// whole vector. Under a grammar, greedy still reads back only the id (the grammar's mask goes up
// to the GPU, which picks among the allowed tokens), but each step waits for its token: the next
// mask depends on it. Sampling masks the vector on the CPU.
class TokenSource {
  private readonly onGpu: boolean;
  private readonly random: () => number;
  private logits: Float32Array = new Float32Array();
  private gpuToken = -1;
  // On the GPU path, decode steps run ahead of the loop (greedy_run.ts); closing the run drops
  // the steps it ran beyond the last token taken.
  private run?: GreedyRun;

  constructor(
    private readonly model: Model,
    private readonly options: GenerationOptions,
  ) {
    const { temperature, repetitionPenalty, logitBias } = options.sampling;
    this.onGpu = temperature <= 0 && repetitionPenalty === 1 && !logitBias?.size && !options.logprobs;
    this.random = seededRandom(options.seed);
  }

  async prefill(ids: number[]): Promise<void> {
    const mask = await this.options.constraint?.nextMask();
    if (this.onGpu) this.gpuToken = await this.model.prefillGreedy(ids, mask);
    else this.logits = this.masked(await this.model.prefill(ids), mask);
  }

  // The next token; the repetition penalty looks at the prompt and the reply so far.
  next(promptIds: number[], generated: number[]): number {
    if (this.onGpu) return this.gpuToken;
    return sampleToken(this.logits, this.options.sampling, [...promptIds, ...generated], this.random);
  }

  logprobs(token: number, tokenizer: Tokenizer): TokenLogprob {
    return tokenLogprobs(this.logits, token, this.options.topLogprobs, (id) => {
      const text = tokenizer.decode([id]);
      return { token: text, bytes: Array.from(new TextEncoder().encode(text)) };
    });
  }

  // Feeds `token` to the model, at most `remaining` more tokens being wanted.
  async feed(token: number, remaining: number): Promise<void> {
    const constraint = this.options.constraint;
    if (constraint) {
      // The GPU decodes while the CPU works out the mask for the step's output.
      const mask = constraint.nextMask();
      if (this.onGpu) this.gpuToken = await this.model.decodeGreedy(token, mask);
      else this.logits = this.masked(await this.model.decode(token), await mask);
    } else if (this.onGpu) {
      this.run ??= this.model.greedyRun(token, remaining);
      this.gpuToken = await this.run.next();
    } else {
      this.logits = await this.model.decode(token);
    }
  }

  private masked(logits: Float32Array, mask: Int32Array | undefined): Float32Array {
    if (mask) applyMask(logits, mask);
    return logits;
  }

  close(): void {
    this.run?.close();
    this.options.constraint?.dispose();
  }
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

// Decoded text waits here while it may still grow into a stop string.
class StopStrings {
  private pending = "";

  constructor(private readonly stops: string[]) {}

  // Adds `text`; returns what can be emitted now, or `stopped` once a stop string appears
  // (what precedes it stays in rest()).
  push(text: string): { ready: string; stopped: boolean } {
    this.pending += text;
    const hits = this.stops.map((s) => this.pending.indexOf(s)).filter((i) => i >= 0);
    if (hits.length > 0) {
      this.pending = this.pending.slice(0, Math.min(...hits));
      return { ready: "", stopped: true };
    }
    // Emit all but the longest tail that could still grow into a stop string.
    const hold = Math.max(0, ...this.stops.map((s) => overlap(this.pending, s)));
    const ready = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(ready.length);
    return { ready, stopped: false };
  }

  rest(): string {
    return this.pending;
  }
}

// The length of the longest suffix of `text` that is a proper prefix of `stop`.
function overlap(text: string, stop: string): number {
  for (let n = Math.min(text.length, stop.length - 1); n > 0; n--) {
    if (text.endsWith(stop.slice(0, n))) return n;
  }
  return 0;
}
