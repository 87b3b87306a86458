// Runs the engine inside a dedicated Web Worker, so tokenizing, sampling and waiting on the GPU
// never block the page. The page side is worker_engine.ts; the messages are in `protocol`.
//
// The engine bundle is its own worker script: the page starts a module worker from the same
// (content-hashed, immutable) file it imported, so the browser downloads it once, and a site
// has no second engine file whose name must be kept in step.

import { Engine } from "./engine";
import { EngineError } from "./library";
import { probeWebGPU } from "./webgpu";
import { ENGINE_WORKER_NAME } from "./worker_engine";
import type { LoadWeightsOptions } from "./weights";

// Page -> worker.
export type Request =
  | { kind: "call"; id: number; method: ForwardedMethod; args: unknown[] }
  | { kind: "create"; id: number; request: Record<string, unknown> }
  | { kind: "interrupt" };

// Worker -> page.
export type Reply =
  | { id: number; kind: "result"; value: unknown }
  | { id: number; kind: "chunk"; value: unknown }
  | { id: number; kind: "end" }
  | { id: number; kind: "event"; name: "progress" | "warning"; value: unknown }
  | { id: number; kind: "error"; code: string | null; message: string };

// The engine methods the page may call besides chat.completions.create. Everything they take
// and return must survive structured cloning.
export const FORWARDED_METHODS = ["reload", "unload", "resetChat", "probe", "runtimeStats"] as const;
export type ForwardedMethod = (typeof FORWARDED_METHODS)[number];

interface WorkerScope {
  postMessage(message: Reply): void;
  addEventListener(type: "message", listener: (event: MessageEvent<Request>) => void): void;
}

export function isEngineWorker(): boolean {
  const scope = globalThis as unknown as { WorkerGlobalScope?: unknown; name?: unknown };
  return typeof scope.WorkerGlobalScope !== "undefined" && scope.name === ENGINE_WORKER_NAME;
}

export function serveEngine(scope: WorkerScope): void {
  const engine = new Engine();
  const post = (reply: Reply) => scope.postMessage(reply);
  const fail = (id: number, error: unknown) => {
    const e = error as { code?: string; message?: string };
    post({ id, kind: "error", code: e?.code ?? null, message: String(e?.message ?? error) });
  };

  const methods: Record<ForwardedMethod, (id: number, args: unknown[]) => Promise<unknown>> = {
    reload: (id, [url, options]) =>
      engine.reload(url as string, {
        ...(options as LoadWeightsOptions),
        onProgress: (value) => post({ id, kind: "event", name: "progress", value }),
        onWarning: (w) => post({ id, kind: "event", name: "warning", value: { code: w.code, message: w.message } }),
      }),
    unload: () => engine.unload(),
    resetChat: () => engine.resetChat(),
    probe: () => probeWebGPU(),
    runtimeStats: async () => {
      const stats = (engine as unknown as { runtimeStats?: () => unknown }).runtimeStats;
      if (!stats) throw new EngineError("unsupported", "This engine build has no runtimeStats().");
      return stats.call(engine);
    },
  };

  scope.addEventListener("message", async (event) => {
    const message = event.data;
    if (message.kind === "interrupt") {
      // Handled between two decode steps: the generation loop awaits the GPU each token.
      engine.interruptGenerate();
      return;
    }
    const { id } = message;
    try {
      if (message.kind === "call") {
        if (!FORWARDED_METHODS.includes(message.method)) {
          throw new EngineError("invalid-request", `Unknown engine method ${message.method}.`);
        }
        post({ id, kind: "result", value: await methods[message.method](id, message.args) });
      } else if (message.request.stream) {
        const chunks = (await engine.chat.completions.create({
          ...(message.request as object),
          stream: true,
        } as never)) as AsyncIterable<unknown>;
        for await (const value of chunks) post({ id, kind: "chunk", value });
        post({ id, kind: "end" });
      } else {
        post({ id, kind: "result", value: await engine.chat.completions.create(message.request as never) });
      }
    } catch (error) {
      fail(id, error);
    }
  });
}
