// The page's elements (site_templates/index.html), looked up once and checked.

export function element<T extends HTMLElement>(id: string, type: { new (): T; name: string }): T {
  const found = document.getElementById(id);
  if (!(found instanceof type)) throw new Error(`The page has no ${type.name} #${id}.`);
  return found;
}

export function pageElements() {
  return {
    model: element("model", HTMLSelectElement),
    load: element("load", HTMLButtonElement),
    progress: element("progress", HTMLElement),
    progressBar: element("progress-bar", HTMLProgressElement),
    progressText: element("progress-text", HTMLElement),
    storage: element("storage", HTMLElement),
    error: element("error", HTMLElement),
    conversation: element("conversation", HTMLElement),
    composer: element("composer", HTMLFormElement),
    prompt: element("prompt", HTMLTextAreaElement),
    send: element("send", HTMLButtonElement),
    stop: element("stop", HTMLButtonElement),
    newChat: element("new-chat", HTMLButtonElement),
    stats: element("stats", HTMLElement),
    noWebGPU: element("no-webgpu", HTMLElement),
    noWebGPUReason: element("no-webgpu-reason", HTMLElement),
    settings: element("settings", HTMLDetailsElement),
    announcer: element("announcer", HTMLElement),
    temperature: element("temperature", HTMLInputElement),
    topP: element("top-p", HTMLInputElement),
    maxTokens: element("max-tokens", HTMLInputElement),
    toolsPanel: element("tools-panel", HTMLDetailsElement),
    tools: element("tools", HTMLTextAreaElement),
    toolChoice: element("tool-choice", HTMLSelectElement),
  };
}

export type PageElements = ReturnType<typeof pageElements>;
