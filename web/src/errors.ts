// The engine's one error type: `code` says what went wrong in a word the page can switch on;
// the message says what to do. Kept apart so the small page bundle need not pull in tvmjs.

export type EngineErrorCode =
  // The browser or its GPU cannot run the model.
  | "no-webgpu"
  | "missing-feature"
  | "buffer-limit"
  | "device-memory"
  | "missing-library"
  // Downloading and keeping the model (the last two are warnings: loading goes on).
  | "fetch-failed"
  | "corrupt-shard"
  | "bad-tokenizer"
  | "no-chat-template"
  | "quota-exceeded"
  | "storage-unavailable"
  // The GPU device was lost (a driver reset, the browser taking it back): reload the model.
  | "gpu-lost"
  // Requests.
  | "invalid-request"
  | "no-model"
  | "busy"
  | "context-overflow"
  | "chat-template"
  | "empty-input"
  | "disposed"
  // The engine's worker; "engine-error" is a failure in it that carried no code.
  | "worker-failed"
  | "worker-terminated"
  | "engine-error";

export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "EngineError";
  }
}
