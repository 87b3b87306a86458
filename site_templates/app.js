// The chat page's script (written by `webllm_build site`): a plain ES module, no build step.
// It reads site.json, fills the model picker, and drives the engine bundle through its
// OpenAI-style API. Every URL is relative to this file, so the site works from any sub-path.

// The engine runs in a worker started from ENGINE_URL; the page itself loads only PAGE_URL.
const ENGINE_URL = new URL({{ engine|tojson }}, import.meta.url).href;
const PAGE_URL = new URL({{ page_engine|tojson }}, import.meta.url).href;
const SITE_URL = new URL("site.json", import.meta.url).href;

const $ = (id) => document.getElementById(id);
const ui = {
  model: $("model"), load: $("load"), progress: $("progress"), progressBar: $("progress-bar"),
  progressText: $("progress-text"), error: $("error"), conversation: $("conversation"),
  composer: $("composer"), prompt: $("prompt"), send: $("send"), stop: $("stop"),
  newChat: $("new-chat"), stats: $("stats"), noWebGPU: $("no-webgpu"), noWebGPUReason: $("no-webgpu-reason"),
  settings: $("settings"), announcer: $("announcer"),
};

// The Sampling panel: each field's request key, its range and the words for a bad value.
// Empty or out of range is an error shown next to the field, never a silent fallback.
const SAMPLING_FIELDS = [
  { input: $("temperature"), key: "temperature", min: 0, max: 2, message: "Temperature must be a number from 0 to 2." },
  { input: $("top-p"), key: "top_p", min: 0.01, max: 1, message: "Top-p must be a number from 0.01 to 1." },
  { input: $("max-tokens"), key: "max_tokens", min: 1, max: Infinity, integer: true,
    message: "Max tokens must be a whole number, 1 or more." },
];

// What to tell the visitor for the engine's error codes; the engine's message follows.
const ERROR_HINTS = {
  "no-webgpu": "This browser has no usable WebGPU; see the list of browsers that work above.",
  "missing-feature": "Your GPU lacks a WebGPU feature this model needs; pick a model without it (a q4f32 one) if the site has one.",
  "buffer-limit": "Your GPU cannot hold one of this model's tensors; pick a smaller or more quantized model if the site has one.",
  "worker-failed": "The engine could not start. Reload the page; if it persists, try another browser.",
  "corrupt-shard": "A downloaded file was damaged. Reload the page to download it again.",
  "quota-exceeded": "The browser has no room to keep the model; it is loaded from the network each visit. Free some disk space to keep it.",
};

// --- markdown ---------------------------------------------------------------------------------
// Model output is untrusted text. It is HTML-escaped first; only then do a few rules add the
// tags below, so no markup the model writes can reach the DOM.

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function renderInline(escaped) {
  // Code spans first, so that emphasis markers inside them stay literal.
  return escaped
    .split(/(`[^`\n]+`)/)
    .map((part, i) => {
      if (i % 2 === 1) return `<code>${part.slice(1, -1)}</code>`;
      return part
        .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
        .replace(/__([^_\n]+)__/g, "<strong>$1</strong>")
        .replace(/(^|[^*])\*([^*\n]+)\*(?!\*)/g, "$1<em>$2</em>")
        .replace(/(^|[^\w_])_([^_\n]+)_(?![\w_])/g, "$1<em>$2</em>");
    })
    .join("");
}

function renderMarkdown(text) {
  const html = [];
  // An unclosed fence (a reply still streaming) runs to the end of the text.
  const fence = /```[^\n`]*\n?([\s\S]*?)(?:```|$)/g;
  let last = 0;
  for (const match of text.matchAll(fence)) {
    html.push(renderParagraphs(text.slice(last, match.index)));
    html.push(`<pre><code>${escapeHtml(match[1].replace(/\n$/, ""))}</code></pre>`);
    last = match.index + match[0].length;
  }
  html.push(renderParagraphs(text.slice(last)));
  return html.join("");
}

function renderParagraphs(text) {
  return text
    .split(/\n{2,}/)
    .map((block) => block.trim())
    .filter((block) => block)
    .map((block) => `<p>${renderInline(escapeHtml(block)).replace(/\n/g, "<br>")}</p>`)
    .join("");
}

// Exposed for tests, which feed it hostile text.
window.webllmRenderMarkdown = renderMarkdown;

// --- page state -------------------------------------------------------------------------------

let site = null;
let engine = null; // the engine in its Web Worker, or in this page where workers lack WebGPU
let adapter = null; // the WebGPU adapter report, as the engine sees it
let webllm = null;
let messages = [];
let generating = false;
let loadedModel = null;
let lastUsage = null;
let modelPicked = false; // the visitor chose a model: re-filling the picker keeps it
// False once the browser is known to lack WebGPU: loading would only fail.
let webgpuOk = Boolean(navigator.gpu);

// `action`, when given, adds a button to the message: {label, run}.
function showError(error, action) {
  const code = error && error.code;
  const message = String((error && error.message) || error);
  ui.error.textContent = ERROR_HINTS[code] ? `${ERROR_HINTS[code]}\n\n${message}` : message;
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "primary error-action";
    button.textContent = action.label;
    button.addEventListener("click", () => {
      clearError();
      action.run();
    });
    ui.error.append(document.createElement("br"), button);
  }
  ui.error.hidden = false;
  console.error(error);
}

function clearError() {
  ui.error.hidden = true;
  ui.error.textContent = "";
}

function formatBytes(bytes) {
  if (!(bytes > 0)) return "0 MB";
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(2)} GB` : `${(bytes / (1 << 20)).toFixed(1)} MB`;
}

function setBusy() {
  const ready = loadedModel !== null;
  ui.load.disabled = generating || !site || !webllm || !webgpuOk;
  ui.model.disabled = generating || !site;
  ui.prompt.disabled = !ready;
  ui.send.disabled = !ready || generating;
  ui.stop.disabled = !generating;
  ui.newChat.disabled = !ready || generating;
}

function addMessage(role, text) {
  const element = document.createElement("div");
  element.className = `message ${role}`;
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", role === "user" ? "Copy message" : "Copy reply");
  copy.addEventListener("click", () => copyText(element.dataset.raw || "", copy));
  const body = document.createElement("div");
  element.append(copy, body);
  ui.conversation.append(element);
  const message = { element, body, role };
  setMessageText(message, text);
  return message;
}

function setMessageText(message, text) {
  message.element.dataset.raw = text;
  if (message.role === "assistant") {
    message.body.innerHTML = renderMarkdown(text);
  } else {
    message.body.textContent = text;
  }
  ui.conversation.scrollTop = ui.conversation.scrollHeight;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  announce(button.textContent === "Copied" ? "Copied to the clipboard." : "Copying failed.");
  setTimeout(() => (button.textContent = "Copy"), 1500);
}

// --- screen readers -----------------------------------------------------------------------------
// The announcer is a polite live region. Each addition is read once, in order, so a streamed
// reply is handed over a finished sentence at a time rather than at every redraw.

function announce(text) {
  const line = document.createElement("p");
  line.textContent = text;
  ui.announcer.append(line);
}

// Announces what `content` adds beyond `spoken` characters, up to its last finished sentence
// (or all of it when `final`); returns the new count of spoken characters.
function announceReply(content, spoken, final) {
  const rest = content.slice(spoken);
  const end = final ? rest.length : Math.max(...[". ", "! ", "? ", "\n"].map((mark) => rest.lastIndexOf(mark) + 1));
  if (end <= 0 || !rest.slice(0, end).trim()) return final ? content.length : spoken;
  announce(rest.slice(0, end).trim());
  return spoken + end;
}

// --- loading ----------------------------------------------------------------------------------

function onProgress(p) {
  const percent = Math.max(0, Math.min(100, Number(p.percent) || 0));
  ui.progressBar.value = percent;
  const bytes = p.totalBytes ? `${formatBytes(p.loadedBytes)} of ${formatBytes(p.totalBytes)}, ` : "";
  ui.progressText.textContent = `${p.phase || "loading"}: ${bytes}${percent.toFixed(0)}%`;
}

// The WebGPU features `entry` needs that this adapter lacks (none when the adapter is unknown).
function missingFeatures(entry) {
  if (!adapter || !adapter.features) return [];
  return (entry.required_features || []).filter((f) => !adapter.features.includes(f));
}

// Another build of the same model that this adapter can run (e.g. q4f32_1 for q4f16_1).
function runnableVariant(entry) {
  return site.models.find((m) => m !== entry && m.family === entry.family && missingFeatures(m).length === 0);
}

// Loads a site.json model by id; throws what the engine throws. Also the page's test hook.
async function loadModel(id, { onProgress: report } = {}) {
  const entry = site.models.find((m) => m.id === id);
  if (!entry) throw new Error(`This site has no model "${id}".`);
  const missing = missingFeatures(entry);
  if (missing.length > 0) {
    const error = new Error(`${entry.title} needs the WebGPU feature(s) ${missing.join(", ")}, which this GPU does not offer.`);
    error.code = "missing-feature";
    throw error;
  }
  loadedModel = null;
  ui.model.value = entry.id;
  let last = null;
  const started = performance.now();
  const progress = (p) => {
    last = p;
    onProgress(p);
    if (report) report(p);
  };
  progress({ phase: "starting", loadedBytes: 0, totalBytes: entry.download_bytes, percent: 0 });
  await engine.reload(new URL(entry.base_url, SITE_URL).href, { onProgress: progress });
  loadedModel = entry;
  messages = [];
  lastUsage = null;
  ui.conversation.replaceChildren();
  ui.stats.textContent = "";
  ui.progressText.textContent = `${entry.title} is ready.`;
  return { id, ms: performance.now() - started, progress: last };
}

async function loadSelected() {
  const entry = site.models.find((m) => m.id === ui.model.value);
  if (!entry) return;
  clearError();
  ui.load.disabled = true;
  ui.progress.hidden = false;
  announce(`Loading ${entry.title}.`);
  try {
    await loadModel(entry.id);
    announce(`${entry.title} is ready.`);
    setBusy(); // enables the message box, which can only then take the focus
    ui.prompt.focus();
  } catch (error) {
    ui.progress.hidden = true;
    const variant = error.code === "missing-feature" ? runnableVariant(entry) : null;
    showError(error, variant && {
      label: `Load ${variant.title} instead`,
      run: () => {
        ui.model.value = variant.id;
        loadSelected();
      },
    });
  }
  setBusy();
}

// --- chatting ---------------------------------------------------------------------------------

async function send() {
  const text = ui.prompt.value.trim();
  if (!text || generating || !loadedModel) return;
  const sampling = samplingSettings();
  if (!sampling) return;
  clearError();
  ui.prompt.value = "";
  messages.push({ role: "user", content: text });
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.element.setAttribute("aria-busy", "true");
  ui.announcer.replaceChildren();
  generating = true;
  setBusy();
  let content = "";
  let spoken = 0;
  let tokens = 0;
  let first = 0;
  let pending = false;
  try {
    const stream = await engine.chat.completions.create({ messages, stream: true, ...sampling });
    for await (const chunk of stream) {
      const delta = chunk.choices[0] && chunk.choices[0].delta.content;
      if (delta) {
        content += delta;
        tokens += 1;
        first = first || performance.now();
        spoken = announceReply(content, spoken, false);
        // Re-render at most once per frame: markdown of a long reply is not free.
        if (!pending) {
          pending = true;
          requestAnimationFrame(() => {
            pending = false;
            setMessageText(reply, content);
          });
        }
      }
      if (chunk.usage) {
        lastUsage = chunk.usage;
        showStats(chunk.usage, tokens, first);
      }
    }
  } catch (error) {
    showError(error);
  }
  setMessageText(reply, content);
  reply.element.removeAttribute("aria-busy");
  announceReply(content, spoken, true);
  // An interrupted reply is still part of the conversation the model has seen.
  messages.push({ role: "assistant", content });
  generating = false;
  // Stop (now disabled) may have had the focus: give it back to the message box.
  const focusLost = document.activeElement === ui.stop || document.activeElement === document.body;
  setBusy();
  if (focusLost) ui.prompt.focus();
}

// Checks one Sampling field, shows or clears its message; returns its value, or null if bad.
function checkField(field) {
  const value = field.input.valueAsNumber;
  const ok =
    field.input.value.trim() !== "" &&
    Number.isFinite(value) &&
    value >= field.min &&
    value <= field.max &&
    (!field.integer || Number.isInteger(value));
  field.input.setAttribute("aria-invalid", String(!ok));
  $(`${field.input.id}-error`).textContent = ok ? "" : field.message;
  return ok ? value : null;
}

// The Sampling panel's values as request fields, or null after opening the panel and moving
// the focus to the first bad field (its message is read with it).
function samplingSettings() {
  const settings = {};
  let firstBad = null;
  for (const field of SAMPLING_FIELDS) {
    const value = checkField(field);
    if (value === null) firstBad = firstBad || field.input;
    else settings[field.key] = value;
  }
  if (firstBad) {
    ui.settings.open = true;
    firstBad.focus();
    return null;
  }
  return settings;
}

function showStats(usage, tokens, first) {
  const seconds = first ? (performance.now() - first) / 1000 : 0;
  const decode = usage.decode_tokens_per_s || (seconds > 0 ? tokens / seconds : 0);
  const prefill = usage.prefill_tokens_per_s ? `, prompt ${usage.prefill_tokens_per_s.toFixed(1)} tokens/s` : "";
  const count = usage.completion_tokens ?? tokens;
  ui.stats.textContent = `${count} token${count === 1 ? "" : "s"}, ${decode.toFixed(1)} tokens/s${prefill}`;
}

async function newChat() {
  // The page clears at once; the engine forgets the old turns in its worker meanwhile.
  clearError();
  messages = [];
  ui.conversation.replaceChildren();
  ui.announcer.replaceChildren();
  ui.stats.textContent = "";
  try {
    await engine.resetChat();
  } catch (error) {
    showError(error);
  }
  setBusy();
}

// --- start ------------------------------------------------------------------------------------

function fillPicker() {
  // Keep the visitor's choice; else the site's default, or a build of it this GPU can run.
  const fallback = site.models.find((m) => m.default) || site.models[0];
  const auto = fallback && missingFeatures(fallback).length > 0 ? runnableVariant(fallback) || fallback : fallback;
  const selected = modelPicked ? ui.model.value : auto && auto.id;
  ui.model.replaceChildren();
  for (const entry of site.models) {
    const option = document.createElement("option");
    option.value = entry.id;
    const unsupported = missingFeatures(entry).length > 0 ? " (needs shader-f16, not on this GPU)" : "";
    option.textContent = `${entry.title}, ${formatBytes(entry.download_bytes)}${unsupported}`;
    option.selected = entry.id === selected;
    ui.model.append(option);
  }
}

async function start() {
  ui.load.addEventListener("click", loadSelected);
  ui.model.addEventListener("change", () => (modelPicked = true));
  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    send();
  });
  ui.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  for (const field of SAMPLING_FIELDS) {
    // A message appears once a value is committed, and goes as soon as the value is fixed.
    field.input.addEventListener("change", () => checkField(field));
    field.input.addEventListener("input", () => {
      if (field.input.getAttribute("aria-invalid") === "true") checkField(field);
    });
  }
  ui.stop.addEventListener("click", () => engine && engine.interruptGenerate());
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && generating && engine) {
      event.preventDefault();
      engine.interruptGenerate();
    }
  });
  ui.newChat.addEventListener("click", newChat);

  if (!navigator.gpu) ui.noWebGPU.hidden = false;
  try {
    const response = await fetch(SITE_URL, { cache: "no-cache" });
    if (!response.ok) throw new Error(`Could not read site.json: HTTP ${response.status}.`);
    site = await response.json();
    fillPicker();
  } catch (error) {
    showError(error);
  }
  setBusy();
  window.webllmSiteReady = true;

  try {
    webllm = await import(PAGE_URL);
  } catch (error) {
    showError(new Error(`The engine failed to load: ${error.message}. Reload the page.`));
    return;
  }
  if (navigator.gpu) {
    try {
      ({ engine, report: adapter } = await startEngine());
      if (!adapter.available) {
        webgpuOk = false;
        ui.noWebGPU.hidden = false;
        ui.noWebGPUReason.textContent = adapter.reason || "";
      }
    } catch (error) {
      showError(error);
    }
  }
  if (site) fillPicker(); // again, now marking what this adapter cannot run
  setBusy();
  window.webllmAppReady = true;
}

// The engine runs in a Web Worker so the page stays responsive while it works. A browser that
// offers WebGPU to pages but not to workers gets the engine in the page instead.
async function startEngine() {
  if (typeof Worker !== "undefined") {
    const worker = webllm.createWorkerEngine(ENGINE_URL);
    try {
      const report = await worker.probe();
      if (report.available) return { engine: worker, report };
    } catch (error) {
      console.warn("The engine's worker could not start; running it in the page.", error);
    }
    worker.terminate();
  }
  return { engine: await webllm.createPageEngine(ENGINE_URL), report: await webllm.probeWebGPU() };
}

// The page's API for scripts and headless checks (webllm_build check drives it).
window.webllmApp = {
  get site() {
    return site;
  },
  get engine() {
    return engine;
  },
  get adapter() {
    return adapter;
  },
  get engineKind() {
    return engine ? (engine.kind === "worker" ? "worker" : "page") : null;
  },
  get lastUsage() {
    return lastUsage;
  },
  loadModel,
};

start();
