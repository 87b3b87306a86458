// The engine's one error type: `code` says what went wrong in a word the page can switch on
// ("no-webgpu", "missing-feature", "buffer-limit", "corrupt-shard", "context-overflow", ...);
// the message says what to do. Kept apart so the small page bundle need not pull in tvmjs.

export class EngineError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "EngineError";
  }
}
