// Renders a model's own Jinja chat template the way transformers' `apply_chat_template` does,
// with @huggingface/jinja: the same variables (messages, tools and documents as None,
// add_generation_prompt, the special-token strings, extra keyword arguments), the same helpers
// (`raise_exception`, `strftime_now`) and the same whitespace rules (trim_blocks and
// lstrip_blocks, which @huggingface/jinja always applies, as transformers' environment does).

import { Environment, Interpreter, Template } from "@huggingface/jinja";
import { EngineError } from "./errors";

export interface ChatMessage {
  role: string;
  content: string;
  [field: string]: unknown;
}

// transformers passes each of these that tokenizer_config.json sets (its `special_tokens_map`).
export interface SpecialTokens {
  bos_token?: string;
  eos_token?: string;
  unk_token?: string;
  sep_token?: string;
  pad_token?: string;
  cls_token?: string;
  mask_token?: string;
}

export interface RenderOptions {
  addGenerationPrompt?: boolean;
  specialTokens?: SpecialTokens;
  // apply_chat_template's extra keyword arguments (date_string, enable_thinking, ...).
  variables?: Record<string, unknown>;
  // apply_chat_template's `tools`: OpenAI-style function descriptions, or none.
  tools?: unknown[];
  // The clock behind `strftime_now`; tests pin it.
  now?: () => Date;
}

export class ChatTemplate {
  private readonly template: Template;

  constructor(readonly source: string) {
    try {
      this.template = new Template(source);
    } catch (err) {
      throw new EngineError("chat-template", `The model's chat template does not parse: ${messageOf(err)}`);
    }
  }

  render(messages: ChatMessage[], options: RenderOptions = {}): string {
    const now = options.now ?? (() => new Date());
    const specialTokens = Object.entries(options.specialTokens ?? {}).filter(([, value]) => value != null);
    // Template.render() declares its own raise_exception and strftime_now (month names in the
    // browser's locale), which no variable may redeclare; so this declares its globals itself.
    const variables: Record<string, unknown> = {
      true: true,
      false: false,
      none: null,
      True: true,
      False: false,
      None: null,
      range,
      raise_exception: (message: unknown) => {
        throw new EngineError("chat-template", `The chat template refused the conversation: ${String(message)}`);
      },
      strftime_now: (format: string) => strftime(now(), format),
      ...Object.fromEntries(specialTokens),
      ...options.variables,
      // transformers drops None-valued keys: templates test for a missing key, not for None.
      messages: messages.map((m) => Object.fromEntries(Object.entries(m).filter(([, value]) => value != null))),
      tools: options.tools ?? null,
      documents: null,
      add_generation_prompt: options.addGenerationPrompt ?? false,
    };
    const env = new Environment();
    try {
      for (const [name, value] of Object.entries(variables)) env.set(name, value);
      return new Interpreter(env).run(this.template.parsed).value as string;
    } catch (err) {
      if (err instanceof EngineError) throw err;
      throw new EngineError("chat-template", `The model's chat template failed to render: ${messageOf(err)}`);
    }
  }
}

export function renderChatTemplate(source: string, messages: ChatMessage[], options: RenderOptions = {}): string {
  return new ChatTemplate(source).render(messages, options);
}

const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = [
  "January", "February", "March", "April", "May", "June",
  "July", "August", "September", "October", "November", "December",
];

// Python's `datetime.now().strftime(format)` in the C locale (English names, whatever the
// browser's language), for the directives chat templates use; glibc's "%-d" drops the padding.
// @huggingface/jinja's own strftime_now names months in the browser's locale.
export function strftime(date: Date, format: string): string {
  return format.replace(/%(-?)([aAbBdeHIjmMpSyY%])/g, (_, unpadded: string, directive: string) => {
    const pad = (n: number, width = 2, fill = "0") => (unpadded ? String(n) : String(n).padStart(width, fill));
    const hours = date.getHours();
    switch (directive) {
      case "a":
        return DAYS[date.getDay()].slice(0, 3);
      case "A":
        return DAYS[date.getDay()];
      case "b":
        return MONTHS[date.getMonth()].slice(0, 3);
      case "B":
        return MONTHS[date.getMonth()];
      case "d":
        return pad(date.getDate());
      case "e":
        return pad(date.getDate(), 2, " ");
      case "H":
        return pad(hours);
      case "I":
        return pad(hours % 12 || 12);
      case "j":
        return pad(dayOfYear(date), 3);
      case "m":
        return pad(date.getMonth() + 1);
      case "M":
        return pad(date.getMinutes());
      case "p":
        return hours < 12 ? "AM" : "PM";
      case "S":
        return pad(date.getSeconds());
      case "y":
        return pad(date.getFullYear() % 100);
      case "Y":
        return String(date.getFullYear());
      default:
        return "%";
    }
  });
}

// Python's range(), as @huggingface/jinja defines it for its own globals.
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error("range() arg 3 must not be zero");
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

function dayOfYear(date: Date): number {
  const start = Date.UTC(date.getFullYear(), 0, 1);
  return Math.round((Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - start) / 86_400_000) + 1;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
