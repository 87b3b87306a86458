// A built chat site's engine under Deno (WebGPU through wgpu): the same engine bundle a
// visitor's browser runs, behind the `webllmApp` API the site's page script offers
// (web/src/page/app.ts), so `check`, `bench` and the pytest fixture drive it unchanged.
//
//     deno run --allow-net --allow-import --location SITE_URL deno_page.js SITE_URL
//
// webllm_build/verify/deno.py sends one JSON request a line on stdin, {id, expression, arg}, where
// `expression` is what Playwright's page.evaluate takes (a function's source, or an
// expression); each answer is one JSON line on stdout, {id, value} or {id, error}. Everything
// the engine logs goes to stderr, so stdout carries only answers.

globalThis.window = globalThis; // scripts written for the page say window.webllmApp
for (const level of ["log", "info", "debug"]) console[level] = console.error;

const siteUrl = Deno.args[0];
const answer = (message) => Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(message) + "\n"));

async function start() {
  const response = await fetch(new URL("site.json", siteUrl), { cache: "no-cache" });
  if (!response.ok) throw new Error(`Could not read site.json: HTTP ${response.status}.`);
  const site = await response.json();
  const webllm = await import(new URL(site.engine, siteUrl).href);
  // The harness page's global (browser.write_harness), for scripts written against it.
  globalThis.webllm = webllm;
  const adapter = await webllm.probeWebGPU();
  const engine = adapter.available ? await webllm.createEngine() : null;

  // As the page does: refuse a build this adapter cannot run before downloading anything.
  async function loadModel(id, { onProgress } = {}) {
    const entry = site.models.find((m) => m.id === id);
    if (!entry) throw new Error(`This site has no model "${id}".`);
    if (!engine) throw Object.assign(new Error(adapter.reason), { code: "no-webgpu" });
    const missing = (entry.required_features || []).filter((f) => !adapter.features.includes(f));
    if (missing.length > 0) {
      const error = new Error(`${entry.title} needs the WebGPU feature(s) ${missing.join(", ")}, which this GPU does not offer.`);
      error.code = "missing-feature";
      throw error;
    }
    let last = null;
    const started = performance.now();
    await engine.reload(new URL(entry.base_url, new URL("site.json", siteUrl)).href, {
      onProgress: (p) => {
        last = p;
        if (onProgress) onProgress(p);
      },
    });
    return { id, ms: performance.now() - started, progress: last };
  }

  globalThis.webllmApp = {
    site,
    engine,
    adapter,
    engineKind: engine ? "page" : null,
    lastUsage: null,
    loadModel,
  };
  globalThis.webllmAppReady = true;
}

async function serve(line) {
  const { id, expression, arg } = JSON.parse(line);
  try {
    const evaluated = (0, eval)(`(${expression})`);
    const value = await (typeof evaluated === "function" ? evaluated(arg) : evaluated);
    answer({ id, value: value === undefined ? null : value });
  } catch (error) {
    answer({ id, error: `${error?.name ?? "Error"}: ${error?.message ?? error}` });
  }
}

const started = start().catch((error) => {
  globalThis.webllmStartError = `${error?.name ?? "Error"}: ${error?.message ?? error}`;
});
let buffered = "";
const decoder = new TextDecoder();
for await (const chunk of Deno.stdin.readable) {
  buffered += decoder.decode(chunk, { stream: true });
  let newline;
  while ((newline = buffered.indexOf("\n")) >= 0) {
    const line = buffered.slice(0, newline);
    buffered = buffered.slice(newline + 1);
    // Requests run concurrently, as page.evaluate calls may; each answers under its own id.
    if (line.trim()) started.then(() => serve(line));
  }
}
