// The page's error box: a hint for the visitor where the error's code has one, then the error's
// own message, and optionally one button that acts on it (e.g. load a build this GPU can run).

import type { EngineErrorCode } from "../errors";

// What to tell the visitor for the engine's error codes; the engine's message follows.
const ERROR_HINTS: Partial<Record<EngineErrorCode, string>> = {
  "no-webgpu": "This browser has no usable WebGPU; see the list of browsers that work above.",
  "missing-feature": "Your GPU lacks a WebGPU feature this model needs; pick a model without it (a q4f32 one) if the site has one.",
  "buffer-limit": "Your GPU cannot hold one of this model's tensors; pick a smaller or more quantized model if the site has one.",
  "worker-failed": "The engine could not start. Reload the page; if it persists, try another browser.",
  "gpu-lost": "The GPU stopped working for this page, and the model with it: it has to be loaded again.",
  "corrupt-shard": "A downloaded file was damaged. Reload the page to download it again.",
  "quota-exceeded": "The browser has no room to keep the model; it is loaded from the network each visit. Free some disk space to keep it.",
};

export interface ErrorAction {
  label: string;
  run(): void;
}

// The code of an error from either engine: the in-page engine's EngineError is the engine
// bundle's class, not this bundle's, so the code is read, not the class checked.
export function errorCode(error: unknown): EngineErrorCode | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === "string" ? (code as EngineErrorCode) : undefined;
}

export class ErrorBox {
  constructor(private readonly box: HTMLElement) {}

  show(error: unknown, action?: ErrorAction): void {
    const code = errorCode(error);
    const hint = code !== undefined && Object.hasOwn(ERROR_HINTS, code) ? ERROR_HINTS[code] : undefined;
    const message = String((error as { message?: unknown } | null | undefined)?.message || error);
    this.box.textContent = hint ? `${hint}\n\n${message}` : message;
    if (action) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "primary error-action";
      button.textContent = action.label;
      button.addEventListener("click", () => {
        this.clear();
        action.run();
      });
      this.box.append(document.createElement("br"), button);
    }
    this.box.hidden = false;
    console.error(error);
  }

  clear(): void {
    this.box.hidden = true;
    this.box.textContent = "";
  }
}
