// Tool calls in OpenAI's shapes: `tools` offered to the model, `tool_choice`, replies read back as
// `tool_calls`, and the `tool` messages that carry results into the next turn.
//
// The call format is the one most chat templates with tools teach (Hermes, Qwen, Llama 3.x's
// JSON calls): a JSON object {"name": ..., "arguments": {...}}, bare or inside
// <tool_call>...</tool_call>. `required` and a named function are enforced by a grammar (that
// object, its arguments under the function's own `parameters` schema); `auto` lets the model
// choose, and its reply is a tool call when it is such an object naming an offered function.
//
// The tools reach the prompt through the model's chat template (its `tools` variable) where it
// has one; a template that never mentions `tools` gets them in a system message instead, with
// the call format spelled out (TOOLS_FALLBACK).

import type { ChatMessage } from "./chat_template";
import { EngineError } from "./errors";
import { unenforcedKeyword, type ResponseFormat } from "./grammar";

export interface ToolFunction {
  name: string;
  description?: string;
  parameters?: Record<string, unknown>;
  strict?: boolean;
}

export interface Tool {
  type: "function";
  function: ToolFunction;
}

export type ToolChoice = "none" | "auto" | "required" | { type: "function"; function: { name: string } };

export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string }; // arguments: a JSON text, as OpenAI sends them
}

// What a request's tools ask of one reply.
export interface ToolPlan {
  tools: Tool[]; // offered in the prompt
  // The grammar a `required` or named choice imposes (none for `auto`).
  format?: ResponseFormat;
  // Whether the reply is read as a tool call: `auto`, `required`, a named function.
  readCalls: boolean;
}

const NAME = /^[A-Za-z0-9_-]{1,64}$/; // OpenAI's rule for function names

function invalid(message: string): EngineError {
  return new EngineError("invalid-request", message);
}

export function planTools(tools: unknown, choice: unknown): ToolPlan | undefined {
  if (tools == null || (Array.isArray(tools) && tools.length === 0)) {
    if (choice != null && choice !== "none") throw invalid("tool_choice needs tools: the request offers none.");
    return undefined;
  }
  if (!Array.isArray(tools)) throw invalid("tools must be an array of {type: \"function\", function: {name, parameters}}.");
  const names = new Set<string>();
  for (const tool of tools as Tool[]) {
    const fn = tool?.function;
    if (tool?.type !== "function" || typeof fn !== "object" || fn === null) {
      throw invalid("Every tool must be {type: \"function\", function: {name, description, parameters}}.");
    }
    if (typeof fn.name !== "string" || !NAME.test(fn.name)) {
      throw invalid(`Tool name ${JSON.stringify(fn.name)} must be 1-64 letters, digits, underscores or dashes.`);
    }
    if (names.has(fn.name)) throw invalid(`Two tools are named "${fn.name}".`);
    names.add(fn.name);
    if (fn.parameters !== undefined && (typeof fn.parameters !== "object" || fn.parameters === null || Array.isArray(fn.parameters))) {
      throw invalid(`The parameters of tool "${fn.name}" must be a JSON Schema object.`);
    }
  }
  const offered = tools as Tool[];
  const choose = choice ?? "auto";
  if (choose === "none") return { tools: offered, readCalls: false };
  if (choose === "auto") return { tools: offered, readCalls: true };
  if (choose === "required") return { tools: offered, readCalls: true, format: callFormat(offered) };
  const wanted = (choose as { function?: { name?: unknown } })?.function?.name;
  if (typeof choose !== "object" || (choose as { type?: unknown }).type !== "function" || typeof wanted !== "string") {
    throw invalid('tool_choice must be "none", "auto", "required" or {type: "function", function: {name}}.');
  }
  const named = offered.filter((t) => t.function.name === wanted);
  if (named.length === 0) {
    throw invalid(`tool_choice names "${wanted}", which is not among the tools: ${[...names].join(", ")}.`);
  }
  return { tools: offered, readCalls: true, format: callFormat(named) };
}

// {"name": <one of the functions>, "arguments": <that function's parameters>}.
function callFormat(tools: Tool[]): ResponseFormat {
  for (const tool of tools) {
    const unenforced = unenforcedKeyword(tool.function.parameters);
    if (unenforced) {
      throw invalid(
        `The parameters of tool "${tool.function.name}" use ${unenforced}, which the grammar engine cannot enforce.`,
      );
    }
  }
  const cases = tools.map((tool) => ({
    type: "object",
    properties: {
      name: { const: tool.function.name },
      arguments: tool.function.parameters ?? { type: "object" },
    },
    required: ["name", "arguments"],
    additionalProperties: false,
  }));
  return { type: "json_schema", json_schema: { name: "tool_call", schema: cases.length === 1 ? cases[0] : { anyOf: cases } } };
}

// The reply as a tool call, if it is one: {"name", "arguments" (or "parameters", Llama 3.x's
// word)} naming an offered function, bare or in <tool_call> tags, nothing else around it.
export function readToolCall(text: string, tools: Tool[]): ToolCall | undefined {
  let body = text.trim();
  const tagged = /^<tool_call>([\s\S]*)<\/tool_call>$/.exec(body);
  if (tagged) body = tagged[1].trim();
  if (!body.startsWith("{")) return undefined;
  let call: unknown;
  try {
    call = JSON.parse(body);
  } catch {
    return undefined;
  }
  const { name, arguments: args, parameters } = (call ?? {}) as Record<string, unknown>;
  const given = args ?? parameters;
  if (typeof name !== "string" || !tools.some((t) => t.function.name === name)) return undefined;
  if (typeof given !== "object" || given === null || Array.isArray(given)) return undefined;
  return { id: callId(), type: "function", function: { name, arguments: JSON.stringify(given) } };
}

// Nine letters and digits: Mistral's templates refuse any other tool call id in later turns.
function callId(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from({ length: 9 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join("");
}

// Whether `text`, the start of a reply, may still become a tool call (streaming holds it back).
export function mayBeToolCall(text: string): boolean {
  const start = text.trimStart();
  return start.startsWith("{") || start.startsWith("<tool_call>") || "<tool_call>".startsWith(start);
}

// Short: it comes before every turn while tools are offered.
export const TOOLS_FALLBACK =
  'To call a function, reply with only a JSON object {"name": <function>, "arguments": <its arguments>}. Functions:\n';

// The messages as the chat template gets them: an assistant's tool calls with their arguments
// as objects (templates print them with tojson, as transformers passes them). Where the template
// ignores `tools`: the tools described in a system message, and each call written out as the
// assistant's text, in the format that message asks for.
export function templateMessages(messages: ChatMessage[], plan: ToolPlan | undefined, templateHasTools: boolean): ChatMessage[] {
  const out = messages.map((m) => {
    const calls = m.tool_calls as ToolCall[] | undefined;
    if (!Array.isArray(calls)) return m;
    const parsed = calls.map((c) => ({ ...c, function: { ...c.function, arguments: parsedArguments(c.function?.arguments) } }));
    if (templateHasTools) return { ...m, tool_calls: parsed };
    const { tool_calls: _calls, ...rest } = m;
    const written = parsed.map((c) => JSON.stringify({ name: c.function.name, arguments: c.function.arguments }));
    return { ...rest, content: [m.content ?? "", ...written].filter(Boolean).join("\n") };
  });
  if (!plan || templateHasTools) return out;
  const described = TOOLS_FALLBACK + plan.tools.map((t) => JSON.stringify(t.function)).join("\n");
  if (out[0]?.role === "system") return [{ ...out[0], content: `${out[0].content}\n\n${described}` }, ...out.slice(1)];
  return [{ role: "system", content: described }, ...out];
}

function parsedArguments(args: unknown): unknown {
  if (typeof args !== "string") return args;
  try {
    return JSON.parse(args);
  } catch {
    return args;
  }
}
