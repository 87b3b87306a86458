// Structured output: `response_format` (JSON mode, a JSON Schema, an EBNF grammar) enforced
// token by token by xgrammar (npm @mlc-ai/web-xgrammar: xgrammar compiled to wasm). At every
// step the matcher gives a bitmask of the tokens that keep the output inside the grammar;
// generation.ts masks the logits with it before picking a token and feeds the token back.
//
// The grammar compiler over a model's vocabulary is made once per loaded model, on the first
// constrained request (the vocabulary's strings are read from the tokenizer then); compiled
// grammars are kept per format, so a schema is compiled once however many requests use it.

import * as xgr from "@mlc-ai/web-xgrammar";
import { EngineError } from "./errors";
import type { ModelConfig } from "./model";
import type { Tokenizer } from "./tokenizer";

export type { TokenizerKind } from "./model";

export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | { type: "json_schema"; json_schema: { name?: string; description?: string; schema: unknown; strict?: boolean } }
  // Not OpenAI: a grammar in xgrammar's EBNF (GBNF-style), its start rule `root`.
  | { type: "grammar"; grammar: string };

function invalid(message: string): EngineError {
  return new EngineError("invalid-request", message);
}

// The format's cache key, or undefined for free text; throws on a malformed format.
export function formatKey(format: ResponseFormat | undefined | null): string | undefined {
  if (format == null) return undefined;
  if (typeof format !== "object") throw invalid("response_format must be an object such as {type: \"json_object\"}.");
  switch (format.type) {
    case "text":
      return undefined;
    case "json_object":
      return "json_object";
    case "json_schema": {
      const spec = format.json_schema;
      if (typeof spec !== "object" || spec === null || typeof spec.schema !== "object" || spec.schema === null) {
        throw invalid("response_format.json_schema needs a `schema` object: {type: \"json_schema\", json_schema: {name, schema}}.");
      }
      const unenforced = unenforcedKeyword(spec.schema);
      if (unenforced) {
        throw invalid(
          `response_format.json_schema.schema uses ${unenforced}, which the grammar engine cannot enforce: ` +
            "drop it or check it in your code after the reply.",
        );
      }
      return `json_schema:${JSON.stringify(spec.schema)}`;
    }
    case "grammar":
      if (typeof format.grammar !== "string" || format.grammar.trim() === "") {
        throw invalid("response_format.grammar must be a non-empty EBNF string whose start rule is `root`.");
      }
      return `grammar:${format.grammar}`;
    default:
      throw invalid(
        `Unknown response_format type "${(format as { type: unknown }).type}": use "text", "json_object", "json_schema" or "grammar".`,
      );
  }
}

// xgrammar's errors are C++ exception texts; the first line says what is wrong.
function reason(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0].trim();
}

// xgrammar 0.1.27 spells a string with minLength/maxLength as [^"\\\r\n], which lets raw control
// characters (U+0000-U+001F) in, and JSON.parse refuses those; its unbounded strings exclude
// them. The schema's grammar is printed and compiled again with the same exclusion everywhere.
const LOOSE_STRING_CHAR = String.raw`[^\"\\\r\n]`;
const JSON_STRING_CHAR = String.raw`[^\0-\x1f\"\\\r\n]`;

// Keywords xgrammar 0.1.27 accepts but does not enforce (measured: the grammar is the same with
// and without them), so a reply could break them: refused, rather than promised and not kept.
// Keywords strict mode already satisfies (additionalProperties: false, unevaluated*: false) and
// annotations (title, description, default, ...) pass.
const UNENFORCED = [
  "not", "if", "then", "else", "uniqueItems", "contains", "minContains", "maxContains",
  "dependentRequired", "dependentSchemas", "dependencies", "maxProperties",
];
const FORMATS = [
  "date", "time", "date-time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uri-reference",
  "uuid", "uri-template", "json-pointer", "relative-json-pointer",
];

// Where a schema holds other schemas: by name, in a list, or as the value itself.
const SCHEMA_MAPS = ["properties", "patternProperties", "$defs", "definitions"];
const SCHEMA_LISTS = ["anyOf", "oneOf", "allOf", "prefixItems"];
const SCHEMA_VALUES = ["items", "additionalProperties", "propertyNames", "unevaluatedProperties", "additionalItems"];

// The first keyword of `schema` (located by a JSON Pointer) a grammar would not hold the reply to.
export function unenforcedKeyword(schema: unknown, at = ""): string | undefined {
  if (typeof schema !== "object" || schema === null || Array.isArray(schema)) return undefined;
  const here = at || "/";
  const nested: [unknown, string][] = [];
  for (const [key, value] of Object.entries(schema)) {
    if (UNENFORCED.includes(key)) return `\`${key}\` at ${here}`;
    if (key === "format" && typeof value === "string" && !FORMATS.includes(value)) {
      return `\`format: ${value}\` at ${here} (enforced formats: ${FORMATS.join(", ")})`;
    }
    if (SCHEMA_MAPS.includes(key) && typeof value === "object" && value !== null) {
      for (const [name, inner] of Object.entries(value)) nested.push([inner, `${at}/${key}/${name}`]);
    } else if (SCHEMA_LISTS.includes(key) && Array.isArray(value)) {
      value.forEach((inner, i) => nested.push([inner, `${at}/${key}/${i}`]));
    } else if (SCHEMA_VALUES.includes(key)) {
      nested.push([value, `${at}/${key}`]);
    }
  }
  for (const [inner, where] of nested) {
    const found = unenforcedKeyword(inner, where);
    if (found) return found;
  }
  return undefined;
}

// The EBNF of `schema`: one line, no free whitespace (a model could pad forever), and
// JSON.stringify's separators with spaces, {"a": 1, "b": [2, 3]}, as xgrammar's Python default.
async function jsonSchemaGrammar(schema: unknown): Promise<string> {
  const grammar = await xgr.Grammar.fromJSONSchema(JSON.stringify(schema), false, -1);
  try {
    return grammar.toString().split(LOOSE_STRING_CHAR).join(JSON_STRING_CHAR);
  } finally {
    grammar.dispose();
  }
}

// One loaded model's grammar compiler and compiled grammars.
export class Grammars {
  private compiler?: Promise<xgr.GrammarCompiler>;
  private readonly compiled = new Map<string, Promise<xgr.CompiledGrammar>>();

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly config: ModelConfig,
  ) {}

  // A matcher for one reply in `format` (undefined for free text). Errors in the format are
  // thrown here, before any token is generated.
  async constraint(format: ResponseFormat | undefined | null): Promise<Constraint | undefined> {
    const key = formatKey(format);
    if (key === undefined) return undefined;
    let compiled = this.compiled.get(key);
    if (compiled === undefined) {
      compiled = this.compile(format!);
      this.compiled.set(key, compiled);
      // A format that fails is not kept: the next request reports its error again.
      compiled.catch(() => this.compiled.delete(key));
    }
    const matcher = await xgr.GrammarMatcher.createGrammarMatcher(await compiled, this.config.eos_token_ids);
    return new Constraint(matcher);
  }

  private async compile(format: ResponseFormat): Promise<xgr.CompiledGrammar> {
    const compiler = await this.grammarCompiler();
    try {
      if (format.type === "grammar") return await compiler.compileGrammar(format.grammar);
      // JSON mode is OpenAI's: an object, whatever its members.
      const schema = format.type === "json_schema" ? format.json_schema.schema : { type: "object" };
      return await compiler.compileGrammar(await jsonSchemaGrammar(schema));
    } catch (error) {
      const what =
        format.type === "json_schema" ? "response_format.json_schema.schema is not a JSON Schema xgrammar can enforce"
        : format.type === "grammar" ? "response_format.grammar does not parse as EBNF"
        : "the JSON grammar failed to compile";
      throw invalid(`${what}: ${reason(error)}`);
    }
  }

  private grammarCompiler(): Promise<xgr.GrammarCompiler> {
    this.compiler ??= (async () => {
      const kind = this.config.tokenizer_kind;
      if (!kind) {
        throw new EngineError(
          "invalid-request",
          "This model was built before structured output was supported: rebuild it with webllm_build to use response_format.",
        );
      }
      // Token strings as tokenizer.json spells them, by id; ids past the tokenizer's own
      // vocabulary (a padded lm_head) are empty, which xgrammar never allows.
      const size = Math.min(this.tokenizer.vocabSize, this.config.vocab_size);
      const vocabulary = Array.from({ length: size }, (_, id) => this.tokenizer.idToToken(id) ?? "");
      const info = await xgr.TokenizerInfo.createTokenizerInfo(
        vocabulary,
        kind.vocab_type,
        kind.prepend_space,
        this.config.vocab_size,
        this.config.eos_token_ids,
      );
      return xgr.GrammarCompiler.createGrammarCompiler(info);
    })();
    this.compiler.catch(() => (this.compiler = undefined));
    return this.compiler;
  }

  dispose(): void {
    for (const compiled of this.compiled.values()) compiled.then((c) => c.dispose(), () => {});
    this.compiled.clear();
    this.compiler?.then((c) => c.dispose(), () => {});
  }
}

// One reply's grammar state.
export class Constraint {
  private disposed = false;

  constructor(private readonly matcher: xgr.GrammarMatcher) {}

  // The tokens allowed next: bit (id % 32) of word (id / 32) set.
  nextMask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask();
  }

  accept(token: number): void {
    if (!this.matcher.acceptToken(token)) {
      throw new EngineError("engine-error", `The grammar rejected token ${token}, which its own mask allowed.`);
    }
  }

  // The grammar is complete and its stop token taken.
  get finished(): boolean {
    return this.matcher.isTerminated();
  }

  dispose(): void {
    if (!this.disposed) this.matcher.dispose();
    this.disposed = true;
  }
}

// Sets every logit the mask disallows to -Infinity (the CPU path: sampling and logprobs).
export function applyMask(logits: Float32Array, mask: Int32Array): void {
  for (let id = 0; id < logits.length; id++) {
    if (((mask[id >> 5] >>> (id & 31)) & 1) === 0) logits[id] = -Infinity;
  }
}
