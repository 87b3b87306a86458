// Benchmark the peer engine, WebLLM (npm @mlc-ai/web-llm@0.2.79), under Deno with one of its own
// prebuilt model libraries, so its speed can be set beside ours on the same GPU and runtime.
//
//   deno run -A --no-prompt --location http://127.0.0.1/ benchmarks/webllm_peer/run.js \
//       --model DIR --lib LIB.wasm \
//       [--webllm .peer/node_modules/@mlc-ai/web-llm/lib/index.js] [--prompts 128,512,2048]
//       [--gen 64] [--runs 2] [--quick]
//
// DIR holds mlc-chat-config.json, ndarray-cache.json, params_shard_*.bin and tokenizer.json (see
// benchmarks/webllm_peer/bench.sh, which makes random weights for a lib). Both are served from a
// loopback HTTP server started here, as a site would serve them. One JSON object goes to stdout;
// progress goes to stderr.
//
// Measured, per prompt length (medians over --runs, plus every value):
// - WebLLM's own usage.extra (prefill_tokens_per_s, decode_tokens_per_s, time_to_first_token_s):
//   its prefill time runs from the start of prefill until the first token is sampled (read back
//   to the CPU); decode is steps / time of the decode steps, each of which reads its token back.
// - wall clock taken here: ttft = a whole 1-token request (template, tokenize, prefill, sample);
//   total = a whole request of --gen tokens; wall decode = decode steps / (total - ttft).
// - load: cold = CreateMLCEngine with an empty Cache API (fetch + cache.put + read back + upload,
//   as a browser's first visit); warm = unload() + reload() with the cache filled.

const FILLER =
  "The history of the printing press shows how a single invention can change the way people " +
  "share ideas, learn new skills and argue about the world they live in. ";
const MODEL_ID = "peer";

// --- Deno quirks (polyfills for this peer harness only; our own engine needs none of them) ---
// WebLLM logs through console.log/info; Deno writes those to stdout, which carries our JSON.
for (const name of ["log", "info", "debug"]) console[name] = console.error;
// Deno 2 defines a global `process` with versions.node, so the Emscripten glue inside WebLLM (tvmjs'
// WASI shim, the tokenizer) takes its Node path and fails on __dirname/require; without it, it
// takes its generic path (no file or XHR loading: both get their wasm bytes in memory).
delete globalThis.process;
// Deno's Cache has put/match/keys/delete but no add(); WebLLM's ArtifactCache calls add().
// A browser's add() is fetch + put; so is this one.
if (typeof Cache !== "undefined" && !Cache.prototype.add) {
  Cache.prototype.add = async function (request) {
    const response = await fetch(request);
    if (!response.ok) throw new TypeError(`${request.url ?? request}: HTTP ${response.status}`);
    await this.put(request, response);
  };
}

// WebLLM reads globalThis.location.origin on every load, even for absolute URLs: Deno defines
// `location` only when given --location (which also names the Cache API's storage).
if (typeof location === "undefined") {
  console.error("[webllm-peer] run Deno with --location http://127.0.0.1/ (WebLLM needs location.origin)");
  Deno.exit(2);
}

function parseArgs(argv) {
  const args = {
    model: null,
    lib: null,
    webllm: new URL("../../.peer/node_modules/@mlc-ai/web-llm/lib/index.js", import.meta.url).pathname,
    prompts: [128, 512, 2048],
    gen: 64,
    runs: 2,
    quick: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === "--model") args.model = value();
    else if (flag === "--lib") args.lib = value();
    else if (flag === "--webllm") args.webllm = value();
    else if (flag === "--prompts") args.prompts = value().split(",").map(Number);
    else if (flag === "--gen") args.gen = Number(value());
    else if (flag === "--runs") args.runs = Number(value());
    else if (flag === "--quick") args.quick = true;
    else throw new Error(`unknown argument ${flag}`);
  }
  if (!args.model || !args.lib) throw new Error("--model DIR and --lib LIB.wasm are required");
  // A smoke test for a slow adapter. On lavapipe this 3.8B model takes ~50 s per decode step, and
  // over 10 minutes to prefill even a 27-token chat prompt; so: a text completion (no chat
  // template) of a one-token prompt, 3 tokens, one run.
  if (args.quick) Object.assign(args, { prompts: [1], gen: 3, runs: 1 });
  return args;
}

const log = (...parts) => console.error("[webllm-peer]", ...parts);

function spread(values) {
  const kept = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (!kept.length) return { min: null, median: null, max: null, values };
  const s = [...kept].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { min: s[0], median, max: s[s.length - 1], values };
}

// Serves DIR under /model/resolve/main/ (WebLLM appends resolve/main/ to a model URL) and the lib.
function serve(modelDir, libPath) {
  const libName = libPath.split("/").pop();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    let file = null;
    if (path === `/lib/${libName}`) file = libPath;
    else if (path.startsWith("/model/resolve/main/")) {
      const name = path.slice("/model/resolve/main/".length);
      if (!name.includes("/") && !name.startsWith(".")) file = `${modelDir}/${name}`;
    }
    try {
      if (file === null) throw new Deno.errors.NotFound();
      const handle = await Deno.open(file);
      const { size } = await handle.stat();
      const type = file.endsWith(".json") ? "application/json"
        : file.endsWith(".wasm") ? "application/wasm" : "application/octet-stream";
      return new Response(handle.readable, { headers: { "content-length": `${size}`, "content-type": type } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const { port } = server.addr;
  return { server, model: `http://127.0.0.1:${port}/model/`, lib: `http://127.0.0.1:${port}/lib/${libName}` };
}

async function describeAdapter() {
  const adapter = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return { available: false };
  const info = adapter.info ?? {};
  const limits = {};
  for (const key of ["maxBufferSize", "maxStorageBufferBindingSize", "maxComputeWorkgroupStorageSize",
    "maxComputeInvocationsPerWorkgroup", "maxStorageBuffersPerShaderStage"]) limits[key] = adapter.limits[key];
  return {
    available: true,
    vendor: info.vendor,
    architecture: info.architecture,
    description: info.description,
    isFallbackAdapter: info.isFallbackAdapter,
    features: [...adapter.features].sort(),
    limits,
  };
}

function userMessage(words) {
  const all = FILLER.trim().split(/\s+/);
  const out = [];
  for (let i = 0; i < words; i++) out.push(all[i % all.length]);
  return [{ role: "user", content: out.join(" ") }];
}

// `prompt`: chat messages (chat.completions, the model's conversation template) or a string
// (completions: the raw text, no template).
async function complete(engine, prompt, maxTokens) {
  const request = { max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: false };
  const start = performance.now();
  const reply = typeof prompt === "string"
    ? await engine.completions.create({ ...request, prompt })
    : await engine.chat.completions.create({ ...request, messages: prompt });
  const choice = reply.choices[0];
  return { wall_s: (performance.now() - start) / 1000, usage: reply.usage, text: choice.message?.content ?? choice.text };
}

// The most filler words whose chat prompt is at most `target` tokens (the nearest below, as our
// bench builds them), counted by WebLLM itself with 1-token requests, which also warm up the
// shape. Tokens grow about linearly with words: step by the measured tokens per word, never
// asking for much more than `target` (a prompt over the context window is an error).
async function fitPrompt(engine, target) {
  const counts = new Map();
  const count = async (w) => {
    if (!counts.has(w)) counts.set(w, (await complete(engine, userMessage(w), 1)).usage.prompt_tokens);
    return counts.get(w);
  };
  const fitted = async (w) => ({ prompt: userMessage(w), tokens: await count(w) });
  if ((await count(1)) >= target) return fitted(1);
  const perWord = ((await count(9)) - (await count(1))) / 8;
  let words = Math.max(1, 1 + Math.floor((target - (await count(1))) / perWord));
  while ((await count(words)) > target && words > 1) {
    words = Math.max(1, words - Math.max(1, Math.ceil(((await count(words)) - target) / perWord)));
  }
  for (;;) {
    const jump = Math.max(1, Math.floor((target - (await count(words))) / perWord));
    if ((await count(words + jump)) <= target) words += jump;
    else if (jump > 1 && (await count(words + 1)) <= target) words += 1;
    else break;
  }
  return fitted(words);
}

async function main() {
  const args = parseArgs(Deno.args);
  const modelDir = await Deno.realPath(args.model);
  const libPath = await Deno.realPath(args.lib);
  const chatConfig = JSON.parse(await Deno.readTextFile(`${modelDir}/mlc-chat-config.json`));
  const webllm = await import(new URL(`file://${await Deno.realPath(args.webllm)}`).href);
  const urls = serve(modelDir, libPath);
  const adapter = await describeAdapter();
  log("adapter:", adapter.description ?? "none", "| lib:", libPath);

  const appConfig = {
    model_list: [{
      model: urls.model,
      model_id: MODEL_ID,
      model_lib: urls.lib,
      required_features: chatConfig.quantization?.includes("f16") ? ["shader-f16"] : [],
      overrides: { context_window_size: chatConfig.context_window_size, prefill_chunk_size: chatConfig.prefill_chunk_size },
    }],
    useIndexedDBCache: false, // Deno has no IndexedDB; the Cache API is there (add() polyfilled above)
  };
  let lastProgress = -1;
  const initProgressCallback = (report) => {
    const pct = Math.floor(report.progress * 10);
    if (pct !== lastProgress) {
      lastProgress = pct;
      log(report.text);
    }
  };

  let start = performance.now();
  const engine = await webllm.CreateMLCEngine(MODEL_ID, { appConfig, initProgressCallback, logLevel: "WARN" });
  const loadCold = (performance.now() - start) / 1000;
  log(`cold load ${loadCold.toFixed(2)} s`);
  await engine.unload();
  lastProgress = -1;
  start = performance.now();
  await engine.reload(MODEL_ID);
  const loadWarm = (performance.now() - start) / 1000;
  log(`warm load ${loadWarm.toFixed(2)} s`);

  const prompts = [];
  let sample = null;
  for (const target of args.prompts) {
    const fitted = args.quick ? { prompt: "a", tokens: "a text completion of" } : await fitPrompt(engine, target);
    log(`${target}-token target: ${fitted.tokens} prompt tokens`);
    const rows = {
      prompt_tokens: [], completion_tokens: [],
      prefill_tokens_per_s: [], decode_tokens_per_s: [], ttft_s: [],
      wall_ttft_s: [], wall_total_s: [], wall_prefill_tokens_per_s: [], wall_decode_tokens_per_s: [],
    };
    for (let run = 0; run < args.runs; run++) {
      const first = await complete(engine, fitted.prompt, 1);
      const full = await complete(engine, fitted.prompt, args.gen);
      const u = full.usage;
      // WebLLM's completion_tokens counts decode steps: one fewer than the tokens generated.
      const steps = u.completion_tokens;
      rows.prompt_tokens.push(u.prompt_tokens);
      rows.completion_tokens.push(u.completion_tokens);
      rows.prefill_tokens_per_s.push(u.extra.prefill_tokens_per_s);
      rows.decode_tokens_per_s.push(u.extra.decode_tokens_per_s);
      rows.ttft_s.push(u.extra.time_to_first_token_s);
      rows.wall_ttft_s.push(first.wall_s);
      rows.wall_total_s.push(full.wall_s);
      rows.wall_prefill_tokens_per_s.push(first.usage.prompt_tokens / first.wall_s);
      rows.wall_decode_tokens_per_s.push(steps / Math.max(full.wall_s - first.wall_s, 1e-9));
      sample ??= full.text;
      log(`  run ${run + 1}: prompt ${u.prompt_tokens}, completion ${u.completion_tokens}, ` +
        `prefill ${u.extra.prefill_tokens_per_s.toFixed(1)} tok/s, decode ${u.extra.decode_tokens_per_s.toFixed(1)} tok/s, ` +
        `wall ${first.wall_s.toFixed(3)} s / ${full.wall_s.toFixed(3)} s`);
    }
    const entry = { target_tokens: target };
    for (const [key, values] of Object.entries(rows)) entry[key] = spread(values);
    prompts.push(entry);
  }
  await engine.unload();
  await urls.server.shutdown();

  const report = {
    format: "webllm-peer-bench",
    version: 1,
    engine: "@mlc-ai/web-llm@" + (webllm.modelVersion ? `0.2.79 (model libs ${webllm.modelVersion})` : "0.2.79"),
    runtime: `Deno/${Deno.version.deno}`,
    created: new Date().toISOString(),
    model: {
      dir: modelDir,
      model_type: chatConfig.model_type,
      quantization: chatConfig.quantization,
      vocab_size: chatConfig.vocab_size,
      context_window_size: chatConfig.context_window_size,
      prefill_chunk_size: chatConfig.prefill_chunk_size,
      random_weights: chatConfig.model_config?.note === "synthetic weights",
    },
    lib: libPath.split("/").pop(),
    adapter,
    settings: {
      prompt_tokens: args.prompts, gen_tokens: args.gen, runs: args.runs, quick: args.quick,
      api: args.quick ? "completions (raw text)" : "chat.completions (one user message)",
      temperature: 0, ignore_eos: true,
      note: "completion_tokens is WebLLM's count of decode steps (gen_tokens - 1); decode tok/s = steps / decode time",
    },
    load_s: loadCold,
    warm_load_s: loadWarm,
    prompts,
    sample_reply: sample,
  };
  await Deno.stdout.write(new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n"));
}

try {
  await main();
  Deno.exit(0); // WebLLM leaves a device-lost promise and timers behind
} catch (err) {
  console.error("[webllm-peer] failed:", err?.stack ?? err);
  Deno.exit(1);
}
