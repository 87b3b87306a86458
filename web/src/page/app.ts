// The chat page (site_templates/index.html): reads site.json, fills the model picker, and drives
// the engine through its OpenAI-style API. The site's app.js only says where the files are and
// calls startChatApp; every URL it passes is relative to the page, so the site works from any
// sub-path.

import type { ChatMessage } from "../chat_template";
import type { ChatEngine, CompletionUsage, GpuLoss } from "../engine_api";
import { EngineError } from "../errors";
import type { AdapterReport } from "../webgpu";
import type { LoadProgress } from "../weights";
import { Conversation } from "./conversation";
import { pageElements, type PageElements } from "./dom";
import { startEngine } from "./engines";
import { ErrorBox, errorCode, type ErrorAction } from "./error_box";
import { formatBytes, memoryRefusal } from "./memory_check";
import { renderMarkdown } from "./markdown";
import { SamplingForm } from "./sampling_form";
import { ToolsForm } from "./tools_form";
import { watchForUpdates } from "./updates";
import type { ToolCall } from "../tools";
import {
  fetchSite,
  fitsBuffers,
  missingFeatures,
  preferredModel,
  runnableVariant,
  type Site,
  type SiteModel,
} from "./site";

export interface ChatAppOptions {
  engineUrl: string; // the engine bundle: the worker's script
  siteUrl: string; // site.json; model directories are relative to it
  serviceWorkerUrl?: string | null; // sw.js, which keeps the site working offline; null: none
}

// Loading progress: the engine's, and the page's own "starting" before the engine reports.
export type Progress = Pick<LoadProgress, "loadedBytes" | "totalBytes" | "percent"> & {
  phase: LoadProgress["phase"] | "starting";
} & Partial<Pick<LoadProgress, "fromNetwork">>;

// The browser's storage for this site (navigator.storage), as the page last read it.
export interface StorageReport {
  persisted: boolean; // granted persistent storage: kept until the visitor clears it
  usage: number; // bytes, navigator.storage.estimate()'s
  quota: number;
}

export interface LoadOptions {
  onProgress?: (p: Progress) => void;
  anyMemory?: boolean; // load even where the device-memory estimate says it will not fit
}

export interface LoadReport {
  id: string;
  ms: number;
  progress: Progress | null; // the last one reported
}

// The page's API for scripts and headless checks (webllm_build check and bench drive it).
export interface ChatAppApi {
  readonly site: Site | null;
  readonly engine: ChatEngine | null;
  readonly adapter: AdapterReport | null;
  readonly engineKind: ChatEngine["kind"] | null;
  readonly lastUsage: CompletionUsage | null;
  readonly messages: ChatMessage[]; // the conversation the next message continues (a copy)
  readonly storage: StorageReport | null; // read after each load
  // A testing aid: loses the engine's GPU device, as a driver reset would; the page recovers.
  destroyGpuDeviceForTesting(): Promise<void>;
  // Loads a site.json model by id; throws what the engine throws, or (before downloading) an
  // EngineError "buffer-limit" or "device-memory" when the GPU cannot hold it, unless `anyMemory`.
  loadModel(id: string, options?: LoadOptions): Promise<LoadReport>;
}

declare global {
  interface Window {
    webllmApp?: ChatAppApi;
    webllmSiteReady?: boolean; // site.json is read and the picker filled
    webllmAppReady?: boolean; // the engine is started (or known not to start)
    webllmRenderMarkdown?: (text: string) => string; // for tests, which feed it hostile text
  }
}

export function startChatApp(options: ChatAppOptions): void {
  const app = new ChatApp(options, pageElements());
  window.webllmRenderMarkdown = renderMarkdown;
  window.webllmApp = app.api();
  void app.start();
}

function hasWebGPU(): boolean {
  return Boolean(navigator.gpu);
}

// The device's memory in GiB as the browser reports it (Chromium only; rounded and capped).
function deviceMemory(): number | undefined {
  return (navigator as Navigator & { deviceMemory?: number }).deviceMemory;
}

class ChatApp {
  private site: Site | null = null;
  private engine: ChatEngine | null = null; // in its Web Worker, or in this page where workers lack WebGPU
  private adapter: AdapterReport | null = null; // the WebGPU adapter, as the engine sees it
  private messages: ChatMessage[] = [];
  private generating = false;
  private loadStarted = false; // a model was ever loaded or is loading: a new build waits for the visitor
  private loadedModel: SiteModel | null = null;
  private lastUsage: CompletionUsage | null = null;
  private autoReloaded = false; // the one automatic reload after a GPU loss is spent on this load
  private storage: StorageReport | null = null;
  private persistAsked = false;
  private modelPicked = false; // the visitor chose a model: re-filling the picker keeps it
  private webgpuOk = hasWebGPU(); // false once the browser is known to lack WebGPU: loading would only fail
  private readonly conversation: Conversation;
  private readonly errors: ErrorBox;
  private readonly sampling: SamplingForm;
  private readonly toolsForm: ToolsForm;

  constructor(
    private readonly options: ChatAppOptions,
    private readonly ui: PageElements,
  ) {
    this.conversation = new Conversation(ui.conversation, ui.announcer);
    this.errors = new ErrorBox(ui.error);
    this.sampling = new SamplingForm(ui);
    this.toolsForm = new ToolsForm(ui);
  }

  api(): ChatAppApi {
    const app = this;
    return {
      get site() {
        return app.site;
      },
      get engine() {
        return app.engine;
      },
      get adapter() {
        return app.adapter;
      },
      get engineKind() {
        return app.engine?.kind ?? null;
      },
      get lastUsage() {
        return app.lastUsage;
      },
      get messages() {
        return structuredClone(app.messages);
      },
      get storage() {
        return app.storage;
      },
      loadModel: (id, options) => app.loadModel(id, options),
      destroyGpuDeviceForTesting: async () => {
        if (!app.engine) throw new Error("The engine did not start.");
        await app.engine.destroyDeviceForTesting();
      },
    };
  }

  async start(): Promise<void> {
    const { ui } = this;
    ui.load.addEventListener("click", () => void this.loadSelected());
    ui.model.addEventListener("change", () => (this.modelPicked = true));
    ui.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.send();
    });
    ui.prompt.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        void this.send();
      }
    });
    ui.stop.addEventListener("click", () => this.engine?.interruptGenerate());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.generating && this.engine) {
        event.preventDefault();
        this.engine.interruptGenerate();
      }
    });
    ui.newChat.addEventListener("click", () => void this.newChat());

    if (!hasWebGPU()) ui.noWebGPU.hidden = false;
    try {
      this.site = await fetchSite(this.options.siteUrl);
      this.fillPicker(this.site);
    } catch (error) {
      this.errors.show(error);
    }
    this.setBusy();
    window.webllmSiteReady = true;

    if (hasWebGPU()) {
      try {
        const { engine, report } = await startEngine(this.options.engineUrl);
        this.engine = engine;
        this.adapter = report;
        void this.watchGpu(engine);
        if (!report.available) {
          this.webgpuOk = false;
          ui.noWebGPU.hidden = false;
          ui.noWebGPUReason.textContent = report.reason || "";
        }
      } catch (error) {
        this.errors.show(error);
      }
    }
    if (this.site) this.fillPicker(this.site); // again, now marking what this adapter cannot run
    this.setBusy();
    window.webllmAppReady = true;
    const worker = this.options.serviceWorkerUrl;
    if (worker) watchForUpdates(worker, () => !this.loadStarted && !this.generating);
  }

  private setBusy(): void {
    const { ui } = this;
    const ready = this.loadedModel !== null;
    ui.load.disabled = this.generating || !this.site || !this.engine || !this.webgpuOk;
    ui.model.disabled = this.generating || !this.site;
    ui.prompt.disabled = !ready;
    ui.send.disabled = !ready || this.generating;
    ui.stop.disabled = !this.generating;
    ui.newChat.disabled = !ready || this.generating;
  }

  private fillPicker(site: Site): void {
    const { ui } = this;
    // Keep the visitor's choice; else the site's default, or a build of it this GPU can run.
    const selected = this.modelPicked ? ui.model.value : preferredModel(site, this.adapter)?.id;
    ui.model.replaceChildren();
    for (const entry of site.models) {
      const option = document.createElement("option");
      option.value = entry.id;
      const unsupported =
        missingFeatures(entry, this.adapter).length > 0
          ? " (needs shader-f16, not on this GPU)"
          : fitsBuffers(entry, this.adapter)
            ? ""
            : " (too large for this GPU)";
      option.textContent = `${entry.title}, ${formatBytes(entry.download_bytes)}${unsupported}`;
      option.selected = entry.id === selected;
      ui.model.append(option);
    }
  }

  // --- loading ------------------------------------------------------------------------------

  private async loadModel(id: string, { onProgress, anyMemory }: LoadOptions = {}): Promise<LoadReport> {
    const entry = this.site?.models.find((m) => m.id === id);
    if (!entry) throw new Error(`This site has no model "${id}".`);
    const missing = missingFeatures(entry, this.adapter);
    if (missing.length > 0) {
      throw new EngineError(
        "missing-feature",
        `${entry.title} needs the WebGPU feature(s) ${missing.join(", ")}, which this GPU does not offer.`,
      );
    }
    // Before anything is downloaded: a model this GPU cannot hold is refused with the figures.
    const refusal = anyMemory || !this.site ? null : memoryRefusal(this.site, entry, this.adapter, deviceMemory());
    if (refusal) throw refusal.error;
    const engine = this.engine;
    if (!engine) {
      throw this.webgpuOk
        ? new EngineError("worker-failed", "The engine did not start. Reload the page.")
        : new EngineError("no-webgpu", this.adapter?.reason ?? "This browser has no WebGPU.");
    }
    this.loadedModel = null;
    this.loadStarted = true;
    this.ui.model.value = entry.id;
    let last: Progress | null = null;
    const started = performance.now();
    const progress = (p: Progress) => {
      last = p;
      this.showProgress(p);
      onProgress?.(p);
    };
    progress({ phase: "starting", loadedBytes: 0, totalBytes: entry.download_bytes, percent: 0 });
    await engine.reload(this.modelUrl(entry), { onProgress: progress });
    this.loadedModel = entry;
    this.autoReloaded = false;
    this.messages = [];
    this.lastUsage = null;
    this.conversation.clear();
    this.ui.stats.textContent = "";
    this.ui.progressText.textContent = `${entry.title} is ready.`;
    return { id, ms: performance.now() - started, progress: last };
  }

  private showProgress(p: Progress): void {
    this.noteStorage(p);
    const percent = Math.max(0, Math.min(100, Number(p.percent) || 0));
    this.ui.progressBar.value = percent;
    const bytes = p.totalBytes ? `${formatBytes(p.loadedBytes)} of ${formatBytes(p.totalBytes)}, ` : "";
    this.ui.progressText.textContent = `${p.phase || "loading"}: ${bytes}${percent.toFixed(0)}%`;
  }

  // A model directory's URL: site.json's are relative to it.
  private modelUrl(entry: SiteModel): string {
    return new URL(entry.base_url, this.options.siteUrl).href;
  }

  private async loadSelected(anyMemory = false): Promise<void> {
    const { ui, site } = this;
    const entry = site?.models.find((m) => m.id === ui.model.value);
    if (!site || !entry) return;
    this.errors.clear();
    ui.load.disabled = true;
    ui.progress.hidden = false;
    this.conversation.announce(`Loading ${entry.title}.`);
    try {
      await this.loadModel(entry.id, { anyMemory });
      this.conversation.announce(`${entry.title} is ready.`);
      this.setBusy(); // enables the message box, which can only then take the focus
      ui.prompt.focus();
    } catch (error) {
      ui.progress.hidden = true;
      this.errors.show(error, this.loadAction(site, entry, error));
    }
    this.setBusy();
  }

  // What the error box offers after a failed load: a build of the same model this GPU can run,
  // or loading anyway where only the device-memory estimate said no.
  private loadAction(site: Site, entry: SiteModel, error: unknown): ErrorAction | undefined {
    const code = errorCode(error);
    const refusal = code === "buffer-limit" || code === "device-memory" ? memoryRefusal(site, entry, this.adapter, deviceMemory()) : null;
    const variant =
      refusal?.variant ?? (code === "missing-feature" || code === "buffer-limit" ? runnableVariant(site, entry, this.adapter) : undefined);
    if (variant) {
      return {
        label: `Load ${variant.title} instead`,
        run: () => {
          this.ui.model.value = variant.id;
          void this.loadSelected();
        },
      };
    }
    if (refusal?.overridable) return { label: "Load anyway", run: () => void this.loadSelected(true) };
    return undefined;
  }

  // --- GPU loss -----------------------------------------------------------------------------

  // Follows the engine's GPU device losses for as long as the engine lives.
  private async watchGpu(engine: ChatEngine): Promise<void> {
    try {
      for (let seen = 0; ; ) {
        const loss = await engine.deviceLost(seen);
        seen = loss.count;
        await this.recoverFromGpuLoss(loss);
      }
    } catch (error) {
      console.warn("webllm_build: no longer watching the GPU device", error);
    }
  }

  // The model went with its device. It is reloaded once by itself, from the browser's storage,
  // and the conversation goes on from its messages (the engine prefills them again); after a
  // failed reload or a second loss, the visitor is offered the reload instead of a retry loop.
  private async recoverFromGpuLoss(loss: GpuLoss): Promise<void> {
    const entry = this.loadedModel;
    if (!entry) return; // lost while loading: that load fails and says so
    this.loadedModel = null;
    this.setBusy();
    this.conversation.announce("The GPU was lost; the model must be loaded again.");
    if (this.autoReloaded) {
      this.offerReload(entry, lostNotice(loss, "It was lost again after an automatic reload."));
      return;
    }
    this.autoReloaded = true;
    this.errors.show(lostNotice(loss, `Reloading ${entry.title} from this browser's storage...`));
    try {
      await this.reloadKeepingConversation(entry);
      this.errors.show(lostNotice(loss, `${entry.title} was reloaded: the conversation goes on where it stopped.`));
    } catch (error) {
      this.offerReload(entry, error);
    }
  }

  private offerReload(entry: SiteModel, error: unknown): void {
    this.errors.show(error, {
      label: "Reload the model",
      run: () => {
        void this.reloadKeepingConversation(entry).then(
          () => this.ui.prompt.focus(),
          (failure: unknown) => this.offerReload(entry, failure),
        );
      },
    });
  }

  // Loads `entry` again into the engine without forgetting the conversation.
  private async reloadKeepingConversation(entry: SiteModel): Promise<void> {
    const engine = this.engine;
    if (!engine) throw new EngineError("worker-failed", "The engine did not start. Reload the page.");
    this.ui.progress.hidden = false;
    this.showProgress({ phase: "starting", loadedBytes: 0, totalBytes: entry.download_bytes, percent: 0 });
    await engine.reload(this.modelUrl(entry), { onProgress: (p) => this.showProgress(p) });
    this.loadedModel = entry;
    this.ui.progressText.textContent = `${entry.title} is ready.`;
    this.conversation.announce(`${entry.title} is ready.`);
    this.setBusy();
  }

  // --- storage ------------------------------------------------------------------------------

  // Follows a load's progress: once a shard came from the network it is being stored, the moment
  // to ask the browser to keep the site's storage (persist() exists in pages, not in workers);
  // once the weights are in, the storage figures are shown.
  private noteStorage(p: Progress): void {
    if ((p.fromNetwork ?? 0) > 0 && !this.persistAsked) {
      this.persistAsked = true;
      void this.askToPersist();
    }
    if (p.phase === "done") void this.showStorage();
  }

  private async askToPersist(): Promise<void> {
    const storage = navigator.storage;
    if (!storage?.persist || (await storage.persisted().catch(() => false))) return;
    await storage.persist().catch(() => false);
    await this.showStorage();
  }

  private async showStorage(): Promise<void> {
    const storage = navigator.storage;
    if (!storage?.estimate) return;
    const [estimate, persisted] = await Promise.all([
      storage.estimate(),
      storage.persisted ? storage.persisted().catch(() => false) : false,
    ]);
    const report = { persisted, usage: estimate.usage ?? 0, quota: estimate.quota ?? 0 };
    this.storage = report;
    this.ui.storage.textContent =
      `Stored on this device: ${formatBytes(report.usage)} of ${formatBytes(report.quota)} available; ` +
      (persisted ? "kept until you clear it." : "the browser may clear it when space runs low.");
    this.ui.storage.hidden = false;
  }

  // --- chatting -----------------------------------------------------------------------------

  private async send(): Promise<void> {
    const { ui, engine } = this;
    const text = ui.prompt.value.trim();
    if (!text || this.generating || !this.loadedModel || !engine) return;
    const sampling = this.sampling.settings();
    if (!sampling) return;
    const tools = this.toolsForm.settings();
    if (!tools) return;
    this.errors.clear();
    ui.prompt.value = "";
    this.messages.push({ role: "user", content: text });
    this.conversation.add("user", text);
    const reply = this.conversation.add("assistant", "");
    reply.element.setAttribute("aria-busy", "true");
    this.conversation.clearAnnouncements();
    this.generating = true;
    this.setBusy();
    let content = "";
    let spoken = 0;
    let tokens = 0;
    let first = 0;
    let pending = false;
    const calls: ToolCall[] = [];
    try {
      const request = { messages: this.messages, stream: true as const, ...sampling, ...tools };
      const stream = await engine.chat.completions.create(request);
      for await (const chunk of stream) {
        for (const { index: _index, ...call } of chunk.choices[0]?.delta.tool_calls ?? []) calls.push(call);
        const delta = chunk.choices[0]?.delta.content;
        if (delta) {
          content += delta;
          tokens += 1;
          first = first || performance.now();
          spoken = this.conversation.announceReply(content, spoken, false);
          // Re-render at most once per frame: markdown of a long reply is not free.
          if (!pending) {
            pending = true;
            requestAnimationFrame(() => {
              pending = false;
              this.conversation.setText(reply, content);
            });
          }
        }
        if (chunk.usage) {
          this.lastUsage = chunk.usage;
          this.showStats(chunk.usage, tokens, first);
        }
      }
    } catch (error) {
      // A lost GPU is explained by recoverFromGpuLoss, which the engine's deviceLost starts.
      if (errorCode(error) !== "gpu-lost") this.errors.show(error);
    }
    this.conversation.setText(reply, content);
    if (calls.length > 0) this.conversation.showToolCalls(reply, calls);
    reply.element.removeAttribute("aria-busy");
    this.conversation.announceReply(content, spoken, true);
    // An interrupted reply is still part of the conversation the model has seen; so is a call.
    this.messages.push(calls.length > 0 ? { role: "assistant", content: "", tool_calls: calls } : { role: "assistant", content });
    this.generating = false;
    // Stop (now disabled) may have had the focus: give it back to the message box.
    const focusLost = document.activeElement === ui.stop || document.activeElement === document.body;
    this.setBusy();
    if (focusLost) ui.prompt.focus();
  }

  private showStats(usage: CompletionUsage, tokens: number, first: number): void {
    const seconds = first ? (performance.now() - first) / 1000 : 0;
    const decode = usage.decode_tokens_per_s || (seconds > 0 ? tokens / seconds : 0);
    const prefill = usage.prefill_tokens_per_s ? `, prompt ${usage.prefill_tokens_per_s.toFixed(1)} tokens/s` : "";
    const count = usage.completion_tokens ?? tokens;
    this.ui.stats.textContent = `${count} token${count === 1 ? "" : "s"}, ${decode.toFixed(1)} tokens/s${prefill}`;
  }

  private async newChat(): Promise<void> {
    // The page clears at once; the engine forgets the old turns in its worker meanwhile.
    this.errors.clear();
    this.messages = [];
    this.conversation.clear();
    this.conversation.clearAnnouncements();
    this.ui.stats.textContent = "";
    try {
      await this.engine?.resetChat();
    } catch (error) {
      this.errors.show(error);
    }
    this.setBusy();
  }
}

// The error box's text after a GPU loss: the engine's explanation, then what happens next.
function lostNotice(loss: GpuLoss, next: string): EngineError {
  return new EngineError("gpu-lost", `${loss.message}\n\n${next}`);
}
