// The page's handle on an engine running in a Web Worker (worker.ts): the same API as Engine,
// with every call sent as a message (protocol.ts). Streams arrive as chunk messages and are
// handed out through an async iterator; breaking out of the loop interrupts the generation.

import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionRequest,
  ChatEngine,
  CreateCompletion,
  GpuLoss,
  RuntimeStats,
} from "./engine_api";
import { EngineError } from "./errors";
import { ENGINE_WORKER_NAME, type ForwardedMethod, type Reply, type Request } from "./protocol";
import type { AdapterReport } from "./webgpu";
import type { LoadWeightsOptions } from "./weights";

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  onChunk?(chunk: ChatCompletionChunk): void;
  onEnd?(): void;
  onEvent?(name: string, value: unknown): void;
}

export class WorkerEngine implements ChatEngine {
  readonly kind = "worker";
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  readonly chat = {
    completions: {
      create: ((request: ChatCompletionRequest) => this.create(request)) as CreateCompletion,
    },
  };

  constructor(private readonly worker: Worker) {
    worker.addEventListener("message", (event: MessageEvent<Reply>) => this.receive(event.data));
    worker.addEventListener("error", (event) => {
      // A worker that fails to start (a syntax error, a blocked script) fails every call.
      const error = new EngineError("worker-failed", `The engine's worker failed: ${event.message || "unknown error"}.`);
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
    });
  }

  private receive(reply: Reply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    switch (reply.kind) {
      case "result":
        this.pending.delete(reply.id);
        p.resolve(reply.value);
        break;
      case "error":
        this.pending.delete(reply.id);
        p.reject(new EngineError(reply.code ?? "engine-error", reply.message));
        break;
      case "chunk":
        p.onChunk?.(reply.value as ChatCompletionChunk);
        break;
      case "end":
        this.pending.delete(reply.id);
        p.onEnd?.();
        break;
      case "event":
        p.onEvent?.(reply.name, reply.value);
        break;
    }
  }

  private send(message: Request, pending: Omit<Pending, "resolve" | "reject"> = {}): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (message.kind !== "interrupt") this.pending.set(message.id, { resolve, reject, ...pending });
      this.worker.postMessage(message);
    });
  }

  private call(method: ForwardedMethod, args: unknown[], pending?: Omit<Pending, "resolve" | "reject">) {
    return this.send({ kind: "call", id: this.nextId++, method, args }, pending);
  }

  // Loads the compiled model directory at `baseUrl` in the worker. Callbacks stay on this side.
  // A relative URL is resolved here, against this page as in the in-page engine: the worker's own
  // base may be another directory, another origin's, or a blob: URL (createWorkerEngine).
  async reload(baseUrl: string, options: LoadWeightsOptions = {}): Promise<void> {
    const { onProgress, onWarning, ...rest } = options;
    const here = globalThis.location?.href;
    await this.call("reload", [here ? new URL(baseUrl, here).href : baseUrl, rest], {
      onEvent: (name, value) => {
        if (name === "progress") onProgress?.(value as never);
        if (name === "warning") onWarning?.(value as never);
      },
    });
  }

  async unload(): Promise<void> {
    await this.call("unload", []);
  }

  async resetChat(): Promise<void> {
    await this.call("resetChat", []);
  }

  // The WebGPU adapter as the worker sees it (a browser may offer WebGPU to pages only).
  probe(): Promise<AdapterReport> {
    return this.call("probe", []) as Promise<AdapterReport>;
  }

  runtimeStats(): Promise<RuntimeStats> {
    return this.call("runtimeStats", []) as Promise<RuntimeStats>;
  }

  deviceLost(after = 0): Promise<GpuLoss> {
    return this.call("deviceLost", [after]) as Promise<GpuLoss>;
  }

  async destroyDeviceForTesting(): Promise<void> {
    await this.call("destroyDeviceForTesting", []);
  }

  interruptGenerate(): void {
    this.worker.postMessage({ kind: "interrupt" } satisfies Request);
  }

  terminate(): void {
    this.worker.terminate();
    const error = new EngineError("worker-terminated", "The engine's worker was terminated.");
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }

  private async create(request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    const id = this.nextId++;
    if (!request.stream) {
      return (await this.send({ kind: "create", id, request: { ...request } })) as ChatCompletion;
    }
    const queue: ChatCompletionChunk[] = [];
    let done = false;
    let failure: Error | null = null;
    let wake: (() => void) | null = null;
    const notify = () => {
      wake?.();
      wake = null;
    };
    const finished = this.send(
      { kind: "create", id, request: { ...request } },
      { onChunk: (c) => (queue.push(c), notify()), onEnd: () => ((done = true), notify()) },
    );
    finished.catch((error: Error) => ((failure = error), (done = true), notify()));
    // The first message decides whether the request was accepted, as with the in-page engine.
    while (queue.length === 0 && !done) await new Promise<void>((r) => (wake = r));
    if (failure) throw failure;
    const engine = this;
    return {
      async *[Symbol.asyncIterator]() {
        let completed = false;
        try {
          for (;;) {
            while (queue.length > 0) yield queue.shift()!;
            if (failure) throw failure;
            if (done) break;
            await new Promise<void>((r) => (wake = r));
          }
          completed = true;
        } finally {
          // The consumer stopped reading early: stop generating what nobody will read.
          if (!completed) engine.interruptGenerate();
        }
      },
    };
  }
}

// Starts the engine in a module worker running `scriptUrl`, the engine bundle itself. Browsers
// refuse a worker script from another origin (a page importing the engine from a site or a CDN),
// so such a bundle runs in a same-origin blob: module worker that imports it; the server must
// then allow the page's origin (CORS), as for any module imported across origins. The engine
// knows its worker by the worker's name, whatever the script (worker.ts).
export function createWorkerEngine(scriptUrl: string | URL): WorkerEngine {
  const options: WorkerOptions = { type: "module", name: ENGINE_WORKER_NAME };
  const here = globalThis.location;
  const url = new URL(scriptUrl, here?.href);
  if (!here || url.origin === here.origin || url.protocol === "blob:" || url.protocol === "data:") {
    return new WorkerEngine(new Worker(url, options));
  }
  const source = URL.createObjectURL(new Blob([`import ${JSON.stringify(url.href)};\n`], { type: "text/javascript" }));
  const worker = new Worker(source, options);
  // Kept until the worker has surely read it: its first message or its failure.
  const revoke = () => URL.revokeObjectURL(source);
  worker.addEventListener("message", revoke, { once: true });
  worker.addEventListener("error", revoke, { once: true });
  return new WorkerEngine(worker);
}
