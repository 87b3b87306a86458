// Bundles the browser engine into one ES module that the generated site loads.
import * as esbuild from "esbuild";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// @mlc-ai/web-tokenizers ships a UMD file (wasm inlined as base64) inside a "type": "module"
// package, so esbuild would read it as ESM and find no exports. Loaded from a namespace of its own,
// it is judged by its content: CommonJS, whose exports the engine can import.
const webTokenizersAsCommonJS = {
  name: "web-tokenizers-as-commonjs",
  setup(build) {
    // The bare name, not the file's path: the bundle names the module and must not depend on
    // where the repository lies.
    build.onResolve({ filter: /^@mlc-ai\/web-tokenizers$/ }, (args) => ({
      path: args.path,
      namespace: "umd-as-cjs",
    }));
    build.onLoad({ filter: /.*/, namespace: "umd-as-cjs" }, async (args) => ({
      contents: await readFile(require.resolve(args.path), "utf8"),
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
  plugins: [webTokenizersAsCommonJS],
  // tvmjs and web-tokenizers require these only when they run under Node; a browser never
  // reaches those calls.
  external: ["fs", "path", "perf_hooks", "ws", "crypto", "url", "module"],
});

// The page's part: starts the engine's worker and talks to it (a few KB, no tvmjs).
await esbuild.build({ ...common, entryPoints: ["src/page.ts"], outfile: "dist/webllm_build-page.js" });
