// Bundles the browser engine into one ES module that the generated site loads.
import * as esbuild from "esbuild";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// @mlc-ai/web-tokenizers and @mlc-ai/web-xgrammar ship UMD files (wasm inlined as base64) inside
// "type": "module" packages, so esbuild would read them as ESM and find no exports. Loaded from a
// namespace of their own, they are judged by their content: CommonJS, whose exports the engine
// can import. The wasm is inlined, so the script's own URL is never used; without `document` and
// `location` (Deno) the glue would compute it with require("url").
const UMD_PACKAGES = {
  "@mlc-ai/web-tokenizers": [["new (require('u' + 'rl').URL)('file:' + __filename).href", '""']],
  "@mlc-ai/web-xgrammar": [["require('u' + 'rl').pathToFileURL(__filename).href", '""']],
};

const umdAsCommonJS = {
  name: "umd-as-commonjs",
  setup(build) {
    // The bare name, not the file's path: the bundle names the module and must not depend on
    // where the repository lies.
    build.onResolve({ filter: /^@mlc-ai\/(web-tokenizers|web-xgrammar)$/ }, (args) => ({
      path: args.path,
      namespace: "umd-as-cjs",
    }));
    build.onLoad({ filter: /.*/, namespace: "umd-as-cjs" }, async (args) => ({
      contents: webOnly(await readFile(require.resolve(args.path), "utf8"), args.path, UMD_PACKAGES[args.path]),
      loader: "js",
    }));
  },
};

// The Emscripten glue in tvmjs and web-tokenizers takes its Node path (require("fs"), ...) when
// `process.versions.node` exists. The engine runs only on web APIs (a page, a worker, Deno), and
// Deno defines `process` for Node compatibility, so the check is made false at bundle time. The
// build fails if a pattern is gone, so a dependency update cannot drop this silently.
const NODE_CHECK = 'typeof process=="object"&&typeof process.versions=="object"&&typeof process.versions.node=="string"';

function webOnly(source, name, extra = []) {
  for (const [pattern, replacement] of [[NODE_CHECK, "false"], ...extra]) {
    if (!source.includes(pattern)) throw new Error(`${name}: the glue no longer contains ${pattern}`);
    source = source.split(pattern).join(replacement);
  }
  return source;
}

const tvmjsWebOnly = {
  name: "tvmjs-web-only",
  setup(build) {
    build.onLoad({ filter: /@mlc-ai[\\/]web-runtime[\\/]lib[\\/]index\.js$/ }, async (args) => ({
      contents: webOnly(await readFile(args.path, "utf8"), "@mlc-ai/web-runtime"),
      loader: "js",
    }));
  },
};

const common = {
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
};

// The engine: the page imports it where workers lack WebGPU; otherwise it is the worker script.
await esbuild.build({
  ...common,
  entryPoints: ["src/index.ts"],
  outfile: "dist/webllm_build.js",
  plugins: [umdAsCommonJS, tvmjsWebOnly],
  // tvmjs and web-tokenizers require these only when they run under Node; a browser never
  // reaches those calls.
  external: ["fs", "path", "perf_hooks", "ws", "crypto", "url", "module"],
});

// The page's part: starts the engine's worker and talks to it (a few KB, no tvmjs).
await esbuild.build({ ...common, entryPoints: ["src/page.ts"], outfile: "dist/webllm_build-page.js" });

// The site's service worker (src/sw.ts). A classic script, since not every browser starts module
// service workers; Workbox reads NODE_ENV to leave its development logging out.
await esbuild.build({
  ...common,
  entryPoints: ["src/sw.ts"],
  outfile: "dist/webllm_build-sw.js",
  format: "iife",
  minify: true,
  sourcemap: false,
  define: { "process.env.NODE_ENV": '"production"' },
});
await esbuild.build({ ...common, entryPoints: ["src/sw_retire.ts"], outfile: "dist/webllm_build-sw-retire.js", format: "iife", sourcemap: false });
