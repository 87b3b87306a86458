// The model's Hugging Face tokenizer (tokenizer.json) in the browser.
//
// @mlc-ai/web-tokenizers is the Rust `tokenizers` crate compiled to wasm: the same code Python's
// `tokenizers` runs, so ids and text match it for every tokenizer kind (byte-level BPE,
// SentencePiece-style BPE with byte fallback, Unigram, normalizers included). The pure-JS
// alternatives differ on Unigram ties, non-ASCII digits and byte-fallback decoding; the price is
// ~4.6 MB of inlined wasm in the bundle and a wasm object that must be freed (`dispose`).

import { Tokenizer as WasmTokenizer } from "@mlc-ai/web-tokenizers";
import { EngineError } from "./errors";
import type { ModelIndex } from "./model";

// The parts of tokenizer.json read on the JS side; everything else is the wasm side's business.
interface TokenizerJson {
  added_tokens?: { id: number; content: string; special: boolean }[];
  decoder?: DecoderJson | null;
}

interface DecoderJson {
  type: string;
  decoders?: DecoderJson[];
}

export interface DecodeOptions {
  // As Python's `decode(ids, skip_special_tokens=...)`; the default keeps them, which is what
  // web-tokenizers' decode does and what a prompt's text contains.
  skipSpecialTokens?: boolean;
}

// A page that drops a tokenizer without dispose() would otherwise leak its wasm memory.
const finalizer = new FinalizationRegistry<WasmTokenizer>((inner) => inner.dispose());

// The token text the ByteFallback decoder turns into a raw byte (tokenizers' own test: 6 chars).
const BYTE_TOKEN = /^<0x[0-9A-Fa-f]{2}>$/;

export class Tokenizer {
  private inner?: WasmTokenizer;
  private readonly byteTokenCache = new Map<number, boolean>();

  private constructor(
    inner: WasmTokenizer,
    private readonly specialIds: ReadonlySet<number>,
    private readonly byteFallback: boolean,
  ) {
    this.inner = inner;
    finalizer.register(this, inner, this);
  }

  // `url` names a tokenizer.json; a compiled model directory names it in webllm-model.json.
  static async load(url: string): Promise<Tokenizer> {
    const response = await fetchOk(url, "the tokenizer");
    return Tokenizer.fromJSON(await response.arrayBuffer(), url);
  }

  // `baseUrl` is the model directory, ending in "/".
  static async fromModelDirectory(baseUrl: string): Promise<Tokenizer> {
    // The index is the one file of a model directory that changes in place: always revalidate it.
    const response = await fetchOk(new URL("webllm-model.json", baseUrl).href, "the model index", "no-cache");
    const index = (await response.json()) as ModelIndex;
    return Tokenizer.load(new URL(index.files.tokenizer.path, baseUrl).href);
  }

  static async fromJSON(json: string | ArrayBuffer, source = "tokenizer.json"): Promise<Tokenizer> {
    const bytes = typeof json === "string" ? new TextEncoder().encode(json).buffer : json;
    const text = typeof json === "string" ? json : new TextDecoder().decode(json);
    const invalid = (why: string) =>
      new EngineError("bad-tokenizer", `${source} is not a usable tokenizer.json (${why}). Rebuild the model.`);
    let parsed: TokenizerJson;
    try {
      parsed = JSON.parse(text) as TokenizerJson;
    } catch (err) {
      throw invalid(String(err));
    }
    let inner: WasmTokenizer;
    try {
      inner = await WasmTokenizer.fromJSON(bytes as ArrayBuffer);
    } catch (err) {
      // The Rust side panics on a schema error and prints the reason to the console.
      throw invalid(`${String(err)}; the console has the parser's message`);
    }
    const specialIds = new Set((parsed.added_tokens ?? []).filter((t) => t.special).map((t) => t.id));
    return new Tokenizer(inner, specialIds, hasDecoder(parsed.decoder, "ByteFallback"));
  }

  // Ids, special tokens included, as the wasm side counts them.
  get vocabSize(): number {
    return this.wasm().getVocabSize();
  }

  // Python's `encode(text, add_special_tokens=False).ids`: the chat template already wrote the
  // special tokens into the text, and they are matched there as added tokens.
  encode(text: string): number[] {
    return Array.from(this.wasm().encode(text));
  }

  // Python's `decode(ids, skip_special_tokens=...)`; ids outside the vocabulary are dropped, as there.
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    let kept = Array.from(ids);
    if (options.skipSpecialTokens) kept = kept.filter((id) => !this.specialIds.has(id));
    return this.wasm().decode(Int32Array.from(kept));
  }

  idToToken(id: number): string | undefined {
    return this.wasm().idToToken(id) || undefined;
  }

  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  // A token the ByteFallback decoder reads as one raw byte (<0xNN>); never true without that decoder.
  isByteFallbackToken(id: number): boolean {
    if (!this.byteFallback) return false;
    let known = this.byteTokenCache.get(id);
    if (known === undefined) {
      known = BYTE_TOKEN.test(this.idToToken(id) ?? "");
      this.byteTokenCache.set(id, known);
    }
    return known;
  }

  streamingDecoder(options: DecodeOptions = {}): StreamingDecoder {
    return new StreamingDecoder(this, options);
  }

  dispose(): void {
    if (!this.inner) return;
    finalizer.unregister(this);
    this.inner.dispose();
    this.inner = undefined;
  }

  private wasm(): WasmTokenizer {
    if (!this.inner) throw new EngineError("disposed", "This tokenizer was disposed; load it again.");
    return this.inner;
  }
}

// Turns tokens into text as they arrive. push() returns only text that no later token can change;
// the pieces of every push() plus flush() concatenate to exactly `decode(all ids)`.
//
// Held back until more tokens arrive (or flush):
//  - trailing U+FFFD: the bytes so far of a character split across tokens (byte-level BPE decodes
//    an incomplete UTF-8 tail to U+FFFD);
//  - with a ByteFallback decoder, a trailing run of <0xNN> tokens: that decoder turns a whole run
//    into one U+FFFD per byte if any of its bytes is invalid, so a run's text is final only once
//    a non-byte token ends it.
// Each push re-decodes all tokens: decoders such as SentencePiece's strip a leading space only at
// the start of the sequence, so decoding a window could differ. Measured in Chromium: ~1 ms a push
// at 4,096 tokens of SmolLM2, small beside a decode step.
export class StreamingDecoder {
  private readonly ids: number[] = [];
  private emitted = "";

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: DecodeOptions = {},
  ) {}

  // Everything emitted so far.
  get text(): string {
    return this.emitted;
  }

  push(ids: number | Iterable<number>): string {
    for (const id of typeof ids === "number" ? [ids] : ids) {
      if (!(this.options.skipSpecialTokens && this.tokenizer.isSpecial(id))) this.ids.push(id);
    }
    return this.advance(false);
  }

  // The rest, once no more tokens will come: bytes that never completed a character included.
  flush(): string {
    return this.advance(true);
  }

  private advance(final: boolean): string {
    let end = this.ids.length;
    if (!final) while (end > 0 && this.tokenizer.isByteFallbackToken(this.ids[end - 1])) end--;
    let text = this.tokenizer.decode(this.ids.slice(0, end));
    if (!final) text = text.replace(/\uFFFD+$/, "");
    // Only a decoder that rewrites earlier text (WordPiece's cleanup of " ." and " 's") gets here;
    // nothing emitted can be taken back, so wait for text that extends it.
    if (!text.startsWith(this.emitted)) return "";
    const delta = text.slice(this.emitted.length);
    this.emitted = text;
    return delta;
  }
}

async function fetchOk(url: string, what: string, cache: RequestCache = "default"): Promise<Response> {
  const response = await fetch(url, { cache }).catch((err) => {
    throw new EngineError("fetch-failed", `Could not download ${what} ${url}: ${String(err)}.`);
  });
  if (!response.ok) throw new EngineError("fetch-failed", `Could not download ${what} ${url}: HTTP ${response.status}.`);
  return response;
}

function hasDecoder(decoder: DecoderJson | null | undefined, type: string): boolean {
  if (!decoder) return false;
  return decoder.type === type || (decoder.decoders ?? []).some((d) => hasDecoder(d, type));
}
