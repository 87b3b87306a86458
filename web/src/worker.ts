// Runs the engine inside a dedicated Web Worker, so tokenizing, sampling and waiting on the GPU
// never block the page. The page side is worker_engine.ts; the messages are in protocol.ts.
//
// The engine bundle is its own worker script: the page starts a module worker from the same
// (content-hashed, immutable) file it imported, so the browser downloads it once, and a site
// has no second engine file whose name must be kept in step.

import { Engine } from "./engine";
import { EngineError } from "./errors";
import { ENGINE_WORKER_NAME, FORWARDED_METHODS, type ForwardedMethod, type Reply, type Request } from "./protocol";
import { probeWebGPU } from "./webgpu";
import type { LoadWeightsOptions } from "./weights";

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
    const code = error instanceof EngineError ? error.code : null;
    post({ id, kind: "error", code, message: String((error as { message?: string })?.message ?? error) });
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
    runtimeStats: () => engine.runtimeStats(),
    deviceLost: (_id, [after]) => engine.deviceLost(after as number | undefined),
    destroyDeviceForTesting: () => engine.destroyDeviceForTesting(),
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
        const chunks = await engine.chat.completions.create({ ...message.request, stream: true });
        for await (const value of chunks) post({ id, kind: "chunk", value });
        post({ id, kind: "end" });
      } else {
        const value = await engine.chat.completions.create({ ...message.request, stream: false });
        post({ id, kind: "result", value });
      }
    } catch (error) {
      fail(id, error);
    }
  });
}
